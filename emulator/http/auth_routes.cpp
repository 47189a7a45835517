// The endpoints `tinker auth login` and `tinker auth logout` call (tinker 0.26+ CLI; protocol.md
// §W12, "CLI login"): auth-config, minting a key for a WorkOS access token, and a key's own metadata and
// revocation. Kiln cannot reach WorkOS, so any JWT-shaped bearer it did not issue itself stands
// for a WorkOS user; an API key (or a Kiln JWT) as the bearer is refused, as the service does.
#include "http/routes.hpp"
#include "http/server.hpp"
#include "wire/json_codec.hpp"

namespace kiln::http {

namespace {

// {"key_id"/"id", "details": {"org_details": {"name"}, "user_details": {"email"}}}
json key_details(const ApiKeyInfo& i) {
  return {{"org_details", {{"name", "kiln"}}}, {"user_details", {{"email", i.email}}}};
}

bool jwt_shaped(const std::string& token) {
  const auto a = token.find('.'), b = token.find('.', a == std::string::npos ? a : a + 1);
  return a != std::string::npos && b != std::string::npos && a > 0 && b > a + 1 && b + 1 < token.size() &&
         token.find('.', b + 1) == std::string::npos;
}

}  // namespace

void HttpServer::register_cli_auth_routes() {
  // The WorkOS client id of the device-auth flow; the server sends it as clientId.
  route("GET", "/api/unauthed/auth-config", [](auto&, auto& res, auto&) {
    send_json(res, 200, {{"clientId", "kiln-offline"}});
  }, false);
  route("POST", "/api/v1/auth/apikey", [this](auto& req, auto& res, auto&) {
    const std::string auth = req.get_header_value("Authorization");
    if (auth.rfind("Bearer ", 0) != 0 || auth.size() == 7)
      return send_json(res, 401, {{"detail", "minting an API key needs a WorkOS access token as 'Authorization: Bearer <token>'"}});
    const std::string token = auth.substr(7);
    if (!jwt_shaped(token) || kiln_jwt(token))
      return send_json(res, 403, {{"detail", "API keys cannot mint API keys: present a WorkOS access token as the bearer"}});
    const json body = body_json(req);
    const std::string name = wire::require_string(body, "name", "");
    const auto n = body.find("note");
    if (n != body.end() && !n->is_null() && !n->is_string())
      throw train::InvalidRequest("field 'note' must be a string, got " + std::string(n->type_name()));
    const std::string note = n != body.end() && n->is_string() ? n->get<std::string>() : "";
    auto [key, info] = keys_->mint(name, note);
    send_json(res, 200, {{"api_key", key}, {"id", info.key_id}, {"details", key_details(info)}});
  }, false);
  // Both act on the key in X-API-Key only (never a bearer, never another key).
  route("GET", "/api/v1/auth/apikey/me", [this](auto& req, auto& res, auto&) {
    const auto info = keys_->info(req.get_header_value("X-API-Key"));
    if (!info) return send_json(res, 401, {{"detail", kInvalidApiKey}});
    send_json(res, 200, {{"key_id", info->key_id}, {"name", info->name}, {"note", info->note}, {"details", key_details(*info)}});
  }, false);
  route("DELETE", "/api/v1/auth/apikey/me", [this](auto& req, auto& res, auto&) {
    const std::string key = req.get_header_value("X-API-Key");
    if (!keys_->accepts(key)) return send_json(res, 401, {{"detail", kInvalidApiKey}});
    keys_->revoke(key);
    send_json(res, 200, json::object());
  }, false);
}

}  // namespace kiln::http
