// Behaviour the vendor's own end-to-end suite checks, which no wire test sees: a trained sequence
// is recited by a sampler on the saved weights, the sampler's logprobs agree with the trainer's,
// a reloaded state reproduces the loss (and, with the optimizer, the descent), and an RL round
// trip (sample, score, train on the samples) computes the losses the oracle computes. The ideas
// are the vendor's (issue #17); the code, bars noted per property, is ours.
#include <algorithm>
#include <cmath>
#include <sstream>

#include <rapidcheck.h>

#include "conformance/oracle.hpp"
#include "conformance/property.hpp"
#include "conformance/workload.hpp"
#include "model/rng.hpp"

namespace kiln::conformance {
namespace {

// The vendor's bars (issue #17 and the tinker service's e2e tests): overfit to below 0.05 nats per
// token; sampler and trainer logprobs within 0.1 on average; a reload reproduces the loss within 0.05.
constexpr double kOverfitLoss = 0.05, kAgreeMeanAbs = 0.1, kReloadLoss = 0.05;
constexpr int kOverfitSteps = 30;
constexpr int64_t kLoraRank = 8;
// Its stand-in (README, "Base models and the stand-in calibration"): the real 151936-id vocabulary.
constexpr const char* kRecitalModel = "Qwen/Qwen3-8B";

std::vector<int64_t> gen_text(size_t lo, size_t hi) {
  return *rc::gen::container<std::vector<int64_t>>(*gen_count(lo, hi), rc::gen::resize(100, rc::gen::inRange<int64_t>(32, 127)));
}

Example next_token_example(const std::vector<int64_t>& text) {
  Example e;
  e.tokens.assign(text.begin(), text.end() - 1);
  e.targets.assign(text.begin() + 1, text.end());
  return e;
}

std::string show_tokens(const std::vector<int64_t>& t) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < t.size(); ++i) os << (i ? ", " : "") << t[i];
  return os.str() + "]";
}

// Per-datum logprobs of a ForwardBackwardOutput (DRIVER.md), flattened.
std::vector<std::vector<double>> logprobs_of(const json& out, const std::string& what) {
  std::vector<std::vector<double>> lp;
  for (const auto& o : out.value("loss_fn_outputs", json::array())) {
    if (!o.contains("logprobs") || !o["logprobs"].contains("data")) throw Failure(what + " returned a datum without logprobs");
    lp.push_back(o["logprobs"]["data"].get<std::vector<double>>());
  }
  return lp;
}

// Mean negative logprob per target token over the batch: what the vendor's bars are stated in.
double mean_token_loss(const json& out, const std::string& what) {
  double sum = 0;
  size_t n = 0;
  for (const auto& d : logprobs_of(out, what))
    for (double x : d) sum -= x, ++n;
  if (n == 0) throw Failure(what + " returned no logprobs");
  return sum / static_cast<double>(n);
}

json train_args(const std::string& client, const std::vector<Example>& batch, const std::string& loss = "cross_entropy") {
  return {{"client", client}, {"data", to_driver(batch)}, {"loss_fn", loss}};
}

// One training step: forward_backward (cross_entropy) then optim_step with default Adam.
void train_step(Case& c, const std::string& client, const std::vector<Example>& batch) {
  c.ok("forward_backward", train_args(client, batch));
  c.ok("optim_step", optim_args(client, Adam{}));
}

// save_weights_for_sampler, then a sampling client on the saved path; returns the sampler handle.
std::string sampler_for(Case& c, const std::string& service, const std::string& client, const std::string& name) {
  const std::string path = c.ok("save_weights_for_sampler", {{"client", client}, {"name", name}}).value("path", "");
  if (path.rfind("tinker://", 0) != 0) throw Failure("save_weights_for_sampler returned path '" + path + "', not a tinker:// path");
  return c.ok("create_sampling_client", {{"service", service}, {"path", path}}).value("sampler", "");
}

