// Sampling sessions on the service: where a sampler's weights come from, and asample futures.
#include <algorithm>
#include <cmath>
#include <thread>

#include <gtest/gtest.h>

#include "error_of.hpp"
#include "service/test_util.hpp"
#include "train/errors.hpp"

namespace kiln::service {
namespace {

using namespace testing;
using kiln::testing::error_of;
using train::InvalidRequest;
using Status = RetrieveResult::Status;

const std::string kKey = "tml-alice", kOther = "tml-bob";
const std::string kText = "the quick brown fox";

class SamplingTest : public ::testing::Test {
 protected:
  TempDir dir;
  std::shared_ptr<VirtualClock> clock = std::make_shared<VirtualClock>();
  std::unique_ptr<TrainerService> svc = std::make_unique<TrainerService>(options(dir.path(), clock));
  std::string session = svc->create_session(kKey, {}, {}, "").session_id;

  int64_t models = 0;

  std::string new_model(int64_t rank) {
    return svc->create_model(kKey, {.session_id = session, .model_seq_id = models++, .base_model = "kiln/tiny",
                                    .lora = {.rank = rank}});
  }
  RetrieveResult run(const std::string& model, int64_t seq, TrainingRequest req) {
    return wait_for(*svc, kKey, svc->submit(kKey, model, seq, std::move(req)));
  }
  // Trains a little (a large step, so the weights clearly move) from seq_id `seq`.
  void train(const std::string& model, int64_t seq) {
    ASSERT_EQ(run(model, seq, fb(kText)).status, Status::done);
    ASSERT_EQ(run(model, seq + 1, step(0.05)).status, Status::done);
  }
  // The trainer's logprobs of kText[1..] given its prefix.
  std::vector<double> trainer_logprobs(const std::string& model, int64_t seq) {
    const auto r = run(model, seq, fb(kText, false));
    EXPECT_EQ(r.status, Status::done) << r.error;
    return std::get<train::ForwardResult>(r.result).loss_fn_outputs.at(0).logprobs.data;
  }
  // compute_logprobs of kText on a sampler: an asample with max_tokens 1 and prompt_logprobs.
  std::vector<float> sampler_logprobs(const std::string& sampler, int64_t seq = 0) {
    model::SampleSpec spec;
    spec.prompt = {kText.begin(), kText.end()};
    spec.params.max_tokens = 1;
    spec.prompt_logprobs = true;
    const auto r = wait_for(*svc, kKey, svc->submit_sample(kKey, sampler, seq, spec).request_id);
    EXPECT_EQ(r.status, Status::done) << r.error;
    if (r.status != Status::done) return {};
    return *std::get<model::SampleOutput>(r.result).prompt_logprobs;
  }
  std::string create(const std::string& base_model, const std::string& path, int64_t seq) {
    return svc->create_sampler(kKey, {session, seq, base_model, path});
  }
};

// Largest |a[t] - b[t+1]| (prompt logprobs carry an undefined entry 0).
double max_gap(const std::vector<double>& trainer, const std::vector<float>& sampler) {
  EXPECT_EQ(trainer.size() + 1, sampler.size());
  EXPECT_TRUE(std::isnan(sampler.at(0)));
  double gap = 0;
  for (size_t t = 0; t < trainer.size() && t + 1 < sampler.size(); ++t) gap = std::max(gap, std::abs(trainer[t] - sampler[t + 1]));
  return gap;
}

TEST_F(SamplingTest, BaseModelSamplerMatchesAnUntrainedTrainer) {
  const auto sampler = create("kiln/tiny", "", 0);
  EXPECT_EQ(sampler, session + ":sample:0");
  EXPECT_EQ(create("kiln/tiny", "", 0), sampler);  // a retried create
  const auto info = svc->get_sampler(kKey, sampler);
  EXPECT_EQ(info.base_model, "kiln/tiny");
  EXPECT_FALSE(info.model_path);
  EXPECT_EQ(svc->get_session(kKey, session).sampler_ids, std::vector<std::string>{sampler});
  EXPECT_LT(max_gap(trainer_logprobs(new_model(4), 1), sampler_logprobs(sampler)), 1e-4);
  EXPECT_THROW(svc->get_sampler(kOther, sampler), NotFound);
  EXPECT_THROW(svc->submit_sample(kOther, sampler, 0, {}), NotFound);
}

TEST_F(SamplingTest, SamplerCheckpointsCarryTheTrainedWeights) {
  const auto lora = new_model(4), full = new_model(0);
  // LoRA: base and merged_base saves of the same weights.
  train(lora, 1);
  ASSERT_EQ(run(lora, 3, SaveSamplerRequest{"adapter", std::nullopt, "", std::nullopt}).status, Status::done);
  ASSERT_EQ(run(lora, 4, SaveSamplerRequest{"merged", std::nullopt, "merged_base", std::nullopt}).status, Status::done);
  const auto lora_lp = trainer_logprobs(lora, 5);
  // Full-parameter: a base save, more training, then a delta save on top of it.
  ASSERT_EQ(run(full, 1, SaveSamplerRequest{"b", std::nullopt, "base", std::nullopt}).status, Status::done);
  train(full, 2);
  ASSERT_EQ(run(full, 4, SaveSamplerRequest{"d", std::nullopt, "delta", std::nullopt}).status, Status::done);
  const auto full_lp = trainer_logprobs(full, 5);

  const auto untrained = sampler_logprobs(create("kiln/tiny", "", 0));
  EXPECT_GT(max_gap(lora_lp, untrained), 1e-2);  // training moved the model
  EXPECT_LT(max_gap(lora_lp, sampler_logprobs(create("", "tinker://" + lora + "/sampler_weights/adapter", 1))), 1e-4);
  EXPECT_LT(max_gap(lora_lp, sampler_logprobs(create("", "tinker://" + lora + "/sampler_weights/merged", 2))), 1e-4);
  EXPECT_LT(max_gap(full_lp, sampler_logprobs(create("", "tinker://" + full + "/sampler_weights/d", 3))), 1e-4);
  EXPECT_GT(max_gap(full_lp, sampler_logprobs(create("", "tinker://" + full + "/sampler_weights/b", 4))), 1e-2);
  EXPECT_EQ(svc->get_sampler(kKey, session + ":sample:1").model_path, "tinker://" + lora + "/sampler_weights/adapter");

  // A sampler keeps its weights after its checkpoint is deleted (E13).
  const auto kept = create("", "tinker://" + lora + "/sampler_weights/adapter", 5);
  svc->delete_checkpoint(kKey, lora, "sampler_weights/adapter");
  EXPECT_LT(max_gap(lora_lp, sampler_logprobs(kept)), 1e-4);
}

TEST_F(SamplingTest, EphemeralSaveSnapshotsTheWeights) {
  const auto m = new_model(4);
  train(m, 1);
  const auto before = trainer_logprobs(m, 3);
  const auto r = run(m, 4, SaveSamplerRequest{"", std::nullopt, "", int64_t{7}});
  ASSERT_EQ(r.status, Status::done) << r.error;
  const auto& saved = std::get<SaveResult>(r.result);
  EXPECT_EQ(saved.path, "");
  EXPECT_EQ(saved.sampling_session_id, session + ":sample:7");
  train(m, 5);  // later training does not reach the snapshot
  EXPECT_LT(max_gap(before, sampler_logprobs(saved.sampling_session_id)), 1e-4);
  EXPECT_TRUE(svc->list_run_checkpoints(kKey, m).empty());  // never listed, never written
}

TEST_F(SamplingTest, CreateErrorsFollowTheSpec) {
  EXPECT_EQ(error_of<InvalidRequest>([&] { create("", "", 0); }), "Either model_path or base_model must be provided");
  EXPECT_EQ(error_of<InvalidRequest>([&] { create("", "/tmp/x", 0); }), "model_path must start with 'tinker://'");
  const auto m = new_model(4);
  ASSERT_EQ(run(m, 1, SaveWeightsRequest{"w", std::nullopt, false}).status, Status::done);
  EXPECT_NE(error_of<InvalidRequest>([&] { create("", "tinker://" + m + "/weights/w", 0); })
                .find("model_path must name a sampler_weights checkpoint"),
            std::string::npos);
  EXPECT_THROW(create("", "tinker://" + m + "/sampler_weights/nope", 0), NotFound);
  EXPECT_NE(error_of<InvalidRequest>([&] { create("gpt-9", "", 0); }).find("unknown base model 'gpt-9'"), std::string::npos);
  EXPECT_THROW(svc->create_sampler(kOther, {session, 0, "kiln/tiny", ""}), NotFound);
}

TEST_F(SamplingTest, AsampleValidatesAtSubmitAndDedupesResubmissions) {
  const auto sampler = create("kiln/tiny", "", 0);
  model::SampleSpec spec;
  spec.prompt = {1, 2, 3};
  spec.params.max_tokens = 2047;
  EXPECT_EQ(error_of<InvalidRequest>([&] { svc->submit_sample(kKey, sampler, 0, spec); }),
            "Prompt length plus max_tokens exceeds the model's context window: 3 + 2047 > 2048");
  spec.params.max_tokens = 5;
  spec.params.seed = 42;
  spec.num_samples = 2;
  const auto sub = svc->submit_sample(kKey, sampler, 1, spec);
  // One id per requested sample, distinct, fixed at submission (tinker >= 0.26 asserts them).
  ASSERT_EQ(sub.sequence_ids.size(), 2u);
  EXPECT_NE(sub.sequence_ids[0], sub.sequence_ids[1]);
  const auto resubmitted = svc->submit_sample(kKey, sampler, 1, spec);  // the SDK's resubmission after a 429
  EXPECT_EQ(resubmitted.request_id, sub.request_id);
  EXPECT_EQ(resubmitted.sequence_ids, sub.sequence_ids);
  const auto r = wait_for(*svc, kKey, sub.request_id);
  ASSERT_EQ(r.status, Status::done) << r.error;
  const auto& out = std::get<model::SampleOutput>(r.result);
  ASSERT_EQ(out.sequences.size(), 2u);
  EXPECT_EQ(out.sequences[0].sequence_id, sub.sequence_ids[0]);
  EXPECT_EQ(out.sequences[1].sequence_id, sub.sequence_ids[1]);
  EXPECT_EQ(out.sequences[0].tokens.size(), 5u);
  EXPECT_FALSE(out.prompt_logprobs);
  // The same seed again (a new seq_id): the same samples.
  const auto resample = svc->submit_sample(kKey, sampler, 2, spec);
  const auto again = wait_for(*svc, kKey, resample.request_id);
  EXPECT_EQ(std::get<model::SampleOutput>(again.result).sequences[1].tokens, out.sequences[1].tokens);
  // A new submission (a retry under a new seq_id) gets new sequence ids.
  for (const auto& id : resample.sequence_ids) EXPECT_EQ(std::count(sub.sequence_ids.begin(), sub.sequence_ids.end(), id), 0);
}

// Concurrent asample requests on one sampler decode together (continuous batching): 4 requests ×
// 8 sequences × 32 tokens take about 32 decode steps, not 4 × 32, and each request gets what it
// gets alone.
TEST_F(SamplingTest, ConcurrentRequestsOnASamplerDecodeTogether) {
  const auto sampler = create("kiln/tiny", "", 0);
  model::SampleSpec spec;
  spec.prompt = {1, 2, 3};
  spec.num_samples = 8;
  // Long enough that the four submits (microseconds apart) land while the first still decodes,
  // even on a loaded machine (at 32 tokens the test failed once under ctest -j2).
  spec.params.max_tokens = 256;
  spec.params.end_of_sequence = false;  // every sequence runs to max_tokens: the token count is exact
  std::vector<std::string> rids;
  for (int r = 0; r < 4; ++r) {
    spec.params.seed = 100 + r;
    rids.push_back(svc->submit_sample(kKey, sampler, r, spec).request_id);
  }
  std::vector<model::SampleOutput> outs;
  for (const auto& rid : rids) {
    const auto r = wait_for(*svc, kKey, rid);
    ASSERT_EQ(r.status, Status::done) << r.error;
    outs.push_back(std::get<model::SampleOutput>(r.result));
  }
  const auto st = svc->state();
  const auto& s = st["samplers"][0];
  EXPECT_EQ(s["sampled_tokens"], 4 * 8 * 256);
  EXPECT_LT(s["decode_steps"].get<int64_t>(), 2 * 256) << s;
  EXPECT_GT(s["largest_batch"].get<int64_t>(), 8) << s;
  // The same request alone (a new sampler on the same weights) samples the same tokens.
  const auto alone_sampler = create("kiln/tiny", "", 1);
  spec.params.seed = 102;
  const auto alone = wait_for(*svc, kKey, svc->submit_sample(kKey, alone_sampler, 0, spec).request_id);
  ASSERT_EQ(alone.status, Status::done);
  for (size_t i = 0; i < 8; ++i)
    EXPECT_EQ(std::get<model::SampleOutput>(alone.result).sequences[i].tokens, outs[2].sequences[i].tokens);
}

// cancel_future: a sample still waiting, or decoding in a batch, fails at once with a user error;
// the request decoding beside it gets exactly what it gets alone; a complete one is left as it
// is; a list naming a training future or an unknown id is refused whole.
TEST_F(SamplingTest, CancelFutureWithdrawsAWaitingOrDecodingSampleAndNothingElse) {
  const auto sampler = create("kiln/tiny", "", 0);
  model::SampleSpec spec;
  spec.prompt = {1, 2, 3};
  spec.params.max_tokens = 2000;
  spec.params.end_of_sequence = false;  // every sequence runs to max_tokens unless cancelled
  spec.params.seed = 1;
  const auto doomed = svc->submit_sample(kKey, sampler, 0, spec).request_id;
  spec.params.seed = 2;
  const auto kept = svc->submit_sample(kKey, sampler, 1, spec).request_id;
  // Wait until the doomed request decodes (a worker took it into the batch), then cancel it.
  for (int i = 0; i < 20000 && svc->state()["futures"]["running"].dump().find(doomed) == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  ASSERT_EQ(svc->cancel_samples(kKey, {doomed}), std::vector<bool>{true}) << "the sample finished before the cancel";
  const auto cancelled = svc->retrieve(kKey, doomed);
  ASSERT_EQ(cancelled.status, Status::failed);
  EXPECT_EQ(cancelled.category, ErrorCategory::user);
  EXPECT_EQ(cancelled.error, "sample request " + doomed + " was cancelled by the client (cancel_future)");
  const auto r = wait_for(*svc, kKey, kept);
  ASSERT_EQ(r.status, Status::done) << r.error;
  EXPECT_EQ(svc->retrieve(kKey, doomed).status, Status::failed);  // its batch's end did not overwrite it
  EXPECT_LT(svc->state()["samplers"][0]["sampled_tokens"].get<int64_t>(), 2 * 2000);  // it left the batch
  const auto alone_sampler = create("kiln/tiny", "", 1);
  const auto alone = wait_for(*svc, kKey, svc->submit_sample(kKey, alone_sampler, 0, spec).request_id);
  EXPECT_EQ(std::get<model::SampleOutput>(alone.result).sequences[0].tokens,
            std::get<model::SampleOutput>(r.result).sequences[0].tokens);
  EXPECT_EQ(svc->cancel_samples(kKey, {kept, doomed}), (std::vector<bool>{false, false}));  // complete already

  // Refusals change nothing: a waiting sample listed beside a training future stays queued.
  spec.params.max_tokens = 4;
  const auto waiting = svc->submit_sample(kKey, sampler, 2, spec).request_id;
  const auto model = new_model(4);
  const auto training = svc->submit(kKey, model, 1, fb(kText));
  EXPECT_NE(error_of<Conflict>([&] { svc->cancel_samples(kKey, {waiting, training}); })
                .find("is not a sample: cancel_future cancels sample requests only"),
            std::string::npos);
  EXPECT_EQ(error_of<NotFound>([&] { svc->cancel_samples(kKey, {waiting, "req-nope"}); }), "Future not found");
  EXPECT_EQ(error_of<NotFound>([&] { svc->cancel_samples(kOther, {waiting}); }), "Future not found");  // another tenant's
  EXPECT_EQ(wait_for(*svc, kKey, waiting).status, Status::done);
  EXPECT_EQ(wait_for(*svc, kKey, training).status, Status::done);
}

// retrieve_futures: a sampler's completions, oldest first, after a cursor; failures (a cancel)
// included; other samplers' and tenants' never; an empty answer keeps the cursor.
TEST_F(SamplingTest, RetrieveFuturesReportsASamplersCompletionsAfterACursor) {
  const auto sampler = create("kiln/tiny", "", 0), other = create("kiln/tiny", "", 1);
  model::SampleSpec spec;
  spec.prompt = {1, 2, 3};
  spec.params.max_tokens = 3;
  const auto zero = std::chrono::milliseconds(0);
  auto [none, start] = svc->sampler_completions(kKey, sampler, 0, zero);
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(start, 0u);
  const auto a = svc->submit_sample(kKey, sampler, 0, spec).request_id;
  ASSERT_EQ(wait_for(*svc, kKey, a).status, Status::done);
  const auto elsewhere = svc->submit_sample(kKey, other, 0, spec).request_id;
  ASSERT_EQ(wait_for(*svc, kKey, elsewhere).status, Status::done);
  auto [first, cursor] = svc->sampler_completions(kKey, sampler, 0, zero);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].request_id, a);
  EXPECT_FALSE(first[0].failed);
  EXPECT_TRUE(svc->sampler_completions(kKey, sampler, cursor, zero).first.empty());
  EXPECT_EQ(svc->sampler_completions(kKey, sampler, cursor, zero).second, cursor);
  // A poll that waits is answered when the next sample completes.
  spec.params.max_tokens = 200;
  const auto b = svc->submit_sample(kKey, sampler, 1, spec).request_id;
  auto [next, after] = svc->sampler_completions(kKey, sampler, cursor, std::chrono::seconds(30));
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].request_id, b);
  EXPECT_GT(after, cursor);
  // A cancelled sample is reported failed.
  spec.params.max_tokens = 2000;
  spec.params.end_of_sequence = false;
  const auto c = svc->submit_sample(kKey, sampler, 2, spec).request_id;
  svc->cancel_samples(kKey, {c});
  auto [last, end] = svc->sampler_completions(kKey, sampler, after, zero);
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0].request_id, c);
  EXPECT_TRUE(last[0].failed);
  EXPECT_EQ(error_of<NotFound>([&] { svc->sampler_completions(kOther, sampler, 0, zero); }),
            "sampling session '" + sampler + "' not found");
}

}  // namespace
}  // namespace kiln::service

