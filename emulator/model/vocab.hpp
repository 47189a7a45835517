#pragma once
// The next-token distribution at one position, as the LM head gives it: dense logits [V], or a
// factored head's α [A] and β [m] with logit(t) = α[hi(t)] + β[lo(t)] (FactoredVocab,
// layers.hpp). Every operation is exact over the V ids. A factored row never builds the V
// logits: the partition function, greedy, exact draws and top-k work on α and β, and only a
// top-p cut walks the ids in descending order (at most O(V) additions, never a product with d).
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "model/layers.hpp"

namespace kiln::model {

// The head's output for n positions.
template <typename T>
struct HeadScores {
  bool factored = false;
  FactoredVocab fv;  // factored only
  Mat<T> logits;     // dense: [n, V]
  Mat<T> hi, lo;     // factored: α [n, A], β [n, m]
  int64_t rows() const { return factored ? hi.rows() : logits.rows(); }
};

class TokenScores {
 public:
  // Views of one row of `scores` (which must outlive the view).
  static TokenScores of(const HeadScores<float>& scores, int64_t row);
  static TokenScores dense(const float* logits, int64_t vocab);
  static TokenScores factored(const float* alpha, const float* beta, const FactoredVocab& fv);

  int64_t vocab() const { return vocab_; }
  double logit(int64_t t) const;
  // log Σ_t exp(logit(t) / temperature), in double.
  double lse(double temperature = 1.0) const;
  double logprob(int64_t t) const { return logit(t) - lse(); }  // at temperature 1
  int64_t argmax() const;                                        // ties → the lowest id
  // The k most likely ids, most likely first (ties → the lower id), with their logits.
  std::vector<std::pair<int64_t, double>> top(int64_t k) const;
  // Ids in descending logit order (ties → the lower id), each once, until `next(id, logit)`
  // returns false or all V are out. Used for top-p, whose length depends on the masses.
  void descending(const std::function<bool(int64_t, double)>& next) const;
  // The inverse-CDF draw in id order: the first id whose cumulative tempered probability exceeds
  // u ∈ [0, 1); returned with lse(temperature), computed in the same pass.
  std::pair<int64_t, double> draw(double u, double temperature) const;

 private:
  bool factored_ = false;
  int64_t vocab_ = 0;
  const float* logits_ = nullptr;               // dense
  const float *alpha_ = nullptr, *beta_ = nullptr;  // factored
  FactoredVocab fv_;
  // Factored: hi / lo indices sorted by descending score (ties → lower index), built on demand.
  mutable std::vector<int32_t> hi_order_, lo_order_;
  void sort_factors() const;
  struct Masses;
  Masses masses(double temperature) const;
};

}  // namespace kiln::model
