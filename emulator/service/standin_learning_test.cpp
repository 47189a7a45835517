// The stand-ins learn like the models they are named after, at the user's hyperparameters: the
// bars of the vendor's own end-to-end tests, driven through the in-process service on the
// Qwen/Qwen3-8B and meta-llama/Llama-3.1-8B stand-ins (calibration.hpp), with token ids drawn at
// random from [1000, 128000).
#include <algorithm>
#include <cmath>
#include <numeric>

#include <gtest/gtest.h>

#include "model/rng.hpp"
#include "service/test_util.hpp"

namespace kiln::service {
namespace {

using namespace testing;
using Status = RetrieveResult::Status;

const std::string kKey = "tml-standin";

std::vector<int64_t> random_ids(uint64_t seed, size_t n) {
  model::SplitMix64 rng(seed);
  std::vector<int64_t> ids;
  for (size_t i = 0; i < n; ++i) ids.push_back(1000 + static_cast<int64_t>(rng.next() % 127000));
  return ids;
}

// A sequence as one datum: model_input = ids[0..n-1), targets = ids[1..n), the target of id i+1
// weighted by weights[i+1] (all ones when none are given).
train::Datum sequence_datum(const std::vector<int64_t>& ids, std::vector<double> weights = {}) {
  if (weights.empty()) weights.assign(ids.size(), 1.0);
  train::Datum d{{ids.begin(), ids.end() - 1}, {}};
  d.loss_fn_inputs["target_tokens"] = train::TensorData::ints({ids.begin() + 1, ids.end()});
  d.loss_fn_inputs["weights"] = train::TensorData::floats({weights.begin() + 1, weights.end()});
  return d;
}

class StandinLearning : public ::testing::TestWithParam<const char*> {
 protected:
  TempDir dir;
  std::unique_ptr<TrainerService> svc =
      std::make_unique<TrainerService>(options(dir.path(), std::make_shared<VirtualClock>()));
  std::string session = svc->create_session(kKey, {}, {}, "").session_id;
  int64_t models = 0;
  std::map<std::string, int64_t> seq;  // per model

