#pragma once
// The Tinker / Fireworks HTTP API over TrainerService (docs/protocol.md), on cpp-httplib: JSON, and protobuf
// where the SDKs send or ask for it (forward_backward bodies, forward and sample results);
// every route is served bare (/api/v1/...) and under any path prefix.
#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "http/api_keys.hpp"
#include "http/faults.hpp"
#include "http/journal.hpp"
#include "http/metrics.hpp"
#include "model/tokenizer.hpp"
#include "service/trainer_service.hpp"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace kiln::http {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                      // 0: an ephemeral port
  double poll_hold_seconds = 25;        // retrieve_future long-poll, below the SDK's 45 s timeout
  int http_threads = 128;               // connections served at once (long-polls each hold one)
  size_t max_body_bytes = 64u << 20;    // request bodies beyond this get 413
  double io_timeout_seconds = 30;       // a stalled send or receive closes the connection after this
  size_t journal_capacity = 1000;       // entries kept for GET /_kiln/journal
  std::string journal_file;             // also appended here as JSON lines when set
  // When not empty, only these API keys are accepted (key → the email its JWT carries; "" for
  // the default); any other key is answered 401, as the service answers a revoked key.
  std::map<std::string, std::string> api_keys;
  // Where keys minted and revoked by `tinker auth` are kept (api_keys.hpp); "" keeps them in memory.
  std::string api_key_state_file;
  bool jwt_auth = false;  // client/config announces pjwt_auth_enabled: clients exchange keys for JWTs
  // Both set: HTTPS with this certificate chain and private key (PEM files); download and archive
  // URLs then start with https://. Neither: plain HTTP.
  std::string tls_cert_file, tls_key_file;
  // What client/config and client/dynamic_config announce of tinker 0.26+'s optional paths (the
  // endpoints answer either way; the flags choose the path the SDK takes).
  bool sample_poller = false;         // sample_use_retrieve_futures: one retrieve_futures poller per session
  bool sample_cancel = true;          // sample_cancel_enabled: abandoned samples are cancelled
  bool join_sampling_session = true;  // sample_join_sampling_session: cloned sampling clients join
};

class HttpServer {
 public:
  HttpServer(service::TrainerService& service, ServerOptions options);
  ~HttpServer();
  // Binds; returns the port (useful with port 0). Throws std::runtime_error if it cannot bind.
  int bind();
  // Serves until stop(); call after bind().
  void run();
  void stop();
  std::string base_url() const;
  // A stopping server (SIGTERM) drains: from now on new work is refused with a retryable 503
  // while polls, listings and the control API are still answered, so clients collect what is in
  // flight. Then stop().
  void begin_drain() { draining_ = true; }
  FaultInjector& faults() { return *faults_; }

  // Serves one request without a socket, through the same routes (fault injection and journal
  // included): the in-process transport of the C++ client. Needs no bind() or run().
  struct Reply {
    int status = 0;
    std::string body, content_type;
  };
  Reply dispatch(const std::string& method, const std::string& path,
                 const std::vector<std::pair<std::string, std::string>>& headers, const std::string& body);
  Journal& journal() { return *journal_; }
  HttpMetrics& metrics() { return *metrics_; }

 private:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&, const std::string& api_key)>;
  void route(const char* method, const std::string& pattern, Handler h, bool needs_key = true);
  void register_session_routes();
  void register_cli_auth_routes();  // what `tinker auth login` / `logout` call (auth_routes.cpp)
  void register_training_routes();
  void register_future_routes();  // retrieve_future
  void register_sampling_routes();
  void register_rest_routes();
  void register_control_routes();
  void register_fireworks_routes();  // the Fireworks control plane (fireworks_routes.cpp)
  void register_deployment_routes();  // deployments, hot-load, completions (deployment_routes.cpp)
  std::shared_ptr<const model::Transformer<float>> model_weights(const std::string& account, const std::string& name);
  // The stand-in tokenizer of a base model's family (a promoted model: of its base); an opaque
  // one for a family without a stand-in (protocol.md §W13.9).
  model::StandInTokenizer tokenizer_for(const std::string& account, const std::string& model);
  void register_oai_routes();  // the OpenAI-compatible surface under /oai/api/v1 (oai_routes.cpp)
  // What a registered route serves. Control routes (/_kiln/, /metrics) are neither faulted nor
  // journaled, and log at debug level only.
  struct Route {
    std::string endpoint;  // its pattern as a metric label (endpoint_label)
    Handler handler;
    bool needs_key, control;
  };
  // Serves one request: credential, fault injection, the handler, the journal, the metrics and
  // the log line. In process, a `close` fault answers status 0 (a dropped connection) and
  // `slow_body` is not slow.
  void serve(const Route& r, const httplib::Request& req, httplib::Response& res, bool in_process = false);
  // The credential a handler acts as: under /training/v1/rlorTrainerJobs/<account>/<job> the
  // job's namespace (once the job admits calls), under /training/v1/serverless the serverless
  // one, else the key itself (ids.hpp). nullopt after answering `res` with the job's refusal.
  std::optional<std::string> scoped_key(const httplib::Request& req, const std::string& key, httplib::Response& res);
  void check_job_request(const service::TrainerJob& job, const httplib::Request& req) const;  // UserError when refused
  FaultTarget fault_target(const httplib::Request& req, const std::string& key) const;
  nlohmann::json journal_entry(const httplib::Request& req, const nlohmann::json& request_body,
                               const httplib::Response& res, const std::string& key, double millis,
                               const std::optional<FaultAction>& fault) const;
  std::string download_url(const std::string& file);   // a token URL valid for 15 minutes
  std::string download_file(const std::string& token);  // its file; NotFound when unknown or expired
  std::string issue_jwt(const std::string& credential);  // auth/token
  bool kiln_jwt(const std::string& token) const;          // issued by issue_jwt (expired or not)
  // The credential a request carries: X-API-Key or Bearer, a Kiln JWT mapped back to the
  // credential it was issued for. Empty when there is none or the JWT is unknown or expired.
  std::string credential(const httplib::Request& req) const;

  service::TrainerService& svc_;
  ServerOptions opts_;
  std::unique_ptr<httplib::Server> srv_;
  int port_ = 0;
  // A long-poll's claim on an HTTP thread (retrieve_future, retrieve_futures): at most half of
  // the threads may hold one; beyond that a poll is answered at once, so pollers never starve the
  // other requests. Given back when it goes out of scope.
  struct PollSlot {
    std::atomic<int>& holding;
    bool may_hold;
    ~PollSlot() { holding.fetch_sub(1); }
  };
  PollSlot hold_poll_slot() {
    return {holding_polls_, holding_polls_.fetch_add(1) < std::max(1, opts_.http_threads / 2)};
  }
  std::atomic<int> holding_polls_{0};  // long-polls now holding a thread
  std::atomic<bool> draining_{false};
  struct Downloads;
  std::unique_ptr<Downloads> downloads_;
  struct Tokens;
  std::unique_ptr<Tokens> tokens_;
  struct InProcessRoute;
  std::vector<InProcessRoute> in_process_routes_;
  std::unique_ptr<FaultInjector> faults_;
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<HttpMetrics> metrics_;
  std::unique_ptr<ApiKeys> keys_;  // after opts_: built from it
};

}  // namespace kiln::http