namespace kiln::service {
namespace {

// Not sampling, but the same fixture: copy_weights stores a checkpoint again under a new run of
// the caller's session; the copy serves the same weights, keeps its own TTL, and refusals
// change nothing.
TEST_F(SamplingTest, CopyWeightsMakesAnIndependentCheckpointInANewRun) {
  const auto m = new_model(4);
  train(m, 1);
  const auto saved = run(m, 3, SaveSamplerRequest{.name = "s"});
  ASSERT_EQ(saved.status, Status::done) << saved.error;
  const std::string source = "tinker://" + m + "/sampler_weights/s";
  const auto copy = svc->copy_weights(kKey, {session, 5, source, 60, ""});
  EXPECT_EQ(copy.tinker_path(), "tinker://" + session + ":train:5/sampler_weights/s");
  EXPECT_EQ(copy.run_id, session + ":train:5");
  ASSERT_TRUE(copy.expires);
  EXPECT_EQ(*copy.expires, clock->now() + std::chrono::seconds(60));  // from its completion (the clock is frozen)
  // The copy samples exactly what the source samples.
  const auto defined = [](std::vector<float> v) { return std::vector<float>(v.begin() + 1, v.end()); };  // [0] is NaN
  const auto source_logprobs = defined(sampler_logprobs(create("", source, 0)));
  EXPECT_EQ(defined(sampler_logprobs(create("", copy.tinker_path(), 1))), source_logprobs);
  // Listed under its own run; deleting the source leaves it.
  bool listed = false;
  for (const auto& run : svc->list_training_runs(kKey)) listed |= run.training_run_id == copy.run_id;
  EXPECT_TRUE(listed);
  const auto again = [&](CopyWeightsRequest r) { return error_of<kiln::Error>([&] { svc->copy_weights(kKey, r); }); };
  EXPECT_EQ(again({session, 5, source, std::nullopt, ""}),
            "ResourceAlreadyExists: checkpoint 'sampler_weights/s' already exists for " + session + ":train:5");
  EXPECT_EQ(again({session, 0, source, std::nullopt, ""}),
            "model_seq_id 0 of session '" + session + "' is model '" + m + "'; copy_weights needs a model_seq_id no model has used");
  EXPECT_EQ(again({session, 6, "s", std::nullopt, ""}), "field 'source_path' must be a tinker:// path of a checkpoint, got 's'");
  EXPECT_EQ(again({session, 6, source, 0, ""}), error_of<InvalidRequest>([] { throw errors::ttl_not_positive(0); }));
  EXPECT_EQ(again({session, 6, "tinker://" + m + "/sampler_weights/none", std::nullopt, ""}),
            error_of<NotFound>([&] { throw errors::checkpoint_not_found("tinker://" + m + "/sampler_weights/none"); }));
  // Another tenant sees nothing of it, unless given the owner's key as weights_access_token.
  const std::string theirs = svc->create_session(kOther, {}, {}, "").session_id;
  EXPECT_THROW(svc->copy_weights(kOther, {theirs, 0, source, std::nullopt, ""}), NotFound);
  EXPECT_THROW(svc->copy_weights(kOther, {session, 7, source, std::nullopt, ""}), NotFound);  // not their session
  EXPECT_EQ(svc->copy_weights(kOther, {theirs, 0, source, std::nullopt, kKey}).run_id, theirs + ":train:0");
  EXPECT_EQ(svc->list_user_checkpoints(kKey).size(), 2u);  // the source and the first copy: nothing else changed
  svc->delete_checkpoint(kKey, m, "sampler_weights/s");
  EXPECT_EQ(defined(sampler_logprobs(create("", copy.tinker_path(), 2))), source_logprobs);
}

// Not sampling, but the same fixture: create-via-load and weights_access_token (protocol.md §W6.15).
TEST_F(SamplingTest, CreateViaLoadTakesTheCheckpointsLayoutAndCountsAsSeqZero) {
  const auto m = new_model(8);
  train(m, 1);
  ASSERT_EQ(run(m, 3, SaveWeightsRequest{"w", std::nullopt, false}).status, Status::done);
  const auto expected = trainer_logprobs(m, 4);
  const std::string path = "tinker://" + m + "/weights/w";

  const auto other_session = svc->create_session(kKey, {}, {}, "").session_id;
  CreateModelRequest create{.session_id = other_session, .model_seq_id = 0};
  const auto [model_id, rid] = svc->create_model_from_state(kKey, create, {path, true, ""});
  EXPECT_EQ(model_id, other_session + ":train:0");
  EXPECT_EQ(svc->create_model_from_state(kKey, create, {path, true, ""}).second, rid);  // a retry
  const auto loaded = wait_for(*svc, kKey, rid);
  ASSERT_EQ(loaded.status, Status::done) << loaded.error;
  EXPECT_EQ(svc->get_info(kKey, model_id).lora.rank, 8);
  EXPECT_EQ(svc->get_info(kKey, model_id).base_model, "kiln/tiny");
  EXPECT_EQ(trainer_logprobs(model_id, 1), expected);  // the client's own requests start at seq 1

  // Another API key loads it with weights_access_token; without the token it is not found.
  const auto bob_session = svc->create_session(kOther, {}, {}, "").session_id;
  EXPECT_THROW(svc->create_model_from_state(kOther, {.session_id = bob_session}, {path, false, ""}), NotFound);
  const auto [bob_model, bob_rid] =
      svc->create_model_from_state(kOther, {.session_id = bob_session, .model_seq_id = 1}, {path, false, kKey});
  EXPECT_EQ(wait_for(*svc, kOther, bob_rid).status, Status::done);
  const auto bob_lp = wait_for(*svc, kOther, svc->submit(kOther, bob_model, 1, fb(kText, false)));
  EXPECT_EQ(std::get<train::ForwardResult>(bob_lp.result).loss_fn_outputs.at(0).logprobs.data, expected);
}

}  // namespace
}  // namespace kiln::service
