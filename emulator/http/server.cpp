#include "http/server.hpp"

#include "http/routes.hpp"  // first: it orders the Eigen and httplib includes

#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "log.hpp"
#include "wire/json_codec.hpp"

namespace kiln::http {

// Archive downloads: unguessable tokens that expire, like the real service's signed URLs.
struct HttpServer::Downloads {
  std::mutex mu;
  std::map<std::string, std::pair<std::string, std::chrono::steady_clock::time_point>> files;
  std::mt19937_64 rng{std::random_device{}()};
};

struct HttpServer::InProcessRoute {
  std::string method;
  std::regex pattern;
  Route route;
};

// JWTs issued by auth/token: each maps back to the credential it stands for, until it expires.
struct HttpServer::Tokens {
  std::mutex mu;
  std::map<std::string, std::pair<std::string, std::chrono::system_clock::time_point>> jwts;
  uint64_t counter = 0;
};

namespace {

// A plain server, or cpp-httplib's OpenSSL one when the options name a certificate and key.
std::unique_ptr<httplib::Server> make_server(const ServerOptions& o) {
  if (o.tls_cert_file.empty() && o.tls_key_file.empty()) return std::make_unique<httplib::Server>();
  if (o.tls_cert_file.empty() || o.tls_key_file.empty())
    throw std::runtime_error("HTTPS needs both a certificate (--tls-cert) and its private key (--tls-key)");
  auto tls = std::make_unique<httplib::SSLServer>(o.tls_cert_file.c_str(), o.tls_key_file.c_str());
  if (!tls->is_valid())
    throw std::runtime_error("cannot serve HTTPS with certificate " + o.tls_cert_file + " and key " + o.tls_key_file +
                             ": each must be a readable PEM file and the key must match the certificate");
  return tls;
}

}  // namespace

HttpServer::HttpServer(service::TrainerService& service, ServerOptions options)
    : svc_(service), opts_(std::move(options)), srv_(make_server(opts_)),
      downloads_(std::make_unique<Downloads>()), tokens_(std::make_unique<Tokens>()),
      faults_(std::make_unique<FaultInjector>()),
      journal_(std::make_unique<Journal>(opts_.journal_capacity, opts_.journal_file)),
      metrics_(std::make_unique<HttpMetrics>()),
      keys_(std::make_unique<ApiKeys>(opts_.api_keys, opts_.api_key_state_file)) {
  opts_.http_threads = std::max(4, opts_.http_threads);
  srv_->new_task_queue = [threads = opts_.http_threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  srv_->set_payload_max_length(opts_.max_body_bytes);
  srv_->set_keep_alive_max_count(1000);
  // A client that stalls while sending a request, or while reading an answer, holds a connection
  // thread for at most this long (README "Guarantees").
  srv_->set_read_timeout(std::chrono::milliseconds(static_cast<int64_t>(opts_.io_timeout_seconds * 1000)));
  srv_->set_write_timeout(std::chrono::milliseconds(static_cast<int64_t>(opts_.io_timeout_seconds * 1000)));
  srv_->set_keep_alive_timeout(5);
  // RFC 9112 section 6.3: a request with neither Content-Length nor Transfer-Encoding has an empty body.
  // httplib would instead read until the connection closes (a `curl -X POST` with no data would
  // hang until the read timeout), so such a request is given an explicit zero length here.
  srv_->set_pre_routing_handler([](const httplib::Request& req, httplib::Response&) {
    if (!req.has_header("Content-Length") && !req.has_header("Transfer-Encoding"))
      const_cast<httplib::Request&>(req).headers.emplace("Content-Length", "0");  // a non-const object
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Statuses httplib produces itself (413, 404 for unknown routes, 400 for unreadable requests)
  // still get a JSON body: an empty 400 reads as a connection reset to the SDK.
  // These never reached a route: they are counted and logged here (routed requests in serve()).
  srv_->set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty() || res.has_header("X-Kiln-Fault")) return;
    std::string detail = "HTTP " + std::to_string(res.status);
    if (res.status == 413) detail = "request body exceeds the limit (payload too large)";
    if (res.status == 404) detail = "no route for " + req.method + " " + req.path;
    if (res.status == 400) detail = "malformed HTTP request";
    res.set_content(json{{"detail", detail}}.dump(), "application/json");
    metrics_->record_request(kUnrouted, req.method, res.status, -1);
    log::write(log::Level::info, "request", {{"method", req.method}, {"path", req.path}, {"status", res.status}});
  });
  register_session_routes();
  register_training_routes();
  register_future_routes();
  register_sampling_routes();
  register_rest_routes();
  register_control_routes();
  register_fireworks_routes();
  register_deployment_routes();
  register_oai_routes();
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::bind() {
  port_ = opts_.port == 0 ? srv_->bind_to_any_port(opts_.host) : (srv_->bind_to_port(opts_.host, opts_.port) ? opts_.port : -1);
  if (port_ < 0) throw std::runtime_error("cannot listen on " + opts_.host + ":" + std::to_string(opts_.port));
  return port_;
}

void HttpServer::run() { srv_->listen_after_bind(); }

void HttpServer::stop() { srv_->stop(); }

std::string HttpServer::base_url() const {
  return (opts_.tls_cert_file.empty() ? "http://" : "https://") + opts_.host + ":" + std::to_string(port_);
}

namespace {

std::string base64url(const std::string& in) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) out.push_back(abc[(acc >> (bits -= 6)) & 63]);
  }
  if (bits > 0) out.push_back(abc[(acc << (6 - bits)) & 63]);
  return out;
}

}  // namespace

