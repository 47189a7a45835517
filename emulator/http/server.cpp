#include "http/server.hpp"

#include "http/routes.hpp"  // first: it orders the Eigen and httplib includes

#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>

#include <nlohmann/json.hpp>

#include "wire/json_codec.hpp"

namespace kiln::http {

// Archive downloads: unguessable tokens that expire, like the real service's signed URLs.
struct HttpServer::Downloads {
  std::mutex mu;
  std::map<std::string, std::pair<std::string, std::chrono::steady_clock::time_point>> files;
  std::mt19937_64 rng{std::random_device{}()};
};

HttpServer::HttpServer(service::TrainerService& service, ServerOptions options)
    : svc_(service), opts_(std::move(options)), srv_(std::make_unique<httplib::Server>()),
      downloads_(std::make_unique<Downloads>()) {
  opts_.http_threads = std::max(4, opts_.http_threads);
  srv_->new_task_queue = [threads = opts_.http_threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  srv_->set_payload_max_length(opts_.max_body_bytes);
  srv_->set_keep_alive_max_count(1000);
  srv_->set_read_timeout(std::chrono::seconds(60));
  srv_->set_write_timeout(std::chrono::seconds(60));
  // Statuses httplib produces itself (413, 404 for unknown routes, 400 for unreadable requests)
  // still get a JSON body: an empty 400 reads as a connection reset to the SDK.
  srv_->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string detail = "HTTP " + std::to_string(res.status);
    if (res.status == 413) detail = "request body exceeds the limit (payload too large)";
    if (res.status == 404) detail = "no route for " + req.method + " " + req.path;
    if (res.status == 400) detail = "malformed HTTP request";
    res.set_content(json{{"detail", detail}}.dump(), "application/json");
  });
  srv_->set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    if (opts_.log_format == "none") return;
    if (opts_.log_format == "json")
      std::fprintf(stderr, "%s\n", json{{"method", req.method}, {"path", req.path}, {"status", res.status}}.dump().c_str());
    else
      std::fprintf(stderr, "kiln: %s %s -> %d\n", req.method.c_str(), req.path.c_str(), res.status);
  });
  register_session_routes();
  register_training_routes();
  register_sampling_routes();
  register_rest_routes();
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::bind() {
  port_ = opts_.port == 0 ? srv_->bind_to_any_port(opts_.host) : (srv_->bind_to_port(opts_.host, opts_.port) ? opts_.port : -1);
  if (port_ < 0) throw std::runtime_error("cannot listen on " + opts_.host + ":" + std::to_string(opts_.port));
  return port_;
}

void HttpServer::run() { srv_->listen_after_bind(); }

void HttpServer::stop() { srv_->stop(); }

std::string HttpServer::base_url() const { return "http://" + opts_.host + ":" + std::to_string(port_); }

namespace {

// X-API-Key, or Authorization: Bearer (some Fireworks SDK builds put the real key there and a
// placeholder in X-API-Key, so Bearer wins when both are present).
std::string credential(const httplib::Request& req) {
  const std::string auth = req.get_header_value("Authorization");
  if (auth.rfind("Bearer ", 0) == 0 && auth.size() > 7) return auth.substr(7);
  return req.get_header_value("X-API-Key");
}

}  // namespace

void HttpServer::route(const char* method, const std::string& pattern, Handler h, bool needs_key) {
  // Served bare and under any prefix (a base URL may carry a path).
  const std::string full = "(?:/.+)?" + pattern;
  auto wrapped = [h = std::move(h), needs_key](const httplib::Request& req, httplib::Response& res) {
    const std::string key = credential(req);
    if (needs_key && key.empty()) {
      send_json(res, 401, {{"detail", "missing credential: send X-API-Key or Authorization: Bearer <key>"}});
      return;
    }
    try {
      h(req, res, key);
    } catch (const json::exception& e) {
      send_json(res, 400, {{"detail", std::string("malformed JSON body: ") + e.what()}});
    } catch (const train::InvalidRequest& e) {
      send_json(res, 400, {{"detail", e.what()}});
    } catch (const train::UserError& e) {
      send_json(res, 400, {{"detail", e.what()}});
    } catch (const service::NotFound& e) {
      send_json(res, 404, {{"detail", e.what()}});
    } catch (const service::Conflict& e) {
      send_json(res, 409, {{"detail", e.what()}});
    } catch (const UnsupportedMediaType& e) {
      send_json(res, 415, {{"detail", e.what()}});
    } catch (const std::exception& e) {
      send_json(res, 500, {{"detail", std::string("internal error: ") + e.what()}});
    }
  };
  const std::string m = method;
  if (m == "GET")
    srv_->Get(full, wrapped);
  else if (m == "POST")
    srv_->Post(full, wrapped);
  else if (m == "PUT")
    srv_->Put(full, wrapped);
  else if (m == "DELETE")
    srv_->Delete(full, wrapped);
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
