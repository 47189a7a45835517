// Handshake, sessions, telemetry and server information (protocol.md §W6.1–6.8, §W10.8).
#include "http/routes.hpp"
#include "http/server.hpp"
#include "model/registry.hpp"
#include "wire/json_codec.hpp"

namespace kiln::http {

void HttpServer::register_session_routes() {
  route("GET", "/api/v1/healthz", [](auto&, auto& res, auto&) { send_json(res, 200, {{"status", "ok"}}); }, false);
  // use_pyqwest_transport must be false, or tinker 0.25 imports a package it may not have. The
  // other flags are the SDK defaults, stated: parallel chunks, and each version's own transport.
  route("POST", "/api/v1/client/config", [this](auto&, auto& res, auto&) {
    send_json(res, 200, {{"use_pyqwest_transport", false}, {"pjwt_auth_enabled", opts_.jwt_auth},
                         {"parallel_fwdbwd_chunks", true}, {"proto_write_fwdbwd", false},
                         {"proto_compress_fwdbwd", false}, {"sample_use_retrieve_futures", opts_.sample_poller},
                         {"sample_join_sampling_session", opts_.join_sampling_session}});
  });
  route("POST", "/api/v1/client/dynamic_config", [this](auto&, auto& res, auto&) {
    send_json(res, 200, {{"refresh_interval_sec", 300}, {"sample_cancel_enabled", opts_.sample_cancel},
                         {"sample_cancel_max_batch_size", wire::kMaxCancelBatch}});
  });
  // Exactly this body, or the SDK resends the batch every second forever.
  route("POST", "/api/v1/telemetry", [](auto&, auto& res, auto&) { send_json(res, 200, {{"status", "accepted"}}); });
  route("GET", "/api/v1/get_server_capabilities", [this](auto&, auto& res, auto&) {
    send_json(res, 200, wire::capabilities_to_json(svc_.registry()));
  });
  // When client/config enables pjwt_auth (kiln serve --jwt-auth): a JWT standing for the caller's
  // credential, accepted in X-API-Key until it expires.
  route("POST", "/api/v1/auth/token", [this](auto&, auto& res, auto& key) {
    send_json(res, 200, {{"jwt", issue_jwt(key)}});
  });
  register_cli_auth_routes();
  route("POST", "/api/v1/create_session", [this](auto& req, auto& res, auto& key) {
    auto b = wire::create_session_from_json(body_json(req));
    const auto s = svc_.create_session(key, std::move(b.tags), std::move(b.user_metadata), b.project_id);
    send_json(res, 200, {{"session_id", s.session_id}, {"type", "create_session"}});
  });
  route("POST", "/api/v1/session_heartbeat", [this](auto& req, auto& res, auto& key) {
    svc_.heartbeat(key, wire::require_string(body_json(req), "session_id", ""));
    send_json(res, 200, {{"type", "session_heartbeat"}});
  });
  route("GET", "/api/v1/sessions", [this](auto&, auto& res, auto& key) {
    json ids = json::array();
    for (const auto& s : svc_.list_sessions(key)) ids.push_back(s.session_id);
    send_json(res, 200, {{"sessions", ids}});
  });
  // tinker 0.29+ ServiceClient.close() / `with ServiceClient()`: {"reason": {"type"}, "detail"?}.
  route("POST", R"(/api/v1/sessions/([^/]+)/finish)", [this](auto& req, auto& res, auto& key) {
    const auto f = wire::finish_session_from_json(body_json(req));
    svc_.finish_session(key, req.matches[1], f.reason, f.detail);
    send_json(res, 200, json::object());
  });
  route("PUT", R"(/api/v1/sessions/([^/]+)/project)", [this](auto& req, auto& res, auto& key) {
    svc_.set_session_project(key, req.matches[1], wire::require_string(body_json(req), "project_id", ""));
    send_json(res, 200, json::object());
  });
  // Kiln keeps no per-request traces to export; "failed" with a reason is the spec's answer for
  // an unsupported export (protocol.md rule G1), and the SDK stops polling on it.
  route("GET", R"(/api/v1/sessions/([^/]+)/trace_export)", [this](auto& req, auto& res, auto& key) {
    svc_.get_session(key, req.matches[1]);  // 404 for an unknown session
    send_json(res, 200, {{"status", "failed"}, {"error", "trace export is not available in Kiln (an offline emulator)"}});
  });
  route("GET", R"(/api/v1/sessions/([^/]+))", [this](auto& req, auto& res, auto& key) {
    send_json(res, 200, wire::session_to_json(svc_.get_session(key, req.matches[1])));
  });
}

}  // namespace kiln::http
