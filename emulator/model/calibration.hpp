#pragma once
// Stand-in calibration: a narrow, shallow stand-in (64 wide, 2 deep) made to learn at the user's
// hyperparameters the way the model it is named after does (config.named, from its published
// config). The rule is μP's width transfer, from the named model's width down to the stand-in's,
// plus two measured constants for the LM head:
//
//   r(W)     = fan-in of W's counterpart in the named model / fan-in of W in the stand-in
//   init     σ(W)  = σ_textbook(W) · sqrt(r(W))        (the named model's per-unit activation scale)
//            LM head: kHeadGain times that
//   AdamW    lr(W) = lr · r(W)                         (μP for Adam: an update's effect grows with fan-in)
//
// for every weight matrix, LoRA A included (its fan-in is its module's). LoRA B has fan-in = rank
// in both models, so r = 1 — except the LM head's, which learns at the head's own ratio (the head
// is where a 2-deep stand-in must make up for what the named model spreads over its depth).
// Embeddings (fan-in 1) and norms keep r = 1. Fan-ins of the named model: q, k, v, gate, up and
// the LM head read hidden_size; o_proj reads heads·head_dim; down_proj reads intermediate_size
// (one expert's, for mixture-of-experts models). Models without a named architecture (kiln/tiny,
// kiln/small) get r = 1 everywhere: textbook initialisation and AdamW. DIFFERENCES.md gives the
// measurements behind the constants.
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/params.hpp"

namespace kiln::model {

inline constexpr double kHeadGain = 4.0;

// r(W) for the tensor called `tensor` (base or PEFT adapter name); 1 when nothing is named.
double width_ratio(const std::string& tensor, const ModelConfig& config);
// The factor on the textbook initialisation std of base tensor `tensor`.
double init_gain(const std::string& tensor, const ModelConfig& config);
// One learning-rate factor per trainable tensor, in order; empty when nothing is named.
template <typename T>
std::vector<double> update_scale(const ParamSet<T>& trainable, const ModelConfig& config) {
  std::vector<double> out;
  if (!config.named) return out;
  for (const auto& t : trainable) out.push_back(width_ratio(t.name, config));
  return out;
}

}  // namespace kiln::model
