#include "service/trainer_service.hpp"

#include <filesystem>
#include <fstream>

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

class ServiceTest : public ::testing::Test {
 protected:
  TempDir dir;
  std::shared_ptr<VirtualClock> clock = std::make_shared<VirtualClock>();
  std::unique_ptr<TrainerService> svc = std::make_unique<TrainerService>(options(dir.path(), clock));

  std::string new_model(int64_t rank = 4, const std::string& key = kKey, const std::string& base = "kiln/tiny") {
    const auto session = svc->create_session(key, {}, {}, "");
    CreateModelRequest req{.session_id = session.session_id, .base_model = base, .lora = {.rank = rank}};
    return svc->create_model(key, req);
  }
  RetrieveResult run(const std::string& model, int64_t seq, TrainingRequest req, const std::string& key = kKey) {
    return wait_for(*svc, key, svc->submit(key, model, seq, std::move(req)));
  }
  std::string path_of(const RetrieveResult& r) {
    EXPECT_EQ(r.status, Status::done) << r.error;
    return r.status == Status::done ? std::get<SaveResult>(r.result).path : "";
  }
};

TEST_F(ServiceTest, SessionsAndHeartbeatsBelongToTheirTenant) {
  const auto s = svc->create_session(kKey, {"tag"}, {{"k", "v"}}, "proj");
  clock->advance_seconds(10);
  svc->heartbeat(kKey, s.session_id);
  EXPECT_GT(svc->get_session(kKey, s.session_id).last_heartbeat, s.created);
  EXPECT_EQ(svc->list_sessions(kKey).size(), 1u);
  EXPECT_TRUE(svc->list_sessions(kOther).empty());
  EXPECT_THROW(svc->heartbeat(kOther, s.session_id), NotFound);
  EXPECT_THROW(svc->get_session(kOther, s.session_id), NotFound);
  EXPECT_THROW(svc->heartbeat(kKey, "session-nope"), NotFound);
}

TEST_F(ServiceTest, CreateModelValidatesWithTheSpecTexts) {
  const auto s = svc->create_session(kKey, {}, {}, "").session_id;
  auto create = [&](CreateModelRequest r) {
    r.session_id = s;
    return error_of<InvalidRequest>([&] { svc->create_model(kKey, r); });
  };
  EXPECT_EQ(create({.base_model = ""}), "base_model is required");
  EXPECT_NE(create({.base_model = "gpt-9"}).find("unknown base model 'gpt-9'; supported: kiln/tiny"), std::string::npos);
  EXPECT_EQ(create({.base_model = "kiln/tiny", .lora = {.rank = 3}}), "lora_config.rank must be a power of 2, got 3");
  EXPECT_EQ(create({.base_model = "kiln/tiny", .lora = {.rank = -1}}), "lora_config.rank must be positive");
  EXPECT_EQ(create({.base_model = "kiln/tiny",
                    .lora = {.rank = 4, .train_attn = false, .train_mlp = false, .train_unembed = false}}),
            "At least one of train_unembed, train_mlp, or train_attn must be True");
  const CreateModelRequest ok{.session_id = s, .model_seq_id = 3, .base_model = "kiln/tiny", .lora = {.rank = 8}};
  const std::string id = svc->create_model(kKey, ok);
  EXPECT_EQ(id, s + ":train:3");
  EXPECT_EQ(svc->create_model(kKey, ok), id);  // idempotent
  EXPECT_EQ(svc->get_info(kKey, id).lora.rank, 8);
  EXPECT_THROW(svc->get_info(kOther, id), NotFound);
  EXPECT_THROW(svc->create_model(kOther, ok), NotFound);  // another tenant's session
}

TEST_F(ServiceTest, RequestsRunInSeqIdOrderWhateverTheArrivalOrder) {
  const auto m = new_model();
  // seq 2 (optim_step) arrives before seq 1 (forward_backward), as parallel chunks do.
  const auto step_rid = svc->submit(kKey, m, 2, step());
  EXPECT_EQ(svc->retrieve(kKey, step_rid, std::chrono::milliseconds(200)).status, Status::pending);
  const auto fb_rid = svc->submit(kKey, m, 1, fb("hello kiln"));
  const double first = loss_of(wait_for(*svc, kKey, fb_rid));
  const auto step_result = wait_for(*svc, kKey, step_rid);
  ASSERT_EQ(step_result.status, Status::done) << step_result.error;
  EXPECT_GT(std::get<OptimStepResult>(step_result.result).metrics.at("grad_norm"), 0.0);  // it saw seq 1's gradient
  EXPECT_LT(loss_of(run(m, 3, fb("hello kiln", false))), first);
  EXPECT_EQ(svc->get_info(kKey, m).optimizer_step, 1);
}

