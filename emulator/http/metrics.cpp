#include "http/metrics.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>


namespace kiln::http {

std::string endpoint_label(const std::string& pattern) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '(' || pattern.compare(i, 3, "(?:") == 0) {
      out += pattern[i];
      continue;
    }
    int depth = 0;  // skip the whole group, nested ones included
    size_t j = i;
    for (; j < pattern.size(); ++j) {
      if (pattern[j] == '(') ++depth;
      if (pattern[j] == ')' && --depth == 0) break;
    }
    const size_t slash = out.find_last_of('/', out.size() >= 2 ? out.size() - 2 : 0);
    std::string segment = slash == std::string::npos ? "" : out.substr(slash + 1, out.size() - slash - 2);
    if (!segment.empty() && segment.back() == 's') segment.pop_back();
    out += "{" + (segment.empty() ? std::string("id") : segment + "_id") + "}";
    i = j;
  }
  return out;
}

void HttpMetrics::record_request(const std::string& endpoint, const std::string& method, int status, double seconds) {
  std::lock_guard lock(mu_);
  ++requests_[{endpoint, method, status}];
  if (seconds < 0) return;
  Histogram& h = latency_[{endpoint, method}];
  ++h.count;
  h.sum += seconds;
  for (size_t b = 0; b < kBuckets.size(); ++b)
    if (seconds <= kBuckets[b]) {
      ++h.buckets[b];
      break;
    }
}

void HttpMetrics::record_fault(const std::string& kind) {
  std::lock_guard lock(mu_);
  ++faults_[kind];
}

namespace {

// A label value with \, " and newline escaped, as the format requires.
std::string escaped(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// A sample value: integers as integers, others with enough digits to round-trip.
std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[40];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  for (int digits : {15, 17}) {  // the shorter form when it reads back as the same double
    std::snprintf(buf, sizeof buf, "%.*g", digits, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

// Writes one metric family: its HELP and TYPE lines, then its samples.
class Family {
 public:
  Family(std::ostringstream& out, const std::string& name, const char* type, const char* help) : out_(out), name_(name) {
    out_ << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  }
  Family& sample(double value, const std::string& labels = "", const std::string& suffix = "") {
    out_ << name_ << suffix;
    if (!labels.empty()) out_ << '{' << labels << '}';
    out_ << ' ' << number(value) << '\n';
    return *this;
  }

 private:
  std::ostringstream& out_;
  std::string name_;
};

std::string label(const char* name, const std::string& value) { return std::string(name) + "=\"" + escaped(value) + "\""; }

}  // namespace

std::string HttpMetrics::render(const service::TrainerService::Metrics& s) const {
  std::ostringstream out;
  Family(out, "kiln_build_info", "gauge", "Always 1; the labels name the running build.")
      .sample(1, label("version", KILN_VERSION));
  {
    std::lock_guard lock(mu_);
    Family requests(out, "kiln_http_requests_total", "counter", "HTTP requests answered, by route, method and status.");
    for (const auto& [key, n] : requests_) {
      const auto& [endpoint, method, status] = key;
      requests.sample(static_cast<double>(n), label("endpoint", endpoint) + "," + label("method", method) + "," +
                                                   label("status", std::to_string(status)));
    }
    Family latency(out, "kiln_http_request_duration_seconds", "histogram",
                   "Time from a request's arrival to its answer, by route and method.");
    for (const auto& [key, h] : latency_) {
      const std::string labels = label("endpoint", key.first) + "," + label("method", key.second);
      uint64_t cumulative = 0;
      for (size_t b = 0; b < kBuckets.size(); ++b) {
        cumulative += h.buckets[b];
        latency.sample(static_cast<double>(cumulative), labels + "," + label("le", number(kBuckets[b])), "_bucket");
      }
      latency.sample(static_cast<double>(h.count), labels + "," + label("le", "+Inf"), "_bucket");
      latency.sample(h.sum, labels, "_sum").sample(static_cast<double>(h.count), labels, "_count");
    }
    Family faults(out, "kiln_faults_fired_total", "counter", "Injected faults that acted on a request, by kind.");
    for (const auto& [kind, n] : faults_) faults.sample(static_cast<double>(n), label("kind", kind));
  }
  Family futures(out, "kiln_futures", "gauge", "Futures kept now, by state.");
  for (const auto& [state, n] : s.futures) futures.sample(static_cast<double>(n), label("state", state));
  Family depth(out, "kiln_queue_depth", "gauge", "Training requests arrived and not yet run, by model.");
  for (const auto& [model, n] : s.queue_depth) depth.sample(static_cast<double>(n), label("model_id", model));
  // The unlabelled ones: (name, type, help, value).
  const std::tuple<const char*, const char*, const char*, double> scalars[] = {
      {"kiln_sessions", "gauge", "Sessions kept now.", s.sessions},
      {"kiln_models", "gauge", "Training clients (models) kept now.", s.models},
      {"kiln_samplers", "gauge", "Sampling sessions kept now.", s.samplers},
      {"kiln_checkpoints", "gauge", "Checkpoints on disk now, live or expired.", s.checkpoints},
      {"kiln_tokens_trained_total", "counter", "Input tokens of forward_backward requests run.", s.tokens_trained},
      {"kiln_tokens_forward_total", "counter", "Input tokens of forward (no backward) requests run.", s.tokens_forward},
      {"kiln_tokens_sampled_total", "counter", "Tokens decoded by samplers.", s.tokens_sampled},
      {"kiln_optimizer_steps_total", "counter", "Optimizer steps taken.", s.optimizer_steps},
      {"kiln_checkpoints_written_total", "counter", "Checkpoints written to disk.", s.checkpoints_written},
      {"kiln_checkpoint_written_bytes_total", "counter", "Bytes of checkpoint files written to disk.",
       s.checkpoint_bytes_written},
  };
  for (const auto& [name, type, help, value] : scalars) Family(out, name, type, help).sample(value);
  return out.str();
}

}  // namespace kiln::http
