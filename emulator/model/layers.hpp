#pragma once
// The transformer's layers, each as a forward and a backward function side by side.
// Activations are row-major [T, C] matrices: T tokens of the whole batch packed back to back
// (no padding), C channels. Backward functions accumulate (+=) into parameter gradients and, where
// they say so, into input gradients. Parallel loops write disjoint rows, so results do not depend
// on scheduling.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "model/gemm.hpp"
#include "model/params.hpp"
#include "model/threads.hpp"

namespace kiln::model {

template <typename T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
template <typename T>
using MatMap = Eigen::Map<Mat<T>>;
template <typename T>
using CMatMap = Eigen::Map<const Mat<T>>;
// A column block of a row-major matrix (one attention head): rows stay `stride` apart.
template <typename T>
using BlockMap = Eigen::Map<Mat<T>, 0, Eigen::OuterStride<>>;
template <typename T>
using CBlockMap = Eigen::Map<const Mat<T>, 0, Eigen::OuterStride<>>;

// ---------------------------------------------------------------------------------------------
// Token embedding. out[T,d] = wte[tokens[t], :]
template <typename T>
void embedding_forward(Mat<T>& out, const std::vector<int64_t>& tokens, const T* wte, int64_t d) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  out.resize(n, d);
  for (int64_t t = 0; t < n; ++t) out.row(t) = CMatMap<T>(wte + tokens[t] * d, 1, d);
}
// dwte[V,d] += scatter of dout[T,d] by token (sequential: repeated tokens add in a fixed order).
template <typename T>
void embedding_backward(T* dwte, const Mat<T>& dout, const std::vector<int64_t>& tokens) {
  const int64_t d = dout.cols();
  for (size_t t = 0; t < tokens.size(); ++t)
    MatMap<T>(dwte + tokens[t] * d, 1, d) += dout.row(static_cast<int64_t>(t));
}

// ---------------------------------------------------------------------------------------------
// Factored vocabulary (large vocabularies). Token t is the pair (hi, lo) = (t / m, t % m) with
// m = ceil(sqrt(V)): hi takes A = ceil(V/m) values, and the last row hi = A−1 holds only
// r = V − (A−1)·m valid lo values, so the ids ≥ V that the grid would add do not exist.
struct FactoredVocab {
  int64_t V = 0, m = 0, A = 0, r = 0;
  FactoredVocab() = default;
  explicit FactoredVocab(int64_t vocab) : V(vocab) {
    m = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(vocab))));
    while (m * m < vocab) ++m;  // guard against sqrt rounding down
    while (m > 1 && (m - 1) * (m - 1) >= vocab) --m;
    A = (vocab + m - 1) / m;
    r = vocab - (A - 1) * m;
  }
  int64_t hi(int64_t t) const { return t / m; }
  int64_t lo(int64_t t) const { return t % m; }
  int64_t lo_count(int64_t hi_value) const { return hi_value == A - 1 ? r : m; }  // valid lo values
};

// Factored token embedding. out[T,d] = E_hi[hi(t)] + E_lo[lo(t)]
template <typename T>
void factored_embedding_forward(Mat<T>& out, const std::vector<int64_t>& tokens, const T* e_hi, const T* e_lo,
                                const FactoredVocab& fv, int64_t d) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  out.resize(n, d);
  for (int64_t t = 0; t < n; ++t)
    out.row(t) = CMatMap<T>(e_hi + fv.hi(tokens[t]) * d, 1, d) + CMatMap<T>(e_lo + fv.lo(tokens[t]) * d, 1, d);
}
// de_hi, de_lo += scatter of dout by each token's hi and lo (either may be null when frozen).
template <typename T>
void factored_embedding_backward(T* de_hi, T* de_lo, const Mat<T>& dout, const std::vector<int64_t>& tokens,
                                 const FactoredVocab& fv) {
  const int64_t d = dout.cols();
  for (size_t t = 0; t < tokens.size(); ++t) {
    if (de_hi) MatMap<T>(de_hi + fv.hi(tokens[t]) * d, 1, d) += dout.row(static_cast<int64_t>(t));
    if (de_lo) MatMap<T>(de_lo + fv.lo(tokens[t]) * d, 1, d) += dout.row(static_cast<int64_t>(t));
  }
}

