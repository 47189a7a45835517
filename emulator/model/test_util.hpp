#pragma once
// Helpers shared by the model tests: deterministic random batches and parameter perturbation.
#include <vector>

#include "model/params.hpp"
#include "model/rng.hpp"
#include "model/transformer.hpp"

namespace kiln::model::testing {

// A batch of sequences with the given lengths; k = 0 gives (N) targets, k >= 1 gives (N, k).
inline std::vector<SequenceInput> random_batch(SplitMix64& rng, int64_t vocab,
                                               const std::vector<int64_t>& lengths, int64_t k) {
  std::vector<SequenceInput> batch;
  for (int64_t n : lengths) {
    SequenceInput s;
    for (int64_t t = 0; t < n; ++t) s.tokens.push_back(static_cast<int64_t>(rng.next() % vocab));
    const int64_t kk = k == 0 ? 1 : k;
    for (int64_t j = 0; j < n * kk; ++j) s.targets.push_back(static_cast<int64_t>(rng.next() % vocab));
    s.target_shape = k == 0 ? std::vector<int64_t>{n} : std::vector<int64_t>{n, k};
    batch.push_back(std::move(s));
  }
  return batch;
}

// Adds N(0, std) noise to every value (so norms, adapters' B, etc. are all non-trivial).
template <typename T>
void perturb(ParamSet<T>& p, SplitMix64& rng, double std) {
  for (auto& t : p)
    for (auto& x : t.data) x += static_cast<T>(std * rng.normal());
}

// Coefficients c for the scalar loss Σ c·logprob, shaped like the forward's logprobs.
template <typename T>
std::vector<std::vector<T>> random_coefficients(SplitMix64& rng, const std::vector<std::vector<T>>& like) {
  std::vector<std::vector<T>> c(like.size());
  for (size_t s = 0; s < like.size(); ++s)
    for (size_t j = 0; j < like[s].size(); ++j) c[s].push_back(static_cast<T>(rng.uniform() * 2 - 1));
  return c;
}

template <typename T>
double weighted_sum(const std::vector<std::vector<T>>& lp, const std::vector<std::vector<T>>& c) {
  double total = 0;
  for (size_t s = 0; s < lp.size(); ++s)
    for (size_t j = 0; j < lp[s].size(); ++j) total += static_cast<double>(lp[s][j]) * c[s][j];
  return total;
}

}  // namespace kiln::model::testing