TEST_F(ServiceTest, ResubmissionReturnsTheSameFutureAndAReusedSeqIdIsRefused) {
  const auto m = new_model();
  const auto rid = svc->submit(kKey, m, 1, fb("abc"));
  EXPECT_EQ(svc->submit(kKey, m, 1, fb("abc")), rid);
  EXPECT_EQ(error_of<InvalidRequest>([&] { svc->submit(kKey, m, 1, fb("abd")); }),
            "Training request sequence number was reused");
  wait_for(*svc, kKey, rid);
  EXPECT_EQ(svc->submit(kKey, m, 1, fb("abc")), rid);  // still the same after it ran
}

TEST_F(ServiceTest, FuturesAreTenantScopedAndUnknownIdsAreNotFound) {
  const auto m = new_model();
  const auto rid = svc->submit(kKey, m, 1, fb("abc"));
  EXPECT_THROW(svc->retrieve(kOther, rid), NotFound);
  EXPECT_THROW(svc->retrieve(kKey, "req-000000000000"), NotFound);
  EXPECT_THROW(svc->submit(kOther, m, 2, fb("abc")), NotFound);
}

TEST_F(ServiceTest, ARejectedSubmitCountsAsArrived) {
  const auto m = new_model();
  EXPECT_NE(error_of<InvalidRequest>([&] {
              svc->submit(kKey, m, 1, ForwardRequest{{text_datum("ab")}, "mse", {}, true});
            }).find("Unknown loss_fn 'mse'"),
            std::string::npos);
  EXPECT_EQ(run(m, 2, fb("abc")).status, Status::done);  // seq 2 does not wait for the refused seq 1
}

TEST_F(ServiceTest, AMissingSeqIdIsSkippedAfterTheGracePeriod) {
  const auto m = new_model();
  const auto rid = svc->submit(kKey, m, 2, fb("abc"));
  EXPECT_EQ(svc->retrieve(kKey, rid, std::chrono::milliseconds(300)).status, Status::pending);
  clock->advance_seconds(31);
  EXPECT_EQ(wait_for(*svc, kKey, rid).status, Status::done);
}

TEST_F(ServiceTest, ResultsAreKeptForTheRetentionTimeAfterDelivery) {
  const auto m = new_model();
  const auto rid = svc->submit(kKey, m, 1, fb("abc"));
  wait_for(*svc, kKey, rid);
  clock->advance_seconds(300);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(svc->retrieve(kKey, rid).status, Status::done);  // still there after 5 minutes
  clock->advance_seconds(301);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(error_of<NotFound>([&] { svc->retrieve(kKey, rid); }), "Future not found");
}

TEST_F(ServiceTest, ContentErrorsFailTheFutureWithCategoryUser) {
  const auto m = new_model();
  ForwardRequest bad{{text_datum("abc")}, "cross_entropy", {}, true};
  bad.data[0].loss_fn_inputs.erase("target_tokens");
  auto r = run(m, 1, bad);
  EXPECT_EQ(r.status, Status::failed);
  EXPECT_EQ(r.category, ErrorCategory::user);
  EXPECT_EQ(r.error, "missing required field 'target_tokens' (datum 0)");
  bad = fb("abc");
  bad.data[0].model_input[0] = 999;
  r = run(m, 2, bad);
  EXPECT_NE(r.error.find("token id 999 is out of range [0, 256)"), std::string::npos);
  EXPECT_EQ(run(m, 3, fb("abc")).status, Status::done);  // the model goes on
}

TEST_F(ServiceTest, LoadIsOnlyAcceptedAsTheFirstRequest) {
  const auto m = new_model();
  run(m, 1, fb("abc", false));
  EXPECT_EQ(error_of<InvalidRequest>([&] { svc->submit(kKey, m, 2, LoadWeightsRequest{"tinker://x/weights/y", false, ""}); }),
            "LoadWeights is not permitted with seq_id 2");
  EXPECT_NE(error_of<InvalidRequest>([&] { svc->submit(kKey, new_model(), 1, LoadWeightsRequest{"tinker://bad", false, ""}); })
                .find("Invalid tinker path"),
            std::string::npos);
}