// ---------------------------------------------------------------------------------------------
// RMSNorm. out = x · rstd · g, rstd[t] = 1/sqrt(mean(x[t]²) + eps)
template <typename T>
void rmsnorm_forward(Mat<T>& out, Vec<T>& rstd, const Mat<T>& x, const T* g, double eps) {
  const int64_t n = x.rows(), d = x.cols();
  out.resize(n, d);
  rstd.resize(n);
  const auto gv = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>(g, d);
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const T r = T(1) / std::sqrt(x.row(t).squaredNorm() / T(d) + T(eps));
    rstd(t) = r;
    out.row(t) = x.row(t).array() * r * gv;
  }
}
// dx[T,d] += dout·∂out/∂x; dg[d] += Σ_t dout∘x·rstd (dg may be null when g is frozen).
template <typename T>
void rmsnorm_backward(Mat<T>& dx, T* dg, const Mat<T>& dout, const Mat<T>& x, const Vec<T>& rstd,
                      const T* g) {
  const int64_t n = x.rows(), d = x.cols();
  const auto gv = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>(g, d);
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const T r = rstd(t);
    const auto dyg = dout.row(t).array() * gv;
    const T dot = (dyg * x.row(t).array()).sum();
    dx.row(t).array() += r * dyg - (r * r * r / T(d)) * dot * x.row(t).array();
  }
  if (dg) {  // row by row: a column-wise sum would stride through the row-major matrices
    Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>> dgv(dg, d);
    for (int64_t t = 0; t < n; ++t) dgv += dout.row(t).array() * x.row(t).array() * rstd(t);
  }
}

// ---------------------------------------------------------------------------------------------
// Linear layer with an optional LoRA adapter: y[T,out] = x[T,in]·Wᵀ + s·(x·Aᵀ)·Bᵀ,
// W [out,in], A [r,in], B [out,r], s = alpha/r. u = x·Aᵀ [T,r] is kept for backward.
template <typename T>
struct LinearW {
  int64_t out = 0, in = 0;
  const T* w = nullptr;
  T* dw = nullptr;  // null when W is frozen
  int64_t rank = 0;
  T scale = 0;
  const T* a = nullptr;
  const T* b = nullptr;
  T* da = nullptr;
  T* db = nullptr;
  bool has_adapter() const { return rank > 0; }
};

// The projections' products: C (=, or += when `accumulate`) A·Bᵀ, A·B or Aᵀ·B of row-major
// operands. Float runs model/gemm.cpp (faster than Eigen's product on these shapes, and the same
// bits for a row whatever the other rows; gemm.hpp says why); double, the precision of the
// gradient checks, runs Eigen's.
template <typename T>
void product_abt(Eigen::Ref<Mat<T>> c, const Eigen::Ref<const Mat<T>>& a, const Eigen::Ref<const Mat<T>>& b,
                 bool accumulate) {
  if constexpr (std::is_same_v<T, float>) {
    sgemm(a.rows(), b.rows(), a.cols(), {a.data(), a.outerStride(), 1}, {b.data(), 1, b.outerStride()}, c.data(),
          c.outerStride(), accumulate, gemm_threads(a.rows(), b.rows(), a.cols()));
  } else if (accumulate) {
    c.noalias() += a * b.transpose();
  } else {
    c.noalias() = a * b.transpose();
  }
}
template <typename T>
void product_ab(Eigen::Ref<Mat<T>> c, const Eigen::Ref<const Mat<T>>& a, const Eigen::Ref<const Mat<T>>& b,
                bool accumulate) {
  if constexpr (std::is_same_v<T, float>) {
    sgemm(a.rows(), b.cols(), a.cols(), {a.data(), a.outerStride(), 1}, {b.data(), b.outerStride(), 1}, c.data(),
          c.outerStride(), accumulate, gemm_threads(a.rows(), b.cols(), a.cols()));
  } else if (accumulate) {
    c.noalias() += a * b;
  } else {
    c.noalias() = a * b;
  }
}
template <typename T>
void product_atb(Eigen::Ref<Mat<T>> c, const Eigen::Ref<const Mat<T>>& a, const Eigen::Ref<const Mat<T>>& b,
                 bool accumulate) {
  if constexpr (std::is_same_v<T, float>) {
    sgemm(a.cols(), b.cols(), a.rows(), {a.data(), 1, a.outerStride()}, {b.data(), b.outerStride(), 1}, c.data(),
          c.outerStride(), accumulate, gemm_threads(a.cols(), b.cols(), a.rows()));
  } else if (accumulate) {
    c.noalias() += a.transpose() * b;
  } else {
    c.noalias() = a.transpose() * b;
  }
}

