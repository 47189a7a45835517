#include "model/vocab.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <queue>

namespace kiln::model {

TokenScores TokenScores::of(const HeadScores<float>& s, int64_t row) {
  return s.factored ? factored(s.hi.row(row).data(), s.lo.row(row).data(), s.fv)
                    : dense(s.logits.row(row).data(), s.logits.cols());
}

TokenScores TokenScores::dense(const float* logits, int64_t vocab) {
  TokenScores t;
  t.vocab_ = vocab;
  t.logits_ = logits;
  return t;
}

TokenScores TokenScores::factored(const float* alpha, const float* beta, const FactoredVocab& fv) {
  TokenScores t;
  t.factored_ = true;
  t.vocab_ = fv.V;
  t.alpha_ = alpha;
  t.beta_ = beta;
  t.fv_ = fv;
  return t;
}

double TokenScores::logit(int64_t t) const {
  if (!factored_) return logits_[t];
  return static_cast<double>(alpha_[fv_.hi(t)]) + static_cast<double>(beta_[fv_.lo(t)]);
}

namespace {

// log Σ exp(z[i]/τ) over n floats, in double.
double logsumexp(const float* z, int64_t n, double inv_t) {
  double m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, z[i] * inv_t);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(z[i] * inv_t - m);
  return m + std::log(s);
}

}  // namespace

double TokenScores::lse(double temperature) const {
  const double inv_t = 1.0 / temperature;
  if (!factored_) return logsumexp(logits_, vocab_, inv_t);
  // Z = Σ_{a<A−1} e^α[a] · Σ_b e^β[b] + e^α[A−1] · Σ_{b<r} e^β[b] (layers.hpp), shifted by the maxima.
  double ma = -INFINITY, mb = -INFINITY;
  for (int64_t a = 0; a < fv_.A; ++a) ma = std::max(ma, alpha_[a] * inv_t);
  for (int64_t b = 0; b < fv_.m; ++b) mb = std::max(mb, beta_[b] * inv_t);
  double sa_head = 0, sb = 0, sb_r = 0;
  for (int64_t a = 0; a + 1 < fv_.A; ++a) sa_head += std::exp(alpha_[a] * inv_t - ma);
  const double ea_last = std::exp(alpha_[fv_.A - 1] * inv_t - ma);
  for (int64_t b = 0; b < fv_.m; ++b) {
    const double e = std::exp(beta_[b] * inv_t - mb);
    sb += e;
    if (b < fv_.r) sb_r += e;
  }
  return ma + mb + std::log(sa_head * sb + ea_last * sb_r);
}

int64_t TokenScores::argmax() const {
  if (!factored_) return std::max_element(logits_, logits_ + vocab_) - logits_;
  // The best id is the best hi < A−1 with the best lo, or hi = A−1 with the best lo < r.
  const int64_t b_all = std::max_element(beta_, beta_ + fv_.m) - beta_;
  const int64_t b_r = std::max_element(beta_, beta_ + fv_.r) - beta_;
  const int64_t last = fv_.A - 1;
  const int64_t best_last = last * fv_.m + b_r;
  if (last == 0) return best_last;
  const int64_t a = std::max_element(alpha_, alpha_ + last) - alpha_;
  const int64_t best_head = a * fv_.m + b_all;
  return logit(best_head) >= logit(best_last) ? best_head : best_last;
}

void TokenScores::sort_factors() const {
  if (!hi_order_.empty()) return;
  auto order = [](const float* v, int64_t n, std::vector<int32_t>& out) {
    out.resize(static_cast<size_t>(n));
    std::iota(out.begin(), out.end(), 0);
    std::stable_sort(out.begin(), out.end(), [&](int32_t x, int32_t y) { return v[x] > v[y]; });
  };
  order(alpha_, fv_.A, hi_order_);
  order(beta_, fv_.m, lo_order_);
}