std::vector<json> sequences_of(const json& out, size_t want, const std::string& what) {
  const auto seqs = out.value("sequences", json::array());
  if (seqs.size() != want)
    throw Failure(what + " returned " + std::to_string(seqs.size()) + " sequences for num_samples=" + std::to_string(want));
  std::vector<json> v(seqs.begin(), seqs.end());
  for (const auto& s : v) {
    if (!s.contains("tokens") || !s.contains("logprobs") || s["tokens"].size() != s["logprobs"].size() || s["tokens"].empty())
      throw Failure(what + " returned a sequence without one logprob per token: " + s.dump());
  }
  return v;
}

// The sequence to overfit: 8 ids drawn from [1000, 128000) by a generated seed, the ids the
// stand-ins' calibration was measured on (DIFFERENCES.md, bar a). Not the ids themselves
// generated: they would shrink towards degenerate sequences (one id repeated, where the last one
// comes being a matter of counting) that no small model learns in 30 steps, and the failure would
// be the model's, not the client's.
std::vector<int64_t> recital_sequence(uint64_t seed) {
  model::SplitMix64 rng(seed);
  std::vector<int64_t> ids(8);
  for (auto& id : ids) id = 1000 + static_cast<int64_t>(rng.next() % 127000);
  return ids;
}

// Trains the sequence with the vendor's settings (LoRA rank 8, Adam lr 1e-3) on the stand-in of a
// real model until its loss is below the bar, saves it for a sampler and samples it greedily from
// its first two tokens. kiln/tiny is too small for the bar: with LoRA rank 8 it reaches it within
// 30 steps for 2 of 5 random byte sequences at lr 1e-2.
void overfit_and_recite(Case& c) {
  const auto text = recital_sequence(pick("sequence seed", rc::gen::inRange<uint64_t>(1, 1000)));
  const auto seed = pick("LoRA seed", rc::gen::inRange<uint64_t>(1, 1000));
  const std::string service = c.service();
  const std::string client = c.training_client(service, kLoraRank, seed, kRecitalModel);
  const std::vector<Example> batch = {next_token_example(text)};
  Adam adam;
  adam.learning_rate = 1e-3;
  double loss = INFINITY;
  int steps = 0;
  for (; steps <= kOverfitSteps; ++steps) {
    loss = mean_token_loss(c.ok("forward_backward", train_args(client, batch)), "forward_backward");
    if (loss < kOverfitLoss || steps == kOverfitSteps) break;
    c.ok("optim_step", optim_args(client, adam));
  }
  if (loss >= kOverfitLoss)
    throw Failure("after " + std::to_string(kOverfitSteps) + " steps of forward_backward + optim_step (LoRA rank 8, Adam lr " +
                  "1e-3) the loss is " + std::to_string(loss) + " nats per token, not below " + std::to_string(kOverfitLoss));
  const std::string sampler = sampler_for(c, service, client, "recite");
  const std::vector<int64_t> prompt(text.begin(), text.begin() + 2), want(text.begin() + 2, text.end());
  const json out = c.ok("sample", {{"sampler", sampler}, {"prompt", prompt}, {"num_samples", 1},
                                   {"sampling_params", {{"max_tokens", want.size()}, {"temperature", 0.0}}}});
  const auto got = sequences_of(out, 1, "sample")[0]["tokens"].get<std::vector<int64_t>>();
  if (got != want)
    throw Failure("trained to " + std::to_string(loss) + " nats per token in " + std::to_string(steps) + " steps, the saved "
                  "sampler's greedy continuation of " + show_tokens(prompt) + " is " + show_tokens(got) + ", not " + show_tokens(want));
}

