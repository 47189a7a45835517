// sgemm against a double-precision product, on shapes around every tile and block edge (MR = 6
// rows, NR = 16 columns, KC = 256, MC = 120, NC = 1024), for each operand layout the layers use; and the
// determinism gemm.hpp promises: the same bits at any thread count and for a row alone.
#include "model/gemm.hpp"

#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "model/rng.hpp"

namespace kiln::model {
namespace {

struct Operand {
  std::vector<float> data;
  int64_t rows, cols;
  bool transposed;  // stored as its transpose (row-major [cols, rows])
  GemmView view() const {
    return transposed ? GemmView{data.data(), 1, rows} : GemmView{data.data(), cols, 1};
  }
  float at(int64_t r, int64_t c) const { return transposed ? data[c * rows + r] : data[r * cols + c]; }
};

Operand random_operand(SplitMix64& rng, int64_t rows, int64_t cols, bool transposed) {
  Operand o{std::vector<float>(static_cast<size_t>(rows * cols)), rows, cols, transposed};
  for (auto& x : o.data) x = static_cast<float>(rng.uniform() * 2 - 1);
  return o;
}

// C with 3 spare columns per row, filled with a sentinel the product must not touch.
constexpr float kSentinel = 12345.f;

// C [M, N] with 3 spare columns per row (ldc = N + 3): random entries, the spares kSentinel.
std::vector<float> random_c(SplitMix64& rng, int64_t M, int64_t N) {
  const int64_t ldc = N + 3;
  std::vector<float> c(static_cast<size_t>(M * ldc), kSentinel);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) c[i * ldc + j] = static_cast<float>(rng.uniform());
  return c;
}

// c = before (when accumulating) + A·B[k0 : k0+K, :] against a double-precision sum, and the spare
// columns untouched.
void expect_product(const Operand& a, const Operand& b, int64_t k0, const std::vector<float>& before,
                    const std::vector<float>& c, int64_t M, int64_t N, int64_t K, bool accumulate,
                    const std::string& what) {
  const int64_t ldc = N + 3;
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double want = accumulate ? before[i * ldc + j] : 0.0, magnitude = std::abs(want);
      for (int64_t k = 0; k < K; ++k) {
        want += static_cast<double>(a.at(i, k)) * b.at(k0 + k, j);
        magnitude += std::abs(static_cast<double>(a.at(i, k)) * b.at(k0 + k, j));
      }
      // A float sum of K + 1 terms: error at most (K + 1)·2⁻²⁴ of the sum of magnitudes.
      ASSERT_NEAR(c[i * ldc + j], want, (K + 2) * magnitude * 6e-8) << what << " at (" << i << ", " << j << ")";
    }
    for (int64_t j = N; j < ldc; ++j) ASSERT_EQ(c[i * ldc + j], kSentinel) << "wrote past column N in row " << i;
  }
}

void check_shape(int64_t M, int64_t N, int64_t K, bool a_t, bool b_t, bool accumulate, int threads) {
  SplitMix64 rng(static_cast<uint64_t>(M * 1000003 + N * 1009 + K * 7 + a_t * 2 + b_t));
  const Operand a = random_operand(rng, M, K, a_t), b = random_operand(rng, K, N, b_t);
  std::vector<float> c = random_c(rng, M, N);
  const std::vector<float> before = c;
  sgemm(M, N, K, a.view(), b.view(), c.data(), N + 3, accumulate, threads);
  expect_product(a, b, 0, before, c, M, N, K, accumulate,
                 std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) + " a_t=" +
                     std::to_string(a_t) + " b_t=" + std::to_string(b_t));
}

TEST(Gemm, MatchesADoublePrecisionProductOnEveryEdge) {
  for (int64_t M : {1, 5, 6, 7, 121, 250})
    for (int64_t N : {1, 15, 16, 17, 40})
      for (int64_t K : {1, 3, 256, 257, 600})
        for (bool a_t : {false, true})
          for (bool b_t : {false, true})
            for (bool accumulate : {false, true}) check_shape(M, N, K, a_t, b_t, accumulate, 1);
}