TEST_F(ServiceTest, SaveAndLoadRoundTripWithAndWithoutOptimizer) {
  const auto a = new_model();
  run(a, 1, fb("the quick brown fox"));
  run(a, 2, step());
  const std::string path = path_of(run(a, 3, SaveWeightsRequest{"step-1", 3600, false}));
  EXPECT_EQ(path, "tinker://" + a + "/weights/step-1");
  const double loss_a = loss_of(run(a, 4, fb("the quick brown fox", false)));

  for (bool with_optimizer : {false, true}) {
    const auto b = new_model();
    const auto r = run(b, 1, LoadWeightsRequest{path, with_optimizer, ""});
    ASSERT_EQ(r.status, Status::done) << r.error;
    EXPECT_EQ(loss_of(run(b, 2, fb("the quick brown fox", false))), loss_a);  // bitwise
    EXPECT_EQ(svc->get_info(kKey, b).optimizer_step, with_optimizer ? 1 : 0);
  }
  // The bare name and cross_job:// resolve too.
  EXPECT_EQ(run(new_model(), 1, LoadWeightsRequest{"step-1", true, ""}).status, Status::done);
  EXPECT_EQ(run(new_model(), 1, LoadWeightsRequest{"cross_job://" + a + "/step-1", true, ""}).status, Status::done);
}

TEST_F(ServiceTest, LoadErrorsAreUserErrorsWithTheSpecTexts) {
  const auto a = new_model();
  const std::string sampler = path_of(run(a, 1, SaveSamplerRequest{"s1", std::nullopt, "", std::nullopt}));
  path_of(run(a, 2, SaveWeightsRequest{"w1", std::nullopt, false}));
  auto load_error = [&](const std::string& path, const std::string& key = kKey, int64_t rank = 4) {
    const auto r = run(new_model(rank, key), 1, LoadWeightsRequest{path, false, ""}, key);
    EXPECT_EQ(r.category, ErrorCategory::user);
    return r.error;
  };
  EXPECT_EQ(load_error(sampler), "checkpoint '" + sampler +
                                     "' is a sampler checkpoint; load_state needs a training-state checkpoint saved "
                                     "with save_state");
  EXPECT_EQ(load_error("tinker://" + a + "/weights/nope"), "checkpoint 'tinker://" + a + "/weights/nope' not found");
  EXPECT_EQ(load_error("tinker://" + a + "/weights/w1", kOther), "checkpoint 'tinker://" + a + "/weights/w1' not found");
  EXPECT_NE(load_error("tinker://" + a + "/weights/w1", kKey, 8).find("cannot be loaded into model"), std::string::npos);
  EXPECT_NE(load_error("gs://bucket/x").find("not available offline"), std::string::npos);
}

TEST_F(ServiceTest, TrainingStateNameCollisionsFailUnlessOverwriting) {
  const auto m = new_model();
  path_of(run(m, 1, SaveWeightsRequest{"dup", std::nullopt, false}));
  const auto r = run(m, 2, SaveWeightsRequest{"dup", std::nullopt, false});
  EXPECT_EQ(r.error, "ResourceAlreadyExists: checkpoint 'weights/dup' already exists for " + m +
                         "; use a new name or overwrite=true");
  EXPECT_EQ(run(m, 3, SaveWeightsRequest{"dup", std::nullopt, true}).status, Status::done);
  EXPECT_EQ(run(m, 4, SaveSamplerRequest{"same", std::nullopt, "", std::nullopt}).status, Status::done);
  EXPECT_EQ(run(m, 5, SaveSamplerRequest{"same", std::nullopt, "", std::nullopt}).status, Status::done);  // samplers replace
  EXPECT_NE(error_of<InvalidRequest>([&] { svc->submit(kKey, m, 6, SaveWeightsRequest{"../etc", std::nullopt, false}); })
                .find("invalid checkpoint name '../etc'"),
            std::string::npos);
  EXPECT_NE(error_of<InvalidRequest>([&] { svc->submit(kKey, m, 7, SaveWeightsRequest{"x", 0, false}); })
                .find("ttl_seconds must be positive"),
            std::string::npos);
}

