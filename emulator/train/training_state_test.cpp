#include "train/training_state.hpp"

#include <cmath>

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "train/errors.hpp"
#include "train/test_util.hpp"

namespace kiln::train {
namespace {

using namespace testing;

const char* kLosses[] = {"cross_entropy", "importance_sampling", "ppo", "cispo", "dro", "dapo", "gspo"};

std::vector<Datum> random_data(model::SplitMix64& rng, bool rl) {
  std::vector<Datum> data;
  const int count = 1 + static_cast<int>(rng.next() % 3);
  for (int i = 0; i < count; ++i) data.push_back(random_datum(rng, 1 + static_cast<int64_t>(rng.next() % 9), rl));
  return data;
}

RC_GTEST_PROP(TrainingState, ForwardNeverChangesState, ()) {
  const std::string name = *rc::gen::elementOf(std::vector<std::string>(std::begin(kLosses), std::end(kLosses)));
  model::SplitMix64 rng(*rc::gen::arbitrary<uint64_t>());
  auto st = small_state(*rc::gen::element<int64_t>(0, 2));
  const auto spec = LossSpec::parse(name, {});
  st.forward_backward(random_data(rng, name != "cross_entropy"), spec);  // some accumulated state
  const auto params = st.model().params();
  const auto grads = st.gradients();
  const auto m = st.adam().m;
  const auto acc = st.accumulation();
  st.forward(random_data(rng, name != "cross_entropy"), spec);
  RC_ASSERT(params_equal(params, st.model().params()));
  RC_ASSERT(params_equal(grads, st.gradients()));
  RC_ASSERT(params_equal(m, st.adam().m));
  RC_ASSERT(acc.calls == st.accumulation().calls && acc.loss_tokens == st.accumulation().loss_tokens);
}

// fb(A) + fb(B) + step equals fb(A ∪ B) + step. Tolerance 1e-10 on every weight (double; eps 1e-8
// keeps Adam's update continuous where a gradient entry is ~0).
RC_GTEST_PROP(TrainingState, AccumulationEqualsOneCombinedCall, ()) {
  const std::string name = *rc::gen::elementOf(std::vector<std::string>(std::begin(kLosses), std::end(kLosses)));
  const auto norm = *rc::gen::element(Normalization::none, Normalization::num_loss_tokens, Normalization::num_sequences);
  const int64_t rank = *rc::gen::element<int64_t>(0, 2);
  model::SplitMix64 rng(*rc::gen::arbitrary<uint64_t>());
  const bool rl = name != "cross_entropy";
  const auto a = random_data(rng, rl), b = random_data(rng, rl);
  auto both = a;
  both.insert(both.end(), b.begin(), b.end());
  const auto spec = LossSpec::parse(name, {});
  const AdamParams adam{.learning_rate = 1e-2, .eps = 1e-8, .weight_decay = 0.01, .grad_clip_norm = 0.5};

  auto split = small_state(rank), joined = small_state(rank);
  const double la = split.forward_backward(a, spec).metrics.at("loss:sum");
  const double lb = split.forward_backward(b, spec).metrics.at("loss:sum");
  const double lab = joined.forward_backward(both, spec).metrics.at("loss:sum");
  RC_ASSERT(std::abs(la + lb - lab) <= 1e-10 * (1 + std::abs(lab)));
  split.optim_step(adam, norm);
  joined.optim_step(adam, norm);
  for (int i = 0; i < split.model().params().size(); ++i)
    for (size_t j = 0; j < split.model().params()[i].data.size(); ++j)
      RC_ASSERT(std::abs(split.model().params()[i].data[j] - joined.model().params()[i].data[j]) <= 1e-10);
}

TEST(TrainingState, StepWithZeroLearningRateAndDecayLeavesWeightsUnchanged) {
  model::SplitMix64 rng(3);
  for (int64_t rank : {0, 4}) {
    auto st = small_state(rank);
    const auto before = st.model().params();
    st.forward_backward(random_data(rng, false), LossSpec::parse("cross_entropy", {}));
    st.optim_step({.learning_rate = 0.0, .weight_decay = 0.0, .grad_clip_norm = 1.0}, Normalization::num_loss_tokens);
    EXPECT_TRUE(params_equal(before, st.model().params()));
    EXPECT_EQ(st.adam().step, 1);
  }
}

// forward_backward_custom's linearisation: cross_entropy with weights = −∂C/∂logprobs gives the
// parameter gradient of C itself, checked against central differences of C in the weights.
void check_linearisation(const std::vector<Datum>& data,
                         const std::function<double(const std::vector<std::vector<double>>&)>& C,
                         const std::function<std::vector<std::vector<double>>(const std::vector<std::vector<double>>&)>& dC) {
  auto st = small_state(2);
  const auto ce = LossSpec::parse("cross_entropy", {});
  auto logprobs_of = [&](const TrainingState<double>& s) {
    std::vector<std::vector<double>> lp;
    for (const auto& o : s.forward(data, ce).loss_fn_outputs) lp.push_back(o.logprobs.data);
    return lp;
  };
  const auto g = dC(logprobs_of(st));
  auto linearised = data;
  for (size_t i = 0; i < data.size(); ++i) {
    std::vector<double> w;
    for (double x : g[i]) w.push_back(-x);
    linearised[i].loss_fn_inputs["weights"] = TensorData::floats(w);
  }
  st.forward_backward(linearised, ce);
  model::SplitMix64 pick(5);
  for (int i = 0; i < st.model().params().size(); ++i) {
    auto& tensor = st.model().params()[i].data;
    for (int probe = 0; probe < 3; ++probe) {
      const size_t j = pick.next() % tensor.size();
      const double saved = tensor[j], h = 1e-5;
      tensor[j] = saved + h;
      const double up = C(logprobs_of(st));
      tensor[j] = saved - h;
      const double down = C(logprobs_of(st));
      tensor[j] = saved;
      const double numeric = (up - down) / (2 * h);
      EXPECT_NEAR(st.gradients()[i].data[j], numeric, 1e-7 + 1e-6 * std::abs(numeric)) << st.gradients()[i].name;
    }
  }
}

TEST(TrainingState, CustomLossLinearisationSumOfSquares) {
  model::SplitMix64 rng(8);
  std::vector<Datum> data{random_datum(rng, 5, false), random_datum(rng, 3, false)};
  check_linearisation(
      data,
      [](const auto& lp) {
        double c = 0;
        for (const auto& s : lp)
          for (double x : s) c += x * x;
        return c;
      },
      [](const auto& lp) {
        auto g = lp;
        for (auto& s : g)
          for (double& x : s) x *= 2;
        return g;
      });
}

TEST(TrainingState, CustomLossLinearisationDpoMargin) {
  // C = −log σ(β·((Σ lp_chosen − ref_c) − (Σ lp_rejected − ref_r))) over response positions.
  model::SplitMix64 rng(9);
  std::vector<Datum> data{random_datum(rng, 6, false), random_datum(rng, 4, false)};
  const double beta = 0.7, ref_c = -20.0, ref_r = -18.0;
  auto margin = [=](const auto& lp) {
    double c = 0, r = 0;
    for (double x : lp[0]) c += x;
    for (double x : lp[1]) r += x;
    return beta * ((c - ref_c) - (r - ref_r));
  };
  check_linearisation(
      data, [=](const auto& lp) { return std::log1p(std::exp(-margin(lp))); },
      [=](const auto& lp) {
        const double dm = -1.0 / (1.0 + std::exp(margin(lp)));  // d(−log σ(m))/dm
        auto g = lp;
        for (double& x : g[0]) x = dm * beta;
        for (double& x : g[1]) x = -dm * beta;
        return g;
      });
}

TEST(TrainingState, AFailedRequestChangesNothing) {
  model::SplitMix64 rng(4);
  auto st = small_state(0);
  const auto ppo = LossSpec::parse("ppo", {});
  st.forward_backward(random_data(rng, true), ppo);
  const auto grads = st.gradients();
  const auto acc = st.accumulation();

  auto data = random_data(rng, true);
  data.push_back(random_datum(rng, 4, true));
  data.back().model_input[2] = 24;  // out of range
  EXPECT_THROW(st.forward_backward(data, ppo), UserError);
  data.back().model_input[2] = 1;
  data.back().loss_fn_inputs["advantages"].data[1] = NAN;
  EXPECT_THROW(st.forward_backward(data, ppo), UserError);
  data.back().loss_fn_inputs["advantages"].data[1] = 1.0;
  data.back().loss_fn_inputs["logprobs"].data[0] = -5000.0;  // ratio e^(lp − q) overflows
  try {
    st.forward_backward(data, LossSpec::parse("importance_sampling", {}));
    FAIL() << "expected NonFiniteLoss";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("NonFiniteLoss"), std::string::npos);
  }
  EXPECT_TRUE(params_equal(grads, st.gradients()));
  EXPECT_EQ(acc.calls, st.accumulation().calls);
  EXPECT_THROW(st.forward_backward({}, ppo), InvalidRequest);
}

TEST(TrainingState, BaseOnlyModelsOnlyForward) {
  const auto cfg = small_config();
  TrainingState<double> st(model::Transformer<double>::frozen(
      cfg, model::shared_base_weights<double>(cfg, "train-test", 1)));
  model::SplitMix64 rng(2);
  const auto data = random_data(rng, false);
  const auto ce = LossSpec::parse("cross_entropy", {});
  EXPECT_NO_THROW(st.forward(data, ce));
  EXPECT_THROW(st.forward_backward(data, ce), InvalidRequest);
  EXPECT_THROW(st.optim_step({}, Normalization::none), InvalidRequest);
}

TEST(TrainingState, OutputsAreShapedLikeTargetsAndMetricsHaveOneColon) {
  auto st = small_state(0);
  Datum d{{1, 2, 3}, {{"target_tokens", TensorData::ints({1, 2, 3, 4, 5, 6}, {3, 2})},
                      {"weights", TensorData::floats({1, 0, 1, 0, 0, 0}, {3, 2})}}};
  Datum e{{4, 5}, {{"target_tokens", TensorData::ints({6, 7})}}};
  const auto out = st.forward_backward({d, e}, LossSpec::parse("cross_entropy", {}));
  ASSERT_EQ(out.loss_fn_outputs.size(), 2u);
  EXPECT_EQ(out.loss_fn_outputs[0].logprobs.shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(out.loss_fn_outputs[0].elementwise_loss.shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(out.loss_fn_outputs[1].logprobs.shape, (std::vector<int64_t>{2}));
  double total = 0;
  for (const auto& o : out.loss_fn_outputs)
    for (double x : o.elementwise_loss.data) {
      EXPECT_GE(x, 0.0);
      total += x;
    }
  EXPECT_NEAR(out.metrics.at("loss:sum"), total, 1e-12);
  for (const auto& [key, value] : out.metrics) EXPECT_EQ(std::count(key.begin(), key.end(), ':'), 1) << key;
  EXPECT_EQ(out.metrics.at("ntokens:sum"), 5.0);
  EXPECT_EQ(out.metrics.at("num_loss_tokens:sum"), 4.0);  // 2 weighted entries of d, 2 of e (weights absent)
  EXPECT_EQ(out.metrics.at("num_sequences:sum"), 2.0);
  EXPECT_EQ(st.accumulation().loss_tokens, 4);
  st.optim_step({}, Normalization::none);
  EXPECT_EQ(st.accumulation().calls, 0);  // counters reset at the step
}

}  // namespace
}  // namespace kiln::train
