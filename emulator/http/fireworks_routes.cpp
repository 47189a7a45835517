// The Fireworks control plane on Kiln's port (protocol.md §W13): the caller's account,
// RLOR trainer jobs, their checkpoint rows and training shapes. A job's trainer is this server
// under /training/v1/rlorTrainerJobs/<account>/<job> (HttpServer::scoped_key scopes those requests, §W13.2).
#include <random>
#include <regex>

#include "http/routes.hpp"
#include "http/server.hpp"
#include "service/promotion.hpp"
#include "service/training_shapes.hpp"

namespace kiln::http {

namespace {

constexpr const char* kAccount = R"(/v1/accounts/([^/:]+))";
constexpr const char* kJob = R"(/v1/accounts/([^/:]+)/rlorTrainerJobs/([^/:]+))";

int64_t page_size(const httplib::Request& req, int64_t fallback) {
  if (!req.has_param("pageSize")) return fallback;
  try {
    const int64_t n = std::stoll(req.get_param_value("pageSize"));
    if (n > 0) return n;
  } catch (const std::exception&) {
  }
  throw InvalidRequest("pageSize: expected a positive integer, got '" + req.get_param_value("pageSize") + "'");
}

size_t page_offset(const httplib::Request& req) {
  if (!req.has_param("pageToken") || req.get_param_value("pageToken").empty()) return 0;
  try {
    return std::stoul(req.get_param_value("pageToken"));
  } catch (const std::exception&) {
    throw InvalidRequest("pageToken: not a token this server issued: '" + req.get_param_value("pageToken") + "'");
  }
}

// A client-generated id is the rule (retries are idempotent); without one the server makes one
// of the SDK's form.
std::string new_job_id() {
  static std::mt19937_64 rng{std::random_device{}()};
  static std::mutex mu;
  std::lock_guard lock(mu);
  char buf[48];
  std::snprintf(buf, sizeof buf, "training-api-service-%08llx", static_cast<unsigned long long>(rng() & 0xffffffffULL));
  return buf;
}

// The long-running operation of a promotion: done at once (a copy in process), the model as
// its response.
json promote_operation(const std::string& account, const service::CheckpointRecord& rec) {
  json model = service::promoted_model_json(account, rec);
  model["@type"] = "type.googleapis.com/gateway.Model";
  return {{"name", "accounts/" + account + "/operations/promote-" + rec.name}, {"done", true}, {"response", model}};
}

}  // namespace

// A control-plane checkpoint row (protocol.md §W13.4).
json control_checkpoint_row(const std::string& account, const std::string& job, const service::CheckpointRecord& r) {
  const service::ControlCheckpointType t = service::control_checkpoint_type(r);
  return {{"name", "accounts/" + account + "/rlorTrainerJobs/" + job + "/checkpoints/" + r.name},
          {"createTime", service::iso8601(r.created)},
          {"updateTime", service::iso8601(r.created)},
          {"checkpointType", t.type},
          {"promotable", t.promotable},
          {"tinkerPath", r.tinker_path()}};
}

void HttpServer::register_fireworks_routes() {
  route("GET", "/v1/accounts", [](auto&, auto& res, auto& key) {
    send_json(res, 200, {{"accounts", {{{"name", "accounts/" + account_of(key)}, {"displayName", "Kiln"}, {"state", "READY"}}}},
                         {"totalSize", 1}});
  });
  route("GET", kAccount, [](auto& req, auto& res, auto& key) {
    check_account(key, req.matches[1]);
    send_json(res, 200, {{"name", "accounts/" + account_of(key)}, {"displayName", "Kiln"}, {"state", "READY"}});
  });

  // Trainer jobs (protocol.md §W13.3).
  route("POST", std::string(kAccount) + "/rlorTrainerJobs", [this](auto& req, auto& res, auto& key) {
    check_account(key, req.matches[1]);
    const std::string id = req.has_param("rlorTrainerJobId") ? req.get_param_value("rlorTrainerJobId") : new_job_id();
    json body = body_json(req);
    if (req.has_param("deploymentId") && body.is_object() && !body.contains("hotLoadDeploymentId"))
      body["hotLoadDeploymentId"] = req.get_param_value("deploymentId");  // PER_DEPLOYMENT weight sync
    send_json(res, 200, svc_.jobs().create(req.matches[1], id, body, req.get_param_value("trainingShape")));
  });
  route("GET", std::string(kAccount) + "/rlorTrainerJobs", [this](auto& req, auto& res, auto& key) {
    check_account(key, req.matches[1]);
    send_json(res, 200, svc_.jobs().list(req.matches[1], page_size(req, 50), req.get_param_value("pageToken")));
  });
  route("GET", kJob, [this](auto& req, auto& res, auto& key) {
    check_account(key, req.matches[1]);
    send_json(res, 200, svc_.jobs().get(req.matches[1], req.matches[2]));
  });
  route("DELETE", kJob, [this](auto& req, auto& res, auto& key) {
    check_account(key, req.matches[1]);
    svc_.jobs().remove(req.matches[1], req.matches[2]);
    send_json(res, 200, json::object());
  });
  route("POST", std::string(kJob) + ":resume", [this](auto& req, auto& res, auto& key) {
    check_account(key, req.matches[1]);
    send_json(res, 200, svc_.jobs().resume(req.matches[1], req.matches[2]));
  });
  // A job's checkpoints, oldest first, for any job state while they last (§W13.4).
  route("GET", std::string(kJob) + "/checkpoints", [this](auto& req, auto& res, auto& key) {
    const std::string account = req.matches[1], job = req.matches[2];
    check_account(key, account);
    svc_.jobs().get(account, job);  // NotFound for an unknown job
    auto records = svc_.list_user_checkpoints(service::scoped_credential(key, service::job_scope(job)));
    std::erase_if(records, [](const auto& r) { return r.kind == service::CheckpointKind::external; });
    std::reverse(records.begin(), records.end());  // newest first → oldest first
    const size_t offset = page_offset(req), size = static_cast<size_t>(page_size(req, 200));
    json rows = json::array();
    for (size_t i = offset; i < records.size() && i < offset + size; ++i)
      rows.push_back(control_checkpoint_row(account, job, records[i]));
    json out = {{"checkpoints", rows}, {"totalSize", records.size()}};
    if (offset + size < records.size()) out["nextPageToken"] = std::to_string(offset + size);
    send_json(res, 200, out);
  });

  // Promotion (§W13.8): instant, so the operation is answered done, and kept for GET.
  route("POST", R"(/v1/accounts/([^/:]+)/checkpoints/([^/:]+):promote)", [this](auto& req, auto& res, auto& key) {
    const std::string account = req.matches[1], checkpoint = req.matches[2];
    check_account(key, account);
    const json body = body_json(req);
    const auto text = [&](const char* k) {
      if (body.contains(k) && !body[k].is_string()) throw InvalidRequest(std::string(k) + ": expected a string");
      return body.value(k, std::string());
    };
    static const std::regex model_form(R"(accounts/([^/]+)/models/([a-z0-9-]{1,63}))");
    static const std::regex job_form(R"(accounts/([^/]+)/rlorTrainerJobs/([^/]+))");
    std::smatch mm, jm;
    const std::string output = text("output_model"), job = text("trainer_job_id");
    if (!std::regex_match(output, mm, model_form) || mm[1] != account)
      throw InvalidRequest("output_model: expected accounts/" + account + "/models/<id> with an id of 1-63 characters from "
                           "[a-z0-9-], got '" + output + "'");
    std::string job_id;
    if (!job.empty()) {
      if (!std::regex_match(job, jm, job_form) || jm[1] != account)
        throw InvalidRequest("trainer_job_id: expected accounts/" + account + "/rlorTrainerJobs/<job>, got '" + job + "'");
      job_id = jm[2];
      svc_.jobs().get(account, job_id);  // NotFound for an unknown job; a deleted one still promotes
    }
    const auto rec = svc_.promote(account, job_id, checkpoint, mm[2], text("base_model"));
    send_json(res, 200, body.value("async_promotion", false) ? json{{"operation", promote_operation(account, rec)}}
                                                             : json{{"model", service::promoted_model_json(account, rec)}});
  });
  route("GET", R"(/v1/accounts/([^/:]+)/operations/promote-([^/:]+))", [this](auto& req, auto& res, auto& key) {
    const std::string account = req.matches[1];
    check_account(key, account);
    const auto rec = svc_.promoted_model(account, req.matches[2]);
    if (!rec) throw NotFound("operation accounts/" + account + "/operations/promote-" + std::string(req.matches[2]) + " not found");
    send_json(res, 200, promote_operation(account, *rec));
  });
  route("GET", R"(/v1/accounts/([^/:]+)/models)", [this](auto& req, auto& res, auto& key) {
    const std::string account = req.matches[1];
    check_account(key, account);
    json rows = json::array();
    for (const auto& r : svc_.promoted_models(account)) rows.push_back(service::promoted_model_json(account, r));
    send_json(res, 200, {{"models", rows}, {"totalSize", rows.size()}});
  });
  route("GET", R"(/v1/accounts/([^/:]+)/models/([^/:]+))", [this](auto& req, auto& res, auto& key) {
    const std::string account = req.matches[1];
    check_account(key, account);
    const auto rec = svc_.promoted_model(account, req.matches[2]);
    if (!rec) throw NotFound("model accounts/" + account + "/models/" + std::string(req.matches[2]) + " not found");
    send_json(res, 200, service::promoted_model_json(account, *rec));
  });

  // Training shapes (§W13.5): the shape's latest validated version, or a named one.
  route("GET", R"(/v1/accounts/fireworks/trainingShapes)", [](auto&, auto& res, auto&) {
    json rows = json::array();
    for (const auto& s : service::training_shapes()) rows.push_back({{"name", s.name()}, {"latestVersion", s.version_name()}});
    send_json(res, 200, {{"trainingShapes", rows}, {"totalSize", rows.size()}});
  });
  route("GET", R"(/v1/(accounts/[^/]+/trainingShapes/[^/]+)/versions)", [](auto& req, auto& res, auto&) {
    const auto shape = service::find_training_shape(req.matches[1]);
    if (!shape) throw NotFound("training shape '" + std::string(req.matches[1]) + "' not found");
    send_json(res, 200, {{"trainingShapeVersions", {shape->version_json()}}, {"totalSize", 1}});
  });
  route("GET", R"(/v1/(accounts/[^/]+/trainingShapes/[^/]+/versions/[^/]+))", [](auto& req, auto& res, auto&) {
    const auto shape = service::find_training_shape(req.matches[1]);
    if (!shape) throw NotFound("training shape version '" + std::string(req.matches[1]) + "' not found");
    send_json(res, 200, shape->version_json());
  });
}

}  // namespace kiln::http