template <typename T>
void linear_forward(Eigen::Ref<Mat<T>> y, Mat<T>& u, const Eigen::Ref<const Mat<T>>& x,
                    const LinearW<T>& L) {
  const CMatMap<T> W(L.w, L.out, L.in);
  product_abt<T>(y, x, W, false);
  if (L.has_adapter()) {
    const CMatMap<T> A(L.a, L.rank, L.in), B(L.b, L.out, L.rank);
    u.noalias() = x * A.transpose();
    y.noalias() += (L.scale * u) * B.transpose();
  }
}
// dx (=, or += when accumulate) dy·W + s·(dy·B)·A; dW += dyᵀ·x; dB += s·dyᵀ·u; dA += s·(dy·B)ᵀ·x.
template <typename T>
void linear_backward(Eigen::Ref<Mat<T>> dx, bool accumulate, const Eigen::Ref<const Mat<T>>& dy,
                     const Eigen::Ref<const Mat<T>>& x, const Mat<T>& u, const LinearW<T>& L) {
  const CMatMap<T> W(L.w, L.out, L.in);
  product_ab<T>(dx, dy, W, accumulate);
  if (L.dw) product_atb<T>(MatMap<T>(L.dw, L.out, L.in), dy, x, true);
  if (L.has_adapter()) {
    const CMatMap<T> A(L.a, L.rank, L.in), B(L.b, L.out, L.rank);
    const Mat<T> dyb = L.scale * (dy * B);  // [T,r]
    dx.noalias() += dyb * A;
    if (L.da) MatMap<T>(L.da, L.rank, L.in).noalias() += dyb.transpose() * x;
    if (L.db) MatMap<T>(L.db, L.out, L.rank).noalias() += (L.scale * dy.transpose()) * u;
  }
}

