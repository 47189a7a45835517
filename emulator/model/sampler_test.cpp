// Sampling: the KV-cached decode path against the training forward pass, and the sampling rules.
#include "model/sampler.hpp"

#include <cmath>
#include <functional>
#include <map>
#include <numeric>

#include <gtest/gtest.h>

#include "model/errors.hpp"
#include "model/init.hpp"
#include "model/test_util.hpp"

namespace kiln::model {
namespace {

ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = 256;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.d_ff = 64;
  c.max_context = 96;
  return c;
}

// A full-parameter model with perturbed weights, so its next-token distributions are far from uniform.
Transformer<float> peaky_model(uint64_t seed = 7, std::vector<int64_t> eos = {}) {
  ModelConfig c = tiny_config();
  c.eos_token_ids = std::move(eos);
  auto base = std::make_shared<const ParamSet<float>>(init_base_weights<float>(c, "sampler-test", seed));
  Transformer<float> m(c, base, LoraConfig{});
  SplitMix64 rng(seed);
  testing::perturb(m.params(), rng, 0.3);
  return m;
}

// A request for `prompt` with default parameters, then `edit` applied to them.
SampleSpec spec_of(std::vector<int64_t> prompt, int64_t num_samples = 1,
                   const std::function<void(SamplingParams&)>& edit = [](SamplingParams&) {}) {
  SampleSpec s;
  s.prompt = std::move(prompt);
  s.num_samples = num_samples;
  edit(s.params);
  return s;
}

std::vector<int64_t> some_prompt(int64_t n, uint64_t seed = 3) {
  SplitMix64 rng(seed);
  std::vector<int64_t> p;
  for (int64_t i = 0; i < n; ++i) p.push_back(static_cast<int64_t>(rng.next() % 256));
  return p;
}

// log p(· | tokens) at the last position, over the whole vocabulary, from the training forward:
// (N, V) targets listing every token id.
std::vector<float> forward_distribution(const Transformer<float>& m, const std::vector<int64_t>& tokens) {
  const int64_t n = static_cast<int64_t>(tokens.size()), V = m.config().vocab_size;
  SequenceInput s;
  s.tokens = tokens;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t v = 0; v < V; ++v) s.targets.push_back(v);
  s.target_shape = {n, V};
  const auto fp = m.forward(std::span(&s, 1), false);
  return {fp.logprobs[0].end() - V, fp.logprobs[0].end()};
}

TEST(SamplerTest, PromptLogprobsAgreeWithTheTrainingForward) {
  const auto m = peaky_model();
  SampleSpec spec;
  spec.prompt = some_prompt(40);
  spec.prompt_logprobs = true;
  spec.params.max_tokens = 1;
  const auto out = sample(m, spec);
  ASSERT_TRUE(out.prompt_logprobs);
  ASSERT_EQ(out.prompt_logprobs->size(), spec.prompt.size());
  EXPECT_TRUE(std::isnan((*out.prompt_logprobs)[0]));
  SequenceInput s;
  s.tokens = {spec.prompt.begin(), spec.prompt.end() - 1};
  s.targets = {spec.prompt.begin() + 1, spec.prompt.end()};
  s.target_shape = {static_cast<int64_t>(s.tokens.size())};
  const auto fp = m.forward(std::span(&s, 1), false);
  for (size_t t = 1; t < spec.prompt.size(); ++t) EXPECT_NEAR((*out.prompt_logprobs)[t], fp.logprobs[0][t - 1], 1e-4) << t;
}

TEST(SamplerTest, ExtendingTokenByTokenEqualsOnePrefill) {
  const auto m = peaky_model();
  const auto prompt = some_prompt(30);
  KvCache<float> whole, steps;
  const Mat<float> h_all = m.extend(whole, prompt);
  Mat<float> h_steps(30, m.config().d_model);
  h_steps.topRows(10) = m.extend(steps, std::span(prompt).first(10));
  for (int t = 10; t < 30; ++t) h_steps.row(t) = m.extend(steps, std::span(prompt).subspan(t, 1));
  EXPECT_EQ(steps.len, 30);
  EXPECT_LT((h_all - h_steps).cwiseAbs().maxCoeff(), 1e-5);
}

