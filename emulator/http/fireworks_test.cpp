// The Fireworks control plane over loopback (protocol.md §W13), requests shaped as the
// Fireworks SDK 1.2.3 sends them: account resolution, trainer jobs and their gateway, checkpoint
// rows, training shapes.
#include "http/test_fixture.hpp"

namespace kiln::http {
namespace {

using nlohmann::json;
using testing::HttpTest;

class FireworksTest : public HttpTest {
 protected:
  std::string account;
  void SetUp() override {
    HttpTest::SetUp();
    auto [s, body] = get("/v1/accounts?pageSize=2");
    ASSERT_EQ(s, 200) << body;
    ASSERT_EQ(body["accounts"].size(), 1u);
    account = body["accounts"][0]["name"].get<std::string>().substr(std::string("accounts/").size());
  }
  json job_body(int64_t rank = 4) {
    return {{"serviceMode", true}, {"keepAlive", false}, {"dataset", ""},
            {"trainingConfig", {{"baseModel", "kiln/tiny"}, {"loraRank", rank}, {"learningRate", 1e-3}}}};
  }
  std::pair<int, json> create_job(const std::string& id, const json& body, const std::string& query = "") {
    return post("/v1/accounts/" + account + "/rlorTrainerJobs?skipValidations=true&rlorTrainerJobId=" + id + query, body);
  }
  std::string gateway(const std::string& job) { return "/training/v1/rlorTrainerJobs/" + account + "/" + job; }
  // A LoRA model of kiln/tiny created through a job's gateway; returns its id.
  std::string job_model(const std::string& job) {
    auto [s, session] = post(gateway(job) + "/api/v1/create_session",
                             {{"tags", json::array()}, {"user_metadata", json::object()}, {"sdk_version", "0.23.0"}, {"type", "create_session"}});
    EXPECT_EQ(s, 200) << session;
    auto [c, fut] = post(gateway(job) + "/api/v1/create_model",
                         {{"session_id", session["session_id"]}, {"model_seq_id", 0}, {"base_model", "kiln/tiny"},
                          {"lora_config", {{"rank", 4}}}, {"type", "create_model"}});
    EXPECT_EQ(c, 200) << fut;
    return result(fut["request_id"], gateway(job))["model_id"];
  }
  void save_state(const std::string& job, const std::string& model, const std::string& name, int seq) {
    auto [s, fut] = post(gateway(job) + "/api/v1/save_weights",
                         {{"model_id", model}, {"path", name}, {"seq_id", seq}, {"type", "save_weights"}});
    ASSERT_EQ(s, 200) << fut;
    EXPECT_TRUE(result(fut["request_id"], gateway(job)).contains("path"));
  }
};

TEST_F(FireworksTest, OneAccountPerKeyAndOtherAccountsAreUnknown) {
  EXPECT_EQ(account.rfind("tenant-", 0), 0u) << account;
  EXPECT_EQ(get("/v1/accounts/" + account).first, 200);
  auto [s, body] = get("/v1/accounts/someone-else/rlorTrainerJobs");
  EXPECT_EQ(s, 404);
  EXPECT_NE(body["detail"].get<std::string>().find("account 'someone-else' not found"), std::string::npos);
  cli->set_default_headers({});
  EXPECT_EQ(get("/v1/accounts?pageSize=2").first, 401);
}

TEST_F(FireworksTest, AJobIsCreatedGotListedAndItsTrainerAnswersThroughTheGateway) {
  auto [s, job] = create_job("job-a", job_body());
  ASSERT_EQ(s, 200) << job;
  EXPECT_EQ(job["name"], "accounts/" + account + "/rlorTrainerJobs/job-a");
  EXPECT_EQ(job["trainingConfig"]["baseModel"], "kiln/tiny");
  EXPECT_EQ(job["keepAlive"], false);  // what the client sent comes back
  auto [g, got] = get("/v1/accounts/" + account + "/rlorTrainerJobs/job-a");
  ASSERT_EQ(g, 200);
  EXPECT_EQ(got["state"], "JOB_STATE_RUNNING");  // the default boot takes no time
  // The SDK's readiness probe, with the key.
  EXPECT_EQ(get(gateway("job-a") + "/api/v1/healthz").first, 200);
  auto [l, list] = get("/v1/accounts/" + account + "/rlorTrainerJobs");
  ASSERT_EQ(l, 200);
  EXPECT_EQ(list["rlorTrainerJobs"][0]["name"], job["name"]);
  // A retried create (same client-generated id) is 409; the SDK then fetches the job.
  auto [again, conflict] = create_job("job-a", job_body());
  EXPECT_EQ(again, 409);
  EXPECT_NE(conflict["detail"].get<std::string>().find("already exists"), std::string::npos);
  // A job nobody created, and a job of another account, are not found at the gateway.
  EXPECT_EQ(get(gateway("job-zz") + "/api/v1/healthz").first, 404);
  EXPECT_EQ(get("/training/v1/rlorTrainerJobs/other/job-a/api/v1/healthz").first, 404);
}

TEST_F(FireworksTest, AJobsTrainerServesItsBaseModelAndAForwardOnlyJobDoesNotTrain) {
  ASSERT_EQ(create_job("job-a", job_body()).first, 200);
  auto [s, session] = post(gateway("job-a") + "/api/v1/create_session",
                           {{"tags", json::array()}, {"user_metadata", json::object()}, {"sdk_version", "0.23.0"}, {"type", "create_session"}});
  ASSERT_EQ(s, 200);
  auto [c, refused] = post(gateway("job-a") + "/api/v1/create_model", {{"session_id", session["session_id"]}, {"model_seq_id", 0},
                                                                       {"base_model", "kiln/small"}, {"type", "create_model"}});
  EXPECT_EQ(c, 400);
  EXPECT_NE(refused["detail"].get<std::string>().find("trains kiln/tiny; its trainer cannot create a model of 'kiln/small'"),
            std::string::npos) << refused;
  json reference = job_body(0);
  reference["forwardOnly"] = true;
  ASSERT_EQ(create_job("ref", reference).first, 200);
  const std::string m = job_model("ref");
  auto [f, forward] = post(gateway("ref") + "/api/v1/forward", {{"forward_input", {{"data", {datum({1, 2, 3})}}, {"loss_fn", "cross_entropy"}}},
                                                               {"model_id", m}, {"seq_id", 1}});
  ASSERT_EQ(f, 200) << forward;
  EXPECT_TRUE(result(forward["request_id"], gateway("ref")).contains("loss_fn_outputs"));
  auto [t, trained] = post(gateway("ref") + "/api/v1/forward_backward",
                           {{"forward_backward_input", {{"data", {datum({1, 2, 3})}}, {"loss_fn", "cross_entropy"}}}, {"model_id", m}, {"seq_id", 2}});
  EXPECT_EQ(t, 400);
  EXPECT_NE(trained["detail"].get<std::string>().find("forward-only"), std::string::npos);
  // Listings of what exists: deployments and models (empty), jobs.
  EXPECT_EQ(get("/v1/accounts/" + account + "/deployments").second["deployments"], json::array());
  EXPECT_EQ(get("/v1/accounts/" + account + "/models").second["models"], json::array());
  EXPECT_EQ(get("/v1/accounts/" + account + "/models/none").first, 404);
  EXPECT_EQ(get("/v1/accounts/" + account + "/rlorTrainerJobs").second["totalSize"], 2);
}

TEST_F(FireworksTest, BadCreatesAreRefusedNamingTheField) {
  json bad = job_body();
  bad["trainingConfig"]["baseModel"] = "nope/model";
  auto [s1, b1] = create_job("job-b", bad);
  EXPECT_EQ(s1, 400);
  EXPECT_NE(b1["detail"].get<std::string>().find("trainingConfig.baseModel: unknown base model 'nope/model'"), std::string::npos);
  auto [s2, b2] = create_job("job-b", job_body(), "&trainingShape=accounts/fireworks/trainingShapes/nope");
  EXPECT_EQ(s2, 404);
  EXPECT_NE(b2["detail"].get<std::string>().find("no training shape"), std::string::npos);
  EXPECT_EQ(get("/v1/accounts/" + account + "/rlorTrainerJobs/job-b").first, 404);  // nothing was created
}

TEST_F(FireworksTest, EachJobIsANamespaceOfCheckpointsListedOldestFirst) {
  ASSERT_EQ(create_job("job-a", job_body()).first, 200);
  ASSERT_EQ(create_job("job-b", job_body()).first, 200);
  const std::string a = job_model("job-a"), b = job_model("job-b");
  save_state("job-a", a, "step-1", 1);
  save_state("job-a", a, "step-2", 2);
  save_state("job-b", b, "only-b", 1);
  auto [s, sampler] = post(gateway("job-a") + "/api/v1/save_weights_for_sampler",
                           {{"model_id", a}, {"path", "step-2-0a1b2c3d"}, {"seq_id", 3}, {"checkpoint_type", "base"},
                            {"type", "save_weights_for_sampler"}});
  ASSERT_EQ(s, 200) << sampler;
  result(sampler["request_id"], gateway("job-a"));
  // The trainer's own list (Fireworks GET /api/v1/list_checkpoints) is the job's.
  EXPECT_EQ(get(gateway("job-a") + "/api/v1/list_checkpoints").second["checkpoints"], json({"step-1", "step-2"}));
  EXPECT_EQ(get(gateway("job-b") + "/api/v1/list_checkpoints").second["checkpoints"], json({"only-b"}));
  EXPECT_EQ(get("/api/v1/list_checkpoints").second["checkpoints"], json::array());  // the default job's
  // Control-plane rows, in pages, oldest first.
  const std::string rows = "/v1/accounts/" + account + "/rlorTrainerJobs/job-a/checkpoints";
  auto [p1s, p1] = get(rows + "?pageSize=2");
  ASSERT_EQ(p1s, 200) << p1;
  ASSERT_EQ(p1["checkpoints"].size(), 2u);
  EXPECT_EQ(p1["checkpoints"][0]["name"], "accounts/" + account + "/rlorTrainerJobs/job-a/checkpoints/step-1");
  EXPECT_EQ(p1["checkpoints"][0]["checkpointType"], "CHECKPOINT_TYPE_TRAINING_LORA");
  EXPECT_EQ(p1["checkpoints"][0]["promotable"], false);
  auto [p2s, p2] = get(rows + "?pageSize=2&pageToken=" + p1["nextPageToken"].get<std::string>());
  ASSERT_EQ(p2["checkpoints"].size(), 1u);
  EXPECT_EQ(p2["checkpoints"][0]["name"], "accounts/" + account + "/rlorTrainerJobs/job-a/checkpoints/step-2-0a1b2c3d");
  EXPECT_EQ(p2["checkpoints"][0]["checkpointType"], "CHECKPOINT_TYPE_INFERENCE_LORA");
  EXPECT_EQ(p2["checkpoints"][0]["promotable"], true);
  EXPECT_FALSE(p2.contains("nextPageToken"));
  // Job B cannot load job A's checkpoint by bare name; cross_job:// names it.
  const std::string b2 = job_model("job-b");
  auto [l1, f1] = post(gateway("job-b") + "/api/v1/load_weights",
                       {{"model_id", b2}, {"path", "step-2"}, {"seq_id", 1}, {"optimizer", true}, {"type", "load_weights"}});
  ASSERT_EQ(l1, 200);
  const json refused = result(f1["request_id"], gateway("job-b"));
  EXPECT_EQ(refused["category"], "user") << refused;
  EXPECT_NE(refused["error"].get<std::string>().find("checkpoint 'step-2' not found"), std::string::npos) << refused;
  auto [l2, f2] = post(gateway("job-b") + "/api/v1/load_weights",
                       {{"model_id", job_model("job-b")}, {"path", "cross_job://job-a/step-2"}, {"seq_id", 1}, {"optimizer", true}, {"type", "load_weights"}});
  ASSERT_EQ(l2, 200);
  EXPECT_FALSE(result(f2["request_id"], gateway("job-b")).contains("error"));
  auto [l3, f3] = post(gateway("job-b") + "/api/v1/load_weights",
                       {{"model_id", job_model("job-b")}, {"path", "cross_job://job-zz/step-2"}, {"seq_id", 1}, {"optimizer", true}, {"type", "load_weights"}});
  ASSERT_EQ(l3, 200);
  EXPECT_NE(result(f3["request_id"], gateway("job-b")).value("error", "").find("trainer job 'job-zz' of this account has no checkpoint named 'step-2'"),
            std::string::npos);
}

TEST_F(FireworksTest, AnIdleJobRefusesCallsUntilResumedAndADeletedOneIsATombstone) {
  json body = job_body();
  body["inactivityTimeout"] = "600s";
  ASSERT_EQ(create_job("job-a", body).first, 200);
  const std::string m = job_model("job-a");
  save_state("job-a", m, "kept", 1);
  clock->advance_seconds(600);
  EXPECT_EQ(get("/v1/accounts/" + account + "/rlorTrainerJobs/job-a").second["state"], "JOB_STATE_PAUSED");
  auto [h, refused] = get(gateway("job-a") + "/api/v1/healthz");
  EXPECT_EQ(h, 409);
  EXPECT_NE(refused["detail"].get<std::string>().find(":resume"), std::string::npos);
  auto [r, resumed] = post("/v1/accounts/" + account + "/rlorTrainerJobs/job-a:resume", json::object());
  ASSERT_EQ(r, 200) << resumed;
  EXPECT_EQ(get(gateway("job-a") + "/api/v1/healthz").first, 200);
  // The job keeps its namespace across the pause: a new session loads "kept" by bare name.
  const std::string m2 = job_model("job-a");
  auto [l, f] = post(gateway("job-a") + "/api/v1/load_weights",
                     {{"model_id", m2}, {"path", "kept"}, {"seq_id", 1}, {"optimizer", true}, {"type", "load_weights"}});
  ASSERT_EQ(l, 200);
  EXPECT_FALSE(result(f["request_id"], gateway("job-a")).contains("error"));
  // Deleted: gone from the gateway, still listed (a tombstone keeps its checkpoints), id not reusable.
  cli->Delete(("/v1/accounts/" + account + "/rlorTrainerJobs/job-a").c_str());
  EXPECT_EQ(get("/v1/accounts/" + account + "/rlorTrainerJobs/job-a").second["state"], "JOB_STATE_DELETED");
  EXPECT_EQ(get(gateway("job-a") + "/api/v1/healthz").first, 404);
  EXPECT_EQ(get("/v1/accounts/" + account + "/rlorTrainerJobs/job-a/checkpoints").second["checkpoints"].size(), 1u);
  EXPECT_EQ(create_job("job-a", job_body()).first, 409);
}

TEST_F(FireworksTest, TrainingShapesResolveAsTheSdkAsksForThem) {
  auto [s, versions] = get("/v1/accounts/fireworks/trainingShapes/qwen3-8b-128k/versions?filter=latest_validated%3Dtrue&pageSize=1");
  ASSERT_EQ(s, 200) << versions;
  const json v = versions["trainingShapeVersions"][0];
  EXPECT_EQ(v["name"], "accounts/fireworks/trainingShapes/qwen3-8b-128k/versions/vnuk8fdq");
  EXPECT_EQ(v["snapshot"]["trainerMode"], "POLICY_TRAINER");
  EXPECT_EQ(v["snapshot"]["maxSupportedContextLength"], 128000);
  EXPECT_EQ(get("/v1/" + v["name"].get<std::string>()).first, 200);
  EXPECT_EQ(get("/v1/accounts/fireworks/trainingShapes/nope/versions").first, 404);
  auto [c, job] = create_job("shaped", {{"trainingConfig", {{"baseModel", "accounts/fireworks/models/qwen3-8b"}, {"loraRank", 16}}}},
                             "&trainingShape=accounts/fireworks/trainingShapes/qwen3-8b-128k-lora");
  ASSERT_EQ(c, 200) << job;
  EXPECT_EQ(job["trainingConfig"]["maxContextLength"], 128000);
}

TEST_F(FireworksTest, ServerlessRefusesReferencesOtherThanBareNames) {
  const std::string serverless = "/training/v1/serverless";
  auto [s, session] = post(serverless + "/api/v1/create_session",
                           {{"tags", json::array()}, {"user_metadata", json::object()}, {"sdk_version", "0.23.0"}, {"type", "create_session"}});
  ASSERT_EQ(s, 200);
  const std::string session_id = session["session_id"];  // a lambda cannot capture a structured binding (clang)
  int model_seq = 0;
  const auto new_model = [&] {
    auto [c, fut] = post(serverless + "/api/v1/create_model", {{"session_id", session_id}, {"model_seq_id", model_seq++},
                                                               {"base_model", "kiln/tiny"}, {"lora_config", {{"rank", 4}}}, {"type", "create_model"}});
    EXPECT_EQ(c, 200);
    return result(fut["request_id"], serverless)["model_id"].get<std::string>();
  };
  const std::string m = new_model();
  for (const std::string& ref : std::vector<std::string>{"cross_job://job-a/step-1", "tinker://" + m + "/weights/step-1"}) {
    auto [l, f] = post(serverless + "/api/v1/load_weights",
                       {{"model_id", new_model()}, {"path", ref}, {"seq_id", 1}, {"optimizer", false}, {"type", "load_weights"}});
    ASSERT_EQ(l, 200);
    EXPECT_NE(result(f["request_id"], serverless).value("error", "").find("serverless trainers load checkpoints by bare name only"), std::string::npos)
        << ref;
  }
}

TEST_F(FireworksTest, PromotionRefusesWhatIsNotPromotableAndNamesTheField) {
  ASSERT_EQ(create_job("job-a", job_body()).first, 200);
  const std::string m = job_model("job-a");
  save_state("job-a", m, "state-1", 1);
  auto [s, sampler] = post(gateway("job-a") + "/api/v1/save_weights_for_sampler",
                           {{"model_id", m}, {"path", "snap-1"}, {"seq_id", 2}, {"type", "save_weights_for_sampler"}});
  ASSERT_EQ(s, 200);
  result(sampler["request_id"], gateway("job-a"));
  const auto promote = [&](const std::string& checkpoint, const std::string& model_id) {
    return post("/v1/accounts/" + account + "/checkpoints/" + checkpoint + ":promote",
                {{"output_model", "accounts/" + account + "/models/" + model_id},
                 {"trainer_job_id", "accounts/" + account + "/rlorTrainerJobs/job-a"}, {"base_model", "kiln/tiny"}});
  };
  auto [s1, b1] = promote("state-1", "m1");
  EXPECT_EQ(s1, 400);
  EXPECT_NE(b1["detail"].get<std::string>().find("CHECKPOINT_TYPE_TRAINING_LORA, which is not promotable"), std::string::npos) << b1;
  EXPECT_EQ(promote("nope", "m1").first, 404);
  auto [s2, b2] = promote("snap-1", "Bad_Id");
  EXPECT_EQ(s2, 400);
  EXPECT_NE(b2["detail"].get<std::string>().find("output_model"), std::string::npos);
  auto [s3, model] = promote("snap-1", "m1");
  ASSERT_EQ(s3, 200) << model;
  EXPECT_EQ(model["model"]["kind"], "HF_PEFT_ADDON");
  EXPECT_EQ(model["model"]["peftDetails"]["r"], 4);
  EXPECT_EQ(promote("snap-1", "m1").first, 409);
  EXPECT_EQ(get("/v1/accounts/" + account + "/models").second["models"].size(), 1u);
  // A promoted model is a base for a tinker sampling client too.
  auto [cs, created] = post("/api/v1/create_sampling_session", {{"session_id", session()}, {"sampling_session_seq_id", 0},
                                                                 {"base_model", "accounts/" + account + "/models/m1"}});
  EXPECT_EQ(cs, 200) << created;
}

TEST_F(FireworksTest, CompletionsCheckTheirFieldsAndAnswerValidUtf8) {
  const auto complete = [&](json body) { return post("/inference/v1/completions", body); };
  auto [s1, b1] = complete({{"model", "kiln/tiny"}, {"prompt", "hello"}});
  EXPECT_EQ(s1, 400);
  EXPECT_NE(b1["detail"].get<std::string>().find("prompt: a deployment's completions take token ids"), std::string::npos);
  EXPECT_NE(complete({{"model", "kiln/tiny"}, {"prompt", {1, 2}}, {"temperature", -1}}).second["detail"].get<std::string>().find("temperature"),
            std::string::npos);
  EXPECT_EQ(complete({{"model", "nobody/model"}, {"prompt", {1, 2}}}).first, 404);
  EXPECT_EQ(complete({{"model", "accounts/" + account + "/deployments/none"}, {"prompt", {1, 2}}}).first, 404);
  // The SDK's warm-up probe on a base model; the text of bytes that are not UTF-8 is U+FFFD.
  auto [s2, b2] = complete({{"model", "kiln/tiny"}, {"prompt", {1, 2}}, {"max_tokens", 4}, {"temperature", 0.0}, {"echo", true},
                            {"logprobs", 1}});
  ASSERT_EQ(s2, 200) << b2;
  EXPECT_EQ(b2["choices"][0]["raw_output"]["completion_token_ids"].size(), 2u + 4u);  // echo: prompt and completion
  EXPECT_EQ(b2["choices"][0]["logprobs"]["content"][0]["logprob"], 0.0);             // the first token has no context
  EXPECT_TRUE(b2["choices"][0]["logprobs"]["content"][1]["logprob"].is_number());
  auto [s3, b3] = complete({{"model", "kiln/tiny"}, {"prompt", {0xC3, 0xA9, 0xFF}}, {"max_tokens", 1}, {"echo", true}});
  ASSERT_EQ(s3, 200) << b3;
  EXPECT_EQ(b3["choices"][0]["text"].get<std::string>().substr(0, 5), "\xC3\xA9\xEF\xBF\xBD");  // é, then U+FFFD
}

TEST_F(FireworksTest, HotLoadNeedsItsHeadersAndAKnownDeployment) {
  auto r = cli->Post("/hot_load/v1/models/hot_load", json{{"identity", "x"}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->body.find("fireworks-deployment"), std::string::npos);
  httplib::Headers h = {{"X-API-Key", "tml-test"}, {"fireworks-deployment", "accounts/" + account + "/deployments/none"}};
  r = cli->Post("/hot_load/v1/models/hot_load", h, json{{"identity", "x"}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  ASSERT_EQ(post("/v1/accounts/" + account + "/deployments?deploymentId=d1", {{"baseModel", "kiln/tiny"}, {"enableHotLoad", true}}).first, 200);
  h = {{"X-API-Key", "tml-test"}, {"fireworks-deployment", "accounts/" + account + "/deployments/d1"}, {"fireworks-model", "kiln/tiny"}};
  r = cli->Post("/hot_load/v1/models/hot_load", h, json{{"identity", "never-saved"}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_NE(r->body.find("snapshot 'never-saved' not found"), std::string::npos) << r->body;
  auto patched = cli->Patch(("/v1/accounts/" + account + "/deployments/d1?updateMask=maxReplicaCount").c_str(),
                            json{{"maxReplicaCount", 4}}.dump(), "application/json");
  ASSERT_TRUE(patched);
  EXPECT_EQ(json::parse(patched->body)["maxReplicaCount"], 4);
  EXPECT_EQ(cli->Delete(("/v1/accounts/" + account + "/deployments/d1").c_str())->status, 200);
  EXPECT_EQ(get("/v1/accounts/" + account + "/deployments/d1").first, 404);
}

}  // namespace
}  // namespace kiln::http
