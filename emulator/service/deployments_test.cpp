#include "service/deployments.hpp"

#include <gtest/gtest.h>

#include "error_of.hpp"
#include "model/init.hpp"
#include "service/test_util.hpp"

namespace kiln::service {
namespace {

using kiln::testing::error_of;
using nlohmann::json;

struct DeploymentsTest : ::testing::Test {
  testing::TempDir dir;
  std::shared_ptr<VirtualClock> clock = std::make_shared<VirtualClock>();
  Deployments::Options opts{5, dir.path() + "/deployments.json"};
  Deployments deployments{clock, model::ModelRegistry::builtin(), opts};
  std::map<std::string, Snapshot> snapshots;  // what the resolver finds, by identity

  Deployments::JobCheck job(const std::string& id) {
    if (id == "job-a") return {true, ""};
    if (id == "job-per-deployment") return {true, "accounts/acct/deployments/other"};
    return {false, ""};
  }
  json create(const std::string& id, json body) {
    return deployments.create("acct", id, body, [&](const std::string& j) { return job(j); },
                              [](const std::string& m) { return m == "kiln/tiny"; });
  }
  json hot_load(const std::string& identity, json meta = json()) {
    json body = {{"identity", identity}};
    if (!meta.is_null()) body["incremental_snapshot_metadata"] = meta;
    return deployments.hot_load("acct", "accounts/acct/deployments/d", "kiln/tiny", body,
                                [&](const Deployment&, const std::string& id) {
                                  auto it = snapshots.find(id);
                                  if (it == snapshots.end()) throw NotFound("snapshot '" + id + "' not found");
                                  return it->second;
                                });
  }
  Snapshot snapshot(const std::string& id, const std::string& anchor = "") {
    Snapshot s{id, "kiln/tiny", "tinker://run/sampler_weights/" + id, !anchor.empty(), anchor, nullptr};
    const auto& config = model::ModelRegistry::builtin().get("kiln/tiny").config;
    s.weights = std::make_shared<const model::Transformer<float>>(
        model::Transformer<float>::frozen(config, model::shared_base_weights<float>(config, "kiln/tiny", 0)));
    return s;
  }
};

TEST_F(DeploymentsTest, AHotLoadLoadsForItsSecondsThenServesAndADeltaNeedsItsBase) {
  create("d", {{"baseModel", "kiln/tiny"}, {"enableHotLoad", true}, {"hotLoadTrainerJob", "accounts/acct/rlorTrainerJobs/job-a"}});
  EXPECT_EQ(deployments.hot_load_status("acct", "accounts/acct/deployments/d")["replicas"][0]["loading_state"]["stage"], "pending");
  EXPECT_EQ(deployments.serving("acct", "accounts/acct/deployments/d").first, nullptr);  // its base model until a load
  snapshots["base-1"] = snapshot("base-1");
  snapshots["delta-2"] = snapshot("delta-2", "base-1");
  snapshots["delta-x"] = snapshot("delta-x", "base-0");
  hot_load("base-1");
  EXPECT_NE(error_of<TooEarly>([&] { deployments.hot_load_status("acct", "accounts/acct/deployments/d"); }).find("still hot-loading"),
            std::string::npos);
  EXPECT_NE(error_of<TooEarly>([&] { deployments.serving("acct", "accounts/acct/deployments/d"); }).find("retry"), std::string::npos);
  clock->advance_seconds(5);
  json replica = deployments.hot_load_status("acct", "accounts/acct/deployments/d")["replicas"][0];
  EXPECT_EQ(replica["current_snapshot_identity"], "base-1");
  EXPECT_EQ(replica["readiness"], true);
  EXPECT_NE(deployments.serving("acct", "accounts/acct/deployments/d").first, nullptr);
  // A delta whose chain is not the deployment's is refused, and the base keeps serving.
  const json meta = {{"previous_snapshot_identity", "base-1"}, {"compression_format", "arc_v2"}};
  EXPECT_NE(error_of<InvalidRequest>([&] { hot_load("delta-x", meta); }).find("applies to base 'base-0'"), std::string::npos);
  EXPECT_NE(error_of<InvalidRequest>([&] { hot_load("base-1", meta); }).find("not a delta"), std::string::npos);
  replica = deployments.hot_load_status("acct", "accounts/acct/deployments/d")["replicas"][0];
  EXPECT_EQ(replica["current_snapshot_identity"], "base-1");
  EXPECT_EQ(replica["loading_state"]["stage"], "error");
  EXPECT_EQ(replica["loading_state"]["target_snapshot_identity"], "base-1");
  hot_load("delta-2", meta);
  clock->advance_seconds(5);
  replica = deployments.hot_load_status("acct", "accounts/acct/deployments/d")["replicas"][0];
  EXPECT_EQ(replica["current_snapshot_identity"], "delta-2");
  EXPECT_EQ(replica["base_snapshot_identity"], "base-1");
  EXPECT_NE(error_of<NotFound>([&] { hot_load("nope"); }).find("snapshot 'nope' not found"), std::string::npos);
}

TEST_F(DeploymentsTest, CreatesAreCheckedAndTheWeightSyncScopesDoNotMix) {
  EXPECT_NE(error_of<InvalidRequest>([&] { create("d", {{"enableHotLoad", true}}); }).find("baseModel: required"), std::string::npos);
  EXPECT_NE(error_of<InvalidRequest>([&] { create("d", {{"baseModel", "other/model"}}); }).find("unknown model"), std::string::npos);
  EXPECT_NE(error_of<InvalidRequest>([&] {
              create("d", {{"baseModel", "kiln/tiny"}, {"hotLoadTrainerJob", "accounts/acct/rlorTrainerJobs/job-per-deployment"}});
            }).find("use one weight-sync scope"),
            std::string::npos);
  EXPECT_NE(error_of<InvalidRequest>([&] {
              create("d", {{"baseModel", "kiln/tiny"}, {"hotLoadTrainerJob", "accounts/acct/rlorTrainerJobs/job-zz"}});
            }).find("no trainer job"),
            std::string::npos);
  EXPECT_NE(error_of<InvalidRequest>([&] { create("Bad_Id", {{"baseModel", "kiln/tiny"}}); }).find("deploymentId"), std::string::npos);
  EXPECT_TRUE(deployments.ids("acct").empty());
  create("d", {{"baseModel", "kiln/tiny"}});
  EXPECT_NE(error_of<Conflict>([&] { create("d", {{"baseModel", "kiln/tiny"}}); }).find("already exists"), std::string::npos);
  EXPECT_NE(error_of<InvalidRequest>([&] { hot_load("base-1"); }).find("enableHotLoad"), std::string::npos);
}

TEST_F(DeploymentsTest, UpdatesFollowTheMaskAndDeploymentsSurviveARestartWithoutTheirSnapshot) {
  create("d", {{"baseModel", "kiln/tiny"}, {"enableHotLoad", true}, {"minReplicaCount", 0}});
  const json scaled = deployments.update("acct", "d", {{"minReplicaCount", 2}, {"maxReplicaCount", 3}, {"description", "x"}},
                                         "min_replica_count,max_replica_count");
  EXPECT_EQ(scaled["minReplicaCount"], 2);
  EXPECT_FALSE(scaled.contains("description"));  // not in the mask
  EXPECT_NE(error_of<InvalidRequest>([&] { deployments.update("acct", "d", {{"baseModel", "x"}}, ""); }).find("cannot change"),
            std::string::npos);
  snapshots["base-1"] = snapshot("base-1");
  hot_load("base-1");
  Deployments again(clock, model::ModelRegistry::builtin(), opts);
  EXPECT_EQ(again.get("acct", "d")["maxReplicaCount"], 3);
  EXPECT_EQ(again.hot_load_status("acct", "accounts/acct/deployments/d")["replicas"][0]["current_snapshot_identity"], nullptr);
  again.remove("acct", "d");
  EXPECT_NE(error_of<NotFound>([&] { again.get("acct", "d"); }).find("not found"), std::string::npos);
}

}  // namespace
}  // namespace kiln::service
