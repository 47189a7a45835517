#pragma once
// Single-precision matrix product for the training layers' large products (the projections and
// their gradients): C[M,N] = A[M,K]·B[K,N], or C += A·B. Operands are strided views, so a
// transpose is a view, not a copy.
//
// Why not Eigen's product: on the shapes training runs (K = 64..704 with M in the thousands, or
// K in the thousands for weight gradients) Eigen spent ~10 % of a step packing operands and ran
// its 24×4 kernel at ~90 % of the FMA peak. This one reads a row-major A in place, packs B with
// contiguous copies or 8×8 transposes, and runs a 6×16 kernel (twelve 8-wide accumulators) at
// the peak: ~102 GFLOP/s inside a d256 training step on a core whose FMA loop measures ~107.
//
// Determinism: every C entry is one FMA chain over k in index order within fixed 256-wide k
// blocks, added to C block after block. The order depends on neither M, N, the thread count nor
// where the entry sits, so a row of C is bitwise the same whatever else is in the product.
#include <cstdint>
#include <vector>

#include "model/threads.hpp"

namespace kiln::model {

// A(i, k) = p[i·rs + k·cs].
struct GemmView {
  const float* p;
  int64_t rs, cs;
};

// C[M,N] (row-major, rows ldc apart) = A·B, or C += A·B when `accumulate`. Splits C's rows or
// columns across `threads` threads (results do not depend on the split).
void sgemm(int64_t M, int64_t N, int64_t K, GemmView a, GemmView b, float* c, int64_t ldc, bool accumulate,
           int threads);

// B[K, N] packed once for products that reuse it (attention's per-head operands, every row block
// against the same keys): NR-column panels, k-major within a panel, zero-padded to whole panels.
// Not copyable: `data` points into `buf`.
struct PackedB {
  std::vector<float> buf;
  const float* data = nullptr;  // 32-byte aligned, inside buf
  int64_t K = 0, N = 0;
  PackedB() = default;
  PackedB(const PackedB&) = delete;
  PackedB& operator=(const PackedB&) = delete;
};
void pack_b(PackedB& out, int64_t K, int64_t N, GemmView b);

// C[M, N] (=, or += when `accumulate`) = A[M, K]·B[k0 : k0+K, 0 : N] for a packed B (N ≤ its
// width, k0 + K ≤ its depth), on this thread. Each C entry is an FMA chain over k in index order
// within 256-wide blocks counted from k0, so a row of C depends only on its row of A.
void sgemm_packed(int64_t M, int64_t N, int64_t K, GemmView a, const PackedB& b, int64_t k0, float* c, int64_t ldc,
                  bool accumulate);

// All threads for a product of at least 2^20 multiply-adds (~20 µs on one core), else one: a
// short prompt's prefill does not pay for waking the others.
inline int gemm_threads(int64_t M, int64_t N, int64_t K) { return M * N * K >= (int64_t{1} << 20) ? num_threads() : 1; }

}  // namespace kiln::model
