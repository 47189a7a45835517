#include "model/gemm.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace kiln::model {
namespace {

// The kernel computes an MR×NR tile of C over one k block. Per k block a thread packs its KC×N
// slice of B; one NR-wide panel of it (16 KB, L1-resident) at a time meets every MR-row panel of
// an MC×KC block of A (L2-resident: 120·256 floats = 120 KB).
// C wider than NC columns is done NC columns at a time, so the packed B stays within 1 MB.
constexpr int64_t MR = 6, NR = 16, KC = 256, MC = 120, NC = 1024;

// A rows [i0, i0+mc) × k [k0, k0+kc) as MR-row panels, k-major within a panel (MR values per k);
// rows past mc are zeros.
void pack_a(float* dst, GemmView a, int64_t i0, int64_t mc, int64_t k0, int64_t kc) {
  for (int64_t ip = 0; ip < mc; ip += MR, dst += MR * kc) {
    const int64_t rows = std::min(MR, mc - ip);
    const float* base = a.p + (i0 + ip) * a.rs + k0 * a.cs;
    if (a.rs == 1 && rows == MR) {  // A's rows are adjacent (a transposed operand): MR values per k
      for (int64_t k = 0; k < kc; ++k) std::memcpy(dst + k * MR, base + k * a.cs, MR * sizeof(float));
      continue;
    }
    for (int64_t r = 0; r < MR; ++r) {
      if (r < rows) {
        const float* src = base + r * a.rs;
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + r] = src[k * a.cs];
      } else {
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + r] = 0.f;
      }
    }
  }
}

// dst[r·dst_stride + c] = src[c·src_stride + r] for an 8×8 block.
void transpose8x8(const float* src, int64_t src_stride, float* dst, int64_t dst_stride) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * src_stride);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * dst_stride, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * dst_stride, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

// B k [k0, k0+kc) × columns [j0, j0+nc) as NR-column panels, k-major (NR values per k); columns
// past nc are zeros.
void pack_b(float* dst, GemmView b, int64_t k0, int64_t kc, int64_t j0, int64_t nc) {
  for (int64_t jp = 0; jp < nc; jp += NR, dst += NR * kc) {
    const int64_t cols = std::min(NR, nc - jp);
    const float* base = b.p + k0 * b.rs + (j0 + jp) * b.cs;
    if (b.cs == 1 && cols == NR) {  // B's rows are contiguous: NR values per k
      for (int64_t k = 0; k < kc; ++k) std::memcpy(dst + k * NR, base + k * b.rs, NR * sizeof(float));
      continue;
    }
    int64_t k_done = 0;
    if (b.rs == 1 && cols == NR) {  // B's columns are contiguous (x·Wᵀ: W's rows): 8×8 transposes
      for (; k_done + 8 <= kc; k_done += 8)
        for (int64_t half = 0; half < NR; half += 8)
          transpose8x8(base + half * b.cs + k_done, b.cs, dst + k_done * NR + half, NR);
    }
    for (int64_t c = 0; c < NR; ++c) {
      if (c < cols) {
        const float* src = base + c * b.cs;
        for (int64_t k = k_done; k < kc; ++k) dst[k * NR + c] = src[k * b.rs];
      } else {
        for (int64_t k = k_done; k < kc; ++k) dst[k * NR + c] = 0.f;
      }
    }
  }
}

// One row of a tile for one k: lo, hi += a·b0, a·b1.
[[gnu::always_inline]] inline void fma_row(const float* a, __m256 b0, __m256 b1, __m256& lo, __m256& hi) {
  const __m256 ar = _mm256_broadcast_ss(a);
  lo = _mm256_fmadd_ps(ar, b0, lo);
  hi = _mm256_fmadd_ps(ar, b1, hi);
}

