// The float attention (attention.cpp, Kiln's matrix kernel) against the double one (layers.hpp's
// template on Eigen, the one the gradient checks verify): outputs and all three gradients, for
// sequence lengths around the row block and the kernel's 6-row tiles, several head widths, and
// sequences of different lengths packed together.
#include <cmath>
#include <initializer_list>
#include <vector>

#include <gtest/gtest.h>

#include "model/layers.hpp"
#include "model/rng.hpp"
#include "model/threads.hpp"

namespace kiln::model {
namespace {

template <typename T>
Mat<T> cast(const Mat<float>& m) {
  return m.cast<T>();
}

Mat<float> random_mat(SplitMix64& rng, int64_t rows, int64_t cols, double amplitude) {
  Mat<float> m(rows, cols);
  for (int64_t i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>((rng.uniform() * 2 - 1) * amplitude);
  return m;
}

// |got − want| within 2e-5 of the largest entry of want (float against double over sums of a few
// hundred terms).
void expect_close(const Mat<float>& got, const Mat<double>& want, const char* what, int64_t hd) {
  ASSERT_EQ(got.rows(), want.rows());
  ASSERT_EQ(got.cols(), want.cols());
  const double tol = 2e-5 * std::max(1.0, want.cwiseAbs().maxCoeff());
  for (int64_t i = 0; i < got.rows(); ++i)
    for (int64_t j = 0; j < got.cols(); ++j)
      ASSERT_NEAR(got(i, j), want(i, j), tol) << what << " at (" << i << ", " << j << "), head dim " << hd;
}

void check(const std::vector<int64_t>& lengths, int64_t d, int64_t heads, int threads) {
  SplitMix64 rng(static_cast<uint64_t>(d * 131 + heads * 17 + static_cast<int64_t>(lengths.size())));
  SeqLayout seq;
  seq.off = {0};
  seq.poff = {0};
  for (int64_t n : lengths) {
    seq.off.push_back(seq.off.back() + n);
    seq.poff.push_back(seq.poff.back() + heads * n * n);
  }
  const int64_t T = seq.off.back();
  // Scores of a few units: softmax neither uniform nor one-hot.
  const Mat<float> q = random_mat(rng, T, d, 2.0), k = random_mat(rng, T, d, 2.0), v = random_mat(rng, T, d, 1.0),
                   dout = random_mat(rng, T, d, 1.0);
  set_num_threads(threads);
  Mat<float> out, dq, dk, dv;
  Vec<float> probs;
  attention_forward(out, probs, q, k, v, seq, heads);
  attention_backward(dq, dk, dv, dout, probs, q, k, v, seq, heads);
  set_num_threads(1);
  Mat<double> out_d, dq_d, dk_d, dv_d;
  Vec<double> probs_d;
  attention_forward(out_d, probs_d, cast<double>(q), cast<double>(k), cast<double>(v), seq, heads);
  attention_backward(dq_d, dk_d, dv_d, cast<double>(dout), probs_d, cast<double>(q), cast<double>(k),
                     cast<double>(v), seq, heads);
  const int64_t hd = d / heads;
  expect_close(out, out_d, "out", hd);
  expect_close(dq, dq_d, "dq", hd);
  expect_close(dk, dk_d, "dk", hd);
  expect_close(dv, dv_d, "dv", hd);
}

TEST(FloatAttention, MatchesTheDoublePathAroundEveryBlockEdge) {
  const int64_t b = kAttentionBlock;
  for (int64_t n : std::initializer_list<int64_t>{1, 2, 5, 6, 7, b - 1, b, b + 1, 2 * b + 7, 300})
    check({n}, 64, 2, 1);
}

TEST(FloatAttention, MatchesTheDoublePathForEachHeadWidth) {
  for (auto [d, heads] : {std::pair<int64_t, int64_t>{16, 2}, {48, 4}, {64, 2}, {80, 2}, {96, 1}})
    check({37, 70}, d, heads, 1);
}

TEST(FloatAttention, PackedSequencesOfDifferentLengthsAtTwoThreads) {
  check({3, 64, 1, 45, 29}, 64, 4, 2);
}

// The float path's result for a sequence does not depend on the thread count.
TEST(FloatAttention, SameBitsAtOneAndTwoThreads) {
  SplitMix64 rng(3);
  SeqLayout seq{{0, 40, 90}, {0, 2 * 40 * 40, 2 * 40 * 40 + 2 * 50 * 50}};
  const Mat<float> q = random_mat(rng, 90, 32, 2.0), k = random_mat(rng, 90, 32, 2.0), v = random_mat(rng, 90, 32, 1.0),
                   dout = random_mat(rng, 90, 32, 1.0);
  Mat<float> out[2], dq[2], dk[2], dv[2];
  Vec<float> probs[2];
  for (int t : {0, 1}) {
    set_num_threads(t + 1);
    attention_forward(out[t], probs[t], q, k, v, seq, 2);
    attention_backward(dq[t], dk[t], dv[t], dout, probs[t], q, k, v, seq, 2);
  }
  set_num_threads(1);
  EXPECT_EQ(out[0], out[1]);
  EXPECT_EQ(dq[0], dq[1]);
  EXPECT_EQ(dk[0], dk[1]);
  EXPECT_EQ(dv[0], dv[1]);
}

}  // namespace
}  // namespace kiln::model
