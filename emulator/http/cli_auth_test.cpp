// What `tinker auth login` / `logout` call (tinker 0.26+ CLI, docs/protocol.md §W12, "CLI login"), and the
// checkpoint storage usage `tinker` 0.32+ reports, over loopback.
#include "http/test_fixture.hpp"

namespace kiln::http {
namespace {

using nlohmann::json;
using testing::HttpTest;

// A JWT-shaped bearer Kiln did not issue: what a WorkOS access token looks like to it.
const char* kWorkosToken = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyXzEifQ.c2lnbmF0dXJl";

class CliAuthTest : public HttpTest {
 protected:
  void configure(ServerOptions& o) override {
    o.api_keys = {{"tml-test", "alice@example.com"}};  // only listed (and minted) keys pass
    o.api_key_state_file = dir.path() + "/.api_keys.json";
  }
  std::pair<int, json> send(const char* method, const std::string& path, const httplib::Headers& headers,
                            const json& body = nullptr) {
    httplib::Client c(server->base_url());
    httplib::Result r = std::string(method) == "GET" ? c.Get(path, headers)
                        : std::string(method) == "DELETE" ? c.Delete(path, headers)
                        : c.Post(path, headers, body.is_null() ? "" : body.dump(), "application/json");
    EXPECT_TRUE(r) << path;
    if (!r) return {0, json()};
    return {r->status, r->body.empty() ? json() : json::parse(r->body)};
  }
};

TEST_F(CliAuthTest, AuthConfigNeedsNoCredential) {
  auto [s, b] = send("GET", "/api/unauthed/auth-config", {});
  EXPECT_EQ(s, 200);
  EXPECT_EQ(b, json({{"clientId", "kiln-offline"}}));
}

// login verifies a pasted key with apikey/me; logout revokes it, after which every route refuses it.
TEST_F(CliAuthTest, MeDescribesAKeyAndDeletingItRevokesIt) {
  auto [s1, me] = send("GET", "/api/v1/auth/apikey/me", {{"X-API-Key", "tml-test"}});
  ASSERT_EQ(s1, 200) << me;
  EXPECT_EQ(me["details"], json({{"org_details", {{"name", "kiln"}}}, {"user_details", {{"email", "alice@example.com"}}}}));
  EXPECT_EQ(me["name"], "kiln");
  EXPECT_EQ(me["note"], "");
  EXPECT_TRUE(me["key_id"].is_number_integer());
  EXPECT_EQ(send("GET", "/api/v1/auth/apikey/me", {{"X-API-Key", "tml-test"}}).second["key_id"], me["key_id"]);  // stable
  EXPECT_EQ(send("GET", "/api/v1/auth/apikey/me", {{"X-API-Key", "tml-stranger"}}).first, 401);
  EXPECT_EQ(send("DELETE", "/api/v1/auth/apikey/me", {{"X-API-Key", "tml-stranger"}}).first, 401);

  EXPECT_EQ(get("/api/v1/training_runs").first, 200);
  auto [s2, del] = send("DELETE", "/api/v1/auth/apikey/me", {{"X-API-Key", "tml-test"}});
  EXPECT_EQ(s2, 200) << del;
  auto [s3, refused] = get("/api/v1/training_runs");
  EXPECT_EQ(s3, 401);
  EXPECT_EQ(refused["detail"], "invalid API key: unknown, revoked or expired");
  EXPECT_EQ(send("GET", "/api/v1/auth/apikey/me", {{"X-API-Key", "tml-test"}}).first, 401);
}

// Minting takes a WorkOS access token as the bearer, never an API key; the minted key then works
// everywhere, even on a server restricted to listed keys, and survives a restart of its registry.
TEST_F(CliAuthTest, AWorkosTokenMintsAKeyThatWorksAndAKeyCannotMintOne) {
  const json body = {{"name", "laptop"}, {"note", "made by tinker auth login"}};
  EXPECT_EQ(send("POST", "/api/v1/auth/apikey", {}, body).first, 401);
  auto [s1, b1] = send("POST", "/api/v1/auth/apikey", {{"Authorization", "Bearer tml-test"}}, body);
  EXPECT_EQ(s1, 403);
  EXPECT_EQ(b1["detail"], "API keys cannot mint API keys: present a WorkOS access token as the bearer");
  auto [s2, b2] = send("POST", "/api/v1/auth/apikey", {{"Authorization", std::string("Bearer ") + kWorkosToken}}, {{"note", "x"}});
  EXPECT_EQ(s2, 400);
  EXPECT_EQ(b2["detail"], "missing required field 'name'");

  auto [s3, minted] = send("POST", "/api/v1/auth/apikey", {{"Authorization", std::string("Bearer ") + kWorkosToken}}, body);
  ASSERT_EQ(s3, 200) << minted;
  const std::string key = minted["api_key"];
  EXPECT_EQ(key.rfind("tml-", 0), 0u);
  EXPECT_TRUE(minted["id"].is_number_integer());
  EXPECT_EQ(minted["details"]["org_details"]["name"], "kiln");
  auto [s4, me] = send("GET", "/api/v1/auth/apikey/me", {{"X-API-Key", key}});
  ASSERT_EQ(s4, 200);
  EXPECT_EQ(me["key_id"], minted["id"]);
  EXPECT_EQ(me["name"], "laptop");
  EXPECT_EQ(me["note"], "made by tinker auth login");
  EXPECT_EQ(me["details"], minted["details"]);
  EXPECT_EQ(send("GET", "/api/v1/training_runs", {{"X-API-Key", key}}).first, 200);
  // The state file holds the key's tenant hash, never the key.
  std::ifstream in(dir.path() + "/.api_keys.json");
  const std::string saved((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(saved.find(key), std::string::npos);
  EXPECT_TRUE(ApiKeys({{"tml-test", ""}}, dir.path() + "/.api_keys.json").accepts(key));

  ASSERT_EQ(send("DELETE", "/api/v1/auth/apikey/me", {{"X-API-Key", key}}).first, 200);
  EXPECT_EQ(send("GET", "/api/v1/training_runs", {{"X-API-Key", key}}).first, 401);
  const ApiKeys reloaded({}, dir.path() + "/.api_keys.json");  // every key passes, but not a revoked one
  EXPECT_FALSE(reloaded.accepts(key));
  EXPECT_TRUE(reloaded.accepts("tml-anyone"));
}

// get_current_checkpoint_storage_usage: the caller's stored checkpoints by project, sizes from disk.
TEST_F(HttpTest, CheckpointStorageUsageCountsStoredCheckpointsByProject) {
  auto [s0, empty] = get("/api/v1/billing/usage/checkpoints/current");
  ASSERT_EQ(s0, 200);
  EXPECT_EQ(empty, json({{"effective_rate_usd_per_gigabyte_month", nullptr}, {"data", json::array()}}));
  const std::string m = model();
  const std::string session = m.substr(0, m.find(':'));
  ASSERT_EQ(cli->Put(("/api/v1/sessions/" + session + "/project").c_str(), json{{"project_id", "proj-x"}}.dump(),
                     "application/json")->status, 200);
  for (int seq : {1, 2}) {
    auto [s, f] = post("/api/v1/save_weights", {{"model_id", m}, {"seq_id", seq}, {"path", "ck" + std::to_string(seq)},
                                                {"type", "save_weights"}});
    ASSERT_EQ(s, 200) << f;
    result(f["request_id"]);
  }
  auto [s1, usage] = get("/api/v1/billing/usage/checkpoints/current");
  ASSERT_EQ(s1, 200);
  ASSERT_EQ(usage["data"].size(), 1u) << usage;
  const json row = usage["data"][0];
  EXPECT_EQ(row["project_id"], "proj-x");
  EXPECT_EQ(row["checkpoint_count"], 2);
  int64_t on_disk = 0;
  const json listed = get("/api/v1/checkpoints").second;
  ASSERT_EQ(listed["checkpoints"].size(), 2u);
  for (const auto& c : listed["checkpoints"]) on_disk += c["size_bytes"].get<int64_t>();
  EXPECT_GT(on_disk, 0);
  EXPECT_EQ(row["size_bytes"], on_disk);
  EXPECT_DOUBLE_EQ(row["size_gigabytes"].get<double>(), static_cast<double>(on_disk) / (1 << 30));
  EXPECT_EQ(row["user_email"], get("/api/v1/auth/apikey/me").second["details"]["user_details"]["email"]);
  EXPECT_EQ(row["org_user_urn"].get<std::string>().rfind("tml:organization_user:", 0), 0u);
  EXPECT_TRUE(row["estimated_monthly_cost_usd"].is_null());
  EXPECT_EQ(get("/api/v1/billing/usage/checkpoints/current?project_id=proj-x").second["data"].size(), 1u);
  EXPECT_TRUE(get("/api/v1/billing/usage/checkpoints/current?project_id=other").second["data"].empty());
}

}  // namespace
}  // namespace kiln::http
