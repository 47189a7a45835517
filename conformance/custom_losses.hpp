#pragma once
// The named custom losses of DRIVER.md, as plain maths on logprob lists: every driver implements
// them, Kiln's C++ driver calls this, and the harness's oracle uses it for the expected numbers.
#include <string>
#include <vector>

namespace kiln::conformance {

struct CustomLossValue {
  double loss = 0;
  std::vector<std::vector<double>> grads;  // d loss / d lp[i][t], the shape of lp
};

// lp[i]: datum i's logprobs; weights[i]: its `weights` input (empty: all ones).
// Throws std::invalid_argument for an unknown name, or an odd number of datums for dpo_margin.
CustomLossValue evaluate_custom_loss(const std::string& name, const std::vector<std::vector<double>>& weights,
                                     const std::vector<std::vector<double>>& lp);

}  // namespace kiln::conformance
