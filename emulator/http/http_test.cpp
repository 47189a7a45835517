// The HTTP API over loopback, with a real server and cpp-httplib's client.
#include "http/test_fixture.hpp"  // first: Eigen before httplib.h (see http/routes.hpp)

#include <zstd.h>

#include "tinker_public.pb.h"

#include <cstring>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace kiln::http {
namespace {

using namespace testing;

TEST_F(HttpTest, HandshakeEndpointsAnswerExactly) {
  EXPECT_EQ(post("/api/v1/client/config", {{"sdk_version", "0.25.0"}}).second["use_pyqwest_transport"], false);
  EXPECT_EQ(post("/api/v1/telemetry", {{"events", json::array()}}).second, (json{{"status", "accepted"}}));
  EXPECT_EQ(get("/api/v1/healthz").second, (json{{"status", "ok"}}));
  EXPECT_EQ(get("/some/prefix/api/v1/healthz").first, 200);  // a base URL may carry a path
  auto caps = get("/api/v1/get_server_capabilities").second["supported_models"];
  EXPECT_TRUE(std::any_of(caps.begin(), caps.end(), [](const json& m) { return m["model_name"] == "Qwen/Qwen3-8B"; }));
}

TEST_F(HttpTest, AuthIsRequiredAndBearerIsAccepted) {
  httplib::Client anon(server->base_url());
  auto r = anon.Post("/api/v1/create_session", "{}", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_TRUE(json::parse(r->body).contains("detail"));
  anon.set_default_headers({{"Authorization", "Bearer fw-key"}});
  r = anon.Post("/api/v1/create_session", "{}", "application/json");
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpTest, TrainingLoopOverJson) {
  const std::string m = model();
  EXPECT_NE(m.find(":train:0"), std::string::npos);
  const json fb = {{"forward_backward_input", {{"data", {datum({72, 105, 32, 75, 105, 108, 110})}}, {"loss_fn", "cross_entropy"}}},
                   {"model_id", m}, {"seq_id", 1}};
  auto [s1, f1] = post("/api/v1/forward_backward", fb);
  ASSERT_EQ(s1, 200) << f1;
  EXPECT_TRUE(f1["request_id"].is_string());
  EXPECT_EQ(post("/api/v1/forward_backward", fb).second["request_id"], f1["request_id"]);  // resubmission: same future
  const json out = result(f1["request_id"]);
  EXPECT_EQ(out["loss_fn_output_type"], "TorchLossReturn");
  EXPECT_EQ(out["loss_fn_outputs"][0]["logprobs"]["shape"], json::array({6}));
  EXPECT_GT(out["metrics"]["loss:sum"].get<double>(), 0.0);
  for (const auto& [k, v] : out["metrics"].items()) EXPECT_EQ(std::count(k.begin(), k.end(), ':'), 1) << k;

  auto [s2, f2] = post("/api/v1/optim_step", {{"adam_params", {{"learning_rate", 0.01}, {"beta1", 0.9}, {"beta2", 0.95},
                                                               {"eps", 1e-12}, {"weight_decay", 0.0}, {"grad_clip_norm", 0.0},
                                                               {"emit_grad_norm_metrics", true}}},
                                              {"model_id", m}, {"seq_id", 2}, {"type", "optim_step"}});
  ASSERT_EQ(s2, 200);
  EXPECT_GT(result(f2["request_id"])["metrics"]["grad_norm"].get<double>(), 0.0);

  auto [s3, f3] = post("/api/v1/save_weights", {{"model_id", m}, {"path", "step-1"}, {"seq_id", 3}, {"overwrite", false},
                                                {"type", "save_weights"}});
  ASSERT_EQ(s3, 200);
  const json saved = result(f3["request_id"]);
  EXPECT_EQ(saved["path"], "tinker://" + m + "/weights/step-1");

  auto [s4, runs] = get("/api/v1/training_runs");
  EXPECT_EQ(s4, 200);
  EXPECT_EQ(runs["cursor"]["total_count"], 1);
  auto [s5, ckpts] = get("/api/v1/training_runs/" + m + "/checkpoints");
  EXPECT_EQ(ckpts["checkpoints"][0]["checkpoint_id"], "weights/step-1");
  EXPECT_EQ(post("/api/v1/weights_info", {{"tinker_path", saved["path"]}}).second["lora_rank"], 4);
  EXPECT_EQ(get("/api/v1/list_checkpoints").second["checkpoints"], json::array({"step-1"}));
  auto put = cli->Put(("/api/v1/training_runs/" + m + "/checkpoints/weights/step-1/ttl").c_str(), R"({"ttl_seconds": 3600})",
                      "application/json");
  EXPECT_EQ(put->status, 200);
  auto del = cli->Delete(("/api/v1/training_runs/" + m + "/checkpoints/weights/step-1").c_str());
  EXPECT_EQ(del->status, 200);
  EXPECT_TRUE(get("/api/v1/checkpoints").second["checkpoints"].empty());
}

TEST_F(HttpTest, LongPollAnswers408WithTryAgainThenTheResult) {
  const std::string m = model();
  // seq 2 first: it waits for seq 1, so the poll times out with 408.
  auto [s, f] = post("/api/v1/forward", {{"forward_input", {{"data", {datum({1, 2, 3})}}, {"loss_fn", "cross_entropy"}}},
                                         {"model_id", m}, {"seq_id", 2}});
  ASSERT_EQ(s, 200);
  auto [poll_status, poll] = post("/api/v1/retrieve_future", {{"request_id", f["request_id"]}});
  EXPECT_EQ(poll_status, 408);
  EXPECT_EQ(poll, (json{{"type", "try_again"}, {"request_id", f["request_id"]}, {"queue_state", "active"}}));
  post("/api/v1/forward", {{"forward_input", {{"data", {datum({1, 2, 3})}}, {"loss_fn", "cross_entropy"}}},
                           {"model_id", m}, {"seq_id", 1}});
  EXPECT_TRUE(result(f["request_id"]).contains("loss_fn_outputs"));
}

TEST_F(HttpTest, ErrorsAreJsonWithTheRightStatus) {
  const std::string m = model();
  auto r = cli->Post("/api/v1/forward_backward", "{not json", "application/json");
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(json::parse(r->body)["detail"].get<std::string>().find("malformed JSON"), std::string::npos);
  auto [s1, b1] = post("/api/v1/forward_backward", {{"forward_backward_input", {{"data", {datum({1, 2})}}, {"loss_fn", "mse"}}},
                                                    {"model_id", m}, {"seq_id", 1}});
  EXPECT_EQ(s1, 400);
  EXPECT_NE(b1["detail"].get<std::string>().find("Unknown loss_fn 'mse'"), std::string::npos);
  auto [s2, b2] = post("/api/v1/retrieve_future", {{"request_id", "req-nope"}});
  EXPECT_EQ(s2, 404);
  EXPECT_EQ(b2["detail"], "Future not found");
  auto [s3, b3] = post("/api/v1/forward_backward", {{"forward_backward_input", {{"data", {datum({1, 300})}}, {"loss_fn", "cross_entropy"}}},
                                                    {"model_id", m}, {"seq_id", 2}});
  ASSERT_EQ(s3, 200);
  const json failed = result(b3["request_id"]);
  EXPECT_EQ(failed["category"], "user");
  EXPECT_NE(failed["error"].get<std::string>().find("token id 300 is out of range"), std::string::npos);
  auto big = cli->Post("/api/v1/forward_backward", std::string(2 << 20, ' '), "application/json");
  EXPECT_EQ(big->status, 413);
  EXPECT_TRUE(json::parse(big->body).contains("detail"));
  auto proto = cli->Post("/api/v1/optim_step", "\x0a\x00", "application/x-protobuf");
  EXPECT_EQ(proto->status, 415);
  auto bad_proto = cli->Post("/api/v1/forward_backward", "\xff\xff", "application/x-protobuf");
  EXPECT_EQ(bad_proto->status, 400);
  EXPECT_EQ(get("/api/v1/training_runs/nope:train:0").first, 404);
}

// A body whose fields have the wrong type is a 400 naming the field, never "malformed JSON"; and a
// submit refused while decoding still counts its seq_id as arrived (B1): seq 2 runs at once
// (the virtual clock never reaches the gap's grace period).
TEST_F(HttpTest, WrongTypesAre400sNamingTheFieldAndTheirSeqIdArrives) {
  const std::string m = model();
  json bad = {{"forward_backward_input", {{"data", {datum({1, 2})}}, {"loss_fn", "cross_entropy"}}}, {"model_id", m}, {"seq_id", 1}};
  bad["forward_backward_input"]["data"][0]["model_input"]["chunks"][0]["type"] = 42;
  auto [s1, b1] = post("/api/v1/forward_backward", bad);
  EXPECT_EQ(s1, 400);
  EXPECT_EQ(b1["detail"], "field 'forward_backward_input.data[0].model_input.chunks[0].type' must be a string, got number");
  auto [s2, b2] = post("/api/v1/forward_backward", {{"forward_backward_input", {{"data", {datum({1, 2})}}, {"loss_fn", "cross_entropy"}}},
                                                    {"model_id", m}, {"seq_id", 2}});
  ASSERT_EQ(s2, 200) << b2;
  EXPECT_TRUE(result(b2["request_id"]).contains("loss_fn_outputs"));
  auto [s3, b3] = post("/api/v1/optim_step", {{"adam_params", {{"learning_rate", 0.01}}}, {"model_id", m}, {"seq_id", 3},
                                              {"grad_accumulation_normalization", 1}});
  EXPECT_EQ(s3, 400);
  EXPECT_EQ(b3["detail"], "field 'grad_accumulation_normalization' must be a string, got number");
  auto [s4, b4] = post("/api/v1/create_model", {{"session_id", "s"}, {"model_seq_id", 1}, {"base_model", 7},
                                                {"lora_config", {{"rank", 4}}}});
  EXPECT_EQ(s4, 400);
  EXPECT_EQ(b4["detail"], "field 'base_model' must be a string, got number");
  auto [s5, b5] = post("/api/v1/create_session", {{"tags", "one"}});
  EXPECT_EQ(s5, 400);
  EXPECT_EQ(b5["detail"], "field 'tags' must be a list of strings, got string");
}

// tinker 0.25: a protobuf (and zstd) forward_backward, polled with Accept: application/x-protobuf,
// answered in protobuf; the same future polled with JSON in Accept answers JSON.
TEST_F(HttpTest, ProtobufTransportWithZstd) {
  const std::string m = model();
  const std::string frame = zstd_forward_backward(m);
  auto r = cli->Post("/api/v1/forward_backward", {{"Content-Encoding", "zstd"}}, frame, "application/x-protobuf");
  ASSERT_EQ(r->status, 200) << r->body;
  const std::string rid = json::parse(r->body)["request_id"];
  tinker_public::ForwardBackwardOutput out;
  ASSERT_TRUE(out.ParseFromString(result_proto(rid)));
  EXPECT_GT(out.metrics().at("loss:sum"), 0.0);
  EXPECT_EQ(out.loss_fn_outputs(0).fields().at("logprobs").data().size(), 3 * sizeof(float));
  EXPECT_TRUE(result(rid).contains("loss_fn_outputs"));  // JSON when Accept has application/json
}

// More long-pollers than HTTP threads: other requests are still served while they poll.
TEST(HttpConcurrency, PollersNeverStarveOtherRequests) {
  TempDir dir;
  service::TrainerService svc{service::testing::options(dir.path(), std::make_shared<service::VirtualClock>())};
  ServerOptions o;
  o.port = 0;
  o.http_threads = 4;
  o.poll_hold_seconds = 20;  // far longer than the test takes: a starved request would show
  HttpServer server(svc, o);
  server.bind();
  std::thread serving([&] { server.run(); });
  const auto s = svc.create_session("tml-test", {}, {}, "");
  const auto m = svc.create_model("tml-test", {.session_id = s.session_id, .base_model = "kiln/tiny", .lora = {.rank = 2}});
  // A future that cannot complete while its seq_id 1 is missing.
  const std::string rid = svc.submit("tml-test", m, 2, service::testing::fb("abc"));
  std::atomic<int> answered{0};
  std::vector<std::thread> pollers;
  for (int i = 0; i < 12; ++i)
    pollers.emplace_back([&] {
      httplib::Client c(server.base_url());
      c.set_default_headers({{"X-API-Key", "tml-test"}});
      c.set_read_timeout(std::chrono::seconds(60));
      for (int k = 0; k < 3; ++k)
        if (auto r = c.Post("/api/v1/retrieve_future", json{{"request_id", rid}}.dump(), "application/json"); r && r->status == 408)
          answered++;
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  httplib::Client c(server.base_url());
  c.set_default_headers({{"X-API-Key", "tml-test"}});
  const auto start = std::chrono::steady_clock::now();
  auto r = c.Post("/api/v1/create_session", "{}", "application/json");
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(r && r->status == 200) << "a request was not served while the long-polls held";
  EXPECT_LT(waited, std::chrono::seconds(10)) << "a request waited behind the long-polls";
  // Unblock: seq 1 arrives, every poller gets its answer.
  svc.submit("tml-test", m, 1, service::testing::fb("abc"));
  for (auto& p : pollers) p.join();
  EXPECT_GT(answered.load(), 0);  // the pollers beyond the holding limit were answered try_again at once
  server.stop();
  serving.join();
}

TEST_F(HttpTest, SparseTensorsDecode) {
  const std::string m = model();
  // target_tokens [3, 2] in CSR: rows 0..2, values at (0,1), (1,0), (2,1); zeros elsewhere.
  json d = datum({5, 6, 7, 8});
  d["loss_fn_inputs"]["target_tokens"] = {{"data", {9, 10, 11}}, {"dtype", "int64"}, {"shape", {3, 2}},
                                          {"sparse_crow_indices", {0, 1, 2, 3}}, {"sparse_col_indices", {1, 0, 1}}};
  auto [s, f] = post("/api/v1/forward", {{"forward_input", {{"data", {d}}, {"loss_fn", "cross_entropy"}}},
                                         {"model_id", m}, {"seq_id", 1}});
  ASSERT_EQ(s, 200) << f;
  EXPECT_EQ(result(f["request_id"])["loss_fn_outputs"][0]["logprobs"]["shape"], json::array({3, 2}));
}

}  // namespace
}  // namespace kiln::http

namespace kiln::http {
namespace {

TEST_F(HttpTest, RestCheckpointEndpoints) {
  const std::string m = model();
  auto [s1, f1] = post("/api/v1/save_weights_for_sampler", {{"model_id", m}, {"path", "s-1"}, {"seq_id", 1},
                                                             {"type", "save_weights_for_sampler"}, {"checkpoint_type", "base"}});
  ASSERT_EQ(s1, 200);
  EXPECT_EQ(result(f1["request_id"])["path"], "tinker://" + m + "/sampler_weights/s-1");
  const std::string base = "/api/v1/training_runs/" + m + "/checkpoints/sampler_weights/s-1";
  EXPECT_EQ(cli->Post((base + "/publish").c_str(), "", "application/json")->status, 200);
  auto again = cli->Post((base + "/publish").c_str(), "", "application/json");
  EXPECT_EQ(again->status, 409);
  EXPECT_NE(json::parse(again->body)["detail"].get<std::string>().find("already public"), std::string::npos);
  EXPECT_EQ(cli->Delete((base + "/publish").c_str())->status, 200);
  EXPECT_EQ(get("/api/v1/checkpoints").second["checkpoints"][0]["public"], false);

  // The archive answers 302 to a download URL served here.
  auto archive = cli->Get((base + "/archive").c_str());
  ASSERT_EQ(archive->status, 302);
  const std::string location = archive->get_header_value("Location");
  EXPECT_FALSE(archive->get_header_value("Expires").empty());
  const std::string download = location.substr(location.find("/_kiln/"));
  auto tar = cli->Get(download.c_str());
  ASSERT_EQ(tar->status, 200);
  EXPECT_EQ(tar->body.substr(257, 5), "ustar");
  EXPECT_EQ(cli->Get("/_kiln/download/0123456789abcdef")->status, 404);

  EXPECT_EQ(cli->Put((base + "/ttl").c_str(), R"({"ttl_seconds": 0})", "application/json")->status, 400);
  EXPECT_EQ(cli->Delete(("/api/v1/training_runs/" + m + "/checkpoints/bogus").c_str())->status, 400);  // not kind/name (protocol.md §W10.6)
  EXPECT_EQ(cli->Delete(("/api/v1/training_runs/" + m + "/checkpoints/weights/none").c_str())->status, 404);
}

TEST_F(HttpTest, SessionsModelsAndInfo) {
  const std::string m = model(8);
  const std::string session = m.substr(0, m.find(':'));
  auto [s1, info] = post("/api/v1/get_info", {{"model_id", m}, {"type", "get_info"}});
  ASSERT_EQ(s1, 200);
  EXPECT_EQ(info["is_lora"], true);
  EXPECT_EQ(info["lora_rank"], 8);
  EXPECT_FALSE(info["model_data"]["tokenizer_id"].get<std::string>().empty());
  EXPECT_EQ(post("/api/v1/session_heartbeat", {{"session_id", session}}).second, (json{{"type", "session_heartbeat"}}));
  EXPECT_EQ(post("/api/v1/session_heartbeat", {{"session_id", "session-nope"}}).first, 404);
  EXPECT_EQ(get("/api/v1/sessions").second["sessions"], json::array({session}));
  EXPECT_EQ(get("/api/v1/sessions/" + session).second["training_run_ids"], json::array({m}));
  EXPECT_EQ(post("/api/v1/client/dynamic_config", {{"sdk_version", "0.25.0"}}).second["refresh_interval_sec"], 300);
  auto [s2, bad] = post("/api/v1/create_model", {{"session_id", session}, {"model_seq_id", 1}, {"base_model", "kiln/tiny"},
                                                 {"lora_config", {{"rank", 3}}}});
  EXPECT_EQ(s2, 400);
  EXPECT_EQ(bad["detail"], "lora_config.rank must be a power of 2, got 3");
  auto [s3, unload] = post("/api/v1/unload_model", {{"model_id", m}, {"seq_id", 1}, {"type", "unload_model"}});
  ASSERT_EQ(s3, 200);
  EXPECT_EQ(result(unload["request_id"]), (json{{"model_id", m}, {"type", "unload_model"}}));
  EXPECT_EQ(post("/api/v1/get_info", {{"model_id", m}}).first, 404);
}

}  // namespace
}  // namespace kiln::http

namespace kiln::http {
namespace {

json prompt(const std::string& text) {
  return {{"chunks", {{{"tokens", std::vector<int>(text.begin(), text.end())}, {"type", "encoded_text"}}}}};
}

TEST_F(HttpTest, SamplingOverJsonAndProtobuf) {
  const std::string sess = session();
  auto [cs, created] = post("/api/v1/create_sampling_session",
                            {{"session_id", sess}, {"sampling_session_seq_id", 0}, {"base_model", "kiln/tiny"},
                             {"type", "create_sampling_session"}});
  ASSERT_EQ(cs, 200) << created;
  const std::string sampler = created["sampling_session_id"];
  EXPECT_EQ(sampler, sess + ":sample:0");
  EXPECT_EQ(created["type"], "create_sampling_session");
  EXPECT_EQ(get("/api/v1/samplers/" + sampler).second,
            (json{{"sampler_id", sampler}, {"base_model", "kiln/tiny"}, {"model_path", nullptr}}));

  const json body = {{"num_samples", 2}, {"prompt", prompt("Hello")}, {"sampling_session_id", sampler}, {"seq_id", 0},
                     {"sampling_params", {{"max_tokens", 6}, {"seed", 18446744073709551615ULL}, {"stop", "zz"},
                                          {"temperature", 0.8}, {"top_k", 50}, {"top_p", 0.95}}},
                     {"prompt_logprobs", true}, {"topk_prompt_logprobs", 2}, {"type", "sample"}};
  auto [ss, fut] = post("/api/v1/asample", body);
  ASSERT_EQ(ss, 200) << fut;
  // tinker >= 0.26 asserts one sequence id per requested sample on the promise.
  ASSERT_TRUE(fut["sample_sequence_ids"].is_array()) << fut;
  ASSERT_EQ(fut["sample_sequence_ids"].size(), 2u);
  EXPECT_NE(fut["sample_sequence_ids"][0], fut["sample_sequence_ids"][1]);
  const json out = result(fut["request_id"]);
  EXPECT_EQ(out["type"], "sample");
  ASSERT_EQ(out["sequences"].size(), 2u);
  EXPECT_EQ(out["sequences"][0]["sequence_id"], fut["sample_sequence_ids"][0]);
  EXPECT_EQ(out["sequences"][1]["sequence_id"], fut["sample_sequence_ids"][1]);
  for (const auto& seq : out["sequences"]) {
    EXPECT_EQ(seq["tokens"].size(), seq["logprobs"].size());
    EXPECT_TRUE(seq["stop_reason"] == "length" || seq["stop_reason"] == "stop") << seq;
    if (seq["stop_reason"] == "length") {
      EXPECT_EQ(seq["tokens"].size(), 6u);
    }
  }
  EXPECT_TRUE(out["prompt_logprobs"][0].is_null());
  EXPECT_EQ(out["prompt_logprobs"].size(), 5u);
  EXPECT_TRUE(out["topk_prompt_logprobs"][0].is_null());
  EXPECT_EQ(out["topk_prompt_logprobs"][1].size(), 2u);

  // The same request polled by tinker 0.25 comes back as a SampleResponse with the same tokens.
  json again = body;
  again["seq_id"] = 1;
  auto [ps, pfut] = post("/api/v1/asample", again);
  ASSERT_EQ(ps, 200) << pfut;
  tinker_public::SampleResponse msg;
  ASSERT_TRUE(msg.ParseFromString(result_proto(pfut["request_id"])));
  ASSERT_EQ(msg.sequences_size(), 2);
  const auto& tokens = msg.sequences(1).tokens();
  std::vector<int32_t> ids(tokens.size() / 4);
  std::memcpy(ids.data(), tokens.data(), tokens.size());
  EXPECT_EQ(json(ids), out["sequences"][1]["tokens"]);  // same seed, same samples
  EXPECT_EQ(msg.prompt_logprobs().size(), 5 * sizeof(float));
  EXPECT_EQ(msg.topk_prompt_logprobs().k(), 2u);

  // Ephemeral sampler weights from a training client (save_weights_and_get_sampling_client).
  const std::string m = model();
  auto [es, efut] = post("/api/v1/save_weights_for_sampler",
                         {{"model_id", m}, {"seq_id", 1}, {"sampling_session_seq_id", 1}, {"type", "save_weights_for_sampler"}});
  ASSERT_EQ(es, 200) << efut;
  const json saved = result(efut["request_id"]);
  EXPECT_TRUE(saved["path"].is_null());
  EXPECT_EQ(saved["type"], "save_weights_for_sampler");
  const std::string eph = saved["sampling_session_id"];
  json greedy = {{"prompt", prompt("Hi")}, {"sampling_session_id", eph}, {"seq_id", 0}, {"num_samples", 1},
                 {"sampling_params", {{"max_tokens", 3}, {"temperature", 0.0}}}};
  auto [gs, gfut] = post("/api/v1/asample", greedy);
  ASSERT_EQ(gs, 200) << gfut;
  EXPECT_EQ(result(gfut["request_id"])["sequences"][0]["tokens"].size(), 3u);

  // A named sampler checkpoint is sampled through its tinker path.
  auto [ns, nfut] = post("/api/v1/save_weights_for_sampler", {{"model_id", m}, {"seq_id", 2}, {"path", "s1"}});
  ASSERT_EQ(ns, 200);
  const std::string path = result(nfut["request_id"])["path"];
  auto [ms, from_path] = post("/api/v1/create_sampling_session",
                              {{"session_id", sess}, {"sampling_session_seq_id", 2}, {"model_path", path}});
  ASSERT_EQ(ms, 200) << from_path;
  EXPECT_EQ(get("/api/v1/samplers/" + from_path["sampling_session_id"].get<std::string>()).second["model_path"], path);
}

TEST_F(HttpTest, SamplingErrors) {
  const std::string sess = session();
  auto [s1, e1] = post("/api/v1/create_sampling_session", {{"session_id", sess}, {"sampling_session_seq_id", 0}});
  EXPECT_EQ(s1, 400);
  EXPECT_EQ(e1["detail"], "Either model_path or base_model must be provided");
  const std::string sampler = post("/api/v1/create_sampling_session",
                                   {{"session_id", sess}, {"sampling_session_seq_id", 0}, {"base_model", "kiln/tiny"}})
                                  .second["sampling_session_id"];
  auto [s2, e2] = post("/api/v1/asample", {{"prompt", prompt("abc")}, {"sampling_session_id", sampler}, {"seq_id", 0},
                                           {"sampling_params", {{"max_tokens", 4000}}}});
  EXPECT_EQ(s2, 400);
  EXPECT_EQ(e2["detail"], "Prompt length plus max_tokens exceeds the model's context window: 3 + 4000 > 2048");
  auto [s3, e3] = post("/api/v1/asample", {{"prompt", prompt("abc")}, {"sampling_session_id", sampler},
                                           {"sampling_params", {{"stop", 5}}}});
  EXPECT_EQ(s3, 400);
  EXPECT_NE(e3["detail"].get<std::string>().find("sampling_params.stop"), std::string::npos) << e3;
  EXPECT_EQ(post("/api/v1/asample", {{"prompt", prompt("abc")}, {"sampling_session_id", sess + ":sample:9"}}).first, 404);
  EXPECT_EQ(get("/api/v1/samplers/nope").first, 404);
  EXPECT_EQ(post("/api/v1/asample", {{"prompt", prompt("abc")}}).first, 400);
}

TEST_F(HttpTest, LoadWeightsWithoutModelIdCreatesTheModel) {
  const std::string m = model(8);
  auto [ss, saved] = post("/api/v1/save_weights", {{"model_id", m}, {"path", "w"}, {"seq_id", 1}});
  ASSERT_EQ(ss, 200);
  const std::string path = result(saved["request_id"])["path"];
  const std::string sess = session();
  auto [ls, fut] = post("/api/v1/load_weights", {{"session_id", sess}, {"model_seq_id", 0}, {"path", path},
                                                 {"optimizer", true}, {"type", "load_weights"}});
  ASSERT_EQ(ls, 200) << fut;
  EXPECT_EQ(fut["model_id"], sess + ":train:0");
  EXPECT_EQ(result(fut["request_id"])["type"], "load_weights");
  auto [is, info] = post("/api/v1/get_info", {{"model_id", fut["model_id"]}});
  EXPECT_EQ(info["lora_rank"], 8);
  auto [ms, missing] = post("/api/v1/load_weights", {{"session_id", sess}, {"model_seq_id", 1},
                                                     {"path", "tinker://nope:train:0/weights/w"}});
  EXPECT_EQ(ms, 404) << missing;
}

TEST_F(HttpTest, AuthTokenSessionsAuditAndBilling) {
  const std::string sess = session();
  // A JWT from auth/token stands for the credential it was issued for.
  auto [ts, token] = post("/api/v1/auth/token", json::object());
  ASSERT_EQ(ts, 200);
  const std::string jwt = token["jwt"];
  EXPECT_EQ(std::count(jwt.begin(), jwt.end(), '.'), 2);
  EXPECT_EQ(jwt.rfind("eyJ", 0), 0u);
  httplib::Client with_jwt(server->base_url());
  with_jwt.set_default_headers({{"X-API-Key", jwt}});
  auto listed = with_jwt.Get("/api/v1/sessions");
  ASSERT_TRUE(listed);
  EXPECT_EQ(json::parse(listed->body)["sessions"], json::array({sess}));

  auto put = cli->Put(("/api/v1/sessions/" + sess + "/project").c_str(), json{{"project_id", "p1"}}.dump(), "application/json");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 200);
  EXPECT_EQ(cli->Put("/api/v1/sessions/session-nope/project", json{{"project_id", "p1"}}.dump(), "application/json")->status, 404);
  auto trace = get("/api/v1/sessions/" + sess + "/trace_export");
  EXPECT_EQ(trace.first, 200);
  EXPECT_EQ(trace.second["status"], "failed");
  EXPECT_TRUE(trace.second["error"].is_string());

  const std::string m = model();
  auto [ss, fut] = post("/api/v1/save_weights", {{"model_id", m}, {"path", "a1"}, {"seq_id", 1}});
  ASSERT_EQ(ss, 200);
  result(fut["request_id"]);
  auto audit = get("/api/v1/audit?event_type=checkpoints").second["entries"];
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0]["tinker_path"], "tinker://" + m + "/weights/a1");
  EXPECT_EQ(audit[0]["model_id"], m);
  const std::string day = audit[0]["timestamp"].get<std::string>().substr(0, 10);
  // "all" adds the two sessions and the training run made above.
  EXPECT_EQ(get("/api/v1/audit?event_type=all&day=" + day).second["entries"].size(), 4u);
  EXPECT_EQ(get("/api/v1/audit?event_type=all&day=1999-01-01").second["entries"].size(), 0u);
  EXPECT_EQ(get("/api/v1/audit?event_type=bogus").first, 400);
  EXPECT_EQ(get("/api/v1/billing/usage/events?starting_on=2026-01-01T00:00:00Z&ending_before=2026-12-01T00:00:00Z").second,
            (json{{"data", json::array()}, {"sessions", json::object()}}));
}

}  // namespace
}  // namespace kiln::http