// compute_logprobs of a sampler on the trainer's weights equals the trainer's forward.
void trainer_sampler_agree(Case& c) {
  const auto batch = pick("batch", gen_batch(3));
  const auto steps = pick("training steps before the save", rc::gen::inRange(0, 3));
  const std::string service = c.service();
  const std::string client = c.training_client(service, kLoraRank, 7);
  for (int i = 0; i < steps; ++i) train_step(c, client, batch);
  const auto trainer = logprobs_of(c.ok("forward", train_args(client, batch)), "forward");
  const std::string sampler = sampler_for(c, service, client, "agree");
  double sum = 0, worst = 0;
  size_t n = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    std::vector<int64_t> prompt = batch[i].tokens;
    prompt.push_back(batch[i].targets.back());
    const json lp = c.ok("compute_logprobs", {{"sampler", sampler}, {"prompt", prompt}}).value("logprobs", json::array());
    if (lp.size() != prompt.size() || !lp[0].is_null())
      throw Failure("compute_logprobs of a " + std::to_string(prompt.size()) + "-token prompt returned " + lp.dump() +
                    ": expected one entry per prompt token, the first null");
    for (size_t t = 1; t < prompt.size(); ++t) {
      if (!lp[t].is_number()) throw Failure("compute_logprobs entry " + std::to_string(t) + " is " + lp[t].dump());
      const double d = std::abs(lp[t].get<double>() - trainer.at(i).at(t - 1));
      sum += d, ++n, worst = std::max(worst, d);
    }
  }
  const double mean = sum / static_cast<double>(n);
  if (!(mean < kAgreeMeanAbs))
    throw Failure("compute_logprobs differs from the trainer's forward by " + std::to_string(mean) + " on average (worst " +
                  std::to_string(worst) + "); the bar is " + std::to_string(kAgreeMeanAbs));
}

// Reloading a saved state reproduces the loss; with the optimizer, the next step continues the
// original's descent, which the weights-only reload does not.
void state_reload(Case& c) {
  const auto batch = pick("batch", gen_batch(2));
  const auto steps = pick("training steps before the save", rc::gen::inRange(2, 5));
  const std::string service = c.service();
  const std::string a = c.training_client(service, kLoraRank, 11);
  auto step = [&](const std::string& client) { train_step(c, client, batch); };
  auto loss = [&](const std::string& client, const std::string& what) {
    return mean_token_loss(c.ok("forward", train_args(client, batch)), what);
  };
  for (int i = 0; i < steps; ++i) step(a);
  const double saved = loss(a, "forward");
  const std::string path = c.ok("save_state", {{"client", a}, {"name", "reload"}}).value("path", "");
  // Each reload on a service of its own: a Fireworks service refuses a second client of the same
  // model and rank (protocol.md §S9.10), and a user resuming starts a new process anyway.
  const std::string weights_only =
      c.ok("create_training_client_from_state", {{"service", c.service()}, {"path", path}, {"with_optimizer", false}}).value("client", "");
  const std::string with_optimizer =
      c.ok("create_training_client_from_state", {{"service", c.service()}, {"path", path}, {"with_optimizer", true}}).value("client", "");
  for (const auto& [client, what] : {std::pair{weights_only, "create_training_client_from_state"},
                                     std::pair{with_optimizer, "create_training_client_from_state_with_optimizer"}}) {
    const double got = loss(client, "forward after " + std::string(what));
    if (!(std::abs(got - saved) < kReloadLoss))
      throw Failure(std::string(what) + " gives a loss of " + std::to_string(got) + " nats per token where the saved model had " +
                    std::to_string(saved));
  }
  step(a), step(weights_only), step(with_optimizer);
  const double la = loss(a, "forward"), lw = loss(weights_only, "forward"), lo = loss(with_optimizer, "forward");
  if (!(std::abs(lo - la) < kReloadLoss) || !(std::abs(lo - la) < std::abs(lw - la)))
    throw Failure("one step after the reload, the original is at " + std::to_string(la) + " nats per token, the reload with "
                  "the optimizer at " + std::to_string(lo) + " and the weights-only reload at " + std::to_string(lw) +
                  ": the optimizer's state should carry the descent on where the original left it");
}