TEST(SamplerTest, GreedyFollowsTheArgmaxOfTheTrainingForward) {
  const auto m = peaky_model();
  SampleSpec spec;
  spec.prompt = some_prompt(12);
  spec.params.temperature = 0;
  spec.params.max_tokens = 8;
  const auto out = sample(m, spec);
  ASSERT_EQ(out.sequences.size(), 1u);
  const auto& seq = out.sequences[0];
  ASSERT_EQ(seq.tokens.size(), 8u);
  EXPECT_FALSE(seq.stopped);  // "length"
  std::vector<int64_t> context = spec.prompt;
  for (size_t i = 0; i < seq.tokens.size(); ++i) {
    const auto lp = forward_distribution(m, context);
    const int64_t best = std::max_element(lp.begin(), lp.end()) - lp.begin();
    EXPECT_EQ(seq.tokens[i], best) << "step " << i;
    EXPECT_NEAR(seq.logprobs[i], lp[best], 1e-4);
    context.push_back(seq.tokens[i]);
  }
}

TEST(SamplerTest, SeedsReproduceAndSamplesDiffer) {
  const auto m = peaky_model();
  SampleSpec spec;
  spec.prompt = some_prompt(5);
  spec.num_samples = 3;
  spec.params.max_tokens = 16;
  spec.params.seed = 1234;
  const auto a = sample(m, spec), b = sample(m, spec);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(a.sequences[i].tokens, b.sequences[i].tokens);
    EXPECT_EQ(a.sequences[i].logprobs, b.sequences[i].logprobs);
    for (float lp : a.sequences[i].logprobs) {
      EXPECT_TRUE(std::isfinite(lp));
      EXPECT_LE(lp, 0.0f);
    }
  }
  EXPECT_NE(a.sequences[0].tokens, a.sequences[1].tokens);
  spec.params.seed = 1235;
  EXPECT_NE(sample(m, spec).sequences[0].tokens, a.sequences[0].tokens);
}

TEST(SamplerTest, StopTokensAndStringsEndTheSequenceIncludingTheMatch) {
  const auto m = peaky_model();
  SampleSpec spec;
  spec.prompt = some_prompt(6);
  spec.params.temperature = 0;
  spec.params.max_tokens = 10;
  const auto free_run = sample(m, spec).sequences[0].tokens;
  spec.params.stop_tokens = {free_run[3]};
  const auto first = std::find(free_run.begin(), free_run.end(), free_run[3]) - free_run.begin();
  auto stopped = sample(m, spec).sequences[0];
  EXPECT_TRUE(stopped.stopped);
  EXPECT_EQ(stopped.tokens, std::vector<int64_t>(free_run.begin(), free_run.begin() + first + 1));
  // A stop string made of generated bytes 2..3 (only ids < 256 decode, and this vocabulary is bytes).
  spec.params.stop_tokens.clear();
  spec.params.stop_strings = {decode_bytes({free_run[2], free_run[3]})};
  stopped = sample(m, spec).sequences[0];
  EXPECT_TRUE(stopped.stopped);
  EXPECT_NE(decode_bytes(stopped.tokens).find(spec.params.stop_strings[0]), std::string::npos);
  EXPECT_LE(stopped.tokens.size(), 4u);
  // End-of-sequence ids stop too (F5).
  const auto with_eos = peaky_model(7, {free_run[0]});
  stopped = sample(with_eos, spec_of(spec.prompt, 1, [](auto& p) { p.max_tokens = 10; p.temperature = 0; })).sequences[0];
  EXPECT_TRUE(stopped.stopped);
  EXPECT_EQ(stopped.tokens.size(), 1u);
  // ... unless the request turned end-of-sequence off (tinker 0.26+'s stop=[]).
  stopped = sample(with_eos, spec_of(spec.prompt, 1, [](auto& p) {
              p.max_tokens = 10;
              p.temperature = 0;
              p.end_of_sequence = false;
            })).sequences[0];
  EXPECT_FALSE(stopped.stopped);
  EXPECT_EQ(stopped.tokens.size(), 10u);
  // Reaching max_tokens is "length" even when the last token is also a stop token.
  spec.params.stop_strings.clear();
  spec.params.stop_tokens = {free_run[0]};
  spec.params.max_tokens = 1;
  EXPECT_FALSE(sample(m, spec).sequences[0].stopped);
}