void TokenScores::descending(const std::function<bool(int64_t, double)>& next) const {
  if (!factored_) {
    std::vector<int64_t> ids(static_cast<size_t>(vocab_));
    std::iota(ids.begin(), ids.end(), 0);
    std::stable_sort(ids.begin(), ids.end(), [&](int64_t x, int64_t y) { return logits_[x] > logits_[y]; });
    for (int64_t id : ids)
      if (!next(id, logits_[id])) return;
    return;
  }
  // Best-first over the grid of (i-th best hi, j-th best lo): a pair's score and id order never
  // improve along i or j, so a heap seeded with (0, 0) that pushes (i, j+1), and (i+1, 0) from
  // the first column, pops every pair once in the global order. Pairs that are not ids (hi = A−1,
  // lo ≥ r) are walked through but not reported.
  sort_factors();
  struct Node {
    double z;
    int64_t id;
    int32_t i, j;
  };
  const auto after = [](const Node& x, const Node& y) { return x.z < y.z || (x.z == y.z && x.id > y.id); };
  std::priority_queue<Node, std::vector<Node>, decltype(after)> heap(after);
  const auto node = [&](int32_t i, int32_t j) {
    const int64_t hi = hi_order_[static_cast<size_t>(i)], lo = lo_order_[static_cast<size_t>(j)];
    return Node{static_cast<double>(alpha_[hi]) + static_cast<double>(beta_[lo]), hi * fv_.m + lo, i, j};
  };
  heap.push(node(0, 0));
  while (!heap.empty()) {
    const Node n = heap.top();
    heap.pop();
    if (n.j + 1 < fv_.m) heap.push(node(n.i, n.j + 1));
    if (n.j == 0 && n.i + 1 < fv_.A) heap.push(node(n.i + 1, 0));
    if (n.id < vocab_ && !next(n.id, n.z)) return;
  }
}

std::vector<std::pair<int64_t, double>> TokenScores::top(int64_t k) const {
  k = std::min(k, vocab_);
  std::vector<std::pair<int64_t, double>> out;
  if (k <= 0) return out;
  out.reserve(static_cast<size_t>(k));
  if (!factored_) {
    std::vector<int64_t> ids(static_cast<size_t>(vocab_));
    std::iota(ids.begin(), ids.end(), 0);
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int64_t x, int64_t y) {
      return logits_[x] > logits_[y] || (logits_[x] == logits_[y] && x < y);
    });
    for (int64_t i = 0; i < k; ++i) out.emplace_back(ids[i], logits_[ids[i]]);
    return out;
  }
  descending([&](int64_t id, double z) {
    out.emplace_back(id, z);
    return static_cast<int64_t>(out.size()) < k;
  });
  return out;
}

int64_t TokenScores::draw(double u, double temperature, double lse_t) const {
  const double inv_t = 1.0 / temperature;
  if (!factored_) {
    // Scale u by the computed total so rounding in the masses never runs past the last id.
    double total = 0;
    for (int64_t t = 0; t < vocab_; ++t) total += std::exp(logits_[t] * inv_t - lse_t);
    u *= total;
    for (int64_t t = 0; t < vocab_; ++t) {
      u -= std::exp(logits_[t] * inv_t - lse_t);
      if (u < 0) return t;
    }
    return vocab_ - 1;
  }
  // Id order is (hi, lo) order: pick hi by its mass e^α[hi]·Σ_{valid lo} e^β[lo], then lo within it.
  double mb = -INFINITY;
  for (int64_t b = 0; b < fv_.m; ++b) mb = std::max(mb, beta_[b] * inv_t);
  std::vector<double> eb(static_cast<size_t>(fv_.m));
  double sb = 0, sb_r = 0;
  for (int64_t b = 0; b < fv_.m; ++b) {
    eb[b] = std::exp(beta_[b] * inv_t - mb);
    sb += eb[b];
    if (b < fv_.r) sb_r += eb[b];
  }
  const double shift = lse_t - mb;  // e^(α/τ − shift)·Σe^(β/τ − mb) = the hi's probability
  double total = 0;
  for (int64_t a = 0; a < fv_.A; ++a) total += std::exp(alpha_[a] * inv_t - shift) * (a + 1 < fv_.A ? sb : sb_r);
  u *= total;
  int64_t hi = fv_.A - 1;
  double within = 1.0 - 1e-12;  // if rounding runs past the last hi: its last valid lo
  for (int64_t a = 0; a < fv_.A; ++a) {
    const double mass = std::exp(alpha_[a] * inv_t - shift) * (a + 1 < fv_.A ? sb : sb_r);
    if (u < mass) {
      hi = a;
      within = u / mass;  // uniform in [0, 1) within this hi
      break;
    }
    u -= mass;
  }
  const int64_t n = fv_.lo_count(hi);
  const double s = hi + 1 < fv_.A ? sb : sb_r;
  double v = within * s;
  for (int64_t b = 0; b < n; ++b) {
    v -= eb[b];
    if (v < 0) return hi * fv_.m + b;
  }
  return hi * fv_.m + n - 1;
}

}  // namespace kiln::model