// ---------------------------------------------------------------------------------------------
// Rotary position embedding (the "rotate half" form of Llama): within each head, channel i and
// i+hd/2 rotate by angle pos·theta^(-2i/hd). Positions restart at 0 for every sequence.
template <typename T>
struct RopeTable {
  int64_t half = 0;
  Mat<T> cos, sin;  // [max_len, half]
  void build(int64_t max_len, int64_t head_dim, double theta) {
    half = head_dim / 2;
    cos.resize(max_len, half);
    sin.resize(max_len, half);
    for (int64_t i = 0; i < half; ++i) {
      const double inv_freq = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
      for (int64_t p = 0; p < max_len; ++p) {
        const double angle = static_cast<double>(p) * inv_freq;
        cos(p, i) = static_cast<T>(std::cos(angle));
        sin(p, i) = static_cast<T>(std::sin(angle));
      }
    }
  }
};
// In place on x[T, n_heads·hd]; `sign` = +1 rotates forward, -1 rotates back (the backward pass,
// since a rotation's transpose is its inverse).
template <typename T>
void rope_apply(Mat<T>& x, const std::vector<int64_t>& pos, const RopeTable<T>& rope, int64_t n_heads,
                T sign) {
  const int64_t n = x.rows(), half = rope.half, hd = 2 * half;
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const T* c = &rope.cos(pos[t], 0);
    const T* s = &rope.sin(pos[t], 0);
    for (int64_t h = 0; h < n_heads; ++h) {
      T* x1 = &x(t, h * hd);
      T* x2 = x1 + half;
      for (int64_t i = 0; i < half; ++i) {  // plain loop: vectorises, no temporaries
        const T a = x1[i], b = x2[i], si = sign * s[i];
        x1[i] = a * c[i] - b * si;
        x2[i] = b * c[i] + a * si;
      }
    }
  }
}
template <typename T>
void rope_forward(Mat<T>& x, const std::vector<int64_t>& pos, const RopeTable<T>& r, int64_t nh) {
  rope_apply(x, pos, r, nh, T(1));
}
template <typename T>
void rope_backward(Mat<T>& dx, const std::vector<int64_t>& pos, const RopeTable<T>& r, int64_t nh) {
  rope_apply(dx, pos, r, nh, T(-1));
}

// ---------------------------------------------------------------------------------------------
// Causal multi-head self-attention over packed sequences: sequence s covers rows
// [off[s], off[s+1]). For each (sequence, head): P = softmax(mask(q·kᵀ/sqrt(hd))) [n,n],
// out = P·v. P is kept for backward at probs[poff[s] + h·n² ...]; only its block-lower part (row
// i up to the end of i's attention block) is written, and backward reads no more.
struct SeqLayout {
  std::vector<int64_t> off;   // [B+1] token offsets
  std::vector<int64_t> poff;  // [B+1] offsets of each sequence's n_heads·n² attention probs
  int64_t batch() const { return static_cast<int64_t>(off.size()) - 1; }
  int64_t len(int64_t s) const { return off[s + 1] - off[s]; }
};

// Causality is used blockwise: row block [r0, r1) of P needs only keys [0, r1), so each product
// runs over the block's own prefix (about half the work of full n×n products at n = 256). 30
// rows: five whole 6-row tiles of the float path's product kernel (a 32-row block left a 2-row
// tile costing as much as a whole one).
constexpr int64_t kAttentionBlock = 30;

