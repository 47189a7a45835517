#include "http/faults.hpp"

#include <algorithm>
#include <cmath>

#include "train/errors.hpp"

namespace kiln::http {

using nlohmann::json;
using train::InvalidRequest;

namespace {

FaultAction action_from_json(const json& j, const std::string& f) {
  if (!j.is_object()) throw InvalidRequest("field '" + f + "' must be an object");
  FaultAction a;
  a.kind = j.value("kind", "");
  static const char* kinds[] = {"status", "try_again", "delay", "fail_future", "close", "slow_body", "trainer_capacity"};
  if (std::find(std::begin(kinds), std::end(kinds), a.kind) == std::end(kinds))
    throw InvalidRequest("field '" + f + ".kind' must be one of status, try_again, delay, fail_future, close, slow_body, "
                         "trainer_capacity; got '" + a.kind + "'");
  if (a.kind == "trainer_capacity") {  // a 409 saying no trainer is free: fireworks-ai 1.2.x retries it
    if (j.contains("status") && j["status"] != 409)
      throw InvalidRequest("field '" + f + ".status' of a trainer_capacity is always 409");
    a.status = 409;
    a.body = json{{"detail", "no trainer capacity is free for this request right now; retry later"},
                  {"reason", "trainer_capacity"}};
  }
  a.status = j.value("status", a.kind == "status" ? 500 : a.kind == "try_again" ? 408 : a.kind == "trainer_capacity" ? 409 : 200);
  if (a.kind == "status" && (a.status < 400 || a.status > 599))
    throw InvalidRequest("field '" + f + ".status' must be an HTTP error status (400-599), got " + std::to_string(a.status));
  if (a.kind == "try_again" && a.status != 408 && a.status != 200)  // both forms clients accept (A1)
    throw InvalidRequest("field '" + f + ".status' of a try_again must be 408 or 200, got " + std::to_string(a.status));
  if (j.contains("body")) a.body = j["body"];
  a.seconds = j.value("seconds", 0.0);
  if (!(a.seconds >= 0) || !std::isfinite(a.seconds) || a.seconds > 600)
    throw InvalidRequest("field '" + f + ".seconds' must be between 0 and 600");
  a.category = j.value("category", a.category);
  if (a.category != "user" && a.category != "server" && a.category != "unknown")
    throw InvalidRequest("field '" + f + ".category' must be user, server or unknown");
  a.message = j.value("message", a.message);
  a.queue_state = j.value("queue_state", a.queue_state);
  a.reason = j.value("reason", a.reason);
  return a;
}

json action_to_json(const FaultAction& a) {
  json j = {{"kind", a.kind}};
  if (a.kind == "status" || a.kind == "try_again" || a.kind == "trainer_capacity") j["status"] = a.status;
  if (a.body) j["body"] = *a.body;
  if (a.kind == "delay" || a.kind == "slow_body") j["seconds"] = a.seconds;
  if (a.kind == "fail_future") j.update({{"category", a.category}, {"message", a.message}});
  if (a.kind == "try_again") j.update({{"queue_state", a.queue_state}, {"reason", a.reason}});
  return j;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

void FaultInjector::set(const json& doc) {
  if (!doc.is_object()) throw InvalidRequest("the fault document must be an object {\"seed\", \"rules\"}");
  std::vector<FaultRule> rules;
  const json rs = doc.value("rules", json::array());
  if (!rs.is_array()) throw InvalidRequest("field 'rules' must be a list");
  for (size_t i = 0; i < rs.size(); ++i) {
    const std::string f = "rules[" + std::to_string(i) + "]";
    const json& r = rs[i];
    if (!r.is_object() || !r.contains("action")) throw InvalidRequest("field '" + f + "' must be an object with an 'action'");
    FaultRule rule;
    rule.endpoint = r.value("endpoint", "");
    rule.request_type = r.value("request_type", "");
    rule.model = r.value("model", "");
    rule.skip = r.value("skip", int64_t{0});
    rule.times = r.value("times", int64_t{r.contains("probability") ? -1 : 1});
    rule.probability = r.value("probability", 1.0);
    if (rule.skip < 0 || rule.times < -1) throw InvalidRequest("field '" + f + "': skip must be >= 0 and times >= -1");
    if (!(rule.probability >= 0 && rule.probability <= 1))
      throw InvalidRequest("field '" + f + ".probability' must be in [0, 1]");
    rule.action = action_from_json(r["action"], f + ".action");
    rules.push_back(std::move(rule));
  }
  std::lock_guard lock(mu_);
  seed_ = doc.value("seed", uint64_t{0});
  rng_ = model::SplitMix64(seed_ ^ 0x6b696c6e2d666c74ULL);
  rules_ = std::move(rules);
}

void FaultInjector::clear() { set(json::object()); }

json FaultInjector::get() const {
  std::lock_guard lock(mu_);
  json rules = json::array();
  for (const auto& r : rules_)
    rules.push_back({{"endpoint", r.endpoint}, {"request_type", r.request_type}, {"model", r.model}, {"skip", r.skip},
                     {"times", r.times}, {"probability", r.probability}, {"action", action_to_json(r.action)},
                     {"matched", r.matched}, {"fired", r.fired}});
  return {{"seed", seed_}, {"rules", rules}};
}

bool FaultInjector::empty() const {
  std::lock_guard lock(mu_);
  return rules_.empty();
}

std::optional<FaultAction> FaultInjector::match(const FaultTarget& t) {
  std::lock_guard lock(mu_);
  for (auto& r : rules_) {
    if (!r.endpoint.empty() && !ends_with(t.path, r.endpoint)) continue;
    if (!r.request_type.empty() && r.request_type != t.request_type) continue;
    if (!r.model.empty() && std::find(t.models.begin(), t.models.end(), r.model) == t.models.end()) continue;
    if (r.matched++ < r.skip) continue;
    if (r.times >= 0 && r.fired >= r.times) continue;
    if (r.probability < 1.0 && !(rng_.uniform() < r.probability)) continue;
    ++r.fired;
    return r.action;
  }
  return std::nullopt;
}

}  // namespace kiln::http