// X-API-Key, or Authorization: Bearer (some Fireworks SDK builds put the real key there and a
// placeholder in X-API-Key, so Bearer wins when both are present).
std::string HttpServer::credential(const httplib::Request& req) const {
  const std::string auth = req.get_header_value("Authorization");
  const std::string key = auth.rfind("Bearer ", 0) == 0 && auth.size() > 7 ? auth.substr(7) : req.get_header_value("X-API-Key");
  std::lock_guard lock(tokens_->mu);
  auto it = tokens_->jwts.find(key);
  if (it == tokens_->jwts.end())  // any other credential is opaque, JWT-looking or not
    return keys_->accepts(key) ? key : std::string();
  // a JWT stands for its key while both live: revoking the key ends its JWTs too
  return it->second.second > std::chrono::system_clock::now() && keys_->accepts(it->second.first) ? it->second.first
                                                                                                   : std::string();
}

bool HttpServer::kiln_jwt(const std::string& token) const {
  std::lock_guard lock(tokens_->mu);
  return tokens_->jwts.count(token) > 0;
}

std::string HttpServer::issue_jwt(const std::string& credential) {
  const auto now = std::chrono::system_clock::now();
  const auto exp = now + std::chrono::hours(1);
  const auto secs = [](auto t) { return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count(); };
  const std::string tenant = service::TrainerService::tenant_key(credential);
  const std::string email = keys_->email(credential);
  std::lock_guard lock(tokens_->mu);
  const json payload = {{"iss", "kiln"}, {"sub", service::owner_urn(tenant)}, {"email", email}, {"iat", secs(now)},
                        {"exp", secs(exp)}, {"jti", ++tokens_->counter}};
  const std::string jwt = base64url(R"({"alg":"none","typ":"JWT"})") + "." + base64url(payload.dump()) + "." +
                          base64url("kiln-unsigned");
  tokens_->jwts[jwt] = {credential, exp};
  return jwt;
}

void HttpServer::route(const char* method, const std::string& pattern, Handler h, bool needs_key) {
  // Served bare and under any prefix (a base URL may carry a path).
  const std::string full = "(?:/.+)?" + pattern;
  const bool control = pattern.rfind("/_kiln/", 0) == 0 || pattern == "/metrics";
  const Route r{endpoint_label(pattern), std::move(h), needs_key, control};
  auto wrapped = [this, r](const httplib::Request& req, httplib::Response& res) { serve(r, req, res); };
  const std::string m = method;
  in_process_routes_.push_back({m, std::regex(full), r});
  if (m == "GET")
    srv_->Get(full, wrapped);
  else if (m == "POST")
    srv_->Post(full, wrapped);
  else if (m == "PUT")
    srv_->Put(full, wrapped);
  else if (m == "DELETE")
    srv_->Delete(full, wrapped);
  else if (m == "PATCH")
    srv_->Patch(full, wrapped);
}

HttpServer::Reply HttpServer::dispatch(const std::string& method, const std::string& path,
                                       const std::vector<std::pair<std::string, std::string>>& headers,
                                       const std::string& body) {
  httplib::Request req;
  req.method = method;
  const size_t q = path.find('?');
  req.path = path.substr(0, q);
  if (q != std::string::npos) httplib::detail::parse_query_text(path.substr(q + 1), req.params);
  for (const auto& [k, v] : headers) req.headers.emplace(k, v);
  req.body = body;
  httplib::Response res;
  res.status = 404;
  bool routed = false;
  if (body.size() > opts_.max_body_bytes) {
    send_json(res, 413, {{"detail", "request body exceeds the limit (payload too large)"}});
    routed = true;
  }
  for (const auto& r : in_process_routes_)
    if (!routed && r.method == method && std::regex_match(req.path, req.matches, r.pattern)) {
      res.status = 200;
      serve(r.route, req, res, true);
      routed = true;
    }
  if (!routed) {
    send_json(res, 404, {{"detail", "no route for " + method + " " + req.path}});
    metrics_->record_request(kUnrouted, method, 404, -1);
  }
  return {res.status, res.body, res.get_header_value("Content-Type")};
}

std::string HttpServer::download_url(const std::string& file) {
  std::lock_guard lock(downloads_->mu);
  char token[40];
  std::snprintf(token, sizeof token, "%016llx%016llx", static_cast<unsigned long long>(downloads_->rng()),
                static_cast<unsigned long long>(downloads_->rng()));
  downloads_->files[token] = {file, std::chrono::steady_clock::now() + std::chrono::minutes(15)};
  return base_url() + "/_kiln/download/" + token;
}

std::string HttpServer::download_file(const std::string& token) {
  std::lock_guard lock(downloads_->mu);
  auto it = downloads_->files.find(token);
  if (it == downloads_->files.end() || it->second.second < std::chrono::steady_clock::now())
    throw service::NotFound("download link unknown or expired");
  return it->second.first;
}

}  // namespace kiln::http
