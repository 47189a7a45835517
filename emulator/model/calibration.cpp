#include "model/calibration.hpp"

#include <cmath>

namespace kiln::model {

namespace {

bool has(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

}  // namespace

double width_ratio(const std::string& tensor, const ModelConfig& c) {
  if (!c.named || has(tensor, "embed_tokens") || has(tensor, "norm")) return 1.0;
  if (has(tensor, "lora_B") && !has(tensor, "lm_head")) return 1.0;  // fan-in = rank in both models
  const NamedArchitecture& n = *c.named;
  double named_in = 0, standin_in = 0;
  if (has(tensor, "o_proj")) {
    named_in = static_cast<double>(n.n_heads * n.head_dim);
    standin_in = static_cast<double>(c.d_model);
  } else if (has(tensor, "down_proj")) {
    named_in = static_cast<double>(n.intermediate_size);
    standin_in = static_cast<double>(c.d_ff);
  } else if (has(tensor, "_proj") || has(tensor, "lm_head")) {
    named_in = static_cast<double>(n.hidden_size);
    standin_in = static_cast<double>(c.d_model);
  } else {
    return 1.0;
  }
  return named_in / standin_in;
}

double init_gain(const std::string& tensor, const ModelConfig& c) {
  if (!c.named) return 1.0;
  const double g = std::sqrt(width_ratio(tensor, c));
  return has(tensor, "lm_head") ? kHeadGain * g : g;
}

}  // namespace kiln::model
