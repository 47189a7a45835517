// REST views of training runs and checkpoints (protocol.md §W10). Path ids arrive unescaped: run ids
// contain ':' and checkpoint ids contain '/'.
#include <ctime>
#include <fstream>
#include <sstream>

#include "http/routes.hpp"
#include "http/server.hpp"
#include "wire/json_codec.hpp"

namespace kiln::http {

namespace {

std::string http_date(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

// limit / offset paging with the cursor object the SDK expects.
template <typename T, typename F>
json page(const httplib::Request& req, const std::vector<T>& items, size_t default_limit, const char* key, F encode) {
  const size_t limit = req.has_param("limit") ? std::stoul(req.get_param_value("limit")) : default_limit;
  const size_t offset = req.has_param("offset") ? std::stoul(req.get_param_value("offset")) : 0;
  json list = json::array();
  for (size_t i = offset; i < items.size() && i < offset + limit; ++i) list.push_back(encode(items[i]));
  return {{key, list}, {"cursor", {{"offset", offset}, {"limit", limit}, {"total_count", items.size()}}}};
}

}  // namespace

void HttpServer::register_rest_routes() {
  // A checkpoint's base model and LoRA layout (protocol.md §W6.20), and Fireworks' list of the
  // caller's training-state names (§W6.21).
  route("POST", "/api/v1/weights_info", [this](auto& req, auto& res, auto& key) {
    send_json(res, 200, wire::weights_info_to_json(svc_.weights_info(key, wire::require_string(body_json(req), "tinker_path", ""))));
  });
  // tinker 0.26+: a checkpoint copied into a new run of the caller's session (protocol.md §W12).
  route("POST", "/api/v1/copy_weights", [this](auto& req, auto& res, auto& key) {
    send_json(res, 200, {{"tinker_path", svc_.copy_weights(key, wire::copy_weights_from_json(body_json(req))).tinker_path()}});
  });
  route("GET", "/api/v1/list_checkpoints", [this](auto&, auto& res, auto& key) {
    send_json(res, 200, {{"checkpoints", svc_.list_checkpoint_names(key)}});
  });
  route("GET", "/api/v1/training_runs", [this](auto& req, auto& res, auto& key) {
    send_json(res, 200, page(req, svc_.list_training_runs(key), 20, "training_runs", wire::training_run_to_json));
  });
  route("GET", kRunId, [this](auto& req, auto& res, auto& key) {
    send_json(res, 200, wire::training_run_to_json(svc_.get_training_run(key, req.matches[1])));
  });
  route("GET", std::string(kRunId) + "/checkpoints", [this](auto& req, auto& res, auto& key) {
    send_json(res, 200, page(req, svc_.list_run_checkpoints(key, req.matches[1]), 1000, "checkpoints", wire::checkpoint_to_json));
  });
  route("GET", "/api/v1/checkpoints", [this](auto& req, auto& res, auto& key) {
    send_json(res, 200, page(req, svc_.list_user_checkpoints(key), 100, "checkpoints", wire::checkpoint_to_json));
  });
  route("DELETE", std::string(kRunId) + kCheckpointId, [this](auto& req, auto& res, auto& key) {
    svc_.delete_checkpoint(key, req.matches[1], req.matches[2]);
    send_json(res, 200, json::object());
  });
  route("POST", std::string(kRunId) + kCheckpointId + "/publish", [this](auto& req, auto& res, auto& key) {
    svc_.set_published(key, req.matches[1], req.matches[2], true);
    send_json(res, 200, json::object());
  });
  route("DELETE", std::string(kRunId) + kCheckpointId + "/publish", [this](auto& req, auto& res, auto& key) {
    svc_.set_published(key, req.matches[1], req.matches[2], false);
    send_json(res, 200, json::object());
  });
  route("PUT", std::string(kRunId) + kCheckpointId + "/ttl", [this](auto& req, auto& res, auto& key) {
    const json b = body_json(req);
    std::optional<int64_t> ttl;
    if (b.contains("ttl_seconds") && !b["ttl_seconds"].is_null()) ttl = wire::require_int(b, "ttl_seconds", "");
    svc_.set_ttl(key, req.matches[1], req.matches[2], ttl);
    send_json(res, 200, json::object());
  });
  // 302 to a download URL served here, valid 15 minutes (protocol.md §W10.5, protocol.md rule E17).
  route("GET", std::string(kRunId) + kCheckpointId + "/archive", [this](auto& req, auto& res, auto& key) {
    const std::string url = download_url(svc_.archive_checkpoint(key, req.matches[1], req.matches[2]));
    res.status = 302;
    res.set_header("Location", url);
    res.set_header("Expires", http_date(std::chrono::system_clock::now() + std::chrono::minutes(15)));
    res.set_content(json{{"url", url}}.dump(), "application/json");
  });
  // tinker 0.39's save_weights_external: a download URL per file of the checkpoint, each valid
  // 15 minutes like the archive's (protocol.md §W12).
  route("GET", std::string(kRunId) + R"(/checkpoints/external_weights/([^/]+)/external_weights_urls)",
        [this](auto& req, auto& res, auto& key) {
          json urls = json::object();
          for (const auto& [name, file] : svc_.checkpoint_files(key, req.matches[1], "external_weights/" + req.matches[2].str()))
            urls[name] = download_url(file);
          send_json(res, 200, {{"urls", urls}, {"expires", service::iso8601(std::chrono::time_point_cast<service::TimePoint::duration>(std::chrono::system_clock::now() + std::chrono::minutes(15)))}});
        });
  // The audit log: what happened, when it happened, newest first (protocol.md rule G1).
  route("GET", "/api/v1/audit", [this](auto& req, auto& res, auto& key) {
    const std::string type = req.has_param("event_type") ? req.get_param_value("event_type") : "all";
    if (type != "all" && type != "checkpoints")
      throw train::InvalidRequest("event_type must be 'all' or 'checkpoints', got '" + type + "'");
    const std::string day = req.has_param("day") ? req.get_param_value("day") : "";
    json entries = json::array();
    for (const auto& e : svc_.audit(key)) {
      const std::string when = service::iso8601(e.time);
      if ((!day.empty() && when.rfind(day, 0) != 0) || (type == "checkpoints" && e.event.rfind("checkpoint_", 0) != 0)) continue;
      entries.push_back(wire::audit_entry_to_json(e));
    }
    send_json(res, 200, {{"entries", entries}});
  });
  // Nothing is billed offline.
  route("GET", "/api/v1/billing/usage/events", [](auto&, auto& res, auto&) {
    send_json(res, 200, {{"data", json::array()}, {"sessions", json::object()}});
  });
  // tinker 0.32+ get_current_checkpoint_storage_usage: what the caller's checkpoints hold on disk
  // now, by project; nothing is billed offline, so no rate and no cost.
  route("GET", "/api/v1/billing/usage/checkpoints/current", [this](auto& req, auto& res, auto& key) {
    const std::optional<std::string> project =
        req.has_param("project_id") ? std::optional(req.get_param_value("project_id")) : std::nullopt;
    const std::string tenant = service::TrainerService::tenant_key(key);
    json data = json::array();
    for (const auto& g : svc_.checkpoint_storage(key, project))
      data.push_back({{"project_id", g.project_id ? json(*g.project_id) : json(nullptr)},
                      {"org_user_urn", service::owner_urn(tenant)}, {"user_email", keys_->email(key)},
                      {"user_name", nullptr}, {"checkpoint_count", g.count}, {"size_bytes", g.size_bytes},
                      {"size_gigabytes", static_cast<double>(g.size_bytes) / (1ull << 30)},
                      {"estimated_monthly_cost_usd", nullptr}});
    send_json(res, 200, {{"effective_rate_usd_per_gigabyte_month", nullptr}, {"data", data}});
  });
  route("GET", R"(/_kiln/download/([0-9a-f]+))", [this](auto& req, auto& res, auto&) {
    std::ifstream in(download_file(req.matches[1]), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    res.status = 200;
    res.set_content(ss.str(), "application/x-tar");
  }, false);
}

}  // namespace kiln::http
