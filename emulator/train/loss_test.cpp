#include "train/loss.hpp"

#include <cmath>

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "error_of.hpp"
#include "train/errors.hpp"

namespace kiln::train {
namespace {

using kiln::testing::error_of;

TEST(LossSpec, DefaultsFollowTheSpec) {
  EXPECT_EQ(LossSpec::parse("ppo", {}).clip_low, 0.8);
  EXPECT_EQ(LossSpec::parse("ppo", {}).clip_high, 1.2);
  EXPECT_EQ(LossSpec::parse("cispo", {}).clip_low, 0.0);
  EXPECT_EQ(LossSpec::parse("cispo", {}).clip_high, 4.0);
  EXPECT_EQ(LossSpec::parse("dro", {}).beta, 0.05);
  EXPECT_EQ(LossSpec::parse("dapo", {}).clip_high, 1.28);
  EXPECT_EQ(LossSpec::parse("gspo", {}).clip_low, 0.9997);
  EXPECT_EQ(LossSpec::parse("gspo", {}).clip_high, 1.0004);
  EXPECT_EQ(LossSpec::parse("ppo", {{"clip_high_threshold", 1.5}}).clip_high, 1.5);
}

TEST(LossSpec, RejectsWithTheSpecTexts) {
  EXPECT_EQ(error_of<InvalidRequest>([] { LossSpec::parse("mse", {}); }),
            "Unknown loss_fn 'mse'. Supported: cross_entropy, importance_sampling, ppo, cispo, dro, dapo, gspo.");
  EXPECT_EQ(error_of<InvalidRequest>([] { LossSpec::parse("ppo", {{"clip_low", 0.5}, {"eps", 1.0}}); }),
            "Invalid loss_fn_config keys for loss_fn='ppo': ['clip_low', 'eps']. "
            "Allowed keys: ['clip_low_threshold', 'clip_high_threshold'].");
  EXPECT_EQ(error_of<InvalidRequest>([] { LossSpec::parse("cross_entropy", {{"beta", 0.1}}); }),
            "loss_fn='cross_entropy' does not accept loss_fn_config keys. Received: ['beta'].");
  EXPECT_NE(error_of<InvalidRequest>([] { LossSpec::parse("dro", {{"beta", NAN}}); }), "<no error>");
  EXPECT_NE(error_of<InvalidRequest>([] { LossSpec::parse("ppo", {{"clip_low_threshold", 1.5}}); })
                .find("must not exceed clip_high_threshold"),
            std::string::npos);
  EXPECT_NE(error_of<InvalidRequest>([] { LossSpec::parse("cross_entropy", {{"output", std::string("embedding")}}); })
                .find("loss_fn_config output modes are not supported"),
            std::string::npos);
  EXPECT_EQ(error_of<InvalidRequest>([] { LossSpec::parse("cross_entropy", {{"output", std::string("logprobs")}}); }),
            "<no error>");
}

Datum ce_datum() {
  return {{1, 2, 3}, {{"target_tokens", TensorData::ints({2, 3, 4})}, {"weights", TensorData::floats({0, 1, 1})}}};
}
Datum rl_datum() {
  return {{1, 2, 3},
          {{"target_tokens", TensorData::ints({2, 3, 4})},
           {"logprobs", TensorData::floats({-1, -2, -3})},
           {"advantages", TensorData::floats({0.5, -1, 2})}}};
}

TEST(LossInputs, ValidationNamesTheFieldAndDatum) {
  const auto ce = LossSpec::parse("cross_entropy", {});
  const auto ppo = LossSpec::parse("ppo", {});
  auto bad = [&](const LossSpec& spec, Datum d) {
    return error_of<UserError>([&] { extract_loss_inputs(spec, d, 2); });
  };
  Datum d = ce_datum();
  d.loss_fn_inputs.erase("target_tokens");
  EXPECT_EQ(bad(ce, d), "missing required field 'target_tokens' (datum 2)");
  d = rl_datum();
  d.loss_fn_inputs.erase("advantages");
  EXPECT_EQ(bad(ppo, d), "missing required field 'advantages' (datum 2)");
  d = ce_datum();
  d.loss_fn_inputs["weights"] = TensorData::floats({1, 1});
  EXPECT_EQ(bad(ce, d), "loss_fn_inputs['weights'] of datum 2 has shape [2], expected [3] (the shape of target_tokens)");
  d = ce_datum();
  d.loss_fn_inputs["target_tokens"] = TensorData::ints({1, 2});
  EXPECT_EQ(bad(ce, d), "loss_fn_inputs['target_tokens'] of datum 2 has shape [2], expected [3] or [3, K] "
                        "(model_input has 3 tokens)");
  d = ce_datum();
  d.loss_fn_inputs["target_tokens"] = TensorData::floats({1, 2, 3});
  EXPECT_EQ(bad(ce, d), "loss_fn_inputs['target_tokens'] of datum 2 must be int64 or int32, got float32");
  d = ce_datum();
  d.loss_fn_inputs["weights"] = TensorData::ints({1, 1, 1});
  EXPECT_EQ(bad(ce, d), "loss_fn_inputs['weights'] of datum 2 must be float32 or float64, got int64");
  d = rl_datum();
  d.loss_fn_inputs["advantages"] = TensorData::floats({0, NAN, 1});
  EXPECT_EQ(bad(ppo, d), "NonFiniteInTensor: loss_fn_inputs['advantages'] of datum 2 contains NaN");
  d = ce_datum();
  d.loss_fn_inputs["weights"] = TensorData::floats({0, INFINITY, 1});
  EXPECT_EQ(bad(ce, d), "NonFiniteInTensor: loss_fn_inputs['weights'] of datum 2 contains Inf");
  d = rl_datum();
  d.loss_fn_inputs["target_tokens"] = TensorData::ints({1, 2, 3, 4, 5, 6}, {3, 2});
  EXPECT_NE(bad(ppo, d).find("takes one target per position"), std::string::npos);
  d = ce_datum();
  d.loss_fn_inputs["weights"] = TensorData{DType::float32, {3}, {1, 1}};
  EXPECT_EQ(bad(ce, d), "loss_fn_inputs['weights'] of datum 2 has 2 values but shape [3]");
}

TEST(LossInputs, WeightsDefaultToOnesAndTwoDimensionalTargetsAreKept) {
  Datum d{{1, 2}, {{"target_tokens", TensorData::ints({1, 2, 3, 4, 5, 6}, {2, 3})}}};
  const auto in = extract_loss_inputs(LossSpec::parse("cross_entropy", {}), d, 0);
  EXPECT_EQ(in.k, 3);
  EXPECT_EQ(in.weights, std::vector<double>(6, 1.0));
  EXPECT_EQ(in.target_shape, (std::vector<int64_t>{2, 3}));
}

TEST(Loss, CrossEntropyIsMinusWeightedLogprobForAnyRealWeights) {
  const auto spec = LossSpec::parse("cross_entropy", {});
  Datum d = ce_datum();
  d.loss_fn_inputs["weights"] = TensorData::floats({-2.5, 0, 0.25});
  const auto out = compute_loss(spec, extract_loss_inputs(spec, d, 0), {-1.0, -2.0, -4.0});
  EXPECT_EQ(out.elementwise, (std::vector<double>{-2.5, 0.0, 1.0}));
  EXPECT_EQ(out.grad, (std::vector<double>{2.5, -0.0, -0.25}));
  EXPECT_DOUBLE_EQ(out.total, -1.5);
  EXPECT_EQ(out.loss_tokens, 2);
}

TEST(Loss, PpoClipsTheRatio) {
  const auto spec = LossSpec::parse("ppo", {});
  // r = e^(lp − q): 2 (clipped at 1.2 for A > 0), 0.5 (unclipped for A < 0 ... min picks clip).
  Datum d{{1, 2}, {{"target_tokens", TensorData::ints({1, 1})},
                   {"logprobs", TensorData::floats({-1 - std::log(2.0), -1 - std::log(0.5)})},
                   {"advantages", TensorData::floats({1.0, -1.0})}}};
  const auto out = compute_loss(spec, extract_loss_inputs(spec, d, 0), {-1.0, -1.0});
  EXPECT_NEAR(out.elementwise[0], -1.2, 1e-12);  // −min(2·1, 1.2·1)
  EXPECT_NEAR(out.grad[0], 0.0, 1e-12);          // clipped: no gradient
  EXPECT_NEAR(out.elementwise[1], 0.8, 1e-12);   // −min(0.5·−1, 0.8·−1) = 0.8
  EXPECT_NEAR(out.grad[1], 0.0, 1e-12);          // clipped at 0.8 from below
}

// Gradients of every loss against central differences of its per-token loss in lp. Where a loss
// stops the gradient, the stopped value is held fixed: cispo's clipped ratio, gspo's sequence ratio.
RC_GTEST_PROP(Loss, GradientsMatchFiniteDifferences, ()) {
  const auto name = *rc::gen::element<std::string>("cross_entropy", "importance_sampling", "ppo", "cispo",
                                                   "dro", "dapo", "gspo");
  const auto spec = LossSpec::parse(name, {});
  const int n = *rc::gen::inRange(1, 8);
  auto real = [](double lo, double hi) {
    return lo + (hi - lo) * (*rc::gen::inRange(0, 1000000)) / 1e6;
  };
  Datum d;
  std::vector<double> lp, q, a, w;
  for (int t = 0; t < n; ++t) {
    d.model_input.push_back(1);
    lp.push_back(real(-4, -0.1));
    q.push_back(lp.back() + real(-0.5, 0.5));
    a.push_back(*rc::gen::element(0.0, 1.0) * real(-2, 2));
    w.push_back(real(-1, 2));
  }
  d.loss_fn_inputs = {{"target_tokens", TensorData::ints(std::vector<int64_t>(n, 1))},
                      {"weights", TensorData::floats(w)},
                      {"logprobs", TensorData::floats(q)},
                      {"advantages", TensorData::floats(a)}};
  const auto in = extract_loss_inputs(spec, d, 0);
  const auto out = compute_loss(spec, in, lp);
  double s_fixed = 0;
  if (spec.kind == LossKind::gspo) {  // recover the fixed sequence ratio from the loss's own M
    double mean = 0;
    int count = 0;
    for (int t = 0; t < n; ++t)
      if (a[t] != 0 && w[t] != 0) mean += lp[t] - q[t], ++count;
    s_fixed = count ? std::exp(mean / count) : 0;
  }
  const double h = 1e-6;
  for (int t = 0; t < n; ++t) {
    auto loss_at = [&](double delta) {
      auto lp2 = lp;
      lp2[t] += delta;
      if (spec.kind == LossKind::cispo)
        return -w[t] * std::clamp(std::exp(lp[t] - q[t]), spec.clip_low, spec.clip_high) * lp2[t] * a[t];
      if (spec.kind != LossKind::gspo) return compute_loss(spec, in, lp2).elementwise[t];
      if (a[t] == 0 || w[t] == 0) return 0.0;
      int count = 0;
      for (int u = 0; u < n; ++u) count += a[u] != 0 && w[u] != 0;
      const double st = s_fixed * std::exp(delta);
      return -std::min(st * a[t], std::clamp(st, spec.clip_low, spec.clip_high) * a[t]) / count;
    };
    const double numeric = (loss_at(h) - loss_at(-h)) / (2 * h);
    // Skip the measure-zero kinks of clipping (the difference straddles a clip boundary).
    const double r = spec.kind == LossKind::gspo ? s_fixed : std::exp(lp[t] - q[t]);
    if (std::abs(r - spec.clip_low) < 1e-4 || std::abs(r - spec.clip_high) < 1e-4) continue;
    RC_ASSERT(std::abs(out.grad[t] - numeric) <= 1e-6 * (1 + std::abs(numeric)));
  }
}

}  // namespace
}  // namespace kiln::train
