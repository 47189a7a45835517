// What tinker 0.26–0.32 added on the wire (docs/protocol.md §W12), with requests shaped as those
// SDKs send them and answers checked field by field.
#include "http/test_fixture.hpp"
#include "service/safetensors.hpp"

namespace kiln::http {
namespace {

using nlohmann::json;
using testing::HttpTest;

// ServiceClient.close() / `with ServiceClient()`: sessions/{id}/finish, after which the heartbeat
// answers 410 (the SDK's loop stops) and the session takes no new models; its models still train.
TEST_F(HttpTest, AFinishedSessionAnswers410ToHeartbeatsAndNewModels) {
  const std::string m = model();
  const std::string session = m.substr(0, m.find(':'));
  auto [bad, bad_body] = post("/api/v1/sessions/" + session + "/finish", {{"reason", {{"type", "done"}}}});
  EXPECT_EQ(bad, 400);
  EXPECT_EQ(bad_body["detail"], "field 'reason.type' must be success, errored or interrupted, got 'done'");
  EXPECT_EQ(post("/api/v1/session_heartbeat", {{"session_id", session}, {"type", "session_heartbeat"}}).first, 200);
  auto [s1, b1] = post("/api/v1/sessions/" + session + "/finish", {{"reason", {{"type", "success"}}}, {"detail", "all done"}});
  ASSERT_EQ(s1, 200) << b1;
  EXPECT_EQ(b1, json::object());
  EXPECT_EQ(post("/api/v1/sessions/" + session + "/finish", {{"reason", {{"type", "errored"}}}}).first, 200);  // a retry
  auto [s2, b2] = post("/api/v1/session_heartbeat", {{"session_id", session}, {"type", "session_heartbeat"}});
  EXPECT_EQ(s2, 410);
  EXPECT_EQ(b2["detail"], "session '" + session + "' is finished; create a new ServiceClient to continue");
  auto [s3, b3] = post("/api/v1/create_model", {{"session_id", session}, {"model_seq_id", 1}, {"base_model", "kiln/tiny"},
                                                {"lora_config", {{"rank", 4}}}, {"type", "create_model"}});
  EXPECT_EQ(s3, 410) << b3;
  auto [s4, f4] = post("/api/v1/forward_backward", {{"forward_backward_input", {{"data", {datum({1, 2, 3})}}, {"loss_fn", "cross_entropy"}}},
                                                    {"model_id", m}, {"seq_id", 1}});
  ASSERT_EQ(s4, 200);
  EXPECT_TRUE(result(f4["request_id"]).contains("loss_fn_outputs"));
  auto [s5, state] = get("/_kiln/state");
  EXPECT_EQ(state["sessions"][0]["finished"], "success");  // the first reason stands
  EXPECT_EQ(post("/api/v1/sessions/session-nope/finish", {{"reason", {{"type", "success"}}}}).first, 404);
}

// create_model always carries optimizer_config since 0.29; optim_step may carry optimizer_params.
// AdamW is what Kiln implements; Dimuon is refused by name.
TEST_F(HttpTest, OptimizerConfigAdamwIsAcceptedAndDimuonRefused) {
  const std::string session = this->session();
  auto create = [&](const json& optimizer, int seq) {
    return post("/api/v1/create_model", {{"session_id", session}, {"model_seq_id", seq}, {"base_model", "kiln/tiny"},
                                         {"lora_config", {{"rank", 4}}}, {"optimizer_config", optimizer}, {"type", "create_model"}});
  };
  auto [s1, f1] = create({{"type", "adamw"}}, 0);
  ASSERT_EQ(s1, 200) << f1;
  const std::string m = result(f1["request_id"])["model_id"];
  auto [s2, b2] = create({{"type", "dimuon"}, {"version", 1}}, 1);
  EXPECT_EQ(s2, 400);
  EXPECT_EQ(b2["detail"], "field 'optimizer_config.type': optimizer 'dimuon' is not supported; Kiln implements 'adamw' only");
  auto [s3, b3] = post("/api/v1/optim_step", {{"adam_params", {{"learning_rate", 1e-3}}}, {"model_id", m}, {"seq_id", 1},
                                              {"optimizer_params", {{"type", "dimuon"}, {"learning_rate", 1e-3}, {"damping", 0.1}}},
                                              {"type", "optim_step"}});
  EXPECT_EQ(s3, 400);
  EXPECT_EQ(b3["detail"], "field 'optimizer_params.type': optimizer 'dimuon' is not supported; Kiln implements 'adamw' only");
  auto [s4, f4] = post("/api/v1/optim_step", {{"adam_params", {{"learning_rate", 1e-3}}}, {"model_id", m}, {"seq_id", 2},
                                              {"type", "optim_step"}});
  ASSERT_EQ(s4, 200) << f4;  // seq 1's refusal counted as arrived
  EXPECT_TRUE(result(f4["request_id"]).contains("metrics"));
}

// 0.30+ reads SupportedModel.trainable / .sampleable.
TEST_F(HttpTest, CapabilitiesSayEachModelTrainsAndSamples) {
  auto [s, caps] = get("/api/v1/get_server_capabilities");
  ASSERT_EQ(s, 200);
  ASSERT_FALSE(caps["supported_models"].empty());
  for (const auto& m : caps["supported_models"]) {
    EXPECT_EQ(m["trainable"], true) << m;
    EXPECT_EQ(m["sampleable"], true) << m;
  }
}

// loss_fn_config_v2 (field 7): number and text values; it wins over field 5. Provenance spans
// (Datum fields 3 and 4) decode.
TEST_F(HttpTest, ProtobufLossConfigV2IsHonoured) {
  const std::string m = model();
  auto request = [&](int seq, double v1_low, std::optional<double> v2_low, const char* text_key, int span_length = 2) {
    tinker_public::ForwardBackwardRequest req;
    req.set_model_id(m);
    req.set_seq_id(seq);
    req.set_loss_fn("ppo");
    req.set_forward_only(true);
    (*req.mutable_loss_fn_config())["clip_low_threshold"] = v1_low;
    if (v2_low) (*req.mutable_loss_fn_config_v2())["clip_low_threshold"].set_number(*v2_low);
    if (text_key) (*req.mutable_loss_fn_config_v2())[text_key].set_text("x");
    auto* d = req.add_data();
    const int32_t tokens[2] = {5, 6};
    d->add_model_input()->mutable_encoded_text()->set_tokens(std::string(reinterpret_cast<const char*>(tokens), sizeof tokens));
    auto* span = d->add_model_input_spans()->mutable_sampled_tokens();
    span->set_sequence_id("seq-1");
    span->set_length(span_length);
    auto tensor = [&](const char* name, tinker_public::DType dtype, const void* p, size_t n) {
      auto& t = (*d->mutable_loss_fn_inputs())[name];
      t.set_dtype(dtype);
      t.set_dense(std::string(static_cast<const char*>(p), n));
    };
    const int64_t targets[2] = {6, 7};
    const float lp[2] = {-1.f, -1.f}, adv[2] = {1.f, 1.f};
    tensor("target_tokens", tinker_public::DTYPE_INT64, targets, sizeof targets);
    tensor("logprobs", tinker_public::DTYPE_FLOAT32, lp, sizeof lp);
    tensor("advantages", tinker_public::DTYPE_FLOAT32, adv, sizeof adv);
    return cli->Post("/api/v1/forward_backward", req.SerializeAsString(), "application/x-protobuf");
  };
  // v1 says lo 1.5 > hi 1.2 (refused); v2 overrides it with 0.7 (accepted).
  auto refused = request(1, 1.5, std::nullopt, nullptr);
  EXPECT_EQ(refused->status, 400) << refused->body;
  auto accepted = request(2, 1.5, 0.7, nullptr);
  ASSERT_EQ(accepted->status, 200) << accepted->body;
  EXPECT_TRUE(result(json::parse(accepted->body)["request_id"]).contains("loss_fn_outputs"));
  auto text = request(3, 0.8, std::nullopt, "clip_high_threshold");  // a text value reaches the loss's own check
  EXPECT_EQ(text->status, 400);
  EXPECT_NE(json::parse(text->body)["detail"].get<std::string>().find("clip_high_threshold"), std::string::npos) << text->body;
  // The spans are decoded and checked (C17): a run longer than the model input does not tile it.
  auto untiled = request(4, 0.8, std::nullopt, nullptr, 3);
  EXPECT_EQ(untiled->status, 400);
  EXPECT_EQ(json::parse(untiled->body)["detail"], "datum 0 model_input_spans: the runs cover 3 positions, but the field has 2 "
                                                  "(runs must tile it)");
}

// stop=[] turns end-of-sequence off; absent keeps it. kiln/tiny has no end-of-sequence id, so
// this pins the decoding: the unit test of the sampler pins the behaviour.
TEST_F(HttpTest, AnEmptyStopListIsAccepted) {
  auto [a, fut] = post("/api/v1/asample", {{"sampling_session_id", sampler()}, {"seq_id", 0},
                                           {"num_samples", 1}, {"prompt", {{"chunks", {{{"tokens", {1, 2}}, {"type", "encoded_text"}}}}}},
                                           {"sampling_params", {{"max_tokens", 4}, {"stop", json::array()}, {"seed", 1}}},
                                           {"record_stability_info", false}, {"topk_sample_logprobs", 0}, {"prompt_alt_tokens_k", 0},
                                           {"type", "sample"}});
  ASSERT_EQ(a, 200) << fut;
  EXPECT_EQ(result(fut["request_id"])["sequences"][0]["tokens"].size(), 4u);
}

// 0.31+ sampling extras (rule F9): topk_sample_logprobs, target_prompt_logprobs (dense and
// sparse CSR, answered in the request's layout) and prompt_alt_tokens_k, in the JSON answer and
// in the protobuf one tinker 0.25+ asks for (field numbers of the public proto).
TEST_F(HttpTest, SamplingExtrasAnswerInJsonAndProtobuf) {
  const std::string sampler_id = sampler();
  int seq = 0;
  auto asample = [&](const json& extra) {
    json b = {{"sampling_session_id", sampler_id}, {"seq_id", seq++}, {"num_samples", 2},
              {"prompt", {{"chunks", {{{"tokens", {1, 2, 3, 4}}, {"type", "encoded_text"}}}}}},
              {"sampling_params", {{"max_tokens", 3}, {"seed", 4}}}, {"prompt_logprobs", true}, {"type", "sample"}};
    b.update(extra);
    return post("/api/v1/asample", b);
  };
  const json dense_target = {{"data", {2, -1, 3, 7, 4, -1}}, {"dtype", "int64"}, {"shape", {3, 2}}};
  const json extras = {{"topk_sample_logprobs", 3}, {"prompt_alt_tokens_k", 2}, {"target_prompt_logprobs", dense_target}};
  auto [a1, f1] = asample(extras);
  ASSERT_EQ(a1, 200) << f1;
  const json out = result(f1["request_id"]);
  for (const auto& q : out["sequences"]) {
    ASSERT_EQ(q["topk_logprobs"].size(), q["tokens"].size()) << q;
    EXPECT_EQ(q["topk_logprobs"][0].size(), 3u);
    EXPECT_EQ(q["topk_logprobs"][0][0].size(), 2u);  // [token, logprob]
  }
  const json& t = out["target_prompt_logprobs"];
  EXPECT_EQ(t["dtype"], "float32");
  EXPECT_EQ(t["shape"], json({3, 2}));
  EXPECT_EQ(t["data"][0], out["prompt_logprobs"][1]);  // id 2 is prompt token 1
  EXPECT_EQ(t["data"][1], 0.0);                        // -1: none asked
  EXPECT_EQ(t["data"][2], out["prompt_logprobs"][2]);
  const json& alt = out["prompt_alt_tokens"];
  EXPECT_EQ(alt["tokens"]["dtype"], "int64");
  EXPECT_EQ(alt["tokens"]["shape"], json({3, 2}));
  EXPECT_EQ(alt["logprobs"]["dtype"], "float32");
  EXPECT_EQ(alt["logprobs"]["data"].size(), 6u);

  // Sparse CSR in, sparse CSR out: only the listed cells, id 0 a real token.
  const json sparse = {{"data", {2, 0, 4}}, {"dtype", "int64"}, {"shape", {3, 4}},
                       {"sparse_crow_indices", {0, 2, 2, 3}}, {"sparse_col_indices", {0, 3, 1}}};
  auto [a2, f2] = asample({{"target_prompt_logprobs", sparse}});
  ASSERT_EQ(a2, 200) << f2;
  const json sout = result(f2["request_id"]);
  const json& st = sout["target_prompt_logprobs"];
  EXPECT_EQ(st["sparse_crow_indices"], sparse["sparse_crow_indices"]);
  EXPECT_EQ(st["sparse_col_indices"], sparse["sparse_col_indices"]);
  ASSERT_EQ(st["data"].size(), 3u);
  EXPECT_EQ(st["data"][0], out["target_prompt_logprobs"]["data"][0]);  // id 2 at position 1 again
  EXPECT_LT(st["data"][1].get<double>(), 0.0);                         // id 0 scored, not skipped
  EXPECT_FALSE(sout["sequences"][0].contains("topk_logprobs"));
  EXPECT_FALSE(sout.contains("prompt_alt_tokens"));

  // The protobuf answer (what tinker 0.25+ polls for) carries the same, in fields 4, 5 and 6.
  auto [a3, f3] = asample(extras);
  ASSERT_EQ(a3, 200);
  tinker_public::SampleResponse msg;
  ASSERT_TRUE(msg.ParseFromString(result_proto(f3["request_id"])));
  ASSERT_TRUE(msg.sequences(0).has_topk_sampled_logprobs());
  EXPECT_EQ(msg.sequences(0).topk_sampled_logprobs().k(), 3u);
  EXPECT_EQ(msg.sequences(0).topk_sampled_logprobs().length(), msg.sequences(0).tokens().size() / 4);
  ASSERT_TRUE(msg.has_target_prompt_logprobs());
  EXPECT_EQ(msg.target_prompt_logprobs().dtype(), tinker_public::DTYPE_FLOAT32);
  EXPECT_EQ(msg.target_prompt_logprobs().dense().size(), 6 * sizeof(float));
  float first = 0;
  std::memcpy(&first, msg.target_prompt_logprobs().dense().data(), sizeof first);
  EXPECT_EQ(json(first), out["target_prompt_logprobs"]["data"][0]);
  ASSERT_TRUE(msg.has_prompt_alt_tokens());
  EXPECT_EQ(msg.prompt_alt_tokens().tokens().dtype(), tinker_public::DTYPE_INT64);
  EXPECT_EQ(msg.prompt_alt_tokens().tokens().dense().size(), 6 * sizeof(int64_t));
  EXPECT_EQ(msg.prompt_alt_tokens().logprobs().shape_size(), 2);
  auto [a4, f4] = asample({{"target_prompt_logprobs", sparse}});
  ASSERT_EQ(a4, 200);
  tinker_public::SampleResponse smsg;
  ASSERT_TRUE(smsg.ParseFromString(result_proto(f4["request_id"])));
  EXPECT_TRUE(smsg.target_prompt_logprobs().has_sparse_csr());
  EXPECT_EQ(smsg.target_prompt_logprobs().sparse_csr().values().size(), 3 * sizeof(float));

  // Refused by field, before anything is queued.
  auto [b1, e1] = asample({{"target_prompt_logprobs", {{"data", {0.5}}, {"dtype", "float32"}, {"shape", {1, 1}}}}});
  EXPECT_EQ(b1, 400);
  EXPECT_EQ(e1["detail"], "field 'target_prompt_logprobs.dtype' must be 'int64' (token ids), got 'float32'");
  auto [b2, e2] = asample({{"target_prompt_logprobs", {{"data", {5, 6}}, {"dtype", "int64"}, {"shape", {2}}}}});
  EXPECT_EQ(b2, 400);
  EXPECT_EQ(e2["detail"], "field 'target_prompt_logprobs.shape' must be 2-D, [len(prompt) - 1, K], got [2]");
  auto [b3, e3] = asample({{"target_prompt_logprobs", {{"data", {5, 6}}, {"dtype", "int64"}, {"shape", {2, 1}}}}});
  EXPECT_EQ(b3, 400);
  EXPECT_EQ(e3["detail"], "target_prompt_logprobs must have len(prompt) - 1 = 3 rows, got 2");
  auto [b4, e4] = asample({{"prompt_alt_tokens_k", -1}});
  EXPECT_EQ(b4, 400);
  EXPECT_EQ(e4["detail"], "prompt_alt_tokens_k must be between 0 and 1024, got -1");
}

// Provenance spans (rule C17): a datum built from a sample says so by sequence_id; a run that
// misquotes the sample is refused (and keeps its seq_id's place, B1), one that quotes it trains.
TEST_F(HttpTest, ProvenanceSpansAreCheckedAgainstTheSampledSequence) {
  const std::string m = model();
  const std::string sampler_id = sampler();
  auto [a, fut] = post("/api/v1/asample", {{"sampling_session_id", sampler_id}, {"seq_id", 0}, {"num_samples", 1},
                                           {"prompt", {{"chunks", {{{"tokens", {1, 2, 3}}, {"type", "encoded_text"}}}}}},
                                           {"sampling_params", {{"max_tokens", 2}, {"seed", 9}}}, {"type", "sample"}});
  ASSERT_EQ(a, 200) << fut;
  const std::string id = fut["sample_sequence_ids"][0];
  const std::vector<int> sampled = result(fut["request_id"])["sequences"][0]["tokens"];
  ASSERT_EQ(sampled.size(), 2u);
  auto fb = [&](int seq, int first_sampled) {
    json d = datum({1, 2, 3, first_sampled, sampled[1]});  // input 1 2 3 s0, targets 2 3 s0 s1
    d["model_input_spans"] = {{{"prompt_tokens", {{"sequence_id", id}, {"offset", 0}, {"length", 3}}}},
                              {{"sampled_tokens", {{"sequence_id", id}, {"offset", 0}, {"length", 1}}}}};
    d["loss_fn_input_spans"] = {{{"prompt_tokens", {{"sequence_id", id}, {"offset", 1}, {"length", 2}}}},
                                {{"sampled_tokens", {{"sequence_id", id}, {"length", 2}}}}};
    return post("/api/v1/forward_backward", {{"forward_backward_input", {{"data", {d}}, {"loss_fn", "cross_entropy"}}},
                                             {"model_id", m}, {"seq_id", seq}});
  };
  auto [s1, b1] = fb(1, sampled[0] == 0 ? 1 : 0);  // not what was sampled
  EXPECT_EQ(s1, 400);
  EXPECT_EQ(b1["detail"], "datum 0 model_input_spans[1]: position 3 holds token " + std::to_string(sampled[0] == 0 ? 1 : 0) +
                              ", but sequence '" + id + "' has " + std::to_string(sampled[0]) + " at sampled tokens position 0");
  auto [s2, f2] = fb(2, sampled[0]);
  ASSERT_EQ(s2, 200) << f2;
  EXPECT_TRUE(result(f2["request_id"]).contains("loss_fn_outputs"));
  json bad = datum({1, 2});
  bad["model_input_spans"] = {{{"sampled_tokens", {{"sequence_id", id}, {"length", 1}}}, {"prompt_tokens", json::object()}}};
  auto [s3, b3] = post("/api/v1/forward_backward", {{"forward_backward_input", {{"data", {bad}}, {"loss_fn", "cross_entropy"}}},
                                                    {"model_id", m}, {"seq_id", 3}});
  EXPECT_EQ(s3, 400);
  EXPECT_EQ(b3["detail"], "field 'forward_backward_input.data[0].model_input_spans[0]' must hold exactly one of "
                          "'prompt_tokens' or 'sampled_tokens'");
}

// 0.30+: user_metadata on save_state and save_weights_for_sampler comes back in the listings.
TEST_F(HttpTest, SavesKeepTheirUserMetadata) {
  const std::string m = model();
  auto [s1, f1] = post("/api/v1/save_weights", {{"model_id", m}, {"seq_id", 1}, {"path", "step-1"},
                                                {"user_metadata", {{"epoch", "3"}, {"note", "warm"}}}, {"type", "save_weights"}});
  ASSERT_EQ(s1, 200) << f1;
  EXPECT_EQ(result(f1["request_id"])["path"], "tinker://" + m + "/weights/step-1");
  auto [s2, f2] = post("/api/v1/save_weights_for_sampler", {{"model_id", m}, {"seq_id", 2}, {"path", "s-1"},
                                                            {"user_metadata", {{"stage", "rl"}}}, {"type", "save_weights_for_sampler"}});
  ASSERT_EQ(s2, 200) << f2;
  result(f2["request_id"]);
  auto [s3, list] = get("/api/v1/training_runs/" + m + "/checkpoints");
  ASSERT_EQ(s3, 200);
  std::map<std::string, json> by_id;
  for (const auto& c : list["checkpoints"]) by_id[c["checkpoint_id"]] = c["user_metadata"];
  EXPECT_EQ(by_id["weights/step-1"], (json{{"epoch", "3"}, {"note", "warm"}}));
  EXPECT_EQ(by_id["sampler_weights/s-1"], (json{{"stage", "rl"}}));
  auto [s4, bad] = post("/api/v1/save_weights", {{"model_id", m}, {"seq_id", 3}, {"path", "x"}, {"user_metadata", "a"}});
  EXPECT_EQ(s4, 400);
  EXPECT_EQ(bad["detail"], "field 'user_metadata' must be an object, got string");
}

// 0.32: cloned sampling clients join their sampler's session and are numbered.
TEST_F(HttpTest, JoiningASamplingSessionNumbersTheClients) {
  const std::string session = this->session();
  auto [s, sampler] = post("/api/v1/create_sampling_session", {{"session_id", session}, {"sampling_session_seq_id", 0},
                                                               {"base_model", "kiln/tiny"}, {"type", "create_sampling_session"}});
  ASSERT_EQ(s, 200);
  const json join = {{"sampling_session_id", sampler["sampling_session_id"]}, {"type", "join_sampling_session"}};
  EXPECT_EQ(post("/api/v1/join_sampling_session", join).second, (json{{"type", "join_sampling_session"}, {"client_counter", 1}}));
  EXPECT_EQ(post("/api/v1/join_sampling_session", join).second["client_counter"], 2);
  auto [s2, missing] = post("/api/v1/join_sampling_session", {{"sampling_session_id", session + ":sample:9"}});
  EXPECT_EQ(s2, 404);
  EXPECT_EQ(missing["detail"], "sampling session '" + session + ":sample:9' not found");
}

// 0.26+: the session futures poller (retrieve_futures) and cancel_future, and the config flags
// that send the SDK down those paths (defaults: poller off, as the SDK defaults; cancel on).
TEST_F(HttpTest, TheSessionPollerReportsCompletionsAndCancelFutureWithdrawsSamples) {
  EXPECT_EQ(post("/api/v1/client/config", {{"sdk_version", "0.30.1"}}).second["sample_use_retrieve_futures"], false);
  const json dynamic = post("/api/v1/client/dynamic_config", json::object()).second;
  EXPECT_EQ(dynamic["sample_cancel_enabled"], true);
  EXPECT_EQ(dynamic["sample_cancel_max_batch_size"], 64);
  const std::string session = this->session();
  auto [s, created] = post("/api/v1/create_sampling_session", {{"session_id", session}, {"sampling_session_seq_id", 0},
                                                               {"base_model", "kiln/tiny"}, {"type", "create_sampling_session"}});
  ASSERT_EQ(s, 200);
  const std::string sampler = created["sampling_session_id"];
  const json target = {{"type", "sampling_session"}, {"sampling_session_id", sampler}, {"cloned_sampler_id", nullptr}};
  auto sample = [&](int seq, int max_tokens) {
    auto [st, sub] = post("/api/v1/asample", {{"sampling_session_id", sampler}, {"seq_id", seq}, {"num_samples", 1},
                                              {"prompt", {{"chunks", {{{"tokens", {72, 105}}, {"type", "encoded_text"}}}}}},
                                              {"sampling_params", {{"max_tokens", max_tokens}, {"seed", seq}, {"stop", json::array()}}},
                                              {"type", "sample"}});
    EXPECT_EQ(st, 200) << sub;
    return sub["request_id"].get<std::string>();
  };
  const std::string first = sample(0, 4);
  auto [p1, polled] = post("/api/v1/retrieve_futures", {{"target", target}, {"prev_cursor", nullptr}, {"timeout", 30}});
  ASSERT_EQ(p1, 200) << polled;
  EXPECT_EQ(polled["completions"], (json{{{"state", "finished"}, {"request_id", first}}}));
  ASSERT_TRUE(polled["cursor"].is_string());
  EXPECT_TRUE(result(first).contains("sequences"));  // the payload still comes from retrieve_future
  // Nothing new: the poll holds for its timeout, then answers with no completions and the same cursor.
  auto [p2, empty] = post("/api/v1/retrieve_futures", {{"target", target}, {"prev_cursor", polled["cursor"]}, {"timeout", 0.2}});
  EXPECT_EQ(empty, (json{{"completions", json::array()}, {"cursor", polled["cursor"]}}));

  // Cancel a long sample: its future fails at once with a user error; the poller reports it failed.
  const std::string doomed = sample(1, 2000);
  auto [c1, cancelled] = post("/api/v1/cancel_future", {{"request_id", doomed}});
  ASSERT_EQ(c1, 200) << cancelled;
  EXPECT_EQ(cancelled, (json{{"type", "cancel_future"}, {"cancelled", {doomed}}, {"already_complete", json::array()}}));
  const json failure = result(doomed);
  EXPECT_EQ(failure["category"], "user");
  EXPECT_EQ(failure["error"], "sample request " + doomed + " was cancelled by the client (cancel_future)");
  auto [p3, after] = post("/api/v1/retrieve_futures", {{"target", target}, {"prev_cursor", polled["cursor"]}});
  EXPECT_EQ(after["completions"], (json{{{"state", "failed"}, {"request_id", doomed}}}));
  EXPECT_EQ(post("/api/v1/cancel_future", {{"request_ids", {doomed, first}}}).second["already_complete"], (json{doomed, first}));

  // Bad input names the field and changes nothing.
  const std::string m = model();
  auto [t, fut] = post("/api/v1/forward", {{"forward_input", {{"data", {datum({1, 2, 3})}}, {"loss_fn", "cross_entropy"}}},
                                           {"model_id", m}, {"seq_id", 1}});
  ASSERT_EQ(t, 200) << fut;
  auto [c2, refused] = post("/api/v1/cancel_future", {{"request_id", fut["request_id"]}});
  EXPECT_EQ(c2, 409);
  EXPECT_NE(refused["detail"].get<std::string>().find("is not a sample"), std::string::npos) << refused;
  EXPECT_TRUE(result(fut["request_id"]).contains("loss_fn_outputs"));
  EXPECT_EQ(post("/api/v1/cancel_future", {{"request_id", "req-nope"}}).first, 404);
  EXPECT_EQ(post("/api/v1/cancel_future", json::object()).second["detail"], "missing required field 'request_id'");
  EXPECT_EQ(post("/api/v1/cancel_future", {{"request_ids", json::array()}}).second["detail"],
            "field 'request_ids' must be a list of 1 to 64 request ids");
  const auto detail = [&](const json& body) {
    auto [st, b] = post("/api/v1/retrieve_futures", body);
    EXPECT_EQ(st, 400) << b;
    return b["detail"];
  };
  EXPECT_EQ(detail({{"prev_cursor", nullptr}}), "missing required field 'target'");
  EXPECT_EQ(detail({{"target", {{"type", "training_run"}, {"sampling_session_id", sampler}}}}),
            "field 'target.type' must be \"sampling_session\" (the only kind of futures target), got \"training_run\"");
  EXPECT_EQ(detail({{"target", target}, {"prev_cursor", "abc"}}),
            "field 'prev_cursor' must be a cursor this server returned (a decimal string) or null");
  EXPECT_EQ(detail({{"target", target}, {"timeout", -1}}), "field 'timeout' must be a number of seconds >= 0 or null");
  auto [s404, unknown] = post("/api/v1/retrieve_futures", {{"target", {{"type", "sampling_session"}, {"sampling_session_id", session + ":sample:9"}}}});
  EXPECT_EQ(s404, 404) << unknown;
}

// copy_weights: answered at once with the copy's tinker path; bad input is a 400 naming the field.
TEST_F(HttpTest, CopyWeightsAnswersTheCopysPath) {
  const std::string m = model();
  const std::string session = m.substr(0, m.find(':'));
  auto [s, saved] = post("/api/v1/save_weights", {{"model_id", m}, {"path", "w"}, {"seq_id", 1}, {"type", "save_weights"}});
  ASSERT_EQ(s, 200) << saved;
  const std::string source = result(saved["request_id"])["path"];
  auto [c, copied] = post("/api/v1/copy_weights", {{"session_id", session}, {"model_seq_id", 3}, {"source_path", source},
                                                   {"ttl_seconds", 3600}, {"weights_access_token", nullptr}});
  ASSERT_EQ(c, 200) << copied;
  EXPECT_EQ(copied, (json{{"tinker_path", "tinker://" + session + ":train:3/weights/w"}}));
  auto [l, listed] = get("/api/v1/training_runs/" + session + ":train:3/checkpoints");
  ASSERT_EQ(l, 200) << listed;
  EXPECT_EQ(listed["checkpoints"][0]["tinker_path"], copied["tinker_path"]);
  EXPECT_FALSE(listed["checkpoints"][0]["expires_at"].is_null());
  auto [b, bad] = post("/api/v1/copy_weights", {{"session_id", session}, {"source_path", source}});
  EXPECT_EQ(b, 400);
  EXPECT_EQ(bad["detail"], "missing required field 'model_seq_id'");
  EXPECT_EQ(post("/api/v1/copy_weights", {{"session_id", "session-nope"}, {"model_seq_id", 4}, {"source_path", source}}).first, 404);
}

class PollerFlagsHttpTest : public HttpTest {
 protected:
  void configure(ServerOptions& o) override {
    o.sample_poller = true;
    o.sample_cancel = false;
    o.join_sampling_session = false;
  }
};

TEST_F(PollerFlagsHttpTest, ServeOptionsChooseWhatTheConfigsAnnounce) {
  const json config = post("/api/v1/client/config", {{"sdk_version", "0.32.0"}}).second;
  EXPECT_EQ(config["sample_use_retrieve_futures"], true);
  EXPECT_EQ(config["sample_join_sampling_session"], false);
  EXPECT_EQ(post("/api/v1/client/dynamic_config", json::object()).second["sample_cancel_enabled"], false);
}

// The audit log records events when they happen: a deleted checkpoint's creation and deletion
// both stay listed, with event_details (0.30+).
TEST_F(HttpTest, TheAuditLogRecordsWhatHappenedIncludingDeletions) {
  const std::string m = model();
  auto [s1, f1] = post("/api/v1/save_weights", {{"model_id", m}, {"seq_id", 1}, {"path", "w1"}, {"type", "save_weights"}});
  ASSERT_EQ(s1, 200);
  result(f1["request_id"]);
  const std::string ck = "/api/v1/training_runs/" + m + "/checkpoints/weights/w1";
  ASSERT_EQ(cli->Post((ck + "/publish").c_str(), "", "application/json")->status, 200);
  ASSERT_EQ(cli->Put((ck + "/ttl").c_str(), json{{"ttl_seconds", 600}}.dump(), "application/json")->status, 200);
  ASSERT_EQ(cli->Delete(ck.c_str())->status, 200);
  auto [s2, audit] = get("/api/v1/audit?event_type=checkpoints");
  ASSERT_EQ(s2, 200);
  std::vector<std::string> events;
  for (const auto& e : audit["entries"]) {
    events.push_back(e["event"]);
    EXPECT_EQ(e["tinker_path"], "tinker://" + m + "/weights/w1");
    EXPECT_EQ(e["purpose"], "training");
    EXPECT_TRUE(e["event_details"].is_object());
  }
  EXPECT_EQ(events, (std::vector<std::string>{"checkpoint_deleted", "checkpoint_ttl_changed", "checkpoint_published",
                                              "checkpoint_created"}));
  EXPECT_EQ(audit["entries"][1]["event_details"]["ttl_seconds"], "600");
  auto [s3, all] = get("/api/v1/audit?event_type=all");
  ASSERT_EQ(s3, 200);
  EXPECT_EQ(all["entries"].back()["event"], "session_created");  // the oldest
}

// kiln serve --api-keys FILE --jwt-auth: only listed keys pass (others get the 401 the SDKs raise
// as AuthenticationError); client/config turns on the JWT exchange, and the JWT carries the
// identity (sub) that training runs name as model_owner, and the key's email.
class KeyedHttpTest : public HttpTest {
 protected:
  void configure(ServerOptions& o) override {
    o.api_keys = {{"tml-test", "alice@example.com"}, {"tml-bob", ""}};
    o.jwt_auth = true;
  }
  static json jwt_claims(const std::string& jwt) {
    std::string payload = jwt.substr(jwt.find('.') + 1);
    payload = payload.substr(0, payload.find('.'));
    static const std::string abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    int val = 0, bits = -8;
    for (char c : payload) {
      val = (val << 6) + static_cast<int>(abc.find(c));
      if ((bits += 6) >= 0) out.push_back(static_cast<char>((val >> bits) & 0xff)), bits -= 8;
    }
    return json::parse(out);
  }
};

TEST_F(KeyedHttpTest, OnlyListedKeysPassAndTheJwtCarriesTheOwnerIdentity) {
  httplib::Client other(server->base_url());
  other.set_default_headers({{"X-API-Key", "tml-mallory"}});
  auto r = other.Post("/api/v1/create_session", "{}", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(json::parse(r->body)["detail"], "invalid API key: unknown, revoked or expired");
  EXPECT_EQ(post("/api/v1/client/config", {{"sdk_version", "0.30.1"}}).second["pjwt_auth_enabled"], true);
  auto [s, token] = post("/api/v1/auth/token", json::object());
  ASSERT_EQ(s, 200) << token;
  const json claims = jwt_claims(token["jwt"]);
  EXPECT_EQ(claims["email"], "alice@example.com");
  const std::string sub = claims["sub"];
  EXPECT_EQ(sub.rfind("tml:organization_user:", 0), 0u) << sub;
  EXPECT_GT(claims["exp"].get<int64_t>(), claims["iat"].get<int64_t>());
  // The JWT stands for the key from now on, and the run it makes is owned by the JWT's identity.
  httplib::Client with_jwt(server->base_url());
  with_jwt.set_default_headers({{"X-API-Key", token["jwt"].get<std::string>()}});
  auto created = with_jwt.Post("/api/v1/create_session", "{}", "application/json");
  ASSERT_EQ(created->status, 200) << created->body;
  const std::string m = model();
  EXPECT_EQ(get("/api/v1/training_runs/" + m).second["model_owner"], sub);
  // Bob's identity is another one, with the default email.
  httplib::Client bob(server->base_url());
  bob.set_default_headers({{"X-API-Key", "tml-bob"}});
  auto bob_token = bob.Post("/api/v1/auth/token", "{}", "application/json");
  ASSERT_EQ(bob_token->status, 200);
  const json bob_claims = jwt_claims(json::parse(bob_token->body)["jwt"]);
  EXPECT_NE(bob_claims["sub"], sub);
  EXPECT_NE(bob_claims["email"].get<std::string>().find("@kiln.local"), std::string::npos);
}

}  // namespace
}  // namespace kiln::http

namespace kiln::http {
namespace {

// tinker 0.39's save_weights_external: a future answering {path, size_bytes}, a checkpoint listed
// as "external", and a download URL per file (Kiln's metadata left out) serving the weights.
TEST_F(HttpTest, SaveWeightsExternalListsADownloadUrlPerFile) {
  const std::string m = model(8);
  auto [s, submitted] = post("/api/v1/save_weights_external", {{"model_id", m}, {"path", "hf"}, {"seq_id", 1}, {"ttl_seconds", 600}});
  ASSERT_EQ(s, 200) << submitted;
  const json saved = result(submitted["request_id"]);
  EXPECT_EQ(saved["path"], "tinker://" + m + "/external_weights/hf");
  EXPECT_EQ(saved["type"], "save_weights_external");
  ASSERT_TRUE(saved["size_bytes"].is_number_integer()) << saved;

  const json listed = get("/api/v1/training_runs/" + m + "/checkpoints").second;
  ASSERT_EQ(listed["checkpoints"].size(), 1u) << listed;
  EXPECT_EQ(listed["checkpoints"][0]["checkpoint_type"], "external");
  EXPECT_EQ(listed["checkpoints"][0]["checkpoint_id"], "external_weights/hf");
  EXPECT_FALSE(listed["checkpoints"][0]["expires_at"].is_null());

  auto [u, urls] = get("/api/v1/training_runs/" + m + "/checkpoints/external_weights/hf/external_weights_urls");
  ASSERT_EQ(u, 200) << urls;
  EXPECT_FALSE(urls["expires"].get<std::string>().empty());
  std::vector<std::string> names;
  for (const auto& [name, url] : urls["urls"].items()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"adapter_config.json", "config.json", "model.safetensors"}));
  const std::string url = urls["urls"]["model.safetensors"];
  auto weights = cli->Get(url.substr(url.find("/_kiln/")).c_str());
  ASSERT_EQ(weights->status, 200);
  EXPECT_EQ(static_cast<int64_t>(weights->body.size()), saved["size_bytes"].get<int64_t>());  // the weights' bytes
  EXPECT_GT(service::decode_safetensors(weights->body).tensors.size(), 0);

  // Not a sampler: sampling from it is refused; a training state of another name is not found.
  EXPECT_EQ(post("/api/v1/create_sampling_session", {{"session_id", m.substr(0, m.find(':'))}, {"sampling_session_seq_id", 0},
                                                     {"model_path", saved["path"]}}).first, 400);
  EXPECT_EQ(get("/api/v1/training_runs/" + m + "/checkpoints/external_weights/none/external_weights_urls").first, 404);
  EXPECT_EQ(post("/api/v1/save_weights_external", {{"model_id", m}, {"path", "../x"}, {"seq_id", 2}}).first, 400);
}

}  // namespace
}  // namespace kiln::http
