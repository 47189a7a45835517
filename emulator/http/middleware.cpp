// Request middleware around every API route: the credential check, fault matching and
// injection, the handler's errors as statuses, and the request journal (README "Control API").
#include "http/routes.hpp"  // first: it orders the Eigen and httplib includes
#include "http/server.hpp"

#include <chrono>
#include <cmath>
#include <regex>
#include <thread>

#include "log.hpp"
#include "wire/json_codec.hpp"

namespace kiln::http {

namespace {

constexpr size_t kJournalBodyLimit = 1u << 20;  // larger request bodies are journaled as a summary

// A request body as the journal shows it: JSON as sent, protobuf forward_backward decoded to its
// JSON form, anything very large as a summary.
json describe_body(const httplib::Request& req, size_t max_body_bytes) {
  if (req.body.empty()) return nullptr;
  if (is_protobuf(req)) {
    const bool zstd = req.get_header_value("Content-Encoding").find("zstd") != std::string::npos;
    try {
      auto p = wire::forward_backward_from_proto(protobuf_bytes(req, max_body_bytes));
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

// Runs a handler, mapping the service's exceptions to statuses with JSON {"detail"} bodies.
void invoke(const std::function<void(const httplib::Request&, httplib::Response&, const std::string&)>& h,
            const httplib::Request& req, httplib::Response& res, const std::string& key) {
  try {
    h(req, res, key);
  } catch (const json::exception& e) {
    send_json(res, 400, {{"detail", std::string("malformed JSON body: ") + e.what()}});
  } catch (const Error& e) {  // every error the user can cause: its code decides the status
    send_json(res, http_status(e.code()), {{"detail", e.what()}});
  } catch (const std::exception& e) {
    send_json(res, 500, {{"detail", std::string("internal error: ") + e.what()}});
  }
}

service::ErrorCategory category_of(const std::string& name) {
  return name == "user" ? service::ErrorCategory::user
         : name == "server" ? service::ErrorCategory::server
                            : service::ErrorCategory::unknown;
}

// close: half the body, then the connection drops; slow_body: the body in ten pieces over the
// fault's seconds. Both keep the status and headers the handler chose.
void apply_body_fault(httplib::Response& res, const FaultAction& fault) {
  const std::string body = res.body, type = res.get_header_value("Content-Type");
  res.body.clear();
  if (fault.kind == "close") {
    res.set_content_provider(body.size(), type, [body](size_t offset, size_t, httplib::DataSink& sink) {
      if (offset == 0 && body.size() > 1) sink.write(body.data(), body.size() / 2);
      return false;  // abort: the client sees the connection close mid-body
    });
  } else {
    const auto pause = std::chrono::duration<double>(fault.seconds / 10);
    res.set_content_provider(body.size(), type, [body, pause](size_t offset, size_t, httplib::DataSink& sink) {
      const size_t piece = std::max<size_t>(1, (body.size() + 9) / 10);
      std::this_thread::sleep_for(pause);
      sink.write(body.data() + offset, std::min(piece, body.size() - offset));
      return true;
    });
  }
}

}  // namespace

namespace {

// The model and request id a log line names: from the request (model_id, sampling_session_id,
// a poll's request_id) or its answer as the journal parsed it (a submit's request_id).
std::pair<std::string, std::string> log_ids(const json& request, const json& answer) {
  std::string model, request_id;
  if (request.is_object()) {
    for (const char* k : {"model_id", "sampling_session_id", "base_model"})
      if (model.empty() && request.contains(k) && request[k].is_string()) model = request[k];
    if (request.contains("request_id") && request["request_id"].is_string()) request_id = request["request_id"];
  }
  if (request_id.empty() && answer.is_object() && answer.contains("request_id") && answer["request_id"].is_string())
    request_id = answer["request_id"];
  return {model, request_id};
}

}  // namespace

void HttpServer::serve(const Route& r, const httplib::Request& req, httplib::Response& res, bool in_process) {
  const auto start = std::chrono::steady_clock::now();
  const bool control = r.control;
  const std::string credential_key = credential(req);
  std::optional<FaultAction> fault;
  std::optional<std::string> scoped = credential_key;
  if (!credential_key.empty() || !r.needs_key) scoped = scoped_key(req, credential_key, res);
  const std::string key = scoped.value_or(credential_key);
  if (!scoped) {
    // refused by the trainer job the path names (unknown, deleted, booting or stopped)
  } else if (r.needs_key && key.empty()) {
    const bool sent = !req.get_header_value("X-API-Key").empty() || !req.get_header_value("Authorization").empty();
    send_json(res, 401, {{"detail", sent ? kInvalidApiKey
                                         : "missing credential: send X-API-Key or Authorization: Bearer <key>"}});
  } else if (draining_ && !control && req.method == "POST" && req.path.find("/retrieve_future") == std::string::npos) {
    res.set_header("Retry-After", "5");
    send_json(res, 503, {{"detail", "kiln is shutting down and accepts no new work; retry against a running server"}});
  } else {
    // Building a target parses the body and may look the model up: only when rules are set.
    if (!control && !faults_->empty()) fault = faults_->match(fault_target(req, key));
    if (fault) metrics_->record_fault(fault->kind);
    if (fault && fault->kind == "delay") std::this_thread::sleep_for(std::chrono::duration<double>(fault->seconds));
    if (fault && fault->kind == "status" && fault->body && *fault->body == "") {
      res.status = fault->status;  // an empty body, as an edge proxy's reset looks (protocol.md §W1.7)
      res.set_header("X-Kiln-Fault", "empty-body");  // the error handler leaves this one empty
    } else if (fault && (fault->kind == "status" || fault->kind == "trainer_capacity")) {
      send_json(res, fault->status, fault->body.value_or(json{{"detail", "kiln: injected fault (HTTP " + std::to_string(fault->status) + ")"}}));
    } else if (fault && fault->kind == "try_again") {
      const json body = json::parse(req.body, nullptr, false);
      const bool named = body.is_object() && body.contains("request_id") && body["request_id"].is_string();
      send_json(res, fault->status, wire::try_again_to_json(named ? body["request_id"].get<std::string>() : "", fault->queue_state, fault->reason));
    } else {
      std::optional<service::TrainerService::ScopedFailure> injected;
      if (fault && fault->kind == "fail_future") injected.emplace(service::InjectedFailure{category_of(fault->category), fault->message});
      invoke(r.handler, req, res, key);
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics_->record_request(r.endpoint, req.method, res.status, seconds);
  const log::Level level = control ? log::Level::debug
                           : fault ? log::Level::warn
                           : res.status >= 500 ? log::Level::error
                                               : log::Level::info;
  const bool logged = log::enabled(level);
  if (!control || logged) {
    const json request = describe_body(req, opts_.max_body_bytes);
    // Control requests are not journaled; their log line (debug) names no model or request id.
    json entry = control ? json() : journal_entry(req, request, res, key, seconds * 1000, fault);
    if (logged) {
      const auto [model, request_id] = log_ids(request, control ? json() : entry["response"]);
      nlohmann::ordered_json line = {{"method", req.method}, {"path", req.path}, {"status", res.status},
                   {"duration_ms", std::round(seconds * 1e4) / 10}};
      if (!model.empty()) line["model"] = model;
      if (!request_id.empty()) line["request_id"] = request_id;
      if (fault) line["fault"] = fault->kind;
      log::write(level, "request", line);
    }
    if (!control) journal_->record(std::move(entry));
  }
  if (fault && fault->kind == "close" && in_process) res.status = 0;
  else if (fault && (fault->kind == "close" || fault->kind == "slow_body") && !in_process) apply_body_fault(res, *fault);
}

// What a job's trainer was provisioned for: its base model, and training at all (a forward-only
// job is a reference trainer).
void HttpServer::check_job_request(const service::TrainerJob& j, const httplib::Request& req) const {
  const auto ends_with = [&](const std::string& tail) {
    return req.path.size() >= tail.size() && req.path.compare(req.path.size() - tail.size(), tail.size(), tail) == 0;
  };
  if (j.forward_only && (ends_with("/forward_backward") || ends_with("/optim_step")))
    throw UserError("trainer job " + j.name() + " is forward-only (a reference trainer): it answers forward, not " +
                    req.path.substr(req.path.rfind('/') + 1));
  if (ends_with("/create_model") && !is_protobuf(req)) {
    const json body = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
    if (body.is_object() && body.contains("base_model") && body["base_model"].is_string()) {
      const std::string wanted = body["base_model"];
      const auto& registry = svc_.registry();
      if (registry.find(wanted) && registry.weights_owner(wanted) != registry.weights_owner(j.base_model))
        throw UserError("trainer job " + j.name() + " trains " + j.base_model + "; its trainer cannot create a model of '" +
                            wanted + "' (create a trainer job for that model)",
                        "base_model");
    }
  }
}

std::optional<std::string> HttpServer::scoped_key(const httplib::Request& req, const std::string& key,
                                                  httplib::Response& res) {
  static const std::regex job_prefix(R"(/training/v1/rlorTrainerJobs/([^/]+)/([^/]+)/api/v1/)");
  static const std::regex serverless_prefix(R"(/training/v1/serverless/api/v1/)");
  std::smatch m;
  if (std::regex_search(req.path, m, job_prefix)) {
    const std::string account = m[1], job = m[2];
    try {
      if (key.empty()) throw UserError("missing credential: send X-API-Key or Authorization: Bearer <key>");
      if (account != service::tenant_key(key))
        throw NotFound("trainer job accounts/" + account + "/rlorTrainerJobs/" + job + " not found");
      const service::TrainerJob j = svc_.jobs().admit(account, job);
      check_job_request(j, req);
    } catch (const Error& e) {
      send_json(res, key.empty() ? 401 : http_status(e.code()), {{"detail", e.what()}});
      if (e.code() == ErrorCode::unavailable) res.set_header("Retry-After", "1");
      return std::nullopt;
    }
    return service::scoped_credential(key, service::job_scope(job));
  }
  if (!key.empty() && std::regex_search(req.path, serverless_prefix))
    return service::scoped_credential(key, service::kServerlessScope);
  return key;
}

FaultTarget HttpServer::fault_target(const httplib::Request& req, const std::string& key) const {
  FaultTarget t;
  t.path = req.path;
  t.request_type = req.path.substr(req.path.rfind('/') + 1);
  // A protobuf forward_backward is decoded (as the journal shows it) for its model_id.
  const json b = is_protobuf(req) ? describe_body(req, opts_.max_body_bytes) : json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
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

json HttpServer::journal_entry(const httplib::Request& req, const json& request_body, const httplib::Response& res,
                               const std::string& key, double millis, const std::optional<FaultAction>& fault) const {
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
            {"request", request_body},
            {"status", res.status},
            {"response", response.is_discarded() ? json(nullptr) : response},
            {"duration_ms", millis}};
  if (fault) e["fault"] = fault->kind;
  return e;
}

}  // namespace kiln::http
