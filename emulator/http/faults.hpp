#pragma once
// Seeded, reproducible fault injection for the HTTP API (control API: /_kiln/faults).
// A rule matches on endpoint, request type and model, lets `skip` matching requests through,
// then fires `times` times (or forever when times is -1), each time with `probability` drawn
// from one stream seeded by the rule set's seed: the same seed and the same request sequence
// give the same faults.
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/rng.hpp"

namespace kiln::http {

struct FaultAction {
  // status: answer `status` with `body` (a JSON {"detail"} when absent; "" sends an empty body)
  //         without running the request
  // try_again: answer `status` (408, or 200 as some servers do) {"type": "try_again", ...} with
  //            queue_state and reason
  // delay: wait `seconds`, then serve normally
  // fail_future: accept the request, but its future fails with category and message
  // close: serve, then drop the connection halfway through the response body
  // slow_body: serve, trickling the body out over `seconds`
  // trainer_capacity: answer 409 {"detail", "reason": "trainer_capacity"} without running the
  //                   request (no trainer is free; fireworks-ai 1.2.x retries it)
  std::string kind;
  int status = 500;
  std::optional<nlohmann::json> body;
  double seconds = 0;
  std::string category = "server", message = "injected failure", queue_state = "active", reason;
};

struct FaultRule {
  std::string endpoint, request_type, model;  // empty matches anything
  int64_t skip = 0, times = 1;
  double probability = 1.0;
  FaultAction action;
  int64_t matched = 0, fired = 0;
};

// What a request looks like to the matcher.
struct FaultTarget {
  std::string path, request_type;
  std::vector<std::string> models;  // model id, sampler id, base model: any may match
};

class FaultInjector {
 public:
  // {"seed": N, "rules": [{"endpoint", "request_type", "model", "skip", "times", "probability",
  //   "action": {"kind", ...}}]}. Throws train::InvalidRequest naming the field.
  void set(const nlohmann::json& doc);
  void clear();
  nlohmann::json get() const;
  std::optional<FaultAction> match(const FaultTarget& t);
  bool empty() const;  // no rules: callers can skip building a target

 private:
  mutable std::mutex mu_;
  uint64_t seed_ = 0;
  model::SplitMix64 rng_{0};
  std::vector<FaultRule> rules_;
};

}  // namespace kiln::http
