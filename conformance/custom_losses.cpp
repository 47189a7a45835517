#include "conformance/custom_losses.hpp"

#include <cmath>
#include <stdexcept>

namespace kiln::conformance {

CustomLossValue evaluate_custom_loss(const std::string& name, const std::vector<std::vector<double>>& weights,
                                     const std::vector<std::vector<double>>& lp) {
  CustomLossValue v;
  v.grads.resize(lp.size());
  if (name == "neg_logprob_sum" || name == "logprob_squared") {
    for (size_t i = 0; i < lp.size(); ++i) {
      v.grads[i].resize(lp[i].size());
      for (size_t t = 0; t < lp[i].size(); ++t) {
        const double w = i < weights.size() && !weights[i].empty() ? weights[i][t] : 1.0;
        if (name == "neg_logprob_sum") {
          v.loss -= w * lp[i][t];
          v.grads[i][t] = -w;
        } else {
          v.loss += lp[i][t] * lp[i][t];
          v.grads[i][t] = 2 * lp[i][t];
        }
      }
    }
    return v;
  }
  if (name == "dpo_margin") {
    if (lp.size() % 2) throw std::invalid_argument("dpo_margin needs datums in (chosen, rejected) pairs");
    const double beta = 0.1;
    for (size_t k = 0; k < lp.size(); k += 2) {
      double chosen = 0, rejected = 0;
      for (double x : lp[k]) chosen += x;
      for (double x : lp[k + 1]) rejected += x;
      const double m = beta * (chosen - rejected);
      v.loss += std::log1p(std::exp(-m));         // -log σ(m)
      const double s = 1.0 / (1.0 + std::exp(m));  // σ(-m)
      v.grads[k].assign(lp[k].size(), -beta * s);
      v.grads[k + 1].assign(lp[k + 1].size(), beta * s);
    }
    return v;
  }
  throw std::invalid_argument("unknown custom loss '" + name + "'; expected neg_logprob_sum, logprob_squared or dpo_margin");
}

}  // namespace kiln::conformance
