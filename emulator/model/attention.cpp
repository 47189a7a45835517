// Single-precision causal attention (layers.hpp's attention_forward / attention_backward for
// float): the same blockwise algorithm, its products through Kiln's matrix kernel (gemm.hpp).
//
// Why not Eigen's products here: each (sequence, head) runs six products per row block on
// head-sized operands (K = 32 for the scores), and Eigen re-packs both operands of every one;
// in a d256 training step that packing and its 24×4 kernel on these shapes ran attention at
// about half the rate of the projections. Here each head's reused operands (Kᵀ and V forward;
// dO, Vᵀ, K and Q backward) are packed once, and every row block's products read them as they are.
#include <algorithm>
#include <cmath>
#include <vector>

#include "model/layers.hpp"

namespace kiln::model {

template <>
void attention_forward<float>(Mat<float>& out, Vec<float>& probs, const Mat<float>& q, const Mat<float>& k,
                              const Mat<float>& v, const SeqLayout& seq, int64_t n_heads) {
  const int64_t d = q.cols(), hd = d / n_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  out.resize(q.rows(), d);
  probs.resize(seq.poff.back());  // the entries backward reads are written below
  const int64_t work = seq.batch() * n_heads;
#pragma omp parallel num_threads(threads_for(q.rows()))
  {
    PackedB kt, vp;  // this head's Kᵀ [hd, n] and V [n, hd]
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < work; ++w) {
      const int64_t s = w / n_heads, h = w % n_heads, n = seq.len(s), at = seq.off[s] * d + h * hd;
      const float *Q = q.data() + at, *K = k.data() + at, *V = v.data() + at;
      float* O = out.data() + at;
      float* P = probs.data() + seq.poff[s] + h * n * n;
      pack_b(kt, hd, n, {K, 1, d});
      pack_b(vp, n, hd, {V, d, 1});
      for (int64_t r0 = 0; r0 < n; r0 += kAttentionBlock) {
        const int64_t r1 = std::min(n, r0 + kAttentionBlock), rows = r1 - r0;
        sgemm_packed(rows, r1, hd, {Q + r0 * d, d, 1}, kt, 0, P + r0 * n, n, false);  // q·kᵀ over keys < r1
        for (int64_t i = r0; i < r1; ++i) {  // causal softmax over j <= i; zeros above the diagonal
          Eigen::Map<Eigen::ArrayXf> row(P + i * n, i + 1);
          row *= scale;
          row = (row - row.maxCoeff()).exp();
          row /= row.sum();
          std::fill(P + i * n + i + 1, P + i * n + r1, 0.0f);  // within the block: nothing reads (i, j >= r1)
        }
        sgemm_packed(rows, hd, r1, {P + r0 * n, n, 1}, vp, 0, O + r0 * d, d, false);
      }
    }
  }
}

template <>
void attention_backward<float>(Mat<float>& dq, Mat<float>& dk, Mat<float>& dv, const Mat<float>& dout,
                               const Vec<float>& probs, const Mat<float>& q, const Mat<float>& k,
                               const Mat<float>& v, const SeqLayout& seq, int64_t n_heads) {
  const int64_t d = q.cols(), hd = d / n_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  dq.resize(q.rows(), d);
  dk.resize(q.rows(), d);
  dv.resize(q.rows(), d);
  const int64_t work = seq.batch() * n_heads;
#pragma omp parallel num_threads(threads_for(q.rows()))
  {
    PackedB dop, vt, kp, qp;  // this head's dO [n, hd], Vᵀ [hd, n], K [n, hd], Q [n, hd]
    std::vector<float> dS;    // [n, n]; only row block [r0, r1) × [0, r1) is written and read
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < work; ++w) {
      const int64_t s = w / n_heads, h = w % n_heads, n = seq.len(s), at = seq.off[s] * d + h * hd;
      const float *Q = q.data() + at, *K = k.data() + at, *V = v.data() + at, *dO = dout.data() + at;
      const float* P = probs.data() + seq.poff[s] + h * n * n;
      float *dQ = dq.data() + at, *dK = dk.data() + at, *dV = dv.data() + at;
      pack_b(dop, n, hd, {dO, d, 1});
      pack_b(vt, hd, n, {V, 1, d});
      pack_b(kp, n, hd, {K, d, 1});
      pack_b(qp, n, hd, {Q, d, 1});
      dS.resize(static_cast<size_t>(n * n));
      for (int64_t r0 = 0; r0 < n; r0 += kAttentionBlock) {
        const int64_t r1 = std::min(n, r0 + kAttentionBlock), rows = r1 - r0;
        // dv rows [r0, r1) gather from the query rows that see them (i >= r0): Pᵀ·dO.
        sgemm_packed(rows, hd, n - r0, {P + r0 * n + r0, 1, n}, dop, r0, dV + r0 * d, d, false);
        // dP, then softmax backward in place: P∘(dP − rowsum(P∘dP)) (zero where P is).
        float* dSb = dS.data() + r0 * n;
        sgemm_packed(rows, r1, hd, {dO + r0 * d, d, 1}, vt, 0, dSb, n, false);
        for (int64_t i = r0; i < r1; ++i) {
          Eigen::Map<const Eigen::ArrayXf> p(P + i * n, r1);
          Eigen::Map<Eigen::ArrayXf> g(dS.data() + i * n, r1);
          const float dot = (p.head(i + 1) * g.head(i + 1)).sum();
          g = p * (g - dot) * scale;
        }
        sgemm_packed(rows, hd, r1, {dSb, n, 1}, kp, 0, dQ + r0 * d, d, false);
      }
      for (int64_t r0 = 0; r0 < n; r0 += kAttentionBlock) {  // dk needs every row block's dS first
        const int64_t rows = std::min(n, r0 + kAttentionBlock) - r0;
        sgemm_packed(rows, hd, n - r0, {dS.data() + r0 * n + r0, 1, n}, qp, r0, dK + r0 * d, d, false);
      }
    }
  }
}

}  // namespace kiln::model
