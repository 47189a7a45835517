// A factored row's operations agree with the same logits materialised as a dense row: the
// partition function, greedy, top-k, the descending walk and the inverse-CDF draw.
#include "model/vocab.hpp"

#include <cmath>

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "model/rng.hpp"

namespace kiln::model {
namespace {

struct Row {
  FactoredVocab fv;
  std::vector<float> alpha, beta, dense;  // dense[t] = α[hi] + β[lo] (in float, as a dense head would hold it)
};

// Scores on a grid of multiples of 1/64, so that α[hi] + β[lo] is exact in float and the dense
// row holds exactly the factored logits; the coarse grid makes ties common (tie rules are part of
// what is checked).
Row random_row(int64_t V, uint64_t seed, bool ties) {
  Row r{FactoredVocab(V), {}, {}, {}};
  SplitMix64 rng(seed);
  auto value = [&] {
    return ties ? static_cast<float>(rng.next() % 4) : static_cast<float>(static_cast<int>(rng.next() % 1024) - 512) / 64.0f;
  };
  for (int64_t a = 0; a < r.fv.A; ++a) r.alpha.push_back(value());
  for (int64_t b = 0; b < r.fv.m; ++b) r.beta.push_back(value());
  for (int64_t t = 0; t < V; ++t) r.dense.push_back(r.alpha[r.fv.hi(t)] + r.beta[r.fv.lo(t)]);
  return r;
}

TEST(FactoredVocab, CoversExactlyTheVocabulary) {
  for (int64_t V : {1, 2, 3, 4, 5, 10, 16, 17, 40, 256, 128256, 151936}) {
    const FactoredVocab fv(V);
    EXPECT_GE(fv.m * fv.m, V) << V;
    EXPECT_LT((fv.m - 1) * (fv.m - 1), V) << V;
    EXPECT_EQ((fv.A - 1) * fv.m + fv.r, V) << V;
    EXPECT_GE(fv.r, 1) << V;
    EXPECT_LE(fv.r, fv.m) << V;
    EXPECT_EQ(fv.hi(V - 1), fv.A - 1) << V;
  }
  const FactoredVocab qwen(151936);  // Qwen3: 390 × 390, the last row 226 ids long
  EXPECT_EQ(qwen.m, 390);
  EXPECT_EQ(qwen.A, 390);
  EXPECT_EQ(qwen.r, 226);
}

RC_GTEST_PROP(TokenScores, FactoredAgreesWithItsDenseMaterialisation, ()) {
  const int64_t V = *rc::gen::inRange<int64_t>(1, 300);
  const bool ties = *rc::gen::arbitrary<bool>();
  const Row r = random_row(V, *rc::gen::arbitrary<uint64_t>(), ties);
  const auto f = TokenScores::factored(r.alpha.data(), r.beta.data(), r.fv);
  const auto d = TokenScores::dense(r.dense.data(), V);
  // Masses are float exponentials summed in double: the two forms agree to float rounding.
  for (double tau : {1.0, 0.7, 2.5}) RC_ASSERT(std::abs(f.lse(tau) - d.lse(tau)) <= 1e-6 * (1 + std::abs(d.lse(tau))));
  RC_ASSERT(f.argmax() == d.argmax());
  const int64_t k = *rc::gen::inRange<int64_t>(1, V + 1);
  const auto ft = f.top(k), dt = d.top(k);
  RC_ASSERT(ft.size() == dt.size());
  for (size_t i = 0; i < ft.size(); ++i) RC_ASSERT(ft[i].first == dt[i].first);
  std::vector<int64_t> walked;
  f.descending([&](int64_t id, double) { walked.push_back(id); return true; });
  RC_ASSERT(static_cast<int64_t>(walked.size()) == V);
  for (size_t i = 1; i < walked.size(); ++i) {
    const double a = f.logit(walked[i - 1]), b = f.logit(walked[i]);
    RC_ASSERT(a > b || (a == b && walked[i - 1] < walked[i]));
  }
  SplitMix64 u(7);
  for (int i = 0; i < 50; ++i) {
    const double x = u.uniform(), tau = i % 2 ? 1.0 : 0.6;
    RC_ASSERT(f.draw(x, tau).first == d.draw(x, tau).first);
  }
}

TEST(TokenScores, FactoredTiesGoToTheLowestId) {
  // V = 10: m = 4, A = 3, last row holds ids 8 and 9 only.
  const FactoredVocab fv(10);
  const std::vector<float> alpha = {0, 1, 1}, beta = {0, 0, 2, 2};
  const auto f = TokenScores::factored(alpha.data(), beta.data(), fv);
  EXPECT_EQ(f.argmax(), 6);  // hi 1, lo 2: ties with hi 2, lo 2 (id 10, which does not exist) and id 7
  const auto top = f.top(4);
  ASSERT_EQ(top.size(), 4u);
  EXPECT_EQ(top[0].first, 6);
  EXPECT_EQ(top[1].first, 7);
  EXPECT_EQ(top[2].first, 2);  // value 2: ids 2, 3, then hi 1 + lo 0/1 (ids 4, 5) and 8, 9 (value 1)
  EXPECT_EQ(top[3].first, 3);
}

}  // namespace
}  // namespace kiln::model
