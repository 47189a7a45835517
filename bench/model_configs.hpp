#pragma once
// The benchmark configurations of the model-core issue; bench/torch_peer.py runs the same ones.
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/layers.hpp"

namespace kiln::bench {

struct BenchConfig {
  std::string name;
  model::ModelConfig model;
  int64_t seq_len;  // T
  int64_t batch;    // B

  // Parameters that take part in the per-token matmuls: every layer's projections and the LM head
  // (the embedding is a lookup, norms are negligible).
  double matmul_params() const {
    const double d = static_cast<double>(model.d_model), f = static_cast<double>(model.d_ff);
    const model::FactoredVocab fv(model.vocab_size);
    const double head_rows = model.factored_head() ? static_cast<double>(fv.A + fv.m) : static_cast<double>(model.vocab_size);
    return static_cast<double>(model.n_layers) * (4 * d * d + 3 * d * f) + head_rows * d;
  }
  // Training FLOPs per token: 6·N + 12·L·T·d (forward 2N + attention, backward twice that).
  double flops_per_token() const {
    return 6 * matmul_params() + 12.0 * static_cast<double>(model.n_layers * seq_len * model.d_model);
  }
};

// head_dim 32 and d_ff ≈ 8/3·d rounded to a multiple of 32, as Llama does. The last config is the
// shape of the Qwen3 stand-ins: Qwen3's vocabulary through a factored head.
inline std::vector<BenchConfig> bench_configs() {
  auto cfg = [](int64_t V, int64_t d, int64_t L, int64_t f, model::HeadKind head = model::HeadKind::dense) {
    return model::ModelConfig{.vocab_size = V, .d_model = d, .n_layers = L, .n_heads = d / 32,
                              .d_ff = f, .max_context = 4096, .rope_theta = 10000.0, .norm_eps = 1e-5,
                              .eos_token_ids = {}, .head = head};
  };
  return {
      {"d128_L2_V256_T128_B8", cfg(256, 128, 2, 352), 128, 8},
      {"d256_L4_V256_T256_B8", cfg(256, 256, 4, 704), 256, 8},
      {"d64_L2_V151936f_T256_B4", cfg(151936, 64, 2, 192, model::HeadKind::factored), 256, 4},
  };
}

}  // namespace kiln::bench