TEST(SamplerTest, TruncationLimitsTheCandidatesAndSamplesInProportion) {
  const auto m = peaky_model();
  SampleSpec spec;
  spec.prompt = some_prompt(8);
  spec.params.max_tokens = 1;
  spec.params.seed = 99;
  spec.params.top_k = 1;
  spec.num_samples = 20;
  const auto lp = forward_distribution(m, spec.prompt);
  const int64_t best = std::max_element(lp.begin(), lp.end()) - lp.begin();
  for (const auto& s : sample(m, spec).sequences) EXPECT_EQ(s.tokens[0], best);
  spec.params.top_k = -1;
  spec.params.top_p = 1e-6;
  for (const auto& s : sample(m, spec).sequences) EXPECT_EQ(s.tokens[0], best);

  // top_k = 4 at temperature 0.7: frequencies follow the renormalised tempered probabilities.
  spec.params.top_p = 1;
  spec.params.top_k = 4;
  spec.params.temperature = 0.7;
  spec.num_samples = 1000;
  std::vector<int64_t> order(lp.size());
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + 4, order.end(), [&](auto a, auto b) { return lp[a] > lp[b]; });
  double norm = 0;
  for (int i = 0; i < 4; ++i) norm += std::exp(lp[order[i]] / 0.7);
  std::map<int64_t, int> counts;
  for (const auto& s : sample(m, spec).sequences) ++counts[s.tokens[0]];
  int seen = 0;
  for (int i = 0; i < 4; ++i) {
    const double expected = std::exp(lp[order[i]] / 0.7) / norm;
    EXPECT_NEAR(counts[order[i]] / 1000.0, expected, 0.05) << "rank " << i;
    seen += counts[order[i]];
  }
  EXPECT_EQ(seen, 1000);  // nothing outside the top 4
}

TEST(SamplerTest, TopKPromptLogprobsAreTheMostLikelyTokens) {
  const auto m = peaky_model();
  SampleSpec spec;
  spec.prompt = some_prompt(6);
  spec.topk_prompt_logprobs = 3;
  spec.params.max_tokens = 1;
  const auto out = sample(m, spec);
  ASSERT_TRUE(out.topk_prompt_logprobs);
  EXPECT_TRUE((*out.topk_prompt_logprobs)[0].empty());
  for (size_t t = 1; t < spec.prompt.size(); ++t) {
    const auto lp = forward_distribution(m, {spec.prompt.begin(), spec.prompt.begin() + static_cast<long>(t)});
    const auto& row = (*out.topk_prompt_logprobs)[t];
    ASSERT_EQ(row.size(), 3u);
    const int64_t best = std::max_element(lp.begin(), lp.end()) - lp.begin();
    EXPECT_EQ(row[0].first, best);
    for (const auto& [tok, l] : row) EXPECT_NEAR(l, lp[tok], 1e-4);
    EXPECT_GE(row[0].second, row[1].second);
    EXPECT_GE(row[1].second, row[2].second);
  }
}

