// Forward+backward throughput of the model core (full-parameter gradients, float).
// Arguments: (config index into bench_configs(), thread count). bench/run compares with PyTorch.
#include <benchmark/benchmark.h>

#include "model/init.hpp"
#include "model/registry.hpp"
#include "model/sampler.hpp"
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

// ---------------------------------------------------------------------------------------------
// The stand-ins (issue #13): a 4096-token LoRA step of the Qwen3-8B stand-in against a byte-
// vocabulary model of the same width and depth, and sampling from the stand-in.

ModelConfig stand_in(int which) {
  ModelConfig c = ModelRegistry::builtin().get("Qwen/Qwen3-8B").config;
  if (which == 1) {  // the byte-vocabulary model of the same shape: a dense 256-row head
    c.vocab_size = 256;
    c.head = HeadKind::dense;
    c.eos_token_ids.clear();
    c.named.reset();
  }
  return c;
}
const char* stand_in_label(int which) { return which == 0 ? "Qwen3-8B stand-in" : "byte model, same shape"; }

std::vector<SequenceInput> random_batch(int64_t vocab, int64_t sequences, int64_t len, uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<SequenceInput> batch(static_cast<size_t>(sequences));
  for (auto& s : batch) {
    for (int64_t t = 0; t < len; ++t) {
      s.tokens.push_back(static_cast<int64_t>(rng.next() % vocab));
      s.targets.push_back(static_cast<int64_t>(rng.next() % vocab));
    }
    s.target_shape = {len};
  }
  return batch;
}

// forward_backward + optim_step, LoRA rank 8, 8 sequences × 512 tokens.
void BM_LoraStep4k(benchmark::State& state) {
  const int which = static_cast<int>(state.range(0));
  set_num_threads(static_cast<int>(state.range(1)));
  const ModelConfig c = stand_in(which);
  train::TrainingState<float> st(Transformer<float>(c, shared_base_weights<float>(c, "bench", 0), LoraConfig{.rank = 8}));
  std::vector<train::Datum> data;
  for (const auto& s : random_batch(c.vocab_size, 8, 512, 7))
    data.push_back({s.tokens, {{"target_tokens", train::TensorData::ints(s.targets)}}});
  const auto ce = train::LossSpec::parse("cross_entropy", {});
  const train::AdamParams adam{.learning_rate = 1e-4};
  st.forward_backward(data, ce);
  st.optim_step(adam, train::Normalization::none);
  for (auto _ : state) {
    st.forward_backward(data, ce);
    benchmark::DoNotOptimize(st.optim_step(adam, train::Normalization::none));
  }
  state.SetLabel(stand_in_label(which));
  state.counters["tokens_per_s"] = benchmark::Counter(4096, benchmark::Counter::kIsIterationInvariantRate);
  set_num_threads(1);
}

// A training forward of the Qwen3-8B stand-in (4 × 256 tokens): the per-token cost decoding is held to.
void BM_StandinForward(benchmark::State& state) {
  set_num_threads(static_cast<int>(state.range(0)));
  const ModelConfig c = stand_in(0);
  const auto model = Transformer<float>::frozen(c, shared_base_weights<float>(c, "bench", 0));
  const auto batch = random_batch(c.vocab_size, 4, 256, 8);
  benchmark::DoNotOptimize(model.forward(batch, false));
  for (auto _ : state) benchmark::DoNotOptimize(model.forward(batch, false));
  state.counters["tokens_per_s"] = benchmark::Counter(1024, benchmark::Counter::kIsIterationInvariantRate);
  set_num_threads(1);
}

// Sampling from the stand-in, 32 tokens per sequence after a 16-token prompt, temperature 1:
// requests × samples sequences decoded together (one lone sequence: 1 × 1).
void BM_StandinSample(benchmark::State& state) {
  const int64_t requests = state.range(0), samples = state.range(1);
  set_num_threads(static_cast<int>(state.range(2)));
  const ModelConfig c = stand_in(0);
  auto model = std::make_shared<const Transformer<float>>(
      Transformer<float>::frozen(c, shared_base_weights<float>(c, "bench", 0)));
  BatchSampler batch(model);
  SampleSpec spec;
  spec.prompt = random_batch(c.vocab_size, 1, 16, 9)[0].tokens;
  spec.num_samples = samples;
  spec.params.max_tokens = 32;
  spec.params.end_of_sequence = false;
  uint64_t seed = 0;
  for (auto _ : state) {
    for (int64_t r = 0; r < requests; ++r) {
      spec.params.seed = ++seed;
      batch.add(spec);
    }
    while (!batch.idle()) benchmark::DoNotOptimize(batch.step());
  }
  state.SetLabel(std::to_string(requests) + " requests x " + std::to_string(samples) + " sequences");
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(requests * samples * 32), benchmark::Counter::kIsIterationInvariantRate);
  set_num_threads(1);
}

BENCHMARK(BM_LoraStep4k)
    ->ArgNames({"model", "threads"})
    ->ArgsProduct({{0, 1}, {1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0)
    ->UseRealTime();

BENCHMARK(BM_StandinForward)->ArgNames({"threads"})->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();

BENCHMARK(BM_StandinSample)
    ->ArgNames({"requests", "samples", "threads"})
    ->Args({1, 1, 1})
    ->Args({1, 1, 2})
    ->Args({4, 8, 1})
    ->Args({4, 8, 2})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0)
    ->UseRealTime();

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
