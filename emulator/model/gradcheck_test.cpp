// Finite-difference gradient checks in double precision for every trainable tensor, on random
// small configurations, for (N) and (N, K) targets, full-parameter and LoRA models, dense and
// factored vocabulary heads (vocabularies of 3..39 ids: full and partial last rows).
#include <cmath>

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "model/init.hpp"
#include "model/test_util.hpp"
#include "model/transformer.hpp"

namespace kiln::model {
namespace {

using testing::perturb;
using testing::random_batch;
using testing::random_coefficients;
using testing::weighted_sum;

// Checks dL/dθ for L = Σ c·logprob at `probes` entries of each tensor against the five-point
// central difference D(h) = (−L(θ+2h) + 8L(θ+h) − 8L(θ−h) + L(θ−2h)) / 12h, extrapolated
// (Richardson) to (16·D(h/2) − D(h)) / 15, h = 1e-4. D alone has truncation error O(h⁴), which on
// steep random cases (LoRA scale up to 8 on perturbed weights, |dL/dθ| ~ 200) reaches 2e-6
// relative at h = 1e-4; the extrapolation cancels the h⁴ term, leaving O(h⁶) plus rounding
// ≈ 1e-12·|L|. Tolerance: |analytic − numeric| <= 1e-8 + 1e-6·|numeric|.
void check_gradients(Transformer<double>& model, const std::vector<SequenceInput>& batch, SplitMix64& rng,
                     int probes) {
  auto fp = model.forward(batch);
  const auto coef = random_coefficients(rng, fp.logprobs);
  auto grads = model.params().zeros_like();
  model.backward(fp, coef, grads);
  const double h = 1e-4;
  for (int i = 0; i < model.params().size(); ++i) {
    auto& tensor = model.params()[i];
    for (int p = 0; p < probes; ++p) {
      const size_t j = rng.next() % tensor.data.size();
      const double saved = tensor.data[j];
      auto loss_at = [&](double delta) {
        tensor.data[j] = saved + delta;
        const double loss = weighted_sum(model.forward(batch, false).logprobs, coef);
        tensor.data[j] = saved;
        return loss;
      };
      auto five_point = [&](double step) {
        return (-loss_at(2 * step) + 8 * loss_at(step) - 8 * loss_at(-step) + loss_at(-2 * step)) / (12 * step);
      };
      const double numeric = (16 * five_point(h / 2) - five_point(h)) / 15;
      const double analytic = grads[i].data[j];
      RC_ASSERT(std::abs(analytic - numeric) <= 1e-8 + 1e-6 * std::abs(numeric));
    }
  }
}

struct Case {
  ModelConfig config;
  std::vector<int64_t> lengths;
  int64_t k;
  uint64_t seed;
};

Case random_case() {
  Case c;
  const int64_t heads = *rc::gen::inRange<int64_t>(1, 4);
  const int64_t head_dim = 2 * *rc::gen::inRange<int64_t>(1, 4);
  c.config = ModelConfig{.vocab_size = *rc::gen::inRange<int64_t>(3, 40),
                         .d_model = heads * head_dim,
                         .n_layers = *rc::gen::inRange<int64_t>(1, 3),
                         .n_heads = heads,
                         .d_ff = *rc::gen::inRange<int64_t>(1, 13),
                         .max_context = 8,
                         .rope_theta = 100.0,
                         // A large eps keeps RMSNorm well-conditioned where a tiny residual vector
                         // would otherwise make finite differences meaningless; the formulas under
                         // test do not depend on its size.
                         .norm_eps = 0.1, .eos_token_ids = {},
                         .head = *rc::gen::element(HeadKind::dense, HeadKind::factored)};
  c.lengths = *rc::gen::container<std::vector<int64_t>>(*rc::gen::inRange<size_t>(1, 4),
                                                        rc::gen::inRange<int64_t>(1, 7));
  c.k = *rc::gen::inRange<int64_t>(0, 4);
  c.seed = *rc::gen::arbitrary<uint64_t>();
  return c;
}

// A full-parameter model of the case, perturbed (norms away from 1, weights large enough to
// matter), checked at `probes` entries per tensor.
void check_full_parameter(const Case& c, int probes) {
  SplitMix64 rng(c.seed);
  auto base = std::make_shared<ParamSet<double>>(init_base_weights<double>(c.config, "gradcheck", c.seed));
  Transformer<double> model(c.config, base, LoraConfig{.rank = 0});
  perturb(model.params(), rng, 0.3);
  check_gradients(model, random_batch(rng, c.config.vocab_size, c.lengths, c.k), rng, probes);
}

RC_GTEST_PROP(GradCheck, FullParameterModelMatchesFiniteDifferences, ()) { check_full_parameter(random_case(), 3); }

RC_GTEST_PROP(GradCheck, LoraAdaptersMatchFiniteDifferences, ()) {
  const Case c = random_case();
  SplitMix64 rng(c.seed);
  auto base = init_base_weights<double>(c.config, "gradcheck", c.seed);
  perturb(base, rng, 0.3);
  const LoraConfig lora{.rank = *rc::gen::element<int64_t>(1, 2, 4),
                        .alpha = *rc::gen::inRange(1, 9) * 1.0,
                        .seed = c.seed,
                        .train_attn = *rc::gen::arbitrary<bool>(),
                        .train_mlp = *rc::gen::arbitrary<bool>(),
                        .train_unembed = true};
  Transformer<double> model(c.config, std::make_shared<const ParamSet<double>>(std::move(base)), lora);
  perturb(model.params(), rng, 0.3);  // B != 0, so A's gradient is not trivially zero
  check_gradients(model, random_batch(rng, c.config.vocab_size, c.lengths, c.k), rng, 3);
}

// Sequences longer than one attention block (kAttentionBlock = 30 query rows), the last block
// short: the blockwise causal products must give the gradients of the full softmax attention.
RC_GTEST_PROP(GradCheck, SequencesSpanningSeveralAttentionBlocks, ()) {
  Case c = random_case();
  c.config.max_context = 100;
  c.lengths = *rc::gen::container<std::vector<int64_t>>(*rc::gen::inRange<size_t>(1, 3),
                                                        rc::gen::inRange<int64_t>(kAttentionBlock + 1, 100));
  check_full_parameter(c, 2);
}

// Splitting the LM head into vocabulary blocks (online logsumexp, recomputed in backward) gives
// what one block gives, up to rounding (1e-12 in double).
TEST(GradCheck, VocabularyBlockingMatchesOneBlock) {
  const ModelConfig cfg{.vocab_size = 50, .d_model = 8, .n_layers = 1, .n_heads = 2, .d_ff = 6,
                        .max_context = 16, .rope_theta = 1e4, .norm_eps = 1e-5, .eos_token_ids = {}};
  SplitMix64 rng(3);
  auto base = std::make_shared<ParamSet<double>>(init_base_weights<double>(cfg, "chunk", 1));
  Transformer<double> model(cfg, base, LoraConfig{.rank = 2, .seed = 4});
  perturb(model.params(), rng, 0.3);
  const auto batch = random_batch(rng, cfg.vocab_size, {9, 4, 7}, 2);
  auto fp = model.forward(batch);
  const auto coef = random_coefficients(rng, fp.logprobs);
  auto whole = model.params().zeros_like();
  model.backward(fp, coef, whole);

  model.set_vocab_block(7);  // 8 blocks, the last one short
  auto fp2 = model.forward(batch);
  auto chunked = model.params().zeros_like();
  model.backward(fp2, coef, chunked);
  for (size_t s = 0; s < fp.logprobs.size(); ++s)
    for (size_t j = 0; j < fp.logprobs[s].size(); ++j)
      EXPECT_NEAR(fp.logprobs[s][j], fp2.logprobs[s][j], 1e-12);
  for (int i = 0; i < whole.size(); ++i)
    for (size_t j = 0; j < whole[i].data.size(); ++j)
      ASSERT_NEAR(whole[i].data[j], chunked[i].data[j], 1e-12) << whole[i].name;
}

}  // namespace
}  // namespace kiln::model