// topk_sample_logprobs (F9): one row per sampled token, from the distribution it was drawn
// from (tempered, F3), so the drawn token's own logprob is its entry when it is in the top k.
TEST(SamplerTest, TopKSampleLogprobsDescribeTheDistributionEachTokenCameFrom) {
  const auto m = peaky_model();
  SampleSpec spec;
  spec.prompt = some_prompt(5);
  spec.num_samples = 3;
  spec.topk_sample_logprobs = 4;
  spec.params.max_tokens = 6;
  spec.params.temperature = 0.7;
  spec.params.seed = 11;
  const auto out = sample(m, spec);
  for (const auto& seq : out.sequences) {
    ASSERT_TRUE(seq.topk_logprobs);
    ASSERT_EQ(seq.topk_logprobs->size(), seq.tokens.size());
    std::vector<int64_t> context = spec.prompt;
    for (size_t t = 0; t < seq.tokens.size(); ++t) {
      const auto lp = forward_distribution(m, context);  // temperature 1
      double lse = -INFINITY;
      for (float l : lp) lse = std::max(lse, static_cast<double>(l / 0.7));
      double sum = 0;
      for (float l : lp) sum += std::exp(l / 0.7 - lse);
      lse += std::log(sum);
      const auto& row = (*seq.topk_logprobs)[t];
      ASSERT_EQ(row.size(), 4u);
      for (size_t j = 0; j < row.size(); ++j) {
        EXPECT_NEAR(row[j].second, lp[row[j].first] / 0.7 - lse, 1e-4);
        if (j) {
          EXPECT_GE(row[j - 1].second, row[j].second);
        }
        if (row[j].first == seq.tokens[t]) {
          EXPECT_EQ(row[j].second, seq.logprobs[t]);
        }
      }
      context.push_back(seq.tokens[t]);
    }
  }
  // Asking for them changes no sample.
  SampleSpec plain = spec;
  plain.topk_sample_logprobs = 0;
  const auto again = sample(m, plain);
  for (size_t i = 0; i < again.sequences.size(); ++i) {
    EXPECT_EQ(again.sequences[i].tokens, out.sequences[i].tokens);
    EXPECT_FALSE(again.sequences[i].topk_logprobs);
  }
}

// target_prompt_logprobs (F9): row i scores ids at prompt position i+1, as prompt logprobs do;
// -1 cells answer 0.
TEST(SamplerTest, TargetPromptLogprobsScoreTheChosenIds) {
  const auto m = peaky_model();
  SampleSpec spec;
  spec.prompt = some_prompt(5);
  spec.prompt_logprobs = true;
  spec.params.max_tokens = 1;
  TargetIds target{4, 3, {}, {}, {}};
  for (int64_t t = 0; t < 4; ++t) target.ids.insert(target.ids.end(), {spec.prompt[t + 1], -1, 200 - t});
  spec.target_prompt_logprobs = target;
  const auto out = sample(m, spec);
  ASSERT_TRUE(out.target_prompt_logprobs);
  const auto& got = *out.target_prompt_logprobs;
  ASSERT_EQ(got.values.size(), 12u);
  for (int64_t t = 0; t < 4; ++t) {
    const auto lp = forward_distribution(m, {spec.prompt.begin(), spec.prompt.begin() + t + 1});
    EXPECT_EQ(got.values[t * 3], (*out.prompt_logprobs)[t + 1]);
    EXPECT_EQ(got.values[t * 3 + 1], 0.0f);
    EXPECT_NEAR(got.values[t * 3 + 2], lp[200 - t], 1e-4);
  }
  spec.target_prompt_logprobs->rows = 3;
  spec.target_prompt_logprobs->ids.resize(9);
  EXPECT_THROW(sample(m, spec), InputError);  // len(prompt) - 1 rows, or nothing
}

