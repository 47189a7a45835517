#pragma once
// The benchmark configurations of the model-core issue; bench/torch_peer.py runs the same ones.
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.hpp"

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
    return static_cast<double>(model.n_layers) * (4 * d * d + 3 * d * f) +
           static_cast<double>(model.vocab_size) * d;
  }
  // Training FLOPs per token: 6·N + 12·L·T·d (forward 2N + attention, backward twice that).
  double flops_per_token() const {
    return 6 * matmul_params() + 12.0 * static_cast<double>(model.n_layers * seq_len * model.d_model);
  }
};

// head_dim 32 and d_ff ≈ 8/3·d rounded to a multiple of 32, as Llama does.
inline std::vector<BenchConfig> bench_configs() {
  auto cfg = [](int64_t V, int64_t d, int64_t L, int64_t f) {
    return model::ModelConfig{.vocab_size = V, .d_model = d, .n_layers = L, .n_heads = d / 32,
                              .d_ff = f, .max_context = 4096, .rope_theta = 10000.0, .norm_eps = 1e-5};
  };
  return {
      {"d128_L2_V256_T128_B8", cfg(256, 128, 2, 352), 128, 8},
      {"d256_L4_V256_T256_B8", cfg(256, 256, 4, 704), 256, 8},
      {"d64_L2_V151936_T256_B4", cfg(151936, 64, 2, 192), 256, 4},
  };
}

}  // namespace kiln::bench
