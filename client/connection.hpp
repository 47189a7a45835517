#pragma once
// One credential's connection to a server, shared by a ServiceClient and the clients it
// creates: the session, its heartbeat, and the SDKs' retry layers (protocol.md §W1.7, §W3.3).
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "client/transport.hpp"

namespace kiln::client {

using nlohmann::json;

struct RetryPolicy {
  double initial_delay_seconds = 0.5;  // doubles per attempt ...
  double max_delay_seconds = 30;       // ... up to this
  double budget_seconds = 300;         // then the error is raised (the SDKs' 5 minutes)
  int max_bad_request_polls = 3;       // a 400 on retrieve_future is re-polled this often
  double billing_pause_seconds = 5, billing_budget_seconds = 3600;  // HTTP 402
};

struct ClientOptions {
  RetryPolicy retry;
  double heartbeat_seconds = 10;       // 0 turns the heartbeat off
  size_t max_chunk_datums = 1024;      // forward / forward_backward chunking (protocol.md §S9.3)
  size_t max_chunk_bytes = 5'000'000;
  bool parallel_chunks = true;         // submit chunks 2..n first, then chunk 1, as the SDKs do
  double poll_timeout_seconds = 45;    // per retrieve_future call
  // "json" (tinker <= 0.24, Fireworks) or "protobuf": forward / forward_backward go out as
  // tinker_public.ForwardBackwardRequest and results come back as ForwardBackwardOutput (0.25).
  std::string wire_format = "json";
  bool zstd = true;                    // compress protobuf request bodies
  std::string sdk_version = "kiln-cpp-0.1";
};

class Connection {
 public:
  // Reads client/config, creates the session and starts the heartbeat (tinker 0.23's order).
  Connection(std::shared_ptr<Transport> transport, std::string api_key, ClientOptions options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // A direct JSON call through the retry layers: connection errors, 408, 409, 429, 5xx and an
  // empty-bodied 400 are retried with backoff within the budget; 402 pauses. Returns the body
  // of the 2xx answer ({} when empty). Throws ApiError otherwise.
  json call(const std::string& method, const std::string& path, const json& body = json::object(), bool retry = true);
  // The same for a body that is not JSON (protobuf); `headers` adds Content-Type and the like.
  json call_raw(const std::string& method, const std::string& path, const std::string& body, const Headers& headers,
                bool retry = true);
  // Polls retrieve_future until the future resolves; returns its JSON result. Throws
  // RequestFailedError, PromiseExpiredError (410) or ApiError ("Error retrieving result: ...").
  json poll(const std::string& request_id, const std::string& what);
  // Polls with Accept: application/x-protobuf only (tinker 0.25); returns the protobuf bytes.
  std::string poll_protobuf(const std::string& request_id, const std::string& what);

  const ClientOptions& options() const { return options_; }
  const std::string& session_id() const { return session_id_; }
  int64_t next_model_seq() { return model_seq_++; }
  int64_t next_sampler_seq() { return sampler_seq_++; }  // sampling_session_seq_id, its own count from 0
  int64_t heartbeats() const { return heartbeats_; }

 private:
  Reply send(const std::string& method, const std::string& path, const std::string& body, const Headers& extra = {},
             const std::string& accept = "application/json");
  Reply poll_reply(const std::string& request_id, const std::string& what, const std::string& accept);
  void sleep_for(double seconds);
  void heartbeat_loop();

  std::shared_ptr<Transport> transport_;
  std::string api_key_;
  ClientOptions options_;
  std::string session_id_;
  std::atomic<int64_t> model_seq_{0}, sampler_seq_{0}, heartbeats_{0};
  std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread heartbeat_;
};

}  // namespace kiln::client
