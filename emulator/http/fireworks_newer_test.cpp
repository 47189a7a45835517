// What fireworks-ai 1.2.4–1.2.30 added on the wire (docs/protocol.md §W14): each addition either
// works or is refused by name, with requests shaped as the spec's Fireworks section says.
#include "http/test_fixture.hpp"

namespace kiln::http {
namespace {

using nlohmann::json;
using testing::HttpTest;

json create_body(const std::string& session, int seq, const json& extra) {
  json b = {{"session_id", session}, {"model_seq_id", seq}, {"base_model", "kiln/tiny"},
            {"lora_config", {{"rank", 4}}}, {"type", "create_model"}};
  b.update(extra, true);  // merges objects (lora_config keeps its rank)
  return b;
}

// lora_init_method / init_method: "kaiming" is Kiln's own initialisation, so it is accepted and
// changes nothing; "nora" and anything else are refused by field; nothing is created then.
TEST_F(HttpTest, LoraInitMethodKaimingIsKilnsOwnAndNoraIsRefused) {
  const std::string session = this->session();
  auto [s1, f1] = post("/api/v1/create_model", create_body(session, 0, {{"lora_init_method", "kaiming"}}));
  ASSERT_EQ(s1, 200) << f1;
  const json created = result(f1["request_id"]);
  EXPECT_EQ(created["type"], "create_model");
  EXPECT_EQ(created["supports_router_replay"], false);  // 1.2.18 reads it; Kiln's stand-ins have no router
  EXPECT_FALSE(created.contains("comms"));              // comms v2 is never offered: the client keeps v1
  auto [s2, f2] = post("/api/v1/create_model", create_body(session, 1, {{"lora_config", {{"init_method", "kaiming"}}}}));
  ASSERT_EQ(s2, 200) << f2;
  // Both adapters start from the same seeded initialisation as one made without the field.
  auto [s3, f3] = post("/api/v1/create_model", create_body(session, 2, json::object()));
  ASSERT_EQ(s3, 200);
  const std::string plain = result(f3["request_id"])["model_id"], kaiming = created["model_id"];
  auto logprobs = [&](const std::string& m) {
    auto [s, f] = post("/api/v1/forward", {{"forward_input", {{"data", {datum({1, 2, 3, 4})}}, {"loss_fn", "cross_entropy"}}},
                                           {"model_id", m}, {"seq_id", 1}});
    EXPECT_EQ(s, 200) << f;
    return result(f["request_id"])["loss_fn_outputs"][0]["logprobs"]["data"];
  };
  EXPECT_EQ(logprobs(kaiming), logprobs(plain));

  auto [s4, b4] = post("/api/v1/create_model", create_body(session, 3, {{"lora_init_method", "nora"}}));
  EXPECT_EQ(s4, 400);
  EXPECT_EQ(b4["detail"], "field 'lora_init_method': LoRA init method 'nora' is not supported (its definition is not "
                          "public); Kiln initialises LoRA the 'kaiming' way only");
  auto [s5, b5] = post("/api/v1/create_model", create_body(session, 3, {{"lora_config", {{"init_method", "gaussian"}}}}));
  EXPECT_EQ(s5, 400);
  EXPECT_EQ(b5["detail"], "field 'lora_config.init_method' must be 'kaiming' or 'nora', got 'gaussian'");
  auto [s6, b6] = post("/api/v1/create_model", create_body(session, 3, {{"projection_head_dim", 128}}));
  EXPECT_EQ(s6, 400);
  EXPECT_EQ(b6["detail"], "field 'projection_head_dim': projection heads are not supported by Kiln");
  // The refused requests made nothing: seq 3 is still free.
  auto [s7, f7] = post("/api/v1/create_model", create_body(session, 3, json::object()));
  EXPECT_EQ(s7, 200) << f7;
}

// "comms v2": Kiln never offers it, so a forward carrying it is refused; v1 is the plain form.
TEST_F(HttpTest, CommsV2IsRefusedAndV1Accepted) {
  const std::string m = model();
  json fb = {{"forward_backward_input", {{"data", {datum({1, 2, 3})}}, {"loss_fn", "cross_entropy"}}}, {"model_id", m}, {"seq_id", 1}};
  fb["comms"] = "v2";
  auto [s1, b1] = post("/api/v1/forward_backward", fb);
  EXPECT_EQ(s1, 400);
  EXPECT_EQ(b1["detail"], "field 'comms': 'v2' is not supported; Kiln speaks comms v1 (plain JSON) only and never "
                          "offers v2 at create_model");
  fb["comms"] = "v1";
  fb["seq_id"] = 2;  // a refused request keeps its place in the order (B1)
  auto [s2, f2] = post("/api/v1/forward_backward", fb);
  ASSERT_EQ(s2, 200) << f2;
  EXPECT_TRUE(result(f2["request_id"]).contains("loss_fn_outputs"));
}

// String and bool loss_fn_config values are accepted on the wire; each key is then judged by the
// loss, which names it. Fireworks' own built-ins without a public definition are refused by name.
TEST_F(HttpTest, FireworksLossConfigValuesAndBuiltinsAreJudgedByName) {
  const std::string m = model();
  int seq = 0;  // each refused request keeps its place in the order (B1)
  auto fb = [&](const std::string& loss, const json& config) {
    json d = datum({1, 2, 3});
    d["loss_fn_inputs"]["logprobs"] = {{"data", {-1.0, -1.0}}, {"dtype", "float32"}, {"shape", {2}}};
    d["loss_fn_inputs"]["advantages"] = {{"data", {1.0, 1.0}}, {"dtype", "float32"}, {"shape", {2}}};
    return post("/api/v1/forward_backward", {{"forward_backward_input", {{"data", {d}}, {"loss_fn", loss}, {"loss_fn_config", config}}},
                                             {"model_id", m}, {"seq_id", ++seq}});
  };
  auto [s1, b1] = fb("ppo", {{"clip_low_threshold", true}});
  EXPECT_EQ(s1, 400);
  EXPECT_EQ(b1["detail"], "loss_fn_config['clip_low_threshold'] must be a number, got 'true'");
  auto [s2, b2] = fb("dapo", {{"token_level", false}});
  EXPECT_EQ(s2, 400);
  EXPECT_EQ(b2["detail"], "Invalid loss_fn_config keys for loss_fn='dapo': ['token_level']. Allowed keys: "
                          "['clip_low_threshold', 'clip_high_threshold'].");
  for (const std::string loss : {"kl_distillation", "dppo"}) {
    auto [s, b] = fb(loss, json::object());
    EXPECT_EQ(s, 400);
    EXPECT_EQ(b["detail"], "loss_fn '" + loss + "' is a Fireworks trainer built-in whose definition is not public; Kiln "
                           "does not emulate it. Supported: cross_entropy, importance_sampling, ppo, cispo, dro, dapo, gspo.");
  }
  // forward_backward_custom(output="projection") asks for the projection head's output.
  auto [s3, b3] = fb("cross_entropy", {{"output", "projection"}});
  EXPECT_EQ(s3, 400);
  EXPECT_EQ(b3["detail"], "loss_fn_config output modes are not supported (got key 'output')");
  auto [s4, f4] = fb("gspo", {{"clip_low_threshold", 0.999}, {"clip_high_threshold", 1.001}});
  ASSERT_EQ(s4, 200) << f4;
  EXPECT_TRUE(result(f4["request_id"]).contains("metrics"));  // the refusals held nothing up
}

// r3_ttl_seconds (1.2.14, router-replay storage on sampling) is accepted and unused: the
// stand-ins have no router to replay.
TEST_F(HttpTest, RouterReplayTtlOnSamplingIsAccepted) {
  auto [a, fut] = post("/api/v1/asample", {{"sampling_session_id", sampler()}, {"seq_id", 0},
                                           {"num_samples", 1}, {"prompt", {{"chunks", {{{"tokens", {1, 2}}, {"type", "encoded_text"}}}}}},
                                           {"sampling_params", {{"max_tokens", 2}, {"seed", 1}, {"r3_ttl_seconds", 600}}},
                                           {"r3_ttl_seconds", 600}, {"type", "sample"}});
  ASSERT_EQ(a, 200) << fut;
  EXPECT_EQ(result(fut["request_id"])["sequences"][0]["tokens"].size(), 2u);
}

// A trainer-capacity 409 as a fault action: answered without running the request, then the
// retry goes through.
TEST_F(HttpTest, TrainerCapacityFaultAnswers409ThenTheRetryRuns) {
  const std::string m = model();
  auto [bad, bad_body] = post("/_kiln/faults", {{"rules", {{{"action", {{"kind", "trainer_capacity"}, {"status", 503}}}}}}});
  EXPECT_EQ(bad, 400);
  EXPECT_EQ(bad_body["detail"], "field 'rules[0].action.status' of a trainer_capacity is always 409");
  auto [fs, set] = post("/_kiln/faults", {{"rules", {{{"endpoint", "/api/v1/forward_backward"}, {"times", 1},
                                                      {"action", {{"kind", "trainer_capacity"}}}}}}});
  ASSERT_EQ(fs, 200) << set;
  const json fb = {{"forward_backward_input", {{"data", {datum({1, 2, 3})}}, {"loss_fn", "cross_entropy"}}}, {"model_id", m}, {"seq_id", 1}};
  auto [s1, b1] = post("/api/v1/forward_backward", fb);
  EXPECT_EQ(s1, 409);
  EXPECT_EQ(b1["reason"], "trainer_capacity");
  EXPECT_EQ(b1["detail"], "no trainer capacity is free for this request right now; retry later");
  auto [s2, f2] = post("/api/v1/forward_backward", fb);
  ASSERT_EQ(s2, 200) << f2;
  EXPECT_TRUE(result(f2["request_id"]).contains("loss_fn_outputs"));
  EXPECT_EQ(get("/_kiln/faults").second["rules"][0]["action"], json({{"kind", "trainer_capacity"}, {"status", 409},
      {"body", {{"detail", "no trainer capacity is free for this request right now; retry later"}, {"reason", "trainer_capacity"}}}}));
}

}  // namespace
}  // namespace kiln::http
