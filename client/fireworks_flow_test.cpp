// The Fireworks flow end to end over loopback, as a user of the real service runs it: the control
// plane by plain HTTP (what TrainerJobManager sends), the trainer through Kiln's C++ client on the
// job's gateway URL (what FiretitanServiceClient does).
#include "http/test_fixture.hpp"  // first: Eigen before httplib.h (see http/routes.hpp)

#include "client/service_client.hpp"

namespace kiln::client {
namespace {

using http::testing::HttpTest;
using nlohmann::json;

ClientOptions quick() {
  ClientOptions o;
  o.retry.initial_delay_seconds = 0.01;
  o.retry.max_delay_seconds = 0.05;
  o.retry.budget_seconds = 5;
  o.heartbeat_seconds = 0;
  return o;
}

std::vector<Datum> batch() {
  std::vector<Datum> out;
  for (std::vector<int64_t> s : {std::vector<int64_t>{1, 5, 9, 13, 17, 21}, {2, 4, 8, 16, 32, 64}}) {
    Datum d;
    d.model_input.assign(s.begin(), s.end() - 1);
    d.loss_fn_inputs["target_tokens"] = TensorData::ints({s.begin() + 1, s.end()});
    out.push_back(std::move(d));
  }
  return out;
}

class FireworksFlowTest : public HttpTest {
 protected:
  std::string account;
  void SetUp() override {
    HttpTest::SetUp();
    account = get("/v1/accounts?pageSize=2").second["accounts"][0]["name"].get<std::string>().substr(9);
  }
  // TrainerJobManager.create_and_wait: create, then poll the job and the gateway's healthz; the
  // endpoint's base_url.
  std::string create_and_wait(const std::string& job, int64_t lora_rank) {
    auto [s, created] = post("/v1/accounts/" + account + "/rlorTrainerJobs?skipValidations=true&rlorTrainerJobId=" + job,
                             {{"serviceMode", true}, {"trainingConfig", {{"baseModel", "kiln/tiny"}, {"loraRank", lora_rank}, {"learningRate", 1e-2}}}});
    EXPECT_EQ(s, 200) << created;
    EXPECT_EQ(created["state"], "JOB_STATE_CREATING");
    const std::string gateway = "/training/v1/rlorTrainerJobs/" + account + "/" + job;
    for (int i = 0; i < 10; ++i)
      if (get("/v1/accounts/" + account + "/rlorTrainerJobs/" + job).second["state"] == "JOB_STATE_RUNNING" &&
          get(gateway + "/api/v1/healthz").first == 200)
        return server->base_url() + gateway;
    ADD_FAILURE() << "job " << job << " never became ready";
    return "";
  }
  json rows(const std::string& job) {
    return get("/v1/accounts/" + account + "/rlorTrainerJobs/" + job + "/checkpoints?pageSize=200").second["checkpoints"];
  }
  double train_step(TrainingClient& tc) {
    auto fb = tc.forward_backward(batch(), "cross_entropy");
    tc.optim_step({.learning_rate = 1e-2}).result();
    return fb.result().metrics.at("loss:sum");
  }
};

// Two jobs: each its own namespace; a cross_job:// load with the optimizer continues job A's
// descent in job B exactly as job A continues it.
TEST_F(FireworksFlowTest, JobsAreNamespacesAndCrossJobResumeCarriesTheOptimizer) {
  // A Fireworks client holds one training client per base model and rank: a new one each.
  const auto trainer = [](const std::string& url) { return ServiceClient(url, "tml-test", quick()).create_training_client("kiln/tiny", 0); };
  const std::string url_a = create_and_wait("job-a", 0);
  auto ta = trainer(url_a);
  for (int i = 0; i < 3; ++i) train_step(ta);
  ta.save_state("step-3").result();
  // Full-parameter sampler saves: the first a base, the next a delta against it.
  const auto base = ta.save_weights_for_sampler_ext("step-3", "base");
  train_step(ta);
  const auto delta = ta.save_weights_for_sampler_ext("step-4", "delta");
  EXPECT_EQ(ta.list_checkpoints(), std::vector<std::string>{"step-3"});
  const json listed = rows("job-a");
  ASSERT_EQ(listed.size(), 3u) << listed;
  const std::string prefix = "accounts/" + account + "/rlorTrainerJobs/job-a/checkpoints/";
  EXPECT_EQ(listed[0]["name"], prefix + "step-3");
  EXPECT_EQ(listed[0]["checkpointType"], "CHECKPOINT_TYPE_TRAINING");
  EXPECT_EQ(listed[1]["name"], prefix + base.snapshot_name);
  EXPECT_EQ(listed[1]["checkpointType"], "CHECKPOINT_TYPE_INFERENCE_BASE");
  EXPECT_EQ(listed[1]["promotable"], true);
  EXPECT_EQ(listed[2]["name"], prefix + delta.snapshot_name);
  EXPECT_EQ(listed[2]["checkpointType"], "CHECKPOINT_TYPE_INFERENCE_ARC_V2");
  EXPECT_EQ(listed[2]["promotable"], false);  // a full-parameter delta is servable, not promotable

  const std::string url_b = create_and_wait("job-b", 0);
  EXPECT_TRUE(trainer(url_b).list_checkpoints().empty());
  EXPECT_TRUE(rows("job-b").empty());
  // A bare name does not reach into another job.
  auto stray = trainer(url_b);
  try {
    stray.load_state_with_optimizer("step-3").result();
    ADD_FAILURE() << "job B loaded job A's step-3 by bare name";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("checkpoint 'step-3' not found"), std::string::npos) << e.what();
  }
  // Resume job A's step-3 in job B with the optimizer; job A reloads it too. Both then take
  // the same steps and see the same losses, bit for bit.
  auto tb = trainer(url_b);
  tb.load_state_with_optimizer(TrainingClient::resolve_checkpoint_path("step-3", "job-a")).result();
  auto ta2 = trainer(url_a);
  ta2.load_state_with_optimizer("step-3").result();
  for (int i = 0; i < 2; ++i) EXPECT_EQ(train_step(tb), train_step(ta2)) << "step " << i;
  // Without the optimizer state the same step differs (Adam restarts from zero moments).
  auto fresh = trainer(url_b);
  fresh.load_state(TrainingClient::resolve_checkpoint_path("step-3", "job-a")).result();
  auto again = trainer(url_b);
  again.load_state_with_optimizer(TrainingClient::resolve_checkpoint_path("step-3", "job-a")).result();
  train_step(fresh);
  train_step(again);
  EXPECT_NE(train_step(fresh), train_step(again));
}

// The whole flow: create job → wait → train → save base + delta → list → promote → deploy →
// hot-load base then delta → sample (whole and streamed), the samples scored as the trainer's
// forward scores them.
TEST_F(FireworksFlowTest, TrainPromoteDeployHotLoadAndSampleTheTrainersWeights) {
  auto tc = ServiceClient(create_and_wait("flow", 0), "tml-test", quick()).create_training_client("kiln/tiny", 0);
  for (int i = 0; i < 3; ++i) train_step(tc);
  const auto base = tc.save_weights_for_sampler_ext("step-3", "base");
  const std::string job = "accounts/" + account + "/rlorTrainerJobs/flow";

  // Promote the base snapshot (FireworksClient.promote_checkpoint with async_promotion).
  auto [ps, promoted] = post("/v1/accounts/" + account + "/checkpoints/" + base.snapshot_name + ":promote",
                             {{"output_model", "accounts/" + account + "/models/flow-step-3"}, {"trainer_job_id", job},
                              {"base_model", "kiln/tiny"}, {"async_promotion", true}});
  ASSERT_EQ(ps, 200) << promoted;
  EXPECT_EQ(promoted["operation"]["done"], true);
  EXPECT_EQ(promoted["operation"]["response"]["kind"], "HF_BASE_MODEL");
  EXPECT_EQ(get("/v1/" + promoted["operation"]["name"].get<std::string>()).second["done"], true);
  EXPECT_EQ(get("/v1/accounts/" + account + "/models").second["models"][0]["name"], "accounts/" + account + "/models/flow-step-3");

  // Deploy PER_TRAINER and hot-load the base snapshot.
  auto [ds, deployment] = post("/v1/accounts/" + account + "/deployments?deploymentId=flow-deploy",
                               {{"baseModel", "kiln/tiny"}, {"enableHotLoad", true}, {"hotLoadTrainerJob", job},
                                {"minReplicaCount", 1}, {"maxReplicaCount", 1}, {"hotLoadBucketType", "FW_HOSTED"}});
  ASSERT_EQ(ds, 200) << deployment;
  EXPECT_EQ(deployment["state"], "READY");
  const std::string deployment_name = "accounts/" + account + "/deployments/flow-deploy";
  httplib::Headers hot_headers = {{"X-API-Key", "tml-test"}, {"fireworks-model", "kiln/tiny"}, {"fireworks-deployment", deployment_name}};
  const auto hot_load = [&](const json& body) {
    auto r = cli->Post("/hot_load/v1/models/hot_load", hot_headers, body.dump(), "application/json");
    return std::make_pair(r ? r->status : 0, r ? json::parse(r->body) : json());
  };
  const auto current = [&] {
    auto r = cli->Get("/hot_load/v1/models/hot_load", hot_headers);
    return r && r->status == 200 ? json::parse(r->body)["replicas"][0] : json();
  };
  ASSERT_EQ(hot_load({{"identity", base.snapshot_name}, {"reset_prompt_cache", true}}).first, 200);
  EXPECT_EQ(current()["current_snapshot_identity"], base.snapshot_name);
  EXPECT_EQ(current()["readiness"], true);

  // Train on, save a delta, hot-load it on its base; a delta naming the wrong base is refused.
  train_step(tc);
  const auto delta = tc.save_weights_for_sampler_ext("step-4", "delta");
  const json meta = {{"previous_snapshot_identity", base.snapshot_name}, {"compression_format", "arc_v2"}, {"checksum_format", "alder32"}};
  auto [ws, wrong] = hot_load({{"identity", delta.snapshot_name},
                               {"incremental_snapshot_metadata", {{"previous_snapshot_identity", "step-0-deadbeef"}, {"compression_format", "arc_v2"}}}});
  EXPECT_EQ(ws, 400);
  EXPECT_NE(wrong["detail"].get<std::string>().find("expects the deployment to hold 'step-0-deadbeef'"), std::string::npos) << wrong;
  EXPECT_EQ(current()["current_snapshot_identity"], base.snapshot_name);  // unchanged
  ASSERT_EQ(hot_load({{"identity", delta.snapshot_name}, {"incremental_snapshot_metadata", meta}}).first, 200);
  EXPECT_EQ(current()["current_snapshot_identity"], delta.snapshot_name);

  // Sample the deployment with token ids (DeploymentSampler's request) and score the sample with
  // the trainer's forward: the same weights, so the same log-probabilities.
  const std::vector<int64_t> prompt = {1, 5, 9};
  const json request = {{"model", deployment_name}, {"prompt", prompt}, {"max_tokens", 6}, {"temperature", 0.7},
                        {"top_p", 1.0}, {"top_k", 0}, {"seed", 3}, {"logprobs", true}, {"raw_output", true}};
  auto [cs, completion] = post("/inference/v1/completions", request);
  ASSERT_EQ(cs, 200) << completion;
  const json choice = completion["choices"][0];
  const std::vector<int64_t> tokens = choice["raw_output"]["completion_token_ids"];
  ASSERT_EQ(tokens.size(), choice["logprobs"]["content"].size());
  ASSERT_FALSE(tokens.empty());
  EXPECT_EQ(completion["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(completion["usage"]["completion_tokens"], tokens.size());
  std::vector<int64_t> full = prompt;
  full.insert(full.end(), tokens.begin(), tokens.end());
  Datum d;
  d.model_input.assign(full.begin(), full.end() - 1);
  d.loss_fn_inputs["target_tokens"] = TensorData::ints({full.begin() + 1, full.end()});
  const auto scored = tc.forward({d}).result().loss_fn_outputs[0].at("logprobs").data;
  for (size_t i = 0; i < tokens.size(); ++i)
    EXPECT_NEAR(choice["logprobs"]["content"][i]["logprob"].get<double>(), scored[prompt.size() - 1 + i], 1e-4) << "token " << i;

  // Streamed (the SDK's form): the same tokens and log-probabilities as server-sent events.
  json streamed = request;
  streamed["stream"] = true;
  auto sse = cli->Post("/inference/v1/completions", streamed.dump(), "application/json");
  ASSERT_TRUE(sse);
  ASSERT_EQ(sse->status, 200) << sse->body;
  EXPECT_EQ(sse->get_header_value("Content-Type"), "text/event-stream");
  std::vector<int64_t> stream_tokens;
  std::vector<double> stream_logprobs;
  json last_raw;
  const auto [chunks, done] = sse_chunks(sse->body);
  for (const json& chunk : chunks) {
    for (const auto& c : chunk["choices"]) {
      for (const auto& e : c["logprobs"]["content"]) {
        stream_tokens.push_back(e["token_id"]);
        stream_logprobs.push_back(e["logprob"]);
      }
      if (c.contains("raw_output")) last_raw = c["raw_output"];
    }
  }
  EXPECT_TRUE(done);
  EXPECT_EQ(stream_tokens, tokens);
  EXPECT_EQ(last_raw["completion_token_ids"], json(tokens));
  for (size_t i = 0; i < tokens.size(); ++i) EXPECT_NEAR(stream_logprobs[i], scored[prompt.size() - 1 + i], 1e-4);

  // The promoted model is a model of the account: completions serve it by name.
  auto [ms, from_model] = post("/inference/v1/completions", {{"model", "accounts/" + account + "/models/flow-step-3"},
                                                             {"prompt", prompt}, {"max_tokens", 2}, {"temperature", 0}});
  EXPECT_EQ(ms, 200) << from_model;
}

}  // namespace
}  // namespace kiln::client
