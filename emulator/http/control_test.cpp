// The control API (/_kiln/) over loopback: reset, state, virtual clock, progression, faults and
// the journal.
#include "http/test_fixture.hpp"  // first: Eigen before httplib.h (see http/routes.hpp)

#include <zstd.h>

#include "tinker_public.pb.h"

#include <filesystem>

namespace kiln::http {
namespace {

using namespace testing;

class ControlTest : public HttpTest {
 protected:
  json fb_body(const std::string& m, int64_t seq) {
    return {{"forward_backward_input", {{"data", {datum({72, 105, 32, 75, 105, 108, 110})}}, {"loss_fn", "cross_entropy"}}},
            {"model_id", m}, {"seq_id", seq}, {"type", "forward_backward"}};
  }
  json step_body(const std::string& m, int64_t seq) {
    return {{"adam_params", {{"learning_rate", 0.01}}}, {"model_id", m}, {"seq_id", seq}, {"type", "optim_step"}};
  }
  json state() { return get("/_kiln/state").second; }
  std::pair<int, json> del(const std::string& path) {
    auto r = cli->Delete(path.c_str());
    return {r ? r->status : 0, r && !r->body.empty() ? json::parse(r->body) : json()};
  }
};

TEST_F(ControlTest, StateShowsModelsLossesFuturesAndCheckpoints) {
  const std::string m = model();
  result(post("/api/v1/forward_backward", fb_body(m, 1)).second["request_id"]);
  result(post("/api/v1/optim_step", step_body(m, 2)).second["request_id"]);
  result(post("/api/v1/save_weights", {{"model_id", m}, {"path", "s"}, {"seq_id", 3}, {"ttl_seconds", 60}}).second["request_id"]);
  const json s = state();
  ASSERT_EQ(s["models"].size(), 1u);
  EXPECT_EQ(s["models"][0]["model_id"], m);
  EXPECT_EQ(s["models"][0]["optimizer_step"], 1);
  EXPECT_EQ(s["models"][0]["next_seq_id"], 4);
  ASSERT_EQ(s["models"][0]["recent_losses"].size(), 1u);
  EXPECT_GT(s["models"][0]["recent_losses"][0].get<double>(), 0.0);
  EXPECT_EQ(s["sessions"].size(), 1u);
  EXPECT_EQ(s["futures"]["done"].size(), 4u);  // create_model, fb, step, save
  EXPECT_TRUE(s["futures"]["pending"].empty());
  ASSERT_EQ(s["checkpoints"].size(), 1u);
  EXPECT_TRUE(s["checkpoints"][0]["expires_at"].is_string());
  EXPECT_TRUE(s["virtual_clock"].get<bool>());
  // The loss curve: [step, loss per loss token, grad norm or null] per forward_backward.
  const json curve = s["models"][0]["curve"];
  ASSERT_EQ(curve.size(), 1u);
  EXPECT_EQ(curve[0][0], 1);
  EXPECT_NEAR(curve[0][1].get<double>(), s["models"][0]["recent_losses"][0].get<double>() / 6, 1e-9);  // 6 tokens
  EXPECT_TRUE(curve[0][2].is_null());  // the step emitted no grad norm
}

TEST_F(ControlTest, TheDashboardsDeleteRemovesACheckpointOfAnyTenantAndRefusesBadPaths) {
  const std::string m = model();
  const std::string path = result(post("/api/v1/save_weights", {{"model_id", m}, {"path", "d"}, {"seq_id", 1}}).second["request_id"])["path"];
  const std::string tenant = state()["checkpoints"][0]["tenant"];
  auto [bad, why] = post("/_kiln/delete_checkpoint", {{"tenant", tenant}, {"tinker_path", "weights/d"}});
  EXPECT_EQ(bad, 400);
  EXPECT_NE(why["detail"].get<std::string>().find("tinker_path"), std::string::npos) << why;
  EXPECT_EQ(post("/_kiln/delete_checkpoint", {{"tinker_path", path}}).first, 400);  // no tenant
  EXPECT_EQ(post("/_kiln/delete_checkpoint", {{"tenant", "tenant-nobody"}, {"tinker_path", path}}).first, 404);
  EXPECT_EQ(state()["checkpoints"].size(), 1u);  // refusals changed nothing
  auto [ok, body] = post("/_kiln/delete_checkpoint", {{"tenant", tenant}, {"tinker_path", path}});
  ASSERT_EQ(ok, 200) << body;
  EXPECT_TRUE(state()["checkpoints"].empty());
  EXPECT_EQ(post("/_kiln/delete_checkpoint", {{"tenant", tenant}, {"tinker_path", path}}).first, 404);
}

TEST_F(ControlTest, TheDashboardPageIsServedWithoutACredential) {
  httplib::Client anonymous(server->base_url());
  auto r = anonymous.Get("/_kiln/ui");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(r->body.find("<title>Kiln</title>"), std::string::npos);
  // It fetches nothing from elsewhere: the only absolute URL is the SVG namespace's name.
  EXPECT_EQ(r->body.find("https://"), std::string::npos);
  for (size_t at = r->body.find("http://"); at != std::string::npos; at = r->body.find("http://", at + 1))
    EXPECT_EQ(r->body.substr(at, 26), "http://www.w3.org/2000/svg") << r->body.substr(at, 60);
}

TEST_F(ControlTest, VirtualClockExpiresCheckpoints) {
  const std::string m = model();
  result(post("/api/v1/save_weights", {{"model_id", m}, {"path", "s"}, {"seq_id", 1}, {"ttl_seconds", 60}}).second["request_id"]);
  const std::string list = "/api/v1/training_runs/" + m + "/checkpoints";
  EXPECT_EQ(get(list).second["checkpoints"].size(), 1u);
  auto [cs, now] = post("/_kiln/clock", {{"advance_seconds", 61}});
  ASSERT_EQ(cs, 200) << now;
  EXPECT_TRUE(get(list).second["checkpoints"].empty());
  EXPECT_TRUE(state()["checkpoints"][0]["expired"].get<bool>());
  EXPECT_EQ(post("/_kiln/clock", json::object()).first, 400);
  // On the real clock, time cannot be moved.
  TempDir other;
  auto opts = service::testing::options(other.path(), nullptr);
  opts.clock = std::make_shared<service::RealClock>();
  service::TrainerService real(opts);
  EXPECT_THROW(real.advance_clock(1), service::Conflict);
}

TEST_F(ControlTest, ResetForgetsATenantOrEverything) {
  const std::string first_session = [&] {
    auto [s, b] = post("/api/v1/create_session", json::object());
    return b["session_id"].get<std::string>();
  }();
  const std::string m = model();
  result(post("/api/v1/save_weights", {{"model_id", m}, {"path", "s"}, {"seq_id", 1}}).second["request_id"]);
  httplib::Client bob(server->base_url());
  bob.set_default_headers({{"X-API-Key", "tml-bob"}});
  const std::string bob_session = json::parse(bob.Post("/api/v1/create_session", "{}", "application/json")->body)["session_id"];

  ASSERT_EQ(post("/_kiln/reset", {{"api_key", "tml-test"}}).first, 200);
  EXPECT_EQ(post("/api/v1/get_info", {{"model_id", m}}).first, 404);
  EXPECT_TRUE(get("/api/v1/checkpoints").second["checkpoints"].empty());
  EXPECT_EQ(bob.Get(("/api/v1/sessions/" + bob_session).c_str())->status, 200);  // bob is untouched

  ASSERT_EQ(post("/_kiln/reset", json::object()).first, 200);
  const json s = state();
  EXPECT_TRUE(s["sessions"].empty());
  EXPECT_TRUE(s["models"].empty());
  EXPECT_TRUE(s["checkpoints"].empty());
  EXPECT_TRUE(s["futures"]["done"].empty());
  EXPECT_TRUE(get("/_kiln/journal").second["entries"].empty());
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::recursive_directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 0u);
  // A seeded server starts over: the first session id comes back.
  EXPECT_EQ(post("/api/v1/create_session", json::object()).second["session_id"], first_session);
}

TEST_F(ControlTest, ProgressionHoldsResultsForPollsOrSeconds) {
  const std::string m = model();
  ASSERT_EQ(post("/_kiln/progression", {{"mode", "after_polls"}, {"polls", 2}, {"queue_state", "paused_capacity"},
                                        {"reason", "emulated capacity"}}).first, 200);
  const std::string rid = post("/api/v1/forward_backward", fb_body(m, 1)).second["request_id"];
  for (int i = 0; i < 2; ++i) {
    auto [st, b] = post("/api/v1/retrieve_future", {{"request_id", rid}});
    EXPECT_EQ(st, 408);
    EXPECT_EQ(b["queue_state"], "paused_capacity");
    EXPECT_EQ(b["queue_state_reason"], "emulated capacity");
  }
  auto [st3, b3] = post("/api/v1/retrieve_future", {{"request_id", rid}});
  EXPECT_EQ(st3, 200) << b3;
  EXPECT_TRUE(b3.contains("loss_fn_outputs"));

  ASSERT_EQ(post("/_kiln/progression", {{"mode", "after_seconds"}, {"seconds", 30}}).first, 200);
  EXPECT_EQ(get("/_kiln/progression").second["mode"], "after_seconds");
  const std::string rid2 = post("/api/v1/optim_step", step_body(m, 2)).second["request_id"];
  EXPECT_EQ(post("/api/v1/retrieve_future", {{"request_id", rid2}}).first, 408);
  post("/_kiln/clock", {{"advance_seconds", 31}});
  EXPECT_EQ(post("/api/v1/retrieve_future", {{"request_id", rid2}}).first, 200);
  EXPECT_EQ(post("/_kiln/progression", {{"mode", "later"}}).first, 400);
}

TEST_F(ControlTest, FaultsFireAsRuledAndChangeNothingWhenTheyFail) {
  const std::string m = model();
  auto [fs, set] = post("/_kiln/faults", {{"seed", 1}, {"rules", {
      {{"endpoint", "/api/v1/forward_backward"}, {"times", 1}, {"action", {{"kind", "status"}, {"status", 503}}}},
      {{"request_type", "optim_step"}, {"model", "kiln/tiny"}, {"action", {{"kind", "fail_future"}, {"category", "user"},
                                                                            {"message", "injected: step refused"}}}},
      {{"endpoint", "retrieve_future"}, {"skip", 1}, {"times", 1}, {"action", {{"kind", "try_again"}, {"queue_state", "paused_rate_limit"}}}}}}});
  ASSERT_EQ(fs, 200) << set;
  EXPECT_EQ(post("/api/v1/forward_backward", fb_body(m, 1)).first, 503);
  auto [ok, fut] = post("/api/v1/forward_backward", fb_body(m, 1));  // the client's retry
  ASSERT_EQ(ok, 200);
  EXPECT_EQ(post("/api/v1/retrieve_future", {{"request_id", fut["request_id"]}}).first, 200);  // skipped once
  auto [ta, tb] = post("/api/v1/retrieve_future", {{"request_id", fut["request_id"]}});
  EXPECT_EQ(ta, 408);
  EXPECT_EQ(tb["queue_state"], "paused_rate_limit");
  EXPECT_EQ(tb["request_id"], fut["request_id"]);
  const json failed = result(post("/api/v1/optim_step", step_body(m, 2)).second["request_id"]);
  EXPECT_EQ(failed["error"], "injected: step refused");
  EXPECT_EQ(failed["category"], "user");
  EXPECT_EQ(state()["models"][0]["optimizer_step"], 0);  // the failed step changed nothing
  EXPECT_EQ(state()["models"][0]["next_seq_id"], 3);     // but it kept its place in the order
  const json rules = get("/_kiln/faults").second["rules"];
  EXPECT_EQ(rules[0]["fired"], 1);
  EXPECT_EQ(rules[1]["fired"], 1);
  EXPECT_EQ(rules[2]["fired"], 1);
  EXPECT_EQ(del("/_kiln/faults").first, 200);
  EXPECT_TRUE(get("/_kiln/faults").second["rules"].empty());
  EXPECT_EQ(post("/_kiln/faults", {{"rules", {{{"action", {{"kind", "explode"}}}}}}}).first, 400);
  // A try_again may come as a 200 too (protocol.md rule A1); other statuses are refused.
  post("/_kiln/faults", {{"rules", {{{"endpoint", "retrieve_future"}, {"times", 1}, {"action", {{"kind", "try_again"}, {"status", 200}}}}}}});
  auto [t200, b200] = post("/api/v1/retrieve_future", {{"request_id", fut["request_id"]}});
  EXPECT_EQ(t200, 200);
  EXPECT_EQ(b200["type"], "try_again");
  const auto [bad, why] = post("/_kiln/faults", {{"rules", {{{"action", {{"kind", "try_again"}, {"status", 503}}}}}}});
  EXPECT_EQ(bad, 400);
  EXPECT_NE(why.dump().find("must be 408 or 200"), std::string::npos) << why;
}

TEST_F(ControlTest, FaultsMatchPollsAndProtobufSubmitsByTheirModel) {
  const std::string a = model(), b = model();
  post("/_kiln/faults", {{"rules", {{{"endpoint", "retrieve_future"}, {"model", b}, {"times", 1}, {"action", {{"kind", "status"}, {"status", 503}}}},
                                    {{"endpoint", "/api/v1/forward_backward"}, {"model", b}, {"times", 1},
                                     {"action", {{"kind", "status"}, {"status", 429}}}}}}});
  const std::string fa = post("/api/v1/forward_backward", fb_body(a, 1)).second["request_id"];
  EXPECT_EQ(post("/api/v1/retrieve_future", {{"request_id", fa}}).first, 200);  // a's poll: no match
  httplib::Client proto(server->base_url());
  proto.set_default_headers({{"X-API-Key", "tml-test"}, {"Content-Encoding", "zstd"}});
  auto refused = proto.Post("/api/v1/forward_backward", zstd_forward_backward(b), "application/x-protobuf");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 429);  // b's protobuf submit: decoded, matched by its model
  auto accepted = proto.Post("/api/v1/forward_backward", zstd_forward_backward(b), "application/x-protobuf");
  ASSERT_TRUE(accepted);
  ASSERT_EQ(accepted->status, 200) << accepted->body;
  const std::string fb = json::parse(accepted->body)["request_id"];
  EXPECT_EQ(post("/api/v1/retrieve_future", {{"request_id", fb}}).first, 503);  // b's poll: its future's model
  EXPECT_EQ(post("/api/v1/retrieve_future", {{"request_id", fb}}).first, 200);
}