template <typename T>
void attention_forward(Mat<T>& out, Vec<T>& probs, const Mat<T>& q, const Mat<T>& k,
                       const Mat<T>& v, const SeqLayout& seq, int64_t n_heads) {
  const int64_t d = q.cols(), hd = d / n_heads;
  const T scale = T(1) / std::sqrt(T(hd));
  out.resize(q.rows(), d);
  probs.resize(seq.poff.back());  // the entries backward reads are written below
  const int64_t work = seq.batch() * n_heads;
#pragma omp parallel for num_threads(threads_for(q.rows())) schedule(dynamic, 1)
  for (int64_t w = 0; w < work; ++w) {
    const int64_t s = w / n_heads, h = w % n_heads, n = seq.len(s), o = seq.off[s];
    const Eigen::OuterStride<> st(d);
    const CBlockMap<T> Q(q.data() + o * d + h * hd, n, hd, st), K(k.data() + o * d + h * hd, n, hd, st),
        V(v.data() + o * d + h * hd, n, hd, st);
    BlockMap<T> O(out.data() + o * d + h * hd, n, hd, st);
    MatMap<T> P(probs.data() + seq.poff[s] + h * n * n, n, n);
    for (int64_t r0 = 0; r0 < n; r0 += kAttentionBlock) {
      const int64_t r1 = std::min(n, r0 + kAttentionBlock), rows = r1 - r0;
      auto Pb = P.block(r0, 0, rows, r1);
      Pb.noalias() = (Q.middleRows(r0, rows) * scale) * K.topRows(r1).transpose();
      for (int64_t i = r0; i < r1; ++i) {  // causal softmax over j <= i; zeros above the diagonal
        auto row = P.row(i).head(i + 1).array();
        row = (row - row.maxCoeff()).exp();
        row /= row.sum();
        P.row(i).segment(i + 1, r1 - i - 1).setZero();  // within the block: nothing reads (i, j >= r1)
      }
      O.middleRows(r0, rows).noalias() = Pb * V.topRows(r1);
    }
  }
}
// dq, dk, dv [T,d] are overwritten.
template <typename T>
void attention_backward(Mat<T>& dq, Mat<T>& dk, Mat<T>& dv, const Mat<T>& dout,
                        const Vec<T>& probs, const Mat<T>& q, const Mat<T>& k, const Mat<T>& v,
                        const SeqLayout& seq, int64_t n_heads) {
  const int64_t d = q.cols(), hd = d / n_heads;
  const T scale = T(1) / std::sqrt(T(hd));
  dq.resize(q.rows(), d);
  dk.resize(q.rows(), d);
  dv.resize(q.rows(), d);
  const int64_t work = seq.batch() * n_heads;
#pragma omp parallel num_threads(threads_for(q.rows()))
  {
    Mat<T> dS;  // per-thread scratch [n,n]
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < work; ++w) {
      const int64_t s = w / n_heads, h = w % n_heads, n = seq.len(s), o = seq.off[s];
      const Eigen::OuterStride<> st(d);
      const size_t at = static_cast<size_t>(o * d + h * hd);
      const CBlockMap<T> Q(q.data() + at, n, hd, st), K(k.data() + at, n, hd, st), V(v.data() + at, n, hd, st),
          dO(dout.data() + at, n, hd, st);
      const CMatMap<T> P(probs.data() + seq.poff[s] + h * n * n, n, n);
      BlockMap<T> dQ(dq.data() + at, n, hd, st), dK(dk.data() + at, n, hd, st), dV(dv.data() + at, n, hd, st);
      dS.resize(n, n);  // only row block [r0, r1) × [0, r1) is written and read
      for (int64_t r0 = 0; r0 < n; r0 += kAttentionBlock) {
        const int64_t r1 = std::min(n, r0 + kAttentionBlock), rows = r1 - r0;
        // dv rows [r0, r1) gather from the query rows that see them: i >= r0.
        dV.middleRows(r0, rows).noalias() = P.block(r0, r0, n - r0, rows).transpose() * dO.bottomRows(n - r0);
        // dP, then softmax backward in place: P∘(dP − rowsum(P∘dP)) (zero where P is).
        auto dSb = dS.block(r0, 0, rows, r1);
        dSb.noalias() = dO.middleRows(r0, rows) * V.topRows(r1).transpose();
        for (int64_t i = r0; i < r1; ++i) {
          const T dot = P.row(i).head(i + 1).dot(dS.row(i).head(i + 1));
          dS.row(i).head(r1).array() = P.row(i).head(r1).array() * (dS.row(i).head(r1).array() - dot) * scale;
        }
        dQ.middleRows(r0, rows).noalias() = dSb * K.topRows(r1);
      }
      for (int64_t r0 = 0; r0 < n; r0 += kAttentionBlock) {  // dk needs every row block's dS first
        const int64_t rows = std::min(n, r0 + kAttentionBlock) - r0;
        dK.middleRows(r0, rows).noalias() = dS.block(r0, r0, n - r0, rows).transpose() * Q.bottomRows(n - r0);
      }
    }
  }
}

// float runs the same algorithm with its products through gemm.hpp's kernel (attention.cpp).
template <>
void attention_forward<float>(Mat<float>& out, Vec<float>& probs, const Mat<float>& q, const Mat<float>& k,
                              const Mat<float>& v, const SeqLayout& seq, int64_t n_heads);
