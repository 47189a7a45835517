#include "client/connection.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "client/errors.hpp"

namespace kiln::client {

namespace {

bool retryable(const Reply& r) {
  return r.status == 0 || r.status == 408 || r.status == 409 || r.status == 429 || r.status >= 500 ||
         (r.status == 400 && r.body.empty());  // an empty 400 is an edge proxy's reset (protocol.md §W1.7)
}

std::string detail_of(const Reply& r) {
  if (r.status == 0) return r.error.empty() ? "no response" : r.error;
  const json j = json::parse(r.body, nullptr, false);
  if (j.is_object() && j.contains("detail")) return j["detail"].is_string() ? j["detail"].get<std::string>() : j["detail"].dump();
  return r.body;
}

}  // namespace

Connection::Connection(std::shared_ptr<Transport> transport, std::string api_key, ClientOptions options)
    : transport_(std::move(transport)), api_key_(std::move(api_key)), options_(std::move(options)) {
  if (api_key_.empty())
    throw ClientError("The api_key client option must be set either by passing api_key to the client or by setting "
                      "the TINKER_API_KEY environment variable");
  call("POST", "/api/v1/client/config", {{"sdk_version", options_.sdk_version}});
  session_id_ = call("POST", "/api/v1/create_session",
                     {{"tags", json::array()}, {"user_metadata", json::object()}, {"sdk_version", options_.sdk_version},
                      {"type", "create_session"}})
                    .at("session_id");
  if (options_.heartbeat_seconds > 0) heartbeat_ = std::thread([this] { heartbeat_loop(); });
}

Connection::~Connection() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
}

Reply Connection::send(const std::string& method, const std::string& path, const std::string& body, const Headers& extra,
                       const std::string& accept) {
  Headers h = {{"X-API-Key", api_key_}, {"Accept", accept}};
  h.insert(h.end(), extra.begin(), extra.end());
  return transport_->send(method, path, h, body);
}

void Connection::sleep_for(double seconds) {
  std::unique_lock lock(mu_);
  stop_cv_.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return stopping_; });
}

json Connection::call(const std::string& method, const std::string& path, const json& body, bool retry) {
  return call_raw(method, path, method == "GET" ? "" : body.dump(), {}, retry);
}

json Connection::call_raw(const std::string& method, const std::string& path, const std::string& payload,
                          const Headers& headers, bool retry) {
  const auto start = std::chrono::steady_clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  const auto& p = options_.retry;
  for (int attempt = 0;; ++attempt) {
    const Reply r = send(method, path, payload, headers);
    if (r.status >= 200 && r.status < 300) return r.body.empty() ? json::object() : json::parse(r.body);
    if (r.status == 402 && retry && elapsed() + p.billing_pause_seconds <= p.billing_budget_seconds) {
      sleep_for(p.billing_pause_seconds);  // a billing pause: wait silently
      continue;
    }
    const double delay = std::min(p.initial_delay_seconds * std::pow(2.0, attempt), p.max_delay_seconds);
    if (retryable(r) && retry && elapsed() + delay <= p.budget_seconds) {
      sleep_for(delay);
      continue;
    }
    throw ApiError(r.status, r.body, method + " " + path + " failed" + (r.status ? " with status " + std::to_string(r.status) : "") +
                                         ": " + detail_of(r));
  }
}

json Connection::poll(const std::string& request_id, const std::string& what) {
  return json::parse(poll_reply(request_id, what, "application/json").body);
}

std::string Connection::poll_protobuf(const std::string& request_id, const std::string& what) {
  const Reply r = poll_reply(request_id, what, "application/x-protobuf");
  if (r.content_type.find("application/x-protobuf") == std::string::npos)
    throw ApiError(200, r.body, "Server returned a JSON payload for " + what + " which this client only accepts as proto");
  return r.body;
}

// The polling loop: returns the answer that resolves the future (JSON or protobuf), and throws
// for failures.
Reply Connection::poll_reply(const std::string& request_id, const std::string& what, const std::string& accept) {
  const auto& p = options_.retry;
  const std::string where = " for request_id='" + request_id + "' and expected type " + what;
  int bad_requests = 0, backoffs = 0;
  while (true) {
    const Reply r = send("POST", "/api/v1/retrieve_future", json{{"request_id", request_id}, {"allow_metadata_only", false}}.dump(),
                         {}, accept);
    if (r.status == 200) {
      if (r.content_type.find("application/x-protobuf") != std::string::npos) return r;
      const json j = json::parse(r.body, nullptr, false);
      if (j.is_discarded()) throw ApiError(200, r.body, "Error retrieving result: unreadable body" + where);
      if (j.is_object() && j.contains("error")) {
        const std::string cat = j.value("category", "unknown");
        throw RequestFailedError("Request failed: " + (j["error"].is_string() ? j["error"].get<std::string>() : j["error"].dump()) + where,
                                 cat == "user" || cat == "server" ? cat : "unknown");
      }
      if (j.is_object() && j.value("type", "") == "try_again") continue;  // re-poll at once
      return r;
    }
    if (r.status == 408) continue;
    if (r.status == 410) throw PromiseExpiredError("Promise expired/broken for request " + request_id);
    if (r.status == 0 || r.status == 429 || (r.status == 400 && r.body.empty())) {
      sleep_for(std::min(p.initial_delay_seconds * std::pow(2.0, backoffs++), p.max_delay_seconds));
      if (backoffs > 64) throw ApiError(r.status, r.body, "Error retrieving result: " + detail_of(r) + where);
      continue;
    }
    if (r.status >= 500) {
      sleep_for(p.initial_delay_seconds / 8);  // "re-poll immediately", without spinning
      continue;
    }
    if (r.status == 400 && ++bad_requests <= p.max_bad_request_polls) continue;
    throw ApiError(r.status, r.body,
                   "Error retrieving result: " + detail_of(r) + " with status " + std::to_string(r.status) + where +
                       (r.status == 400 ? " (exceeded " + std::to_string(p.max_bad_request_polls) + " retries)" : ""));
  }
}

void Connection::heartbeat_loop() {
  while (true) {
    {
      std::unique_lock lock(mu_);
      if (stop_cv_.wait_for(lock, std::chrono::duration<double>(options_.heartbeat_seconds), [&] { return stopping_; })) return;
    }
    try {  // heartbeat errors are swallowed, as the SDKs do
      if (send("POST", "/api/v1/session_heartbeat", json{{"session_id", session_id_}, {"type", "session_heartbeat"}}.dump()).status == 200)
        ++heartbeats_;
    } catch (const std::exception&) {
    }
  }
}

}  // namespace kiln::client