// C tile [rows ≤ MR, cols ≤ NR] (=, or +=) A panel · packed B panel over kc, A(r, k) = a[r·rs + k·cs]
// read in place (A's rows or columns are contiguous in every product the layers run, so packing
// it would only copy). Twelve named accumulators: GCC spills an array of them, halving the speed.
void kernel(int64_t kc, const float* a, int64_t rs, int64_t cs, const float* __restrict b, float* c, int64_t ldc,
            int64_t rows, int64_t cols, bool accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
         c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  const float *a0 = a, *a1 = a + rs, *a2 = a + 2 * rs, *a3 = a + 3 * rs, *a4 = a + 4 * rs, *a5 = a + 5 * rs;
  for (int64_t k = 0, o = 0; k < kc; ++k, o += cs, b += NR) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    fma_row(a0 + o, b0, b1, c00, c01);
    fma_row(a1 + o, b0, b1, c10, c11);
    fma_row(a2 + o, b0, b1, c20, c21);
    fma_row(a3 + o, b0, b1, c30, c31);
    fma_row(a4 + o, b0, b1, c40, c41);
    fma_row(a5 + o, b0, b1, c50, c51);
  }
  const __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  if (rows == MR && cols == NR) {
    for (int r = 0; r < MR; ++r) {
      float* cr = c + r * ldc;
      __m256 lo = acc[r][0], hi = acc[r][1];
      if (accumulate) {
        lo = _mm256_add_ps(_mm256_loadu_ps(cr), lo);
        hi = _mm256_add_ps(_mm256_loadu_ps(cr + 8), hi);
      }
      _mm256_storeu_ps(cr, lo);
      _mm256_storeu_ps(cr + 8, hi);
    }
    return;
  }
  alignas(32) float tile[MR][NR];  // an edge tile: the valid part only
  for (int r = 0; r < MR; ++r) {
    _mm256_store_ps(tile[r], acc[r][0]);
    _mm256_store_ps(tile[r] + 8, acc[r][1]);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) c[r * ldc + j] = accumulate ? c[r * ldc + j] + tile[r][j] : tile[r][j];
}

float* aligned(std::vector<float>& buf, int64_t floats) {
  buf.resize(static_cast<size_t>(floats + 8));
  return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(buf.data()) + 31) & ~uintptr_t{31});
}

// The block rows [r0, r1) × columns [j0, j1) of C, every k block. A row-major A is read in
// place, but for a short last panel (packed with zero rows, so the kernel always computes a whole
// tile). A transposed A (rows adjacent, k strided: the weight gradient's dyᵀ) is packed per
// MC×KC block: read in place it touches a new cache line per k, measured 5-10 % slower.
void gemm_block(int64_t r0, int64_t r1, int64_t j0, int64_t j1, int64_t K, GemmView a, GemmView b, float* c,
                int64_t ldc, bool accumulate) {
  if (j1 - j0 > NC) {  // a wide C (a large dense vocabulary head) in NC-column slices
    for (int64_t j = j0; j < j1; j += NC) gemm_block(r0, r1, j, std::min(j1, j + NC), K, a, b, c, ldc, accumulate);
    return;
  }
  thread_local std::vector<float> a_buf, b_buf;  // kept: a step runs hundreds of products
  const int64_t N = j1 - j0, kc_max = std::min(K, KC);
  const bool in_place = a.cs == 1;
  float* bp = aligned(b_buf, (N + NR - 1) / NR * NR * kc_max);
  float* ap = aligned(a_buf, (in_place ? MR : (MC + MR - 1) / MR * MR) * kc_max);
  for (int64_t k0 = 0; k0 < K; k0 += KC) {
    const int64_t kc = std::min(KC, K - k0);
    const bool acc = accumulate || k0 > 0;
    pack_b(bp, b, k0, kc, j0, N);
    for (int64_t i0 = r0; i0 < r1; i0 += MC) {
      const int64_t mc = std::min(MC, r1 - i0), full = mc / MR * MR;
      if (!in_place)
        pack_a(ap, a, i0, mc, k0, kc);
      else if (full < mc)
        pack_a(ap, a, i0 + full, mc - full, k0, kc);  // the short last panel
      for (int64_t jp = 0; jp < N; jp += NR)
        for (int64_t ip = 0; ip < mc; ip += MR) {
          const int64_t rows = std::min(MR, mc - ip), cols = std::min(NR, N - jp);
          float* ct = c + (i0 + ip) * ldc + j0 + jp;
          if (!in_place)
            kernel(kc, ap + ip * kc, 1, MR, bp + jp * kc, ct, ldc, rows, cols, acc);
          else if (rows == MR)
            kernel(kc, a.p + (i0 + ip) * a.rs + k0, a.rs, 1, bp + jp * kc, ct, ldc, rows, cols, acc);
          else
            kernel(kc, ap, 1, MR, bp + jp * kc, ct, ldc, rows, cols, acc);
        }
    }
  }
}

