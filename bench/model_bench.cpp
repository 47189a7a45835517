// Forward+backward throughput of the model core (full-parameter gradients, float).
// Arguments: (config index into bench_configs(), thread count). bench/run compares with PyTorch.
#include <benchmark/benchmark.h>

#include "model/init.hpp"
#include "model/rng.hpp"
#include "model/threads.hpp"
#include "model/transformer.hpp"
#include "model_configs.hpp"
#include "train/training_state.hpp"

namespace kiln::bench {
namespace {

using namespace kiln::model;

std::vector<SequenceInput> make_batch(const BenchConfig& c) {
  SplitMix64 rng(42);
  std::vector<SequenceInput> batch(static_cast<size_t>(c.batch));
  for (auto& s : batch) {
    for (int64_t t = 0; t < c.seq_len; ++t) {
      s.tokens.push_back(static_cast<int64_t>(rng.next() % c.model.vocab_size));
      s.targets.push_back(static_cast<int64_t>(rng.next() % c.model.vocab_size));
    }
    s.target_shape = {c.seq_len};
  }
  return batch;
}

// tokens/s and model GFLOP/s (6·N + 12·L·T·d per token) per iteration.
void report(benchmark::State& state, const BenchConfig& c) {
  const double tokens = static_cast<double>(c.batch * c.seq_len);
  state.SetLabel(c.name);
  state.counters["tokens_per_s"] = benchmark::Counter(tokens, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOPs"] =
      benchmark::Counter(tokens * c.flops_per_token() * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_ForwardBackward(benchmark::State& state) {
  const BenchConfig c = bench_configs()[static_cast<size_t>(state.range(0))];
  set_num_threads(static_cast<int>(state.range(1)));
  Transformer<float> model(c.model, shared_base_weights<float>(c.model, "bench", 0), LoraConfig{.rank = 0});
  const auto batch = make_batch(c);
  std::vector<std::vector<float>> coef(batch.size(), std::vector<float>(static_cast<size_t>(c.seq_len), -1.0f));
  auto grads = model.params().zeros_like();
  {  // untimed first step: the model's workspace is allocated (and page-faulted) here
    auto fp = model.forward(batch);
    model.backward(fp, coef, grads);
  }
  for (auto _ : state) {
    auto fp = model.forward(batch);
    model.backward(fp, coef, grads);
    benchmark::DoNotOptimize(grads[0].data.data());
  }
  report(state, c);
  set_num_threads(1);
}

// A whole training step through the training layer: forward_backward (cross_entropy, weights
// ones) and optim_step (AdamW, torch's defaults but lr 1e-4), full-parameter, float.
void BM_TrainStep(benchmark::State& state) {
  const BenchConfig c = bench_configs()[static_cast<size_t>(state.range(0))];
  set_num_threads(static_cast<int>(state.range(1)));
  train::TrainingState<float> st(
      Transformer<float>(c.model, shared_base_weights<float>(c.model, "bench", 0), LoraConfig{.rank = 0}));
  std::vector<train::Datum> data;
  for (const auto& s : make_batch(c))
    data.push_back({s.tokens, {{"target_tokens", train::TensorData::ints(s.targets)}}});
  const auto ce = train::LossSpec::parse("cross_entropy", {});
  const train::AdamParams adam{};
  st.forward_backward(data, ce);  // untimed first step: workspace and Adam state allocated here
  st.optim_step(adam, train::Normalization::none);
  for (auto _ : state) {
    st.forward_backward(data, ce);
    benchmark::DoNotOptimize(st.optim_step(adam, train::Normalization::none));
  }
  report(state, c);
  set_num_threads(1);
}

BENCHMARK(BM_TrainStep)
    ->ArgNames({"config", "threads"})
    ->ArgsProduct({{0, 1, 2}, {1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(3.0)
    ->UseRealTime();

BENCHMARK(BM_ForwardBackward)
    ->ArgNames({"config", "threads"})
    ->ArgsProduct({{0, 1, 2}, {1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(3.0)
    ->UseRealTime();

}  // namespace
}  // namespace kiln::bench

BENCHMARK_MAIN();
