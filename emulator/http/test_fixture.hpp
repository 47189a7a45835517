#pragma once
// A real server on an ephemeral loopback port, with a cpp-httplib client, for the HTTP tests.
#include "http/server.hpp"
#include "service/test_util.hpp"  // Eigen before httplib.h (see http/routes.hpp)

#include <httplib.h>
#include <zstd.h>

#include "tinker_public.pb.h"

#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace kiln::http::testing {

using nlohmann::json;
using service::testing::TempDir;

class HttpTest : public ::testing::Test {
 protected:
  TempDir dir;
  std::shared_ptr<service::VirtualClock> clock = std::make_shared<service::VirtualClock>();
  service::TrainerService svc{service::testing::options(dir.path(), clock)};
  std::unique_ptr<HttpServer> server;
  std::thread thread;
  std::unique_ptr<httplib::Client> cli;

  void SetUp() override {
    ServerOptions o;
    o.port = 0;
    o.poll_hold_seconds = 0.3;
    o.max_body_bytes = 1 << 20;
    configure(o);
    server = std::make_unique<HttpServer>(svc, o);
    server->bind();
    thread = std::thread([this] { server->run(); });
    cli = std::make_unique<httplib::Client>(server->base_url());  // http:// or https://
    cli->set_default_headers({{"X-API-Key", "tml-test"}, {"Accept", "application/json"}});
    cli->set_read_timeout(std::chrono::seconds(30));
  }
  virtual void configure(ServerOptions&) {}  // a fixture's own server options
  void TearDown() override {
    server->stop();
    thread.join();
  }
  // POST JSON; returns (status, parsed body).
  std::pair<int, json> post(const std::string& path, const json& body) {
    auto r = cli->Post(path.c_str(), body.dump(), "application/json");
    EXPECT_TRUE(r) << path;
    if (!r) return {0, json()};
    return {r->status, r->body.empty() ? json() : json::parse(r->body)};
  }
  std::pair<int, json> get(const std::string& path) {
    auto r = cli->Get(path.c_str());
    EXPECT_TRUE(r) << path;
    if (!r) return {0, json()};
    return {r->status, r->body.empty() ? json() : json::parse(r->body)};
  }
  // Polls retrieve_future through 408s until an answer (under the path prefix the request went to:
  // a trainer job's futures are in its namespace).
  json result(const std::string& rid, const std::string& prefix = "") {
    for (int i = 0; i < 200; ++i) {
      auto [status, body] = post(prefix + "/api/v1/retrieve_future", {{"request_id", rid}, {"allow_metadata_only", true}});
      if (status == 408) {
        EXPECT_EQ(body["type"], "try_again");
        continue;
      }
      EXPECT_EQ(status, 200) << body;
      return body;
    }
    ADD_FAILURE() << "future " << rid << " never completed";
    return json();
  }
  // Polls as tinker 0.25 does (Accept: protobuf only) until a 200; returns the protobuf body.
  std::string result_proto(const std::string& rid) {
    httplib::Client proto_cli(server->base_url());
    proto_cli.set_default_headers({{"X-API-Key", "tml-test"}, {"Accept", "application/x-protobuf"}});
    for (int i = 0; i < 100; ++i) {
      auto poll = proto_cli.Post("/api/v1/retrieve_future", json{{"request_id", rid}}.dump(), "application/json");
      EXPECT_TRUE(poll);
      if (!poll || poll->status == 408) continue;
      EXPECT_EQ(poll->status, 200) << poll->body;
      EXPECT_EQ(poll->get_header_value("Content-Type"), "application/x-protobuf");
      return poll->body;
    }
    ADD_FAILURE() << "future " << rid << " never completed";
    return "";
  }
  std::string session() {
    auto [s, body] = post("/api/v1/create_session", {{"tags", json::array()}, {"user_metadata", json::object()},
                                                      {"sdk_version", "0.25.0"}, {"type", "create_session"}});
    EXPECT_EQ(s, 200);
    return body["session_id"];
  }
  // A zstd-compressed protobuf forward_backward of tokens 5 6 7 → 6 7 8, seq_id 1 (tinker 0.25's form).
  static std::string zstd_forward_backward(const std::string& model_id) {
    tinker_public::ForwardBackwardRequest req;
    req.set_model_id(model_id);
    req.set_seq_id(1);
    req.set_loss_fn("cross_entropy");
    auto* d = req.add_data();
    const int32_t tokens[3] = {5, 6, 7};
    d->add_model_input()->mutable_encoded_text()->set_tokens(std::string(reinterpret_cast<const char*>(tokens), sizeof tokens));
    auto& t = (*d->mutable_loss_fn_inputs())["target_tokens"];
    t.set_dtype(tinker_public::DTYPE_INT64);
    const int64_t targets[3] = {6, 7, 8};
    t.set_dense(std::string(reinterpret_cast<const char*>(targets), sizeof targets));
    const std::string body = req.SerializeAsString();
    std::string frame(ZSTD_compressBound(body.size()), '\0');
    frame.resize(ZSTD_compress(frame.data(), frame.size(), body.data(), body.size(), 3));
    return frame;
  }
  // A sampling session of kiln/tiny in a new session; returns its sampling_session_id.
  std::string sampler() {
    auto [s, created] = post("/api/v1/create_sampling_session", {{"session_id", session()}, {"sampling_session_seq_id", 0},
                                                                 {"base_model", "kiln/tiny"}, {"type", "create_sampling_session"}});
    EXPECT_EQ(s, 200) << created;
    return created["sampling_session_id"];
  }
  std::string model(int rank = 4) {
    auto [s, session] = post("/api/v1/create_session", {{"tags", json::array()}, {"user_metadata", json::object()},
                                                         {"sdk_version", "0.23.0"}, {"type", "create_session"}});
    EXPECT_EQ(s, 200);
    auto [c, fut] = post("/api/v1/create_model",
                         {{"session_id", session["session_id"]}, {"model_seq_id", 0}, {"base_model", "kiln/tiny"},
                          {"lora_config", {{"rank", rank}, {"train_unembed", true}, {"train_mlp", true}, {"train_attn", true}}},
                          {"type", "create_model"}});
    EXPECT_EQ(c, 200) << fut;
    return result(fut["request_id"])["model_id"];
  }
  // A server-sent event stream's JSON chunks, in order, and whether it ended with data: [DONE].
  static std::pair<std::vector<json>, bool> sse_chunks(const std::string& body) {
    std::vector<json> chunks;
    for (size_t at = 0; (at = body.find("data: ", at)) != std::string::npos;) {
      const size_t end = body.find("\n\n", at);
      const std::string data = body.substr(at + 6, end - at - 6);
      at = end;
      if (data == "[DONE]") return {chunks, true};
      chunks.push_back(json::parse(data));
    }
    return {chunks, false};
  }
  static json datum(const std::vector<int>& tokens) {
    std::vector<int> input(tokens.begin(), tokens.end() - 1), target(tokens.begin() + 1, tokens.end());
    return {{"model_input", {{"chunks", {{{"tokens", input}, {"type", "encoded_text"}}}}}},
            {"loss_fn_inputs",
             {{"target_tokens", {{"data", target}, {"dtype", "int64"}, {"shape", {target.size()}}}}}}};
  }
};

// A certificate for 127.0.0.1 (subjectAltName IP, which clients verify) and its key.
struct SelfSigned {
  service::testing::TempDir dir;
  std::string cert = dir.path() + "/cert.pem", key = dir.path() + "/key.pem";
  SelfSigned() {
    const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
                            "-addext subjectAltName=IP:127.0.0.1 -keyout " + key + " -out " + cert + " 2>/dev/null";
    if (std::system(cmd.c_str()) != 0) ADD_FAILURE() << "openssl could not make a certificate (Debian package openssl): " << cmd;
  }
};

// HttpTest on HTTPS with a SelfSigned certificate, which its client trusts.
class TlsHttpTest : public HttpTest {
 protected:
  SelfSigned tls;
  void configure(ServerOptions& o) override {
    o.tls_cert_file = tls.cert;
    o.tls_key_file = tls.key;
  }
  void SetUp() override {
    HttpTest::SetUp();
    cli->set_ca_cert_path(tls.cert.c_str());
    cli->enable_server_certificate_verification(true);
  }
};

}  // namespace kiln::http::testing