template <>
void attention_backward<float>(Mat<float>& dq, Mat<float>& dk, Mat<float>& dv, const Mat<float>& dout,
                               const Vec<float>& probs, const Mat<float>& q, const Mat<float>& k,
                               const Mat<float>& v, const SeqLayout& seq, int64_t n_heads);

// ---------------------------------------------------------------------------------------------
// SwiGLU. h = silu(a)∘b, silu(a) = a·σ(a)
template <typename T>
void swiglu_forward(Mat<T>& h, const Mat<T>& a, const Mat<T>& b) {
  h.resize(a.rows(), a.cols());
#pragma omp parallel for num_threads(threads_for(a.rows())) schedule(static)
  for (int64_t t = 0; t < a.rows(); ++t) {
    const auto x = a.row(t).array();
    h.row(t).array() = x * x.logistic() * b.row(t).array();
  }
}
// da = dh∘b∘σ(a)(1 + a(1−σ(a))), db = dh∘silu(a); both overwritten.
template <typename T>
void swiglu_backward(Mat<T>& da, Mat<T>& db, const Mat<T>& dh, const Mat<T>& a, const Mat<T>& b) {
  da.resize(a.rows(), a.cols());
  db.resize(a.rows(), a.cols());
#pragma omp parallel num_threads(threads_for(a.rows()))
  {
    Eigen::Array<T, 1, Eigen::Dynamic> sig(a.cols());  // per-thread scratch, not one per row
#pragma omp for schedule(static)
    for (int64_t t = 0; t < a.rows(); ++t) {
      const auto x = a.row(t).array();
      sig = x.logistic();
      db.row(t).array() = dh.row(t).array() * x * sig;
      da.row(t).array() = dh.row(t).array() * b.row(t).array() * sig * (T(1) + x * (T(1) - sig));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// LM head and log-softmax, blocked over the vocabulary: for each block of vb vocabulary rows,
// z = x·W[block]ᵀ [T,vb], folded into a running max and sum per token (online logsumexp), so the
// [T,V] logits never exist. Backward recomputes each block's z, which costs one more x·Wᵀ but
// keeps every block in cache (a 151936-entry vocabulary would otherwise stream 600 MB per call).
// Token t has targets tgt[toff[t] .. toff[t+1]).

// The rows [v0, v0+vb) of a linear layer's output (W and LoRA B are sliced; A is shared).
template <typename T>
LinearW<T> output_block(const LinearW<T>& L, int64_t v0, int64_t vb) {
  LinearW<T> B = L;
  B.out = vb;
  B.w = L.w + v0 * L.in;
  if (L.dw) B.dw = L.dw + v0 * L.in;
  if (L.has_adapter()) {
    B.b = L.b + v0 * L.rank;
    if (L.db) B.db = L.db + v0 * L.rank;
  }
  return B;
}

// Vocabulary rows per block: about 4 MiB of logits, at least 64 rows.
template <typename T>
int64_t vocab_block_rows(int64_t n_tokens, int64_t vocab) {
  const int64_t rows = (int64_t{4} << 20) / (static_cast<int64_t>(sizeof(T)) * std::max<int64_t>(n_tokens, 1));
  return std::clamp<int64_t>(rows, 64, vocab);
}

// lp[j] = z[t, tgt[j]] − lse[t]; lse[T] is kept for backward. z, u are scratch.
template <typename T>
void lm_head_forward(T* lp, Vec<T>& lse, Mat<T>& z, Mat<T>& u, const Mat<T>& x, const LinearW<T>& head,
                     int64_t vb, const std::vector<int64_t>& tgt, const std::vector<int64_t>& toff) {
  const int64_t n = x.rows(), V = head.out;
  Vec<T> run_max = Vec<T>::Constant(n, -std::numeric_limits<T>::infinity());
  Vec<T> run_sum = Vec<T>::Zero(n);
  for (int64_t v0 = 0; v0 < V; v0 += vb) {
    const int64_t rows = std::min(vb, V - v0);
    z.resize(n, rows);
    linear_forward<T>(z, u, x, output_block(head, v0, rows));
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
    for (int64_t t = 0; t < n; ++t) {
      auto zr = z.row(t).array();
      for (int64_t j = toff[t]; j < toff[t + 1]; ++j)
        if (tgt[j] >= v0 && tgt[j] < v0 + rows) lp[j] = zr(tgt[j] - v0);  // raw logit for now
      const T m = std::max(run_max(t), zr.maxCoeff());
      run_sum(t) = run_sum(t) * std::exp(run_max(t) - m) + (zr - m).exp().sum();
      run_max(t) = m;
    }
  }
  lse = run_max.array() + run_sum.array().log();
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = toff[t]; j < toff[t + 1]; ++j) lp[j] -= lse(t);
}

// dx[T,d] (overwritten) and the head's gradients from dlp: per block, dz = onehot·dlp − (Σ dlp)·p
// with p = exp(z − lse) recomputed.
template <typename T>
void lm_head_backward(Mat<T>& dx, Mat<T>& z, Mat<T>& u, const Mat<T>& x, const Vec<T>& lse,
                      const LinearW<T>& head, int64_t vb, const T* dlp, const std::vector<int64_t>& tgt,
                      const std::vector<int64_t>& toff) {
  const int64_t n = x.rows(), V = head.out;
  Vec<T> dsum(n);
  for (int64_t t = 0; t < n; ++t) {
    T s = 0;
    for (int64_t j = toff[t]; j < toff[t + 1]; ++j) s += dlp[j];
    dsum(t) = s;
  }
  dx.setZero(n, x.cols());
  for (int64_t v0 = 0; v0 < V; v0 += vb) {
    const int64_t rows = std::min(vb, V - v0);
    const LinearW<T> block = output_block(head, v0, rows);
    z.resize(n, rows);
    linear_forward<T>(z, u, x, block);
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
    for (int64_t t = 0; t < n; ++t) {
      auto zr = z.row(t).array();
      zr = (zr - lse(t)).exp() * -dsum(t);
      for (int64_t j = toff[t]; j < toff[t + 1]; ++j)
        if (tgt[j] >= v0 && tgt[j] < v0 + rows) zr(tgt[j] - v0) += dlp[j];
    }
    linear_backward<T>(dx, true, z, x, u, block);
  }
}

// ---------------------------------------------------------------------------------------------
// Factored LM head and log-softmax: α = x·W_hiᵀ [T,A], β = x·W_loᵀ [T,m], logit(t) = α[hi] + β[lo].
// The partition function over the V valid ids factors into sums over α and β:
//   Z = Σ_{a<A−1} e^α[a] · Σ_b e^β[b]  +  e^α[A−1] · Σ_{b<r} e^β[b],   lse = log Z,
// so log p(t) = α[hi] + β[lo] − lse is exact over the whole vocabulary at O((A+m)·d) per token.

// One token's partition function, from its α and β rows, with the pieces backward needs.
template <typename T>
struct FactoredRowStats {
  T max_a = 0, max_b = 0;  // shifts: every e^ below is e^(x − max)
  T sa_head = 0, ea_last = 0;  // Σ_{a<A−1} e^α[a], and e^α[A−1]
  T sb = 0, sb_r = 0;          // Σ_b e^β[b], and Σ_{b<r} e^β[b]
  T z = 0;                     // sa_head·sb + ea_last·sb_r
  T lse() const { return max_a + max_b + std::log(z); }
  // ∂lse/∂α[a] = e^α[a]·(a < A−1 ? sb : sb_r)/z and ∂lse/∂β[b] = e^β[b]·(b < r ? sa_head + ea_last : sa_head)/z.
};
template <typename T, typename RowA, typename RowB>
FactoredRowStats<T> factored_row_stats(const RowA& alpha, const RowB& beta, const FactoredVocab& fv) {
  FactoredRowStats<T> s;
  s.max_a = alpha.maxCoeff();
  s.max_b = beta.maxCoeff();
  s.sa_head = fv.A > 1 ? (alpha.head(fv.A - 1).array() - s.max_a).exp().sum() : T(0);
  s.ea_last = std::exp(alpha(fv.A - 1) - s.max_a);
  s.sb_r = (beta.head(fv.r).array() - s.max_b).exp().sum();
  s.sb = s.sb_r + (fv.r < fv.m ? (beta.tail(fv.m - fv.r).array() - s.max_b).exp().sum() : T(0));
  s.z = s.sa_head * s.sb + s.ea_last * s.sb_r;
  return s;
}

// lp[j] = α[t, hi(tgt[j])] + β[t, lo(tgt[j])] − lse[t]; alpha, beta [T,A], [T,m] and the LoRA
// scratch u_hi, u_lo are kept for backward.
template <typename T>
void factored_head_forward(T* lp, Vec<T>& lse, Mat<T>& alpha, Mat<T>& beta, Mat<T>& u_hi, Mat<T>& u_lo,
                           const Mat<T>& x, const LinearW<T>& head_hi, const LinearW<T>& head_lo,
                           const FactoredVocab& fv, const std::vector<int64_t>& tgt, const std::vector<int64_t>& toff) {
  const int64_t n = x.rows();
  alpha.resize(n, fv.A);
  beta.resize(n, fv.m);
  linear_forward<T>(alpha, u_hi, x, head_hi);
  linear_forward<T>(beta, u_lo, x, head_lo);
  lse.resize(n);
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const auto st = factored_row_stats<T>(alpha.row(t), beta.row(t), fv);
    lse(t) = st.lse();
    for (int64_t j = toff[t]; j < toff[t + 1]; ++j) lp[j] = alpha(t, fv.hi(tgt[j])) + beta(t, fv.lo(tgt[j])) - lse(t);
  }
}

// dx[T,d] (overwritten) and the heads' gradients from dlp: dα = Σ_j dlp_j·onehot(hi_j) − (Σ_j dlp_j)·∂lse/∂α,
// the same for β. alpha and beta are overwritten with dα and dβ.
template <typename T>
void factored_head_backward(Mat<T>& dx, Mat<T>& alpha, Mat<T>& beta, const Mat<T>& u_hi, const Mat<T>& u_lo,
                            const Mat<T>& x, const LinearW<T>& head_hi, const LinearW<T>& head_lo,
                            const FactoredVocab& fv, const T* dlp, const std::vector<int64_t>& tgt,
                            const std::vector<int64_t>& toff) {
  const int64_t n = x.rows();
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    T ds = 0;
    for (int64_t j = toff[t]; j < toff[t + 1]; ++j) ds += dlp[j];
    auto a = alpha.row(t).array();
    auto b = beta.row(t).array();
    const auto st = factored_row_stats<T>(alpha.row(t), beta.row(t), fv);
    const T ca = -ds / st.z, a_last = a(fv.A - 1);
    a = (a - st.max_a).exp() * (ca * st.sb);
    a(fv.A - 1) = std::exp(a_last - st.max_a) * (ca * st.sb_r);
    const int64_t r = fv.r, rest = fv.m - fv.r;
    b.head(r) = (b.head(r) - st.max_b).exp() * (ca * (st.sa_head + st.ea_last));
    if (rest > 0) b.tail(rest) = (b.tail(rest) - st.max_b).exp() * (ca * st.sa_head);
    for (int64_t j = toff[t]; j < toff[t + 1]; ++j) {
      a(fv.hi(tgt[j])) += dlp[j];
      b(fv.lo(tgt[j])) += dlp[j];
    }
  }
  dx.setZero(n, x.cols());
  linear_backward<T>(dx, true, alpha, x, u_hi, head_hi);
  linear_backward<T>(dx, true, beta, x, u_lo, head_lo);
}

}  // namespace kiln::model