TEST_F(ServiceTest, SamplerCheckpointTypes) {
  const auto lora = new_model(4);
  run(lora, 1, fb("abc"));
  run(lora, 2, step());
  EXPECT_EQ(run(lora, 3, SaveSamplerRequest{"d", std::nullopt, "delta", std::nullopt}).status, Status::done);  // full adapter
  EXPECT_EQ(run(lora, 4, SaveSamplerRequest{"m", std::nullopt, "merged_base", std::nullopt}).status, Status::done);
  const auto list = svc->list_run_checkpoints(kKey, lora);
  ASSERT_EQ(list.size(), 2u);
  for (const auto& c : list) {
    const auto dirp = std::filesystem::path(dir.path()) / TrainerService::tenant_key(kKey) / lora / "sampler_weights" / c.name;
    EXPECT_EQ(std::filesystem::exists(dirp / "adapter_config.json"), c.name == "d") << c.name;
  }

  const auto full = new_model(0);
  EXPECT_EQ(run(full, 1, SaveSamplerRequest{"x", std::nullopt, "delta", std::nullopt}).error,
            "checkpoint_type 'delta' needs an earlier 'base' sampler save from this training client");
  EXPECT_EQ(run(full, 2, SaveSamplerRequest{"x", std::nullopt, "merged_base", std::nullopt}).error, "merged_base requires a LoRA model");
  EXPECT_EQ(run(full, 3, SaveSamplerRequest{"b", std::nullopt, "base", std::nullopt}).status, Status::done);
  run(full, 4, fb("abc"));
  run(full, 5, step());
  EXPECT_EQ(run(full, 6, SaveSamplerRequest{"d", std::nullopt, "delta", std::nullopt}).status, Status::done);
  EXPECT_NE(error_of<InvalidRequest>([&] { svc->submit(kKey, full, 7, SaveSamplerRequest{"z", std::nullopt, "diff", std::nullopt}); }),
            "<no error>");
}

TEST_F(ServiceTest, LoadAdapterWarmStartsALoraModel) {
  const auto a = new_model(4);
  run(a, 1, fb("warm start"));
  run(a, 2, step(5e-2));
  const std::string sampler = path_of(run(a, 3, SaveSamplerRequest{"adapter", std::nullopt, "base", std::nullopt}));
  const double trained = loss_of(run(a, 4, fb("warm start", false)));
  const auto b = new_model(4);
  const auto r = run(b, 1, LoadAdapterRequest{sampler});
  ASSERT_EQ(r.status, Status::done) << r.error;
  EXPECT_EQ(loss_of(run(b, 2, fb("warm start", false))), trained);
  EXPECT_THROW(svc->submit(kKey, new_model(0), 1, LoadAdapterRequest{sampler}), InvalidRequest);
}

TEST_F(ServiceTest, TtlExpiryHidesCheckpointsEverywhere) {
  const auto m = new_model();
  const std::string path = path_of(run(m, 1, SaveWeightsRequest{"short", 60, false}));
  path_of(run(m, 2, SaveWeightsRequest{"long", std::nullopt, false}));
  EXPECT_EQ(svc->list_user_checkpoints(kKey).size(), 2u);
  svc->set_ttl(kKey, m, "weights/long", 120);
  clock->advance_seconds(61);
  EXPECT_EQ(svc->list_user_checkpoints(kKey).size(), 1u);
  EXPECT_EQ(run(new_model(), 1, LoadWeightsRequest{path, false, ""}).error, "checkpoint '" + path + "' not found");
  EXPECT_THROW(svc->weights_info(kKey, path), NotFound);
  clock->advance_seconds(60);
  EXPECT_TRUE(svc->list_user_checkpoints(kKey).empty());
  EXPECT_THROW(svc->set_ttl(kKey, m, "weights/long", 10), NotFound);
  EXPECT_THROW(svc->set_ttl(kKey, m, "weights/x", 0), InvalidRequest);
}