TEST_F(ControlTest, TheSameSeedGivesTheSameFaults) {
  const auto pattern = [&](uint64_t seed) {
    post("/_kiln/faults", {{"seed", seed}, {"rules", {{{"endpoint", "healthz"}, {"probability", 0.5},
                                                       {"action", {{"kind", "status"}, {"status", 502}}}}}}});
    std::string out;
    for (int i = 0; i < 32; ++i) out += get("/api/v1/healthz").first == 502 ? 'x' : '.';
    return out;
  };
  const std::string a = pattern(42), b = pattern(42), c = pattern(43);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a.find('x'), std::string::npos);
  EXPECT_NE(a.find('.'), std::string::npos);
}

TEST_F(ControlTest, DelayCloseAndSlowBodyFaults) {
  post("/_kiln/faults", {{"rules", {{{"endpoint", "telemetry"}, {"action", {{"kind", "close"}}}},
                                    {{"endpoint", "get_server_capabilities"}, {"action", {{"kind", "slow_body"}, {"seconds", 0.3}}}},
                                    {{"endpoint", "client/config"}, {"action", {{"kind", "delay"}, {"seconds", 0.2}}}}}}});
  auto closed = cli->Post("/api/v1/telemetry", "{}", "application/json");
  EXPECT_FALSE(closed && closed->status == 200 && closed->body == R"({"status":"accepted"})");
  auto t0 = std::chrono::steady_clock::now();
  auto slow = get("/api/v1/get_server_capabilities");
  EXPECT_EQ(slow.first, 200);
  EXPECT_TRUE(slow.second.contains("supported_models"));  // the whole body arrives, slowly
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(250));
  t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(post("/api/v1/client/config", json::object()).first, 200);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(190));
}

