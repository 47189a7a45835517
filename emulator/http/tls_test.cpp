// HTTPS (kiln serve --tls-cert / --tls-key): a self-signed certificate made with the openssl
// command, the API driven over TLS with the certificate verified, and URLs the server hands out
// (archive downloads) in https://.
#include "http/test_fixture.hpp"

namespace kiln::http {
namespace {

using nlohmann::json;
using testing::SelfSigned;
using testing::TlsHttpTest;

TEST_F(TlsHttpTest, TheApiIsServedOverHttpsAndHandsOutHttpsUrls) {
  EXPECT_EQ(server->base_url().rfind("https://127.0.0.1:", 0), 0u) << server->base_url();
  const std::string m = model();
  auto [s, fut] = post("/api/v1/forward_backward", {{"forward_backward_input", {{"data", {datum({1, 2, 3})}}, {"loss_fn", "cross_entropy"}}},
                                                    {"model_id", m}, {"seq_id", 1}});
  ASSERT_EQ(s, 200) << fut;
  EXPECT_TRUE(result(fut["request_id"]).contains("loss_fn_outputs"));
  auto [s2, saved] = post("/api/v1/save_weights_for_sampler", {{"model_id", m}, {"path", "s-1"}, {"seq_id", 2}, {"type", "save_weights_for_sampler"}});
  ASSERT_EQ(s2, 200) << saved;
  ASSERT_EQ(result(saved["request_id"])["path"], "tinker://" + m + "/sampler_weights/s-1");
  auto archive = cli->Get(("/api/v1/training_runs/" + m + "/checkpoints/sampler_weights/s-1/archive").c_str());
  ASSERT_TRUE(archive);
  ASSERT_EQ(archive->status, 302);
  const std::string location = archive->get_header_value("Location");
  EXPECT_EQ(location.rfind(server->base_url() + "/_kiln/download/", 0), 0u) << location;
  auto tar = cli->Get(location.substr(location.find("/_kiln/")).c_str());
  ASSERT_TRUE(tar);
  EXPECT_EQ(tar->body.substr(257, 5), "ustar");
  // Plain HTTP on the TLS port gets no answer; a client that does not trust the certificate
  // refuses the connection.
  const std::string url = server->base_url();
  httplib::Client plain("http://" + url.substr(url.find("://") + 3));
  plain.set_connection_timeout(std::chrono::seconds(2));
  plain.set_read_timeout(std::chrono::seconds(2));
  auto r = plain.Get("/api/v1/healthz");
  EXPECT_TRUE(!r || r->status != 200);
  httplib::Client untrusting(server->base_url());
  untrusting.enable_server_certificate_verification(true);
  EXPECT_FALSE(untrusting.Get("/api/v1/healthz"));
}

TEST(TlsOptions, AMissingOrMismatchedKeyIsAClearErrorAtStart) {
  SelfSigned one, other;
  service::testing::TempDir dir;
  service::TrainerService svc(service::testing::options(dir.path(), std::make_shared<service::VirtualClock>()));
  const auto start = [&](const std::string& cert, const std::string& key) {
    ServerOptions o;
    o.port = 0;
    o.tls_cert_file = cert;
    o.tls_key_file = key;
    try {
      HttpServer s(svc, o);
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("started");
  };
  EXPECT_EQ(start(one.cert, one.key), "started");
  EXPECT_EQ(start(one.cert, ""), "HTTPS needs both a certificate (--tls-cert) and its private key (--tls-key)");
  EXPECT_EQ(start(one.cert, other.key), "cannot serve HTTPS with certificate " + one.cert + " and key " + other.key +
                                            ": each must be a readable PEM file and the key must match the certificate");
  EXPECT_EQ(start(one.cert, dir.path() + "/missing.pem"),
            "cannot serve HTTPS with certificate " + one.cert + " and key " + dir.path() +
                "/missing.pem: each must be a readable PEM file and the key must match the certificate");
}

}  // namespace
}  // namespace kiln::http