// Sample from the trainer's weights, score, and train on the samples with each RL loss, using the
// sampler's logprobs: the client's answers equal the oracle's for the same inputs.
void rl_round_trip(Case& c) {
  const auto prompt = pick("prompt", rc::gen::exec([] { return gen_text(2, 6); }));
  const auto num_samples = pick("num_samples", rc::gen::inRange<int64_t>(2, 5));
  const auto max_tokens = pick("max_tokens", rc::gen::inRange<int64_t>(2, 8));
  const auto sample_seed = pick("sampling seed", rc::gen::inRange<int64_t>(0, 1 << 20));
  const std::string service = c.service();
  const std::string client = c.training_client(service, kLoraRank, 13);
  ScratchDir oracle_dir("kiln-oracle");
  Oracle oracle(oracle_dir.path());
  oracle.create(client, c.server.model_info(c.model_id(client)).lora);

  const std::string sampler = sampler_for(c, service, client, "rollout");
  const json out = c.ok("sample", {{"sampler", sampler}, {"prompt", prompt}, {"num_samples", num_samples},
                                   {"sampling_params", {{"max_tokens", max_tokens}, {"temperature", 1.0}, {"seed", sample_seed}}}});
  const auto seqs = sequences_of(out, static_cast<size_t>(num_samples), "sample");
  // Reward: the share of sampled tokens that are lower-case letters; advantage: reward minus the
  // group's mean. Values go out as float32, so both sides read the same numbers.
  std::vector<double> reward;
  for (const auto& s : seqs) {
    const auto t = s["tokens"].get<std::vector<int64_t>>();
    reward.push_back(static_cast<double>(std::count_if(t.begin(), t.end(), [](int64_t x) { return x >= 'a' && x <= 'z'; })) /
                     static_cast<double>(t.size()));
  }
  double mean = 0;
  for (double r : reward) mean += r / static_cast<double>(reward.size());
  std::vector<Example> batch;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const auto t = seqs[i]["tokens"].get<std::vector<int64_t>>();
    const auto lp = seqs[i]["logprobs"].get<std::vector<double>>();
    std::vector<int64_t> all = prompt;
    all.insert(all.end(), t.begin(), t.end());
    Example e = next_token_example(all);
    const size_t prompt_targets = prompt.size() - 1;
    e.sampling_logprobs = std::vector<double>(prompt_targets, 0.0);
    e.advantages = std::vector<double>(prompt_targets, 0.0);
    const auto adv = static_cast<double>(static_cast<float>(reward[i] - mean));
    for (double x : lp) e.sampling_logprobs->push_back(static_cast<double>(static_cast<float>(x)));
    e.advantages->insert(e.advantages->end(), t.size(), adv);
    batch.push_back(std::move(e));
  }
  Adam adam;
  for (const LossChoice& loss : {LossChoice{"importance_sampling"}, LossChoice{"ppo"}, LossChoice{"cispo"},
                                 LossChoice{"dro", {{"beta", 0.1}}}}) {
    json args = train_args(client, batch, loss.loss_fn);
    args["loss_fn_config"] = loss.config;
    expect_output_close(c.ok("forward_backward", args), oracle.forward(client, batch, true, loss),
                        "forward_backward(" + loss.loss_fn + ") on the sampled tokens");
    const json got = c.ok("optim_step", optim_args(client, adam)), want = oracle.optim_step(client, adam);
    expect_output_close({{"loss_fn_outputs", json::array()}, {"metrics", got.value("metrics", json::object())}},
                        {{"loss_fn_outputs", json::array()}, {"metrics", want.value("metrics", json::object())}},
                        "optim_step after " + loss.loss_fn);
  }
}

}  // namespace

void add_behaviour_properties(std::vector<Property>& out) {
  out.push_back({"behaviour", "behaviour.overfit_and_recite",
                 "a sequence of 8 ids trained on Qwen/Qwen3-8B's stand-in with LoRA rank 8 and Adam lr 1e-3 falls below 0.05 "
                 "nats per token within 30 steps; saved with save_weights_for_sampler, a sampler created from that path "
                 "recites it greedily from its first two tokens",
                 overfit_and_recite});
  out.push_back({"behaviour", "behaviour.trainer_sampler_agree",
                 "compute_logprobs of a sampler on saved weights agrees with the trainer's forward on the same tokens: "
                 "first entry null, mean absolute difference below 0.1 (the vendor's bar)",
                 trainer_sampler_agree});
  out.push_back({"behaviour", "behaviour.state_reload",
                 "create_training_client_from_state reproduces the saved loss within 0.05 nats per token, with and without "
                 "the optimizer; one step later the reload with the optimizer is within 0.05 of the original and closer "
                 "to it than the weights-only reload",
                 state_reload});
  out.push_back({"behaviour", "behaviour.rl_round_trip",
                 "samples from the trainer's saved weights, scored and trained on with importance_sampling, ppo, cispo "
                 "and dro using the sampler's logprobs, give the oracle's logprobs, losses and optimizer metrics",
                 rl_round_trip});
}

}  // namespace kiln::conformance
