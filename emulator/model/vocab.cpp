#include "model/vocab.hpp"

#include <immintrin.h>

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

// e[i] = exp(x[i]·inv_t − shift) into thread-local scratch `slot` (0 or 1), vectorised; returns
// the scratch. The destination is 64-byte aligned, so the vectorised and scalar parts of the
// loop are the same for every call with the same n: a row's numbers never depend on where its
// scores happen to sit in memory.
const float* exps(const float* x, int64_t n, float inv_t, float shift, int slot) {
  thread_local AlignedVector<float> scratch[2];
  auto& buf = scratch[slot];
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  Eigen::Map<Eigen::ArrayXf, Eigen::Aligned64> e(buf.data(), n);
  e = (Eigen::Map<const Eigen::ArrayXf>(x, n) * inv_t - shift).exp();
  return buf.data();
}

// Σ e[0..n) in double, over an aligned buffer, in a fixed order for a given n: eight lanes (two
// chains of four doubles, so the adds overlap), then the lanes pairwise, then the tail.
double sum(const float* e, int64_t n) {
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_load_ps(e + i);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  const __m256d s4 = _mm256_add_pd(lo, hi);
  const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
  double total = _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
  for (; i < n; ++i) total += e[i];
  return total;
}

float max_of(const float* x, int64_t n) { return Eigen::Map<const Eigen::ArrayXf>(x, n).maxCoeff(); }

}  // namespace

// The tempered masses of a row, computed once for lse and draw alike.
struct TokenScores::Masses {
  double lse = 0;
  const float *ea = nullptr, *eb = nullptr;  // dense: ea = e^(z/τ − max); factored: e^(α/τ − ma), e^(β/τ − mb)
  double total = 0;                          // dense: Σ ea
  double sa_head = 0, ea_last = 0, sb = 0, sb_r = 0;  // factored (layers.hpp's partition function)
};

TokenScores::Masses TokenScores::masses(double temperature) const {
  const float inv_t = static_cast<float>(1.0 / temperature);
  Masses m;
  if (!factored_) {
    const float mx = max_of(logits_, vocab_) * inv_t;
    m.ea = exps(logits_, vocab_, inv_t, mx, 0);
    m.total = sum(m.ea, vocab_);
    m.lse = mx + std::log(m.total);
    return m;
  }
  const float ma = max_of(alpha_, fv_.A) * inv_t, mb = max_of(beta_, fv_.m) * inv_t;
  m.ea = exps(alpha_, fv_.A, inv_t, ma, 0);
  m.eb = exps(beta_, fv_.m, inv_t, mb, 1);
  m.sa_head = fv_.A > 1 ? sum(m.ea, fv_.A - 1) : 0.0;
  m.ea_last = m.ea[fv_.A - 1];
  m.sb_r = sum(m.eb, fv_.r);
  m.sb = fv_.r < fv_.m ? sum(m.eb, fv_.m) : m.sb_r;
  m.lse = static_cast<double>(ma) + static_cast<double>(mb) + std::log(m.sa_head * m.sb + m.ea_last * m.sb_r);
  return m;
}

double TokenScores::lse(double temperature) const { return masses(temperature).lse; }

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

std::pair<int64_t, double> TokenScores::draw(double u, double temperature) const {
  const Masses m = masses(temperature);
  if (!factored_) {  // scaled by the computed total, so rounding never runs past the last id
    u *= m.total;
    for (int64_t t = 0; t < vocab_; ++t) {
      u -= m.ea[t];
      if (u < 0) return {t, m.lse};
    }
    return {vocab_ - 1, m.lse};
  }
  // Id order is (hi, lo) order: pick hi by its mass e^α[hi]·Σ_{valid lo} e^β[lo], then lo within it.
  const double total = m.sa_head * m.sb + m.ea_last * m.sb_r;
  u *= total;
  int64_t hi = fv_.A - 1;
  double within = 1.0 - 1e-12;  // if rounding runs past the last hi: its last valid lo
  for (int64_t a = 0; a < fv_.A; ++a) {
    const double mass = static_cast<double>(m.ea[a]) * (a + 1 < fv_.A ? m.sb : m.sb_r);
    if (u < mass) {
      hi = a;
      within = u / mass;  // uniform in [0, 1) within this hi
      break;
    }
    u -= mass;
  }
  const int64_t n = fv_.lo_count(hi);
  double v = within * (hi + 1 < fv_.A ? m.sb : m.sb_r);
  for (int64_t b = 0; b < n; ++b) {
    v -= m.eb[b];
    if (v < 0) return {hi * fv_.m + b, m.lse};
  }
  return {hi * fv_.m + n - 1, m.lse};
}

}  // namespace kiln::model