// prompt_alt_tokens_k (F9): k draws at each prompt position after the first, at the request's
// temperature, each with its logprob there; from a stream of their own, so the samples do not
// change, and the same seed draws the same alternatives.
TEST(SamplerTest, PromptAltTokensAreSeededDrawsThatLeaveTheSamplesAlone) {
  const auto m = peaky_model();
  SampleSpec spec;
  spec.prompt = some_prompt(6);
  spec.params.max_tokens = 4;
  spec.params.seed = 5;
  spec.prompt_alt_tokens_k = 50;
  const auto out = sample(m, spec);
  ASSERT_TRUE(out.prompt_alt_tokens);
  const auto& alt = *out.prompt_alt_tokens;
  EXPECT_EQ(alt.rows, 5);
  EXPECT_EQ(alt.k, 50);
  ASSERT_EQ(alt.tokens.size(), 250u);
  std::map<int64_t, int> first_row;
  for (int64_t t = 0; t < 5; ++t) {
    const auto lp = forward_distribution(m, {spec.prompt.begin(), spec.prompt.begin() + t + 1});
    for (int64_t j = 0; j < 50; ++j) EXPECT_NEAR(alt.logprobs[t * 50 + j], lp[alt.tokens[t * 50 + j]], 1e-4);
  }
  for (int64_t j = 0; j < 50; ++j) ++first_row[alt.tokens[j]];
  EXPECT_GT(first_row.size(), 1u);  // draws, not the argmax repeated (the model is peaky, not one-hot)
  const auto again = sample(m, spec);
  EXPECT_EQ(again.prompt_alt_tokens->tokens, alt.tokens);
  SampleSpec plain = spec;
  plain.prompt_alt_tokens_k = 0;
  EXPECT_EQ(sample(m, plain).sequences[0].tokens, out.sequences[0].tokens);
  // Greedy: every draw is the most likely token.
  spec.params.temperature = 0;
  spec.prompt_alt_tokens_k = 3;
  spec.topk_prompt_logprobs = 1;
  const auto greedy = sample(m, spec);
  for (int64_t t = 0; t < 5; ++t)
    for (int64_t j = 0; j < 3; ++j)
      EXPECT_EQ(greedy.prompt_alt_tokens->tokens[t * 3 + j], (*greedy.topk_prompt_logprobs)[t + 1][0].first);
}

TEST(SamplerTest, InvalidRequestsNameTheFieldAndTheLimit) {
  const auto m = peaky_model();
  const auto message = [&](SampleSpec spec) {
    try {
      sample(m, spec);
    } catch (const InputError& e) {
      return e.message();
    }
    return std::string("no error");
  };
  const auto prompt = some_prompt(90);
  EXPECT_EQ(message(spec_of(prompt, 1, [](auto& p) { p.max_tokens = 7; })),
            "Prompt length plus max_tokens exceeds the model's context window: 90 + 7 > 96");
  EXPECT_EQ(message(spec_of(prompt, 1, [](auto& p) { p.max_tokens = 0; })), "max_tokens must be a positive number");
  EXPECT_EQ(message(spec_of({})), "prompt must contain at least one token");
  EXPECT_EQ(message(spec_of({1, 300})), "prompt token 1 has id 300, out of range [0, 256)");
  EXPECT_EQ(message(spec_of({1}, 0)), "num_samples must be between 1 and 1024, got 0");
  EXPECT_EQ(message(spec_of({1}, 1, [](auto& p) { p.temperature = -1; })), "sampling_params.temperature must be a finite number >= 0");
  EXPECT_EQ(message(spec_of({1}, 1, [](auto& p) { p.top_p = 0; })), "sampling_params.top_p must be in (0, 1]");
  EXPECT_EQ(message(spec_of({1}, 1, [](auto& p) { p.stop_tokens = {256}; })), "sampling_params.stop[0] is token id 256, out of range [0, 256)");
  SampleSpec asks = spec_of({1, 2});
  asks.topk_sample_logprobs = 257;
  EXPECT_EQ(message(asks), "topk_sample_logprobs must be between 0 and the vocabulary size 256, got 257");
  asks.topk_sample_logprobs = 0;
  asks.prompt_alt_tokens_k = 1025;
  EXPECT_EQ(message(asks), "prompt_alt_tokens_k must be between 0 and 1024, got 1025");
  asks.prompt_alt_tokens_k = 0;
  asks.target_prompt_logprobs = TargetIds{1, 2, {5, 256}, {}, {}};
  EXPECT_EQ(message(asks), "target_prompt_logprobs[0][1] is token id 256, out of range [0, 256) (-1: none)");
  asks.target_prompt_logprobs = TargetIds{2, 1, {5, 6}, {}, {}};
  EXPECT_EQ(message(asks), "target_prompt_logprobs must have len(prompt) - 1 = 1 rows, got 2");
  // Without max_tokens a sequence runs to a stop or the end of the context.
  const SampleSpec open = spec_of(prompt, 1, [](auto& p) { p.temperature = 0; });
  EXPECT_EQ(sample(m, open).sequences[0].tokens.size(), 6u);
}

}  // namespace
}  // namespace kiln::model
