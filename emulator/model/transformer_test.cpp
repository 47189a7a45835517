#include "model/transformer.hpp"

#include <cmath>

#include <gtest/gtest.h>

#include "error_of.hpp"
#include "model/errors.hpp"
#include "model/init.hpp"
#include "model/registry.hpp"
#include "model/test_util.hpp"
#include "model/threads.hpp"

namespace kiln::model {
namespace {

using testing::random_batch;
using testing::random_coefficients;

struct Tiny {
  ModelConfig config = ModelRegistry::builtin().get("kiln/tiny").config;
  std::shared_ptr<const ParamSet<float>> base = shared_base_weights<float>(config, "kiln/tiny", 0);
};

TEST(Transformer, FreshLoraComputesExactlyWhatItsBaseComputes) {
  Tiny m;
  SplitMix64 rng(1);
  const auto batch = random_batch(rng, 256, {17, 5, 30}, 0);
  const auto base_lp = Transformer<float>::frozen(m.config, m.base).forward(batch).logprobs;
  for (const LoraConfig& lora : {LoraConfig{.rank = 8, .seed = 3}, LoraConfig{.rank = 1, .alpha = 32, .seed = 4},
                                 LoraConfig{.rank = 4, .train_attn = false, .train_mlp = true, .train_unembed = false}}) {
    Transformer<float> model(m.config, m.base, lora);
    EXPECT_EQ(model.forward(batch).logprobs, base_lp) << "rank " << lora.rank;
  }
}

TEST(Transformer, LoraModelSharesTheBaseAndOwnsOnlyAdapters) {
  Tiny m;
  Transformer<float> lora(m.config, m.base, LoraConfig{.rank = 8});
  EXPECT_EQ(&lora.base(), m.base.get());
  EXPECT_LT(lora.params().numel(), m.base->numel() / 4);
  Transformer<float> full(m.config, m.base, LoraConfig{.rank = 0});
  EXPECT_EQ(full.params().numel(), m.base->numel());
  EXPECT_NE(full.params()[0].data.data(), (*m.base)[0].data.data());
}

TEST(Transformer, LogprobsAreNormalisedOverTheVocabulary) {
  Tiny m;
  auto model = Transformer<float>::frozen(m.config, m.base);
  SequenceInput s{.tokens = {1, 2, 3}, .targets = {}, .target_shape = {3, 256}};
  for (int t = 0; t < 3; ++t)
    for (int v = 0; v < 256; ++v) s.targets.push_back(v);
  const auto lp = model.forward(std::vector{s}).logprobs[0];
  for (int t = 0; t < 3; ++t) {
    double total = 0;
    for (int v = 0; v < 256; ++v) total += std::exp(static_cast<double>(lp[t * 256 + v]));
    EXPECT_NEAR(total, 1.0, 1e-5);
  }
}

TEST(Transformer, TwoDimensionalTargetsAgreeWithOneDimensional) {
  Tiny m;
  auto model = Transformer<float>::frozen(m.config, m.base);
  const SequenceInput flat{.tokens = {5, 6, 7, 8}, .targets = {6, 7, 8, 9}, .target_shape = {4}};
  const SequenceInput two{.tokens = {5, 6, 7, 8}, .targets = {6, 1, 7, 1, 8, 1, 9, 1}, .target_shape = {4, 2}};
  const auto out = model.forward(std::vector{flat, two}).logprobs;
  ASSERT_EQ(out[1].size(), 8u);
  for (int t = 0; t < 4; ++t) EXPECT_EQ(out[0][t], out[1][2 * t]);
}

TEST(Transformer, AttentionIsCausal) {
  Tiny m;
  auto model = Transformer<float>::frozen(m.config, m.base);
  SequenceInput a{.tokens = {10, 20, 30, 40, 50}, .targets = {1, 2, 3, 4, 5}, .target_shape = {5}};
  SequenceInput b = a;
  b.tokens[4] = 99;
  const auto la = model.forward(std::vector{a}).logprobs[0];
  const auto lb = model.forward(std::vector{b}).logprobs[0];
  for (int t = 0; t < 4; ++t) EXPECT_EQ(la[t], lb[t]);
  EXPECT_NE(la[4], lb[4]);
}

TEST(Transformer, PackedBatchEqualsSequencesAlone) {
  Tiny m;
  auto model = Transformer<float>::frozen(m.config, m.base);
  SplitMix64 rng(9);
  const auto batch = random_batch(rng, 256, {3, 12, 7}, 2);
  const auto together = model.forward(batch).logprobs;
  for (size_t s = 0; s < batch.size(); ++s) {
    const auto alone = model.forward(std::span(&batch[s], 1)).logprobs[0];
    for (size_t j = 0; j < alone.size(); ++j) EXPECT_NEAR(alone[j], together[s][j], 1e-5);
  }
}

TEST(Transformer, BitwiseDeterministicAtAFixedThreadCount) {
  Tiny m;
  SplitMix64 rng(11);
  const auto batch = random_batch(rng, 256, {64, 100, 33}, 0);
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    std::vector<std::vector<std::vector<float>>> lps;
    std::vector<ParamSet<float>> grads;
    for (int run = 0; run < 2; ++run) {
      Transformer<float> model(m.config, m.base, LoraConfig{.rank = 0});
      auto fp = model.forward(batch);
      SplitMix64 crng(5);
      const auto coef = random_coefficients(crng, fp.logprobs);
      lps.push_back(fp.logprobs);
      grads.push_back(model.params().zeros_like());
      model.backward(fp, coef, grads.back());
    }
    EXPECT_EQ(lps[0], lps[1]);
    for (int i = 0; i < grads[0].size(); ++i) EXPECT_EQ(grads[0][i].data, grads[1][i].data) << grads[0][i].name;
  }
  set_num_threads(1);
}

// The message of the InputError `f` throws.
template <typename F>
std::string error_of(F&& f) {
  return kiln::testing::error_of<InputError>(std::forward<F>(f));
}

TEST(Transformer, BadInputGetsAnErrorNamingFieldValueAndLimit) {
  Tiny m;
  auto model = Transformer<float>::frozen(m.config, m.base);
  auto run = [&](SequenceInput s) { return error_of([&] { model.forward(std::vector{s}); }); };
  EXPECT_EQ(run({.tokens = {1, 256}, .targets = {1, 2}, .target_shape = {2}}),
            "data[0].model_input[1]: token id 256 is out of range [0, 256)");
  EXPECT_EQ(run({.tokens = {1, -3}, .targets = {1, 2}, .target_shape = {2}}),
            "data[0].model_input[1]: token id -3 is out of range [0, 256)");
  EXPECT_EQ(run({.tokens = {1, 2}, .targets = {1, 300}, .target_shape = {2}}),
            "data[0].loss_fn_inputs.target_tokens[1]: token id 300 is out of range [0, 256)");
  EXPECT_EQ(run({.tokens = {}, .targets = {}, .target_shape = {0}}),
            "data[0].model_input: empty sequence: at least 1 token is required");
  // Targets that do not fit the input are the loss layer's to refuse; here they are a bug.
  EXPECT_THROW(model.forward(std::vector<SequenceInput>{{.tokens = {1, 2, 3}, .targets = {1, 2}, .target_shape = {2}}}),
               std::logic_error);
  EXPECT_THROW(model.forward(std::vector<SequenceInput>{{.tokens = {1, 2}, .targets = {1, 2, 3}, .target_shape = {2, 2}}}),
               std::logic_error);
  SequenceInput longest{.tokens = std::vector<int64_t>(2049, 1), .targets = std::vector<int64_t>(2049, 1),
                        .target_shape = {2049}};
  EXPECT_EQ(run(longest), "data[0].model_input: sequence length 2049 exceeds the model's max_context 2048");
  // The second datum is named by its index.
  const std::vector<SequenceInput> two{{.tokens = {1}, .targets = {1}, .target_shape = {1}},
                                       {.tokens = {1}, .targets = {999}, .target_shape = {1}}};
  EXPECT_EQ(error_of([&] { model.forward(two); }),
            "data[1].loss_fn_inputs.target_tokens[0]: token id 999 is out of range [0, 256)");
}

TEST(Transformer, RealVocabularyIdsAreAccepted) {
  const auto& cfg = ModelRegistry::builtin().get("Qwen/Qwen3-8B").config;
  auto model = Transformer<float>::frozen(cfg, shared_base_weights<float>(cfg, "Qwen/Qwen3-8B", 0));
  const auto lp = model.forward(std::vector<SequenceInput>{
      {.tokens = {151935, 0, 151643}, .targets = {0, 151643, 151935}, .target_shape = {3}}}).logprobs;
  // The calibrated stand-in starts with the named model's logit scale, not uniform (calibration.hpp).
  for (float x : lp[0]) {
    EXPECT_LT(x, 0.0f);
    EXPECT_GT(x, -3.0f * std::log(151936.0f));
  }
  EXPECT_NE(error_of([&] {
              model.forward(std::vector<SequenceInput>{{.tokens = {151936}, .targets = {0}, .target_shape = {1}}});
            }),
            "<no error>");
}

TEST(Transformer, BackwardChecksItsInputs) {
  Tiny m;
  Transformer<float> model(m.config, m.base, LoraConfig{.rank = 4});
  const std::vector<SequenceInput> batch{{.tokens = {1, 2}, .targets = {2, 3}, .target_shape = {2}}};
  auto grads = model.params().zeros_like();
  auto fp = model.forward(batch);
  EXPECT_EQ(error_of([&] { model.backward(fp, {{1.0f}}, grads); }), "dlogprobs[0]: has 1 values, expected 2");
  auto frozen = Transformer<float>::frozen(m.config, m.base);
  auto ffp = frozen.forward(batch);
  auto none = frozen.params().zeros_like();
  EXPECT_NE(error_of([&] { frozen.backward(ffp, {{1.0f, 1.0f}}, none); }), "<no error>");
}

TEST(Transformer, GradientsAccumulateAcrossBackwardCalls) {
  Tiny m;
  Transformer<double> model(m.config, shared_base_weights<double>(m.config, "kiln/tiny", 0), LoraConfig{.rank = 0});
  const std::vector<SequenceInput> batch{{.tokens = {1, 2, 3}, .targets = {2, 3, 4}, .target_shape = {3}}};
  const std::vector<std::vector<double>> coef{{1.0, -0.5, 2.0}};
  auto once = model.params().zeros_like();
  auto fp = model.forward(batch);
  model.backward(fp, coef, once);
  auto twice = model.params().zeros_like();
  for (int r = 0; r < 2; ++r) {
    auto f = model.forward(batch);
    model.backward(f, coef, twice);
  }
  for (int i = 0; i < once.size(); ++i)
    for (size_t j = 0; j < once[i].data.size(); ++j) ASSERT_NEAR(twice[i].data[j], 2 * once[i].data[j], 1e-15);
}

}  // namespace
}  // namespace kiln::model
