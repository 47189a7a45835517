#pragma once
// The transformer's layers, each as a forward and a backward function side by side.
// Activations are row-major [T, C] matrices: T tokens of the whole batch packed back to back
// (no padding), C channels. Backward functions accumulate (+=) into parameter gradients and, where
// they say so, into input gradients. Parallel loops write disjoint rows, so results do not depend
// on scheduling.
#include <cmath>
#include <cstdint>
#include <vector>

#include <Eigen/Core>

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
// RMSNorm. out = x · rstd · g, rstd[t] = 1/sqrt(mean(x[t]²) + eps)
template <typename T>
void rmsnorm_forward(Mat<T>& out, Vec<T>& rstd, const Mat<T>& x, const T* g, double eps) {
  const int64_t n = x.rows(), d = x.cols();
  out.resize(n, d);
  rstd.resize(n);
  const auto gv = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>(g, d);
#pragma omp parallel for num_threads(num_threads()) schedule(static)
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
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const T r = rstd(t);
    const auto dyg = (dout.row(t).array() * gv).eval();
    const T dot = (dyg * x.row(t).array()).sum();
    dx.row(t).array() += r * dyg - (r * r * r / T(d)) * dot * x.row(t).array();
  }
  if (dg) {
    Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>> dgv(dg, d);
    dgv += (dout.array() * (x.array().colwise() * rstd.array())).colwise().sum();
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

template <typename T>
void linear_forward(Eigen::Ref<Mat<T>> y, Mat<T>& u, const Eigen::Ref<const Mat<T>>& x,
                    const LinearW<T>& L) {
  const CMatMap<T> W(L.w, L.out, L.in);
  y.noalias() = x * W.transpose();
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
  if (accumulate)
    dx.noalias() += dy * W;
  else
    dx.noalias() = dy * W;
  if (L.dw) MatMap<T>(L.dw, L.out, L.in).noalias() += dy.transpose() * x;
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
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const auto c = rope.cos.row(pos[t]).array();
    const auto s = (sign * rope.sin.row(pos[t]).array()).eval();
    for (int64_t h = 0; h < n_heads; ++h) {
      auto x1 = x.row(t).segment(h * hd, half).array();
      auto x2 = x.row(t).segment(h * hd + half, half).array();
      const auto a = x1.eval();
      x1 = a * c - x2 * s;
      x2 = x2 * c + a * s;
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
// out = P·v. P is kept for backward at probs[poff[s] + h·n² ...].
struct SeqLayout {
  std::vector<int64_t> off;   // [B+1] token offsets
  std::vector<int64_t> poff;  // [B+1] offsets of each sequence's n_heads·n² attention probs
  int64_t batch() const { return static_cast<int64_t>(off.size()) - 1; }
  int64_t len(int64_t s) const { return off[s + 1] - off[s]; }
};

template <typename T>
void attention_forward(Mat<T>& out, AlignedVector<T>& probs, const Mat<T>& q, const Mat<T>& k,
                       const Mat<T>& v, const SeqLayout& seq, int64_t n_heads) {
  const int64_t d = q.cols(), hd = d / n_heads;
  const T scale = T(1) / std::sqrt(T(hd));
  out.resize(q.rows(), d);
  probs.resize(static_cast<size_t>(seq.poff.back()));
  const int64_t work = seq.batch() * n_heads;
#pragma omp parallel for num_threads(num_threads()) schedule(dynamic, 1)
  for (int64_t w = 0; w < work; ++w) {
    const int64_t s = w / n_heads, h = w % n_heads, n = seq.len(s), o = seq.off[s];
    const Eigen::OuterStride<> st(d);
    const CBlockMap<T> Q(q.data() + o * d + h * hd, n, hd, st), K(k.data() + o * d + h * hd, n, hd, st),
        V(v.data() + o * d + h * hd, n, hd, st);
    MatMap<T> P(probs.data() + seq.poff[s] + h * n * n, n, n);
    P.noalias() = (Q * scale) * K.transpose();
    for (int64_t i = 0; i < n; ++i) {  // causal softmax over j <= i; zeros above the diagonal
      auto row = P.row(i).head(i + 1).array();
      row = (row - row.maxCoeff()).exp();
      row /= row.sum();
      P.row(i).tail(n - i - 1).setZero();
    }
    BlockMap<T>(out.data() + o * d + h * hd, n, hd, st).noalias() = P * V;
  }
}
// dq, dk, dv [T,d] are overwritten.
template <typename T>
void attention_backward(Mat<T>& dq, Mat<T>& dk, Mat<T>& dv, const Mat<T>& dout,
                        const AlignedVector<T>& probs, const Mat<T>& q, const Mat<T>& k, const Mat<T>& v,
                        const SeqLayout& seq, int64_t n_heads) {
  const int64_t d = q.cols(), hd = d / n_heads;
  const T scale = T(1) / std::sqrt(T(hd));
  dq.resize(q.rows(), d);
  dk.resize(q.rows(), d);
  dv.resize(q.rows(), d);
  const int64_t work = seq.batch() * n_heads;
#pragma omp parallel for num_threads(num_threads()) schedule(dynamic, 1)
  for (int64_t w = 0; w < work; ++w) {
    const int64_t s = w / n_heads, h = w % n_heads, n = seq.len(s), o = seq.off[s];
    const Eigen::OuterStride<> st(d);
    const size_t at = static_cast<size_t>(o * d + h * hd);
    const CBlockMap<T> Q(q.data() + at, n, hd, st), K(k.data() + at, n, hd, st), V(v.data() + at, n, hd, st),
        dO(dout.data() + at, n, hd, st);
    const CMatMap<T> P(probs.data() + seq.poff[s] + h * n * n, n, n);
    BlockMap<T>(dv.data() + at, n, hd, st).noalias() = P.transpose() * dO;
    Mat<T> dS = dO * V.transpose();  // dP, then softmax backward in place: P∘(dP − rowsum(P∘dP))
    for (int64_t i = 0; i < n; ++i) {
      const T dot = P.row(i).head(i + 1).dot(dS.row(i).head(i + 1));
      dS.row(i).array() = P.row(i).array() * (dS.row(i).array() - dot) * scale;
    }
    BlockMap<T>(dq.data() + at, n, hd, st).noalias() = dS * K;
    BlockMap<T>(dk.data() + at, n, hd, st).noalias() = dS.transpose() * Q;
  }
}

// ---------------------------------------------------------------------------------------------
// SwiGLU. h = silu(a)∘b, silu(a) = a·σ(a)
template <typename T>
void swiglu_forward(Mat<T>& h, const Mat<T>& a, const Mat<T>& b) {
  h.resize(a.rows(), a.cols());
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t t = 0; t < a.rows(); ++t) {
    const auto x = a.row(t).array();
    h.row(t).array() = x / (T(1) + (-x).exp()) * b.row(t).array();
  }
}
// da = dh∘b∘σ(a)(1 + a(1−σ(a))), db = dh∘silu(a); both overwritten.
template <typename T>
void swiglu_backward(Mat<T>& da, Mat<T>& db, const Mat<T>& dh, const Mat<T>& a, const Mat<T>& b) {
  da.resize(a.rows(), a.cols());
  db.resize(a.rows(), a.cols());
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t t = 0; t < a.rows(); ++t) {
    const auto x = a.row(t).array();
    const auto sig = (T(1) / (T(1) + (-x).exp())).eval();
    db.row(t).array() = dh.row(t).array() * x * sig;
    da.row(t).array() = dh.row(t).array() * b.row(t).array() * sig * (T(1) + x * (T(1) - sig));
  }
}

// ---------------------------------------------------------------------------------------------
// Target log-probabilities from logits z[C,V] for the rows' targets: lp = z[y] − logsumexp(z).
// Token t has targets tgt[toff[t] .. toff[t+1]). On return z holds softmax(z), which is all the
// backward pass needs.
template <typename T>
void logprob_forward(T* lp, Mat<T>& z, const std::vector<int64_t>& tgt, const std::vector<int64_t>& toff,
                     int64_t t0) {
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t r = 0; r < z.rows(); ++r) {
    auto row = z.row(r).array();
    const T m = row.maxCoeff();
    const int64_t j0 = toff[t0 + r], j1 = toff[t0 + r + 1];
    for (int64_t j = j0; j < j1; ++j) lp[j] = row(tgt[j]) - m;  // before z is overwritten
    row = (row - m).exp();
    const T sum = row.sum();
    const T log_sum = std::log(sum);
    for (int64_t j = j0; j < j1; ++j) lp[j] -= log_sum;
    row *= T(1) / sum;
  }
}
// From p = softmax(z) (in place) to dz = Σ_k dlp_k·onehot(y_k) − (Σ_k dlp_k)·p.
template <typename T>
void logprob_backward(Mat<T>& p, const T* dlp, const std::vector<int64_t>& tgt,
                      const std::vector<int64_t>& toff, int64_t t0) {
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t r = 0; r < p.rows(); ++r) {
    T sum = 0;
    for (int64_t j = toff[t0 + r]; j < toff[t0 + r + 1]; ++j) sum += dlp[j];
    p.row(r) *= -sum;
    for (int64_t j = toff[t0 + r]; j < toff[t0 + r + 1]; ++j) p(r, tgt[j]) += dlp[j];
  }
}

}  // namespace kiln::model
