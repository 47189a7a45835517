// The control API for tests, under /_kiln/ (no credential): reset, state, virtual clock, future
// progression, fault injection and the request journal. README "Control API" documents it.
// GET /metrics lives here too: like these, it needs no credential and is not journaled.
#include "http/routes.hpp"
#include "http/server.hpp"
#include "wire/json_codec.hpp"
#include "wire/proto_codec.hpp"

namespace kiln::http {

extern const char* const kDashboardHtml;  // dashboard/index.html, compiled in (dashboard.cpp.in)

namespace {

service::Progression progression_from_json(const json& b) {
  service::Progression p;
  const std::string mode = b.value("mode", "immediate");
  if (mode == "immediate")
    p.mode = service::Progression::Mode::immediate;
  else if (mode == "after_polls")
    p.mode = service::Progression::Mode::after_polls;
  else if (mode == "after_seconds")
    p.mode = service::Progression::Mode::after_seconds;
  else
    throw train::InvalidRequest("field 'mode' must be immediate, after_polls or after_seconds, got '" + mode + "'");
  p.polls = b.value("polls", int64_t{0});
  p.seconds = b.value("seconds", 0.0);
  p.queue_state = b.value("queue_state", "active");
  p.reason = b.value("reason", "");
  return p;
}

}  // namespace

void HttpServer::register_control_routes() {
  const bool open = false;  // no credential: the control API is for the test that runs the server
  // The dashboard (README "Dashboard"): a static page that reads the routes below.
  route("GET", "/_kiln/ui", [](auto&, auto& res, auto&) {
    res.status = 200;
    res.set_content(kDashboardHtml, "text/html; charset=utf-8");
  }, open);
  // Prometheus scrapes (docs/observability.md).
  route("GET", "/metrics", [this](auto&, auto& res, auto&) {
    res.status = 200;
    res.set_content(metrics_->render(svc_.metrics()), "text/plain; version=0.0.4; charset=utf-8");
  }, open);
  route("POST", "/_kiln/reset", [this](auto& req, auto& res, auto&) {
    const json b = body_json(req);
    const std::string key = b.value("api_key", "");
    svc_.reset(key);
    if (key.empty()) {
      faults_->clear();
      journal_->clear();
    }
    send_json(res, 200, {{"reset", key.empty() ? "everything" : "tenant"}});
  }, open);
  route("GET", "/_kiln/state", [this](auto&, auto& res, auto&) {
    json s = svc_.state();
    s["faults"] = faults_->get();
    send_json(res, 200, s);
  }, open);
  route("GET", "/_kiln/clock", [this](auto&, auto& res, auto&) {
    send_json(res, 200, {{"now", service::iso8601(svc_.clock().now())}, {"virtual", svc_.has_virtual_clock()}});
  }, open);
  route("POST", "/_kiln/clock", [this](auto& req, auto& res, auto&) {
    const json b = body_json(req);
    if (!b.contains("advance_seconds") || !b["advance_seconds"].is_number())
      throw train::InvalidRequest("field 'advance_seconds' is required (a number of seconds >= 0)");
    svc_.advance_clock(b["advance_seconds"].get<double>());
    send_json(res, 200, {{"now", service::iso8601(svc_.clock().now())}, {"virtual", true}});
  }, open);
  route("GET", "/_kiln/progression", [this](auto&, auto& res, auto&) {
    const auto p = svc_.progression();
    const char* modes[] = {"immediate", "after_polls", "after_seconds"};
    send_json(res, 200, {{"mode", modes[static_cast<int>(p.mode)]}, {"polls", p.polls}, {"seconds", p.seconds},
                         {"queue_state", p.queue_state}, {"reason", p.reason}});
  }, open);
  route("POST", "/_kiln/progression", [this](auto& req, auto& res, auto&) {
    svc_.set_progression(progression_from_json(body_json(req)));
    send_json(res, 200, {{"status", "ok"}});
  }, open);
  route("POST", "/_kiln/delete_checkpoint", [this](auto& req, auto& res, auto&) {
    const json b = body_json(req);
    for (const char* k : {"tenant", "tinker_path"})
      if (!b.contains(k) || !b[k].is_string()) throw train::InvalidRequest(std::string("field '") + k + "' is required (a string)");
    svc_.delete_checkpoint_of_tenant(b["tenant"], b["tinker_path"]);
    send_json(res, 200, {{"deleted", b["tinker_path"]}});
  }, open);
  route("GET", "/_kiln/faults", [this](auto&, auto& res, auto&) { send_json(res, 200, faults_->get()); }, open);
  route("POST", "/_kiln/faults", [this](auto& req, auto& res, auto&) {
    faults_->set(body_json(req));
    send_json(res, 200, faults_->get());
  }, open);
  route("DELETE", "/_kiln/faults", [this](auto&, auto& res, auto&) {
    faults_->clear();
    send_json(res, 200, faults_->get());
  }, open);
  route("GET", "/_kiln/journal", [this](auto& req, auto& res, auto&) {
    const int64_t since = req.has_param("since") ? std::stoll(req.get_param_value("since")) : 0;
    const size_t limit = req.has_param("limit") ? std::stoul(req.get_param_value("limit")) : 1000;
    send_json(res, 200, journal_->read(since, limit));
  }, open);
  route("DELETE", "/_kiln/journal", [this](auto&, auto& res, auto&) {
    journal_->clear();
    send_json(res, 200, {{"status", "cleared"}});
  }, open);
}

}  // namespace kiln::http
