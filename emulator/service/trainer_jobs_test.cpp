#include "service/trainer_jobs.hpp"

#include <gtest/gtest.h>

#include "error_of.hpp"
#include "service/test_util.hpp"
#include "service/training_shapes.hpp"

namespace kiln::service {
namespace {

using kiln::testing::error_of;
using nlohmann::json;

json qwen_job(int64_t rank = 8) {
  return {{"serviceMode", true}, {"trainingConfig", {{"baseModel", "accounts/fireworks/models/qwen3-8b"}, {"loraRank", rank}, {"learningRate", 1e-4}}}};
}

struct JobsTest : ::testing::Test {
  testing::TempDir dir;
  std::shared_ptr<VirtualClock> clock = std::make_shared<VirtualClock>();
  TrainerJobs::Options opts{5, 60, dir.path() + "/jobs.json"};
  TrainerJobs jobs{clock, model::ModelRegistry::builtin(), opts};
};

TEST_F(JobsTest, ACreatedJobBootsOnTheClockThenRunsAndTakesCalls) {
  const json j = jobs.create("acct", "job-a", qwen_job(), "");
  EXPECT_EQ(j["name"], "accounts/acct/rlorTrainerJobs/job-a");
  EXPECT_EQ(j["state"], job_state::creating);
  EXPECT_EQ(j["trainingConfig"]["loraRank"], 8);
  EXPECT_NE(error_of<Unavailable>([&] { jobs.admit("acct", "job-a"); }).find("JOB_STATE_CREATING"), std::string::npos);
  clock->advance_seconds(5);
  EXPECT_EQ(jobs.get("acct", "job-a")["state"], job_state::running);
  EXPECT_EQ(jobs.admit("acct", "job-a").base_model, "accounts/fireworks/models/qwen3-8b");
  // Another account does not see it.
  EXPECT_NE(error_of<NotFound>([&] { jobs.get("other", "job-a"); }).find("not found"), std::string::npos);
}

TEST_F(JobsTest, AnIdleJobPausesAndResumesThroughCreating) {
  jobs.create("acct", "job-a", qwen_job(), "");
  clock->advance_seconds(5 + 30);
  jobs.admit("acct", "job-a");  // activity at t=35
  clock->advance_seconds(59);
  EXPECT_EQ(jobs.get("acct", "job-a")["state"], job_state::running);
  clock->advance_seconds(1);
  const json paused = jobs.get("acct", "job-a");
  EXPECT_EQ(paused["state"], job_state::paused);
  EXPECT_NE(paused["statusMessage"].get<std::string>().find("60 s without activity"), std::string::npos);
  EXPECT_NE(error_of<Conflict>([&] { jobs.admit("acct", "job-a"); }).find(":resume"), std::string::npos);
  EXPECT_EQ(jobs.resume("acct", "job-a")["state"], job_state::creating);
  clock->advance_seconds(5);
  EXPECT_EQ(jobs.get("acct", "job-a")["state"], job_state::running);
}

TEST_F(JobsTest, AJobCanTurnOffTheInactivityCleanupOrSetItsOwnTimeout) {
  json keep = qwen_job();
  keep["disableInactivityCleanup"] = true;
  jobs.create("acct", "keep", keep, "");
  json short_idle = qwen_job();
  short_idle["inactivityTimeout"] = "10s";
  jobs.create("acct", "short", short_idle, "");
  clock->advance_seconds(16);
  EXPECT_EQ(jobs.get("acct", "short")["state"], job_state::paused);
  clock->advance_seconds(1000);
  EXPECT_EQ(jobs.get("acct", "keep")["state"], job_state::running);
}

TEST_F(JobsTest, ADeletedJobIsATombstoneWhoseIdCannotBeReused) {
  jobs.create("acct", "job-a", qwen_job(), "");
  EXPECT_NE(error_of<Conflict>([&] { jobs.create("acct", "job-a", qwen_job(), ""); }).find("already exists"), std::string::npos);
  jobs.remove("acct", "job-a");
  EXPECT_EQ(jobs.get("acct", "job-a")["state"], job_state::deleted);
  EXPECT_NE(error_of<Conflict>([&] { jobs.create("acct", "job-a", qwen_job(), ""); }).find("cannot be reused"), std::string::npos);
  EXPECT_NE(error_of<NotFound>([&] { jobs.admit("acct", "job-a"); }).find("was deleted"), std::string::npos);
  EXPECT_NE(error_of<Conflict>([&] { jobs.resume("acct", "job-a"); }).find("cannot be resumed"), std::string::npos);
}

TEST_F(JobsTest, BadCreatesNameTheFieldAndCreateNothing) {
  const auto bad = [&](json body, const std::string& shape = "", const std::string& id = "job-x") {
    return error_of<Error>([&] { jobs.create("acct", id, body, shape); });
  };
  EXPECT_NE(bad(qwen_job(), "", "Bad_Id").find("rlorTrainerJobId"), std::string::npos);
  EXPECT_NE(bad({{"trainingConfig", {{"loraRank", 0}}}}).find("trainingConfig.baseModel: required"), std::string::npos);
  EXPECT_NE(bad({{"trainingConfig", {{"baseModel", "no/such-model"}}}}).find("unknown base model 'no/such-model'"), std::string::npos);
  EXPECT_NE(bad(qwen_job(-1)).find("trainingConfig.loraRank"), std::string::npos);
  json ctx = qwen_job();
  ctx["trainingConfig"]["maxContextLength"] = 1000;
  EXPECT_NE(bad(ctx).find("multiple of 16"), std::string::npos);
  json dur = qwen_job();
  dur["inactivityTimeout"] = "30m";
  EXPECT_NE(bad(dur).find("inactivityTimeout: expected a duration"), std::string::npos);
  EXPECT_NE(bad(qwen_job(), "accounts/fireworks/trainingShapes/nope").find("no training shape"), std::string::npos);
  // A LoRA rank on a full-parameter shape, and the reverse.
  EXPECT_NE(bad(qwen_job(8), "accounts/fireworks/trainingShapes/qwen3-8b-128k").find("needs loraRank 0"), std::string::npos);
  EXPECT_NE(bad(qwen_job(0), "accounts/fireworks/trainingShapes/qwen3-8b-128k-lora").find("needs loraRank > 0"), std::string::npos);
  EXPECT_TRUE(jobs.ids("acct").empty());
}

TEST_F(JobsTest, AShapeFixesTheContextAndTheVersion) {
  const json j = jobs.create("acct", "shaped", qwen_job(0), "accounts/fireworks/trainingShapes/qwen3-8b-128k");
  EXPECT_EQ(j["trainingConfig"]["maxContextLength"], 128000);
  EXPECT_EQ(j["trainingShape"], "accounts/fireworks/trainingShapes/qwen3-8b-128k/versions/vnuk8fdq");
  EXPECT_TRUE(find_training_shape("accounts/fireworks/trainingShapes/qwen3-8b-128k/versions/vnuk8fdq"));
  EXPECT_FALSE(find_training_shape("accounts/fireworks/trainingShapes/qwen3-8b-128k/versions/other"));
}

TEST_F(JobsTest, JobsSurviveARestartAndListNewestFirstInPages) {
  for (const char* id : {"j1", "j2", "j3"}) {
    jobs.create("acct", id, qwen_job(), "");
    clock->advance_seconds(1);
  }
  jobs.remove("acct", "j2");
  TrainerJobs again(clock, model::ModelRegistry::builtin(), opts);
  EXPECT_EQ(again.get("acct", "j2")["state"], job_state::deleted);
  const json page1 = again.list("acct", 2, "");
  ASSERT_EQ(page1["rlorTrainerJobs"].size(), 2u);
  EXPECT_EQ(page1["rlorTrainerJobs"][0]["name"], "accounts/acct/rlorTrainerJobs/j3");
  const json page2 = again.list("acct", 2, page1["nextPageToken"]);
  ASSERT_EQ(page2["rlorTrainerJobs"].size(), 1u);
  EXPECT_EQ(page2["rlorTrainerJobs"][0]["name"], "accounts/acct/rlorTrainerJobs/j1");
  EXPECT_FALSE(page2.contains("nextPageToken"));
}

}  // namespace
}  // namespace kiln::service