TEST_F(ServiceTest, RestViews) {
  const auto m = new_model(4);
  path_of(run(m, 1, SaveWeightsRequest{"step-2", std::nullopt, false}));
  clock->advance_seconds(1);
  path_of(run(m, 2, SaveWeightsRequest{"step-10", std::nullopt, false}));
  clock->advance_seconds(1);
  path_of(run(m, 3, SaveSamplerRequest{"s-1", std::nullopt, "", std::nullopt}));
  const auto all = svc->list_user_checkpoints(kKey);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].checkpoint_id(), "sampler_weights/s-1");  // newest first
  EXPECT_EQ(all[2].checkpoint_id(), "weights/step-2");
  EXPECT_EQ(svc->list_checkpoint_names(kKey), (std::vector<std::string>{"step-10", "step-2"}));
  EXPECT_TRUE(svc->list_user_checkpoints(kOther).empty());

  const auto run_info = svc->get_training_run(kKey, m);
  EXPECT_TRUE(run_info.is_lora);
  EXPECT_EQ(run_info.lora_rank, 4);
  EXPECT_EQ(run_info.last_checkpoint->name, "step-10");
  EXPECT_EQ(run_info.last_sampler_checkpoint->name, "s-1");
  EXPECT_THROW(svc->get_training_run(kOther, m), NotFound);

  const auto wi = svc->weights_info(kKey, "tinker://" + m + "/weights/step-2");
  EXPECT_EQ(wi.base_model, "kiln/tiny");
  EXPECT_EQ(wi.lora_rank, 4);
  EXPECT_THROW(svc->weights_info(kKey, "tinker://" + m + "/sampler_weights/s-1"), InvalidRequest);

  svc->set_published(kKey, m, "sampler_weights/s-1", true);
  EXPECT_THROW(svc->set_published(kKey, m, "sampler_weights/s-1", true), Conflict);
  svc->set_published(kKey, m, "sampler_weights/s-1", false);
  EXPECT_THROW(svc->set_published(kKey, m, "s-1", true), InvalidRequest);

  const std::string tar = svc->archive_checkpoint(kKey, m, "sampler_weights/s-1");
  EXPECT_GT(std::filesystem::file_size(tar), 1024u);
  svc->delete_checkpoint(kKey, m, "weights/step-2");
  EXPECT_EQ(svc->list_run_checkpoints(kKey, m).size(), 2u);
  EXPECT_THROW(svc->delete_checkpoint(kKey, m, "weights/step-2"), NotFound);
  EXPECT_THROW(svc->delete_checkpoint(kOther, m, "weights/step-10"), NotFound);
}

TEST_F(ServiceTest, BaseOnlyModelsForwardOnly) {
  const auto s = svc->create_session(kKey, {}, {}, "").session_id;
  const auto m = svc->create_model(kKey, {.session_id = s, .base_model = "kiln/tiny", .base_only = true});
  EXPECT_EQ(run(m, 1, fb("abc", false)).status, Status::done);
  EXPECT_EQ(error_of<InvalidRequest>([&] { svc->submit(kKey, m, 2, fb("abc")); }),
            "model " + m + " is base-only; only forward is allowed");
}

TEST_F(ServiceTest, UnloadedModelsAreGone) {
  const auto m = new_model();
  const std::string rid = svc->submit(kKey, m, 1, UnloadModelRequest{});
  EXPECT_EQ(wait_for(*svc, kKey, rid).status, Status::done);
  EXPECT_THROW(svc->submit(kKey, m, 2, fb("abc")), NotFound);
  EXPECT_THROW(svc->get_info(kKey, m), NotFound);
  // The unload's own retry (its answer was lost) gets its future back, not a 404; found by the soak.
  EXPECT_EQ(svc->submit(kKey, m, 1, UnloadModelRequest{}), rid);
  EXPECT_THROW(svc->submit(kOther, m, 1, UnloadModelRequest{}), NotFound);
}

