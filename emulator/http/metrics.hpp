#pragma once
// GET /metrics: the server's counters in the Prometheus text exposition format, version 0.0.4
// (docs/observability.md lists every metric). The HTTP side (requests, latencies, faults) is
// counted here; the service's side comes from TrainerService::metrics() at render time.
#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "service/trainer_service.hpp"

namespace kiln::http {

// A route pattern as a metric label: each capture group becomes {<segment>_id}, so ids do not
// make a series each ("/api/v1/training_runs/([^/]+)" → "/api/v1/training_runs/{training_run_id}").
std::string endpoint_label(const std::string& pattern);

// The endpoint label of requests that matched no route (and of those httplib refused unread).
inline constexpr const char* kUnrouted = "(unrouted)";

class HttpMetrics {
 public:
  // Upper bounds of the latency histogram's buckets, in seconds (+Inf is implied).
  static constexpr std::array<double, 14> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                      0.25,  0.5,    1,     2.5,  5,    10,   30};

  // One answered request; `seconds` < 0 when it was not timed (then only counted).
  void record_request(const std::string& endpoint, const std::string& method, int status, double seconds);
  // One fault rule that matched and acted (its kind: status, delay, close, ...).
  void record_fault(const std::string& kind);
  // The exposition: these, the service's metrics and build information.
  std::string render(const service::TrainerService::Metrics& service) const;

 private:
  struct Histogram {
    std::array<uint64_t, kBuckets.size()> buckets{};  // not cumulative; render() sums them
    uint64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mu_;
  std::map<std::tuple<std::string, std::string, int>, uint64_t> requests_;  // (endpoint, method, status)
  std::map<std::pair<std::string, std::string>, Histogram> latency_;        // (endpoint, method)
  std::map<std::string, uint64_t> faults_;                                  // by kind
};

}  // namespace kiln::http