TEST_F(ControlTest, JournalRecordsDecodedRequestsWithoutSecrets) {
  const std::string m = model();
  const std::string frame = zstd_forward_backward(m);
  ASSERT_EQ(cli->Post("/api/v1/forward_backward", {{"Content-Encoding", "zstd"}}, frame, "application/x-protobuf")->status, 200);

  const json all = get("/_kiln/journal").second;
  const json& entries = all["entries"];
  ASSERT_GE(entries.size(), 3u);
  const json& last = entries.back();
  EXPECT_EQ(last["path"], "/api/v1/forward_backward");
  EXPECT_EQ(last["status"], 200);
  EXPECT_EQ(last["request"]["transport"], "protobuf");
  EXPECT_TRUE(last["request"]["zstd"].get<bool>());
  EXPECT_EQ(last["request"]["seq_id"], 1);
  EXPECT_EQ(last["request"]["forward_backward_input"]["data"][0]["model_input"]["chunks"][0]["tokens"], json::array({5, 6, 7}));
  EXPECT_EQ(last["headers"]["X-API-Key"], "<redacted>");
  EXPECT_EQ(last["tenant"], service::TrainerService::tenant_key("tml-test"));
  EXPECT_TRUE(last["response"].contains("request_id"));
  EXPECT_NE(entries.front()["request"].dump().find("create_session"), std::string::npos);
  // Readers page with since.
  const int64_t seq = last["seq"];
  get("/api/v1/healthz");
  const json after = get("/_kiln/journal?since=" + std::to_string(seq)).second["entries"];
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0]["path"], "/api/v1/healthz");
  const json everything = get("/_kiln/journal").second;  // named: the loop must not outlive it
  for (const auto& e : everything["entries"]) EXPECT_EQ(e["path"].get<std::string>().rfind("/_kiln", 0), std::string::npos);
}

}  // namespace
}  // namespace kiln::http
