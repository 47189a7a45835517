// The control API for tests, under /_kiln/ (no credential): reset, state, virtual clock, future
// progression, fault injection and the request journal. README "Control API" documents it.
#include "http/routes.hpp"
#include "http/server.hpp"
#include "wire/json_codec.hpp"
#include "wire/proto_codec.hpp"

namespace kiln::http {

namespace {

constexpr size_t kJournalBodyLimit = 1u << 20;  // larger request bodies are journaled as a summary

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

// A request body as the journal shows it: JSON as sent, protobuf forward_backward decoded to its
// JSON form, anything very large as a summary.
json describe_body(const httplib::Request& req, size_t max_body_bytes) {
  if (req.body.empty()) return nullptr;
  if (req.get_header_value("Content-Type").find("application/x-protobuf") != std::string::npos) {
    const bool zstd = req.get_header_value("Content-Encoding").find("zstd") != std::string::npos;
    try {
      auto p = wire::forward_backward_from_proto(zstd ? wire::zstd_decompress(req.body, max_body_bytes) : req.body);
      json j = wire::forward_request_to_json(p.request);
      j.update({{"model_id", p.model_id}, {"seq_id", p.seq_id}, {"transport", "protobuf"}, {"zstd", zstd}});
      if (req.body.size() > kJournalBodyLimit) j["forward_backward_input"]["data"] = {{"summary", "omitted"}};
      return j;
    } catch (const std::exception& e) {
      return {{"protobuf_bytes", req.body.size()}, {"decode_error", e.what()}};
    }
  }
  json j = json::parse(req.body, nullptr, false);
  if (j.is_discarded()) return {{"unparsed_bytes", req.body.size()}};
  if (req.body.size() > kJournalBodyLimit && j.is_object()) {
    json summary = {{"bytes", req.body.size()}};
    for (const char* k : {"type", "model_id", "seq_id"})
      if (j.contains(k)) summary[k] = j[k];
    for (const char* input : {"forward_input", "forward_backward_input"})
      if (j.contains(input) && j[input].is_object()) summary["num_datums"] = j[input].value("data", json::array()).size();
    return {{"summary", summary}};
  }
  return j;
}

}  // namespace

FaultTarget HttpServer::fault_target(const httplib::Request& req, const std::string& key) const {
  FaultTarget t;
  t.path = req.path;
  t.request_type = req.path.substr(req.path.rfind('/') + 1);
  // A protobuf forward_backward is decoded (as the journal shows it) for its model_id.
  const bool proto = req.get_header_value("Content-Type").find("application/x-protobuf") != std::string::npos;
  const json b = proto ? describe_body(req, opts_.max_body_bytes) : json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
  if (!b.is_object()) return t;
  if (b.contains("type") && b["type"].is_string()) t.request_type = b["type"];
  for (const char* k : {"model_id", "sampling_session_id", "base_model"})
    if (b.contains(k) && b[k].is_string()) t.models.push_back(b[k]);
  // A poll matches the model (or sampler) its future belongs to.
  if (b.contains("request_id") && b["request_id"].is_string())
    if (std::string owner = svc_.future_owner(key, b["request_id"]); !owner.empty()) {
      t.models.push_back(owner);
      try {
        t.models.push_back(svc_.get_info(key, owner).base_model);
      } catch (const std::exception&) {  // a sampler, or gone
      }
    }
  if (b.contains("model_id") && b["model_id"].is_string()) try {
      t.models.push_back(svc_.get_info(key, b["model_id"]).base_model);
    } catch (const std::exception&) {
    }
  return t;
}

json HttpServer::journal_entry(const httplib::Request& req, const httplib::Response& res, const std::string& key,
                               double millis, const std::optional<FaultAction>& fault) const {
  json headers = json::object(), query = json::object();
  for (const auto& [k, v] : req.headers) {
    const bool secret = k == "X-API-Key" || k == "Authorization" || k == "Cookie" || k == "x-api-key";
    headers[k] = secret ? "<redacted>" : v;
  }
  for (const auto& [k, v] : req.params) query[k] = v;
  json response;
  if (res.get_header_value("Content-Type").find("application/json") != std::string::npos)
    response = json::parse(res.body, nullptr, false);
  else if (!res.body.empty())
    response = {{"content_type", res.get_header_value("Content-Type")}, {"bytes", res.body.size()}};
  json e = {{"time", service::iso8601(std::chrono::system_clock::now())},
            {"method", req.method},
            {"path", req.path},
            {"query", query},
            {"headers", headers},
            {"tenant", key.empty() ? json(nullptr) : json(service::TrainerService::tenant_key(key))},
            {"request", describe_body(req, opts_.max_body_bytes)},
            {"status", res.status},
            {"response", response.is_discarded() ? json(nullptr) : response},
            {"duration_ms", millis}};
  if (fault) e["fault"] = fault->kind;
  return e;
}

void HttpServer::register_control_routes() {
  const bool open = false;  // no credential: the control API is for the test that runs the server
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