  std::string new_model(int64_t rank) {
    return svc->create_model(kKey, {.session_id = session, .model_seq_id = models++, .base_model = GetParam(),
                                    .lora = {.rank = rank, .seed = 3}, .lora_seed_given = true});
  }
  RetrieveResult run(const std::string& model, TrainingRequest req) {
    auto r = wait_for(*svc, kKey, svc->submit(kKey, model, ++seq[model], std::move(req)));
    EXPECT_EQ(r.status, Status::done) << r.error;
    return r;
  }
  // One forward_backward + optim_step; returns the forward_backward's metrics.
  std::map<std::string, double> train_step(const std::string& model, std::vector<train::Datum> data,
                                           const train::AdamParams& adam, const std::string& loss = "cross_entropy") {
    const auto r = run(model, ForwardRequest{std::move(data), loss, {}, true});
    run(model, OptimStepRequest{adam, train::Normalization::none});
    return std::get<train::ForwardResult>(r.result).metrics;
  }
  // Per-token losses of `steps` steps on one datum.
  std::vector<double> curve(const std::string& model, const train::Datum& d, const train::AdamParams& adam, int steps) {
    std::vector<double> out;
    for (int s = 0; s < steps; ++s) {
      const auto m = train_step(model, {d}, adam);
      out.push_back(m.at("loss:sum") / m.at("num_loss_tokens:sum"));
    }
    return out;
  }
};

// a) LoRA rank 8, Adam defaults, lr 1e-3: an 8-token sequence below 0.05 per token within 30
// steps, then a sampler saved with save_weights_for_sampler recites it greedily.
TEST_P(StandinLearning, OverfitsASequenceAndTheSavedSamplerRecitesIt) {
  const auto ids = random_ids(11, 8);
  const std::string m = new_model(8);
  const auto losses = curve(m, sequence_datum(ids), {.learning_rate = 1e-3}, 30);
  EXPECT_LT(*std::min_element(losses.begin(), losses.end()), 0.05) << "per-token losses: " << ::testing::PrintToString(losses);
  const auto saved = run(m, SaveSamplerRequest{.name = "recite"});
  const std::string path = std::get<SaveResult>(saved.result).path;
  const std::string sampler = svc->create_sampler(kKey, {session, 100, "", path});
  model::SampleSpec spec;
  spec.prompt = {ids[0]};
  spec.params.max_tokens = static_cast<int64_t>(ids.size()) - 1;
  spec.params.temperature = 0.0;
  const auto out = wait_for(*svc, kKey, svc->submit_sample(kKey, sampler, 0, spec).request_id);
  ASSERT_EQ(out.status, Status::done) << out.error;
  EXPECT_EQ(std::get<model::SampleOutput>(out.result).sequences.at(0).tokens,
            std::vector<int64_t>(ids.begin() + 1, ids.end()));
}

// b) LoRA rank 8, lr 1e-3, a 20-token prompt weighted 0 and a 6-token answer weighted 1:
// loss:sum below 0.5 within 12 steps.
TEST_P(StandinLearning, LearnsAnAnswerOnlyDatum) {
  const auto ids = random_ids(12, 26);
  std::vector<double> weights(26, 0.0);
  std::fill(weights.begin() + 20, weights.end(), 1.0);
  const std::string m = new_model(8);
  double best = INFINITY;
  for (int s = 0; s < 12; ++s)
    best = std::min(best, train_step(m, {sequence_datum(ids, weights)}, {.learning_rate = 1e-3}).at("loss:sum"));
  EXPECT_LT(best, 0.5);
}

// c) LoRA rank 32, 10 steps on a 16-token sequence: lr 1e-3 ends below half the per-token loss of
// lr 1e-5, lr 1e-5 still goes down, and neither run rises more than 5 % above its start.
TEST_P(StandinLearning, TheLearningRateMattersAsItDoesOnTheNamedModel) {
  const auto d = sequence_datum(random_ids(13, 16));
  const auto fast = curve(new_model(32), d, {.learning_rate = 1e-3}, 10);
  const auto slow = curve(new_model(32), d, {.learning_rate = 1e-5}, 10);
  EXPECT_LT(fast.back(), 0.5 * slow.back()) << ::testing::PrintToString(fast) << " vs " << ::testing::PrintToString(slow);
  EXPECT_LT(slow.back(), slow.front());
  for (const auto* c : {&fast, &slow})
    EXPECT_LE(*std::max_element(c->begin(), c->end()), 1.05 * c->front()) << ::testing::PrintToString(*c);
}

// d) Full-parameter training with the seed's own optim_step example (lr 1e-5, betas 0.9 / 0.999,
// eps 1e-8, weight decay 0.01) on a 24-token sequence: per-token loss below half of step 1
// within 25 steps.
TEST_P(StandinLearning, FullParameterTrainingAtTheSeedsExampleHyperparameters) {
  const auto losses = curve(new_model(0), sequence_datum(random_ids(14, 24)),
                            {.learning_rate = 1e-5, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01}, 25);
  EXPECT_LT(*std::min_element(losses.begin(), losses.end()), 0.5 * losses.front()) << ::testing::PrintToString(losses);
}

// e) RL: LoRA rank 16, importance_sampling, lr 2e-4; 12 iterations of 16 samples of 8 tokens at
// temperature 1 from the current weights, reward = the fraction of sampled ids below V/2,
// advantage = reward − the group's mean: the last 3 iterations' mean reward is at least the first
// 2 iterations' plus 0.15.
TEST_P(StandinLearning, ReinforcementLearningRaisesTheReward) {
  const std::string m = new_model(16);
  const int64_t half_vocab = svc->registry().get(GetParam()).config.vocab_size / 2;
  const auto prompt = random_ids(15, 4);
  std::vector<double> mean_reward;
  for (int it = 0; it < 12; ++it) {
    // save_weights_and_get_sampling_client: an ephemeral sampler of the current weights.
    const auto saved = run(m, SaveSamplerRequest{.sampling_session_seq_id = 1000 + it});
    const std::string sampler = std::get<SaveResult>(saved.result).sampling_session_id;
    model::SampleSpec spec;
    spec.prompt = prompt;
    spec.num_samples = 16;
    spec.params.max_tokens = 8;
    spec.params.seed = static_cast<uint64_t>(100 + it);
    spec.params.stop_tokens = {};
    const auto out = wait_for(*svc, kKey, svc->submit_sample(kKey, sampler, 0, spec).request_id);
    ASSERT_EQ(out.status, Status::done) << out.error;
    const auto& seqs = std::get<model::SampleOutput>(out.result).sequences;
    std::vector<double> rewards;
    for (const auto& s : seqs) {
      const auto below = std::count_if(s.tokens.begin(), s.tokens.end(), [&](int64_t t) { return t < half_vocab; });
      rewards.push_back(static_cast<double>(below) / static_cast<double>(s.tokens.size()));
    }
    const double mean = std::accumulate(rewards.begin(), rewards.end(), 0.0) / static_cast<double>(rewards.size());
    mean_reward.push_back(mean);
    std::vector<train::Datum> data;
    for (size_t i = 0; i < seqs.size(); ++i) {
      std::vector<int64_t> ids = prompt;
      ids.insert(ids.end(), seqs[i].tokens.begin(), seqs[i].tokens.end());
      const size_t n = ids.size() - 1, p = prompt.size() - 1;  // targets; the first p are the prompt's
      std::vector<double> q(n, 0.0), adv(n, 0.0);
      for (size_t t = p; t < n; ++t) {
        q[t] = seqs[i].logprobs[t - p];
        adv[t] = rewards[i] - mean;
      }
      train::Datum d{{ids.begin(), ids.end() - 1}, {}};
      d.loss_fn_inputs["target_tokens"] = train::TensorData::ints({ids.begin() + 1, ids.end()});
      d.loss_fn_inputs["logprobs"] = train::TensorData::floats(q);
      d.loss_fn_inputs["advantages"] = train::TensorData::floats(adv);
      data.push_back(std::move(d));
    }
    train_step(m, std::move(data), {.learning_rate = 2e-4}, "importance_sampling");
  }
  const double first = (mean_reward[0] + mean_reward[1]) / 2;
  const double last = (mean_reward[9] + mean_reward[10] + mean_reward[11]) / 3;
  EXPECT_GE(last, first + 0.15) << "mean rewards: " << ::testing::PrintToString(mean_reward);
}

INSTANTIATE_TEST_SUITE_P(NamedModels, StandinLearning, ::testing::Values("Qwen/Qwen3-8B", "meta-llama/Llama-3.1-8B"),
                         [](const auto& info) { return std::string(info.param).find("Qwen") ? "Llama31_8B" : "Qwen3_8B"; });

}  // namespace
}  // namespace kiln::service