// sgemm_packed: C = A·B[k0 : k0+K, 0 : N] from a B packed once, [k0 + K + 2, width] (N ≤ width).
void check_packed(int64_t M, int64_t N, int64_t width, int64_t K, int64_t k0, bool a_t, bool b_t, bool accumulate) {
  SplitMix64 rng(static_cast<uint64_t>(M * 7919 + N * 104729 + K * 31 + k0 * 3 + a_t * 2 + b_t));
  const Operand a = random_operand(rng, M, K, a_t), b = random_operand(rng, k0 + K + 2, width, b_t);
  PackedB packed;
  pack_b(packed, b.rows, width, b.view());
  std::vector<float> c = random_c(rng, M, N);
  const std::vector<float> before = c;
  sgemm_packed(M, N, K, a.view(), packed, k0, c.data(), N + 3, accumulate);
  expect_product(a, b, k0, before, c, M, N, K, accumulate,
                 std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) + " from k0=" +
                     std::to_string(k0) + " a_t=" + std::to_string(a_t) + " b_t=" + std::to_string(b_t));
}

TEST(Gemm, PackedBProductsMatchADoublePrecisionProduct) {
  for (int64_t M : {1, 5, 6, 7, 30, 33})
    for (auto [N, width] : {std::pair<int64_t, int64_t>{1, 1}, {15, 40}, {16, 16}, {17, 40}, {40, 40}})
      for (int64_t K : {1, 32, 256, 300})
        for (int64_t k0 : {0, 5})
          for (bool a_t : {false, true})
            for (bool b_t : {false, true}) check_packed(M, N, width, K, k0, a_t, b_t, (M + K) % 2 == 1);
  check_packed(4, 8, 8, 0, 3, false, false, false);  // K = 0 zeroes C
  check_packed(4, 8, 8, 0, 3, false, false, true);   // ... or keeps it
}

TEST(Gemm, TwoThreadsSplittingRowsOrColumnsStayCorrect) {
  for (auto [M, N] : {std::pair<int64_t, int64_t>{130, 40}, {40, 130}, {7, 300}, {300, 7}})
    for (bool a_t : {false, true}) check_shape(M, N, 300, a_t, !a_t, true, 2);
}

TEST(Gemm, CWiderThanOneColumnSliceIsDoneSliceBySlice) {  // NC = 1024 columns per slice
  for (int threads : {1, 2})
    for (bool b_t : {false, true}) check_shape(7, 2100, 40, false, b_t, false, threads);
}

TEST(Gemm, EmptyInnerDimensionZeroesOrKeepsC) {
  std::vector<float> c = {1, 2, 3, 4};
  const float dummy = 0;
  sgemm(2, 2, 0, {&dummy, 0, 1}, {&dummy, 0, 1}, c.data(), 2, true, 1);
  EXPECT_EQ(c, (std::vector<float>{1, 2, 3, 4}));
  sgemm(2, 2, 0, {&dummy, 0, 1}, {&dummy, 0, 1}, c.data(), 2, false, 1);
  EXPECT_EQ(c, (std::vector<float>{0, 0, 0, 0}));
}

// The promise training and serving rely on: a row's bits depend only on that row's inputs, not
// on the thread count nor on the other rows in the product (a prompt scored alone or in a batch).
TEST(Gemm, ARowHasTheSameBitsAtAnyThreadCountAndAlone) {
  SplitMix64 rng(7);
  for (bool a_t : {false, true}) {
    const int64_t M = 257, N = 70, K = 700;
    const Operand a = random_operand(rng, M, K, a_t), b = random_operand(rng, K, N, false);
    std::vector<float> one(static_cast<size_t>(M * N)), two(one.size());
    sgemm(M, N, K, a.view(), b.view(), one.data(), N, false, 1);
    sgemm(M, N, K, a.view(), b.view(), two.data(), N, false, 2);
    EXPECT_EQ(one, two);
    for (int64_t i : {0, 5, 6, 200, 256}) {
      GemmView row = a.view();
      row.p += i * row.rs;
      std::vector<float> alone(static_cast<size_t>(N));
      sgemm(1, N, K, row, b.view(), alone.data(), N, false, 1);
      EXPECT_EQ(alone, std::vector<float>(one.begin() + i * N, one.begin() + (i + 1) * N)) << "row " << i;
    }
  }
}

}  // namespace
}  // namespace kiln::model