// The products with nothing to multiply: no C at all, or K = 0 (C zeroed, or kept when
// accumulating). True when it handled the product.
bool empty_product(int64_t M, int64_t N, int64_t K, float* c, int64_t ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return true;
  if (K > 0) return false;
  if (!accumulate)
    for (int64_t i = 0; i < M; ++i) std::fill(c + i * ldc, c + i * ldc + N, 0.f);
  return true;
}

}  // namespace

void pack_b(PackedB& out, int64_t K, int64_t N, GemmView b) {
  out.K = K;
  out.N = N;
  float* dst = aligned(out.buf, (N + NR - 1) / NR * NR * K);
  out.data = dst;
  if (K > 0 && N > 0) pack_b(dst, b, 0, K, 0, N);
}

void sgemm_packed(int64_t M, int64_t N, int64_t K, GemmView a, const PackedB& b, int64_t k0, float* c, int64_t ldc,
                  bool accumulate) {
  if (empty_product(M, N, K, c, ldc, accumulate)) return;
  thread_local std::vector<float> edge_buf;  // the short last row panel, packed with zero rows
  float* edge = aligned(edge_buf, MR * std::min(K, KC));
  const int64_t full = M / MR * MR;
  for (int64_t kb = 0; kb < K; kb += KC) {
    const int64_t kc = std::min(KC, K - kb);
    const bool acc = accumulate || kb > 0;
    if (full < M) pack_a(edge, a, full, M - full, kb, kc);
    for (int64_t jp = 0; jp < N; jp += NR) {
      const float* bp = b.data + jp * b.K + (k0 + kb) * NR;  // panel jp / NR, row k0 + kb
      const int64_t cols = std::min(NR, N - jp);
      for (int64_t ip = 0; ip < full; ip += MR)
        kernel(kc, a.p + ip * a.rs + kb * a.cs, a.rs, a.cs, bp, c + ip * ldc + jp, ldc, MR, cols, acc);
      if (full < M) kernel(kc, edge, 1, MR, bp, c + full * ldc + jp, ldc, M - full, cols, acc);
    }
  }
}

void sgemm(int64_t M, int64_t N, int64_t K, GemmView a, GemmView b, float* c, int64_t ldc, bool accumulate,
           int threads) {
  if (empty_product(M, N, K, c, ldc, accumulate)) return;
  // Threads split C's rows (each packs all of B) or, when C is wider than tall, its columns (each
  // reads all of A): whichever operand is duplicated is the smaller one.
  const bool by_rows = M >= N;
  const int64_t step = by_rows ? MR : NR, units = ((by_rows ? M : N) + step - 1) / step;
  const int t_max = static_cast<int>(std::clamp<int64_t>(threads, 1, units));
  if (t_max == 1) return gemm_block(0, M, 0, N, K, a, b, c, ldc, accumulate);
#pragma omp parallel for num_threads(t_max) schedule(static)
  for (int t = 0; t < t_max; ++t) {  // thread t: a contiguous run of whole tiles
    const int64_t lo = units * t / t_max * step, hi = units * (t + 1) / t_max * step;
    if (by_rows)
      gemm_block(lo, std::min(M, hi), 0, N, K, a, b, c, ldc, accumulate);
    else
      gemm_block(0, M, lo, std::min(N, hi), K, a, b, c, ldc, accumulate);
  }
}

}  // namespace kiln::model
