#include "train/optimizer.hpp"

#include <cmath>

#include <gtest/gtest.h>

#include "train/errors.hpp"

namespace kiln::train {
namespace {

using model::ParamSet;

// One scalar parameter named like an attention weight, with gradient g.
struct One {
  ParamSet<double> p, g;
  AdamState<double> st;
  explicit One(double value, double grad) {
    p.add("model.layers.0.self_attn.q_proj.weight", {1});
    p[0].data[0] = value;
    g = p.zeros_like();
    g[0].data[0] = grad;
  }
};

TEST(Optimizer, FirstAdamWStepMatchesTheClosedForm) {
  // After one step m̂ = g and v̂ = g², so the update is lr·g/(|g| + eps), after decay by 1 − lr·λ.
  One o(2.0, 0.5);
  AdamParams adam{.learning_rate = 0.1, .eps = 1e-8, .weight_decay = 0.01};
  optimizer_step(o.p, o.g, o.st, {.calls = 1}, adam, Normalization::none);
  EXPECT_NEAR(o.p[0].data[0], 2.0 * (1 - 0.1 * 0.01) - 0.1 * 0.5 / (0.5 + 1e-8), 1e-15);
  EXPECT_EQ(o.st.step, 1);
  EXPECT_NEAR(o.st.m[0].data[0], 0.1 * 0.5, 1e-15);
  EXPECT_NEAR(o.st.v[0].data[0], 0.05 * 0.25, 1e-15);
  EXPECT_EQ(o.g[0].data[0], 0.0);  // gradients reset after the step
}

// The stand-in calibration's per-tensor factor scales that tensor's learning rate, in the Adam step
// and the decoupled decay alike; the metrics keep the real gradient and the requested rate.
TEST(Optimizer, UpdateScaleMultipliesThatTensorsLearningRate) {
  One plain(2.0, 0.5), scaled(2.0, 0.5);
  AdamParams adam{.learning_rate = 0.01, .eps = 1e-8, .weight_decay = 0.1,
                  .emit_grad_norm_metrics = GradNormMetrics::basic};
  optimizer_step(plain.p, plain.g, plain.st, {.calls = 1}, {.learning_rate = 0.08, .eps = 1e-8, .weight_decay = 0.1},
                 Normalization::none);
  const auto m = optimizer_step(scaled.p, scaled.g, scaled.st, {.calls = 1}, adam, Normalization::none, {8.0});
  EXPECT_NEAR(scaled.p[0].data[0], plain.p[0].data[0], 1e-15);
  EXPECT_DOUBLE_EQ(m.at("lr"), 0.01);
  EXPECT_DOUBLE_EQ(m.at("grad_norm"), 0.5);
  One wrong(2.0, 0.5);
  EXPECT_THROW(optimizer_step(wrong.p, wrong.g, wrong.st, {.calls = 1}, adam, Normalization::none, {1.0, 2.0}),
               std::logic_error);
}

TEST(Optimizer, NormalizationDividesByTokensOrSequencesAndNeverByZero) {
  for (auto [norm, acc, expected] : {std::tuple{Normalization::none, Accumulation{1, 4, 2}, 8.0},
                                     std::tuple{Normalization::num_loss_tokens, Accumulation{1, 4, 2}, 2.0},
                                     std::tuple{Normalization::num_sequences, Accumulation{1, 4, 2}, 4.0},
                                     std::tuple{Normalization::num_loss_tokens, Accumulation{1, 0, 0}, 8.0}}) {
    One o(0.0, 8.0);
    auto m = optimizer_step(o.p, o.g, o.st, acc, {.emit_grad_norm_metrics = GradNormMetrics::basic}, norm);
    EXPECT_DOUBLE_EQ(m["grad_norm"], expected);
  }
}

TEST(Optimizer, ClippingScalesLikeTorch) {
  One o(0.0, 3.0);
  auto m = optimizer_step(o.p, o.g, o.st, {.calls = 1},
                          {.grad_clip_norm = 1.0, .emit_grad_norm_metrics = GradNormMetrics::basic},
                          Normalization::none);
  EXPECT_DOUBLE_EQ(m["grad_norm"], 3.0);
  EXPECT_DOUBLE_EQ(m["grad_norm_post_clip"], 3.0 * 1.0 / (3.0 + 1e-6));
  EXPECT_NEAR(o.st.m[0].data[0], 0.1 * 3.0 / (3.0 + 1e-6), 1e-15);
  One small(0.0, 0.5);  // below the threshold: untouched, and post-clip is still reported
  m = optimizer_step(small.p, small.g, small.st, {.calls = 1},
                     {.grad_clip_norm = 1.0, .emit_grad_norm_metrics = GradNormMetrics::basic}, Normalization::none);
  EXPECT_DOUBLE_EQ(m["grad_norm_post_clip"], 0.5);
}

TEST(Optimizer, NothingAccumulatedMovesNothing) {
  One o(1.5, 0.0);
  auto m = optimizer_step(o.p, o.g, o.st, {}, {.emit_grad_norm_metrics = GradNormMetrics::basic}, Normalization::none);
  EXPECT_EQ(o.p[0].data[0], 1.5);
  EXPECT_EQ(o.st.step, 0);
  EXPECT_EQ(m["grad_norm"], 0.0);
}

TEST(Optimizer, MetricsFollowTheRequestedMode) {
  One off(0, 1), basic(0, 1), detailed(0, 1);
  EXPECT_TRUE(optimizer_step(off.p, off.g, off.st, {.calls = 1}, {}, Normalization::none).empty());
  auto b = optimizer_step(basic.p, basic.g, basic.st, {.calls = 1},
                          {.learning_rate = 0.5, .emit_grad_norm_metrics = GradNormMetrics::basic}, Normalization::none);
  EXPECT_EQ(b.size(), 4u);
  EXPECT_EQ(b["lr"], 0.5);
  EXPECT_EQ(b["grad_norm_rms"], 1.0);  // ‖g‖/√P with P = 1
  auto d = optimizer_step(detailed.p, detailed.g, detailed.st, {.calls = 1},
                          {.emit_grad_norm_metrics = GradNormMetrics::detailed}, Normalization::none);
  EXPECT_EQ(d.count("grad_norm/attn"), 1u);
}

TEST(Optimizer, InvalidParametersAreRejectedByName) {
  One o(1.0, 1.0);
  try {
    optimizer_step(o.p, o.g, o.st, {.calls = 1}, {.beta2 = 1.0}, Normalization::none);
    FAIL();
  } catch (const InvalidRequest& e) {
    EXPECT_EQ(std::string(e.what()), "adam_params.beta2 must be in [0, 1), got 1.000000");
  }
  EXPECT_EQ(o.p[0].data[0], 1.0);
  EXPECT_THROW(parse_normalization("per_token"), InvalidRequest);
  EXPECT_EQ(parse_normalization(""), Normalization::none);
  EXPECT_EQ(parse_grad_norm_metrics("true"), GradNormMetrics::basic);
  EXPECT_THROW(parse_grad_norm_metrics("verbose"), InvalidRequest);
}

}  // namespace
}  // namespace kiln::train