// Once its futures are forgotten, an unloaded model is retired to a small record: training_runs
// still lists the run and the state view its last step; its id cannot be made again.
TEST_F(ServiceTest, UnloadedModelsAreRetiredOnceTheirFuturesAreForgotten) {
  const auto s = svc->create_session(kKey, {}, {}, "").session_id;
  const auto m = svc->create_model(kKey, {.session_id = s, .model_seq_id = 0, .base_model = "kiln/tiny", .lora = {.rank = 4},
                                          .user_metadata = {{"run", "a"}}});
  ASSERT_EQ(run(m, 1, fb("abc")).status, Status::done);
  ASSERT_EQ(run(m, 2, step()).status, Status::done);
  ASSERT_EQ(run(m, 3, UnloadModelRequest{}).status, Status::done);
  const auto view = [&] {
    const auto state = svc->state();  // kept: the loop below must not run over a temporary's member
    for (const auto& v : state["models"])
      if (v["model_id"] == m) return v;
    return nlohmann::json();
  };
  const auto retired = [&] { return view().value("retired", false); };
  EXPECT_FALSE(retired());  // its futures are still kept: a lost answer's retry must find them
  clock->advance_seconds(4000);  // past every retention
  for (int i = 0; i < 100 && !retired(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(retired());
  EXPECT_EQ(view()["optimizer_step"], 1);
  const auto runs = svc->list_training_runs(kKey);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].training_run_id, m);
  EXPECT_TRUE(runs[0].is_lora);
  EXPECT_EQ(runs[0].lora_rank, 4);
  EXPECT_EQ(runs[0].user_metadata.at("run"), "a");
  EXPECT_TRUE(svc->list_training_runs(kOther).empty());
  EXPECT_THROW(svc->get_info(kKey, m), NotFound);
  EXPECT_THROW(svc->submit(kKey, m, 4, fb("abc")), NotFound);
  EXPECT_EQ(error_of<InvalidRequest>([&] {
              svc->create_model(kKey, {.session_id = s, .model_seq_id = 0, .base_model = "kiln/tiny", .lora = {.rank = 4}});
            }),
            "model_seq_id 0 of session '" + s + "' made model '" + m + "', which has been unloaded; use a new model_seq_id");
  svc->reset(kKey);
  EXPECT_TRUE(svc->list_training_runs(kKey).empty());
}

TEST_F(ServiceTest, SeededServicesMakePredictableIds) {
  TempDir other;
  TrainerService again(options(other.path(), std::make_shared<VirtualClock>()));
  const auto s1 = svc->create_session(kKey, {}, {}, "").session_id;
  const auto s2 = again.create_session(kKey, {}, {}, "").session_id;
  EXPECT_EQ(s1, s2);
}

// Train, save with the optimizer, destroy the service, start a new one on the same directory,
// load, continue: the losses equal an uninterrupted run's, bitwise.
TEST(ServiceRestart, ResumedTrainingMatchesAnUninterruptedRunBitwise) {
  TempDir dir;
  const std::string text = "resume me exactly";
  std::vector<double> uninterrupted, resumed;
  std::string path;
  {
    TrainerService svc(options(dir.path(), std::make_shared<VirtualClock>()));
    const auto s = svc.create_session(kKey, {}, {}, "").session_id;
    const auto m = svc.create_model(kKey, {.session_id = s, .base_model = "kiln/tiny", .lora = {.rank = 4}});
    int64_t seq = 1;
    for (int i = 0; i < 2; ++i) {
      loss_of(wait_for(svc, kKey, svc.submit(kKey, m, seq++, fb(text))));
      wait_for(svc, kKey, svc.submit(kKey, m, seq++, step()));
    }
    path = std::get<SaveResult>(wait_for(svc, kKey, svc.submit(kKey, m, seq++, SaveWeightsRequest{"mid", std::nullopt, false})).result).path;
    for (int i = 0; i < 3; ++i) {
      uninterrupted.push_back(loss_of(wait_for(svc, kKey, svc.submit(kKey, m, seq++, fb(text)))));
      wait_for(svc, kKey, svc.submit(kKey, m, seq++, step()));
    }
  }
  TrainerService svc(options(dir.path(), std::make_shared<VirtualClock>(), 99));
  EXPECT_EQ(svc.list_user_checkpoints(kKey).size(), 1u);
  const auto s = svc.create_session(kKey, {}, {}, "").session_id;
  const auto m = svc.create_model(kKey, {.session_id = s, .base_model = "kiln/tiny", .lora = {.rank = 4}});
  int64_t seq = 1;
  ASSERT_EQ(wait_for(svc, kKey, svc.submit(kKey, m, seq++, LoadWeightsRequest{path, true, ""})).status, Status::done);
  for (int i = 0; i < 3; ++i) {
    resumed.push_back(loss_of(wait_for(svc, kKey, svc.submit(kKey, m, seq++, fb(text)))));
    wait_for(svc, kKey, svc.submit(kKey, m, seq++, step()));
  }
  EXPECT_EQ(resumed, uninterrupted);
}

}  // namespace
}  // namespace kiln::service
