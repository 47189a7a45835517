#pragma once
// Helpers shared by the training tests: small models and random datums.
#include <memory>
#include <string>
#include <vector>

#include "model/init.hpp"
#include "model/rng.hpp"
#include "train/training_state.hpp"

namespace kiln::train::testing {

inline model::ModelConfig small_config() {
  return {.vocab_size = 24, .d_model = 8, .n_layers = 1, .n_heads = 2, .d_ff = 12, .max_context = 32,
          .rope_theta = 1e4, .norm_eps = 1e-5, .eos_token_ids = {}};
}

// A double-precision training state; rank 0 is full-parameter. Weights are perturbed away from
// the plain initialisation so that every gradient is non-trivial.
inline TrainingState<double> small_state(int64_t rank, uint64_t seed = 1) {
  const auto cfg = small_config();
  auto base = model::init_base_weights<double>(cfg, "train-test", seed);
  model::SplitMix64 rng(seed);
  for (auto& t : base)
    for (auto& x : t.data) x += 0.2 * rng.normal();
  model::Transformer<double> m(cfg, std::make_shared<const model::ParamSet<double>>(std::move(base)),
                               model::LoraConfig{.rank = rank, .seed = seed});
  for (auto& t : m.params())
    if (t.name.find("lora_B") != std::string::npos)
      for (auto& x : t.data) x = 0.1 * rng.normal();
  return TrainingState<double>(std::move(m));
}

// A datum of length n for `loss` with random targets, weights (some zero, some negative),
// sampling logprobs and advantages (some zero).
inline Datum random_datum(model::SplitMix64& rng, int64_t n, bool rl) {
  Datum d;
  std::vector<int64_t> targets;
  std::vector<double> weights, q, adv;
  for (int64_t t = 0; t < n; ++t) {
    d.model_input.push_back(static_cast<int64_t>(rng.next() % 24));
    targets.push_back(static_cast<int64_t>(rng.next() % 24));
    weights.push_back(rng.uniform() < 0.2 ? 0.0 : rng.uniform() * 2 - 0.5);
    q.push_back(-3.2 + rng.normal() * 0.3);
    adv.push_back(rng.uniform() < 0.2 ? 0.0 : rng.normal());
  }
  d.loss_fn_inputs["target_tokens"] = TensorData::ints(targets);
  d.loss_fn_inputs["weights"] = TensorData::floats(weights);
  if (rl) {
    d.loss_fn_inputs["logprobs"] = TensorData::floats(q);
    d.loss_fn_inputs["advantages"] = TensorData::floats(adv);
  }
  return d;
}

inline bool params_equal(const model::ParamSet<double>& a, const model::ParamSet<double>& b) {
  if (a.size() != b.size()) return false;
  for (int i = 0; i < a.size(); ++i)
    if (a[i].data != b[i].data) return false;
  return true;
}

}  // namespace kiln::train::testing
