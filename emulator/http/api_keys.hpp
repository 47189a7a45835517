#pragma once
// Which API keys the server accepts, and the keys `tinker auth` mints and revokes
// (protocol.md §W12, "CLI login"): the keys `kiln serve --api-keys` lists (none listed: every well-formed
// key is a tenant), plus keys minted by POST /api/v1/auth/apikey, minus keys revoked by
// DELETE /api/v1/auth/apikey/me. Minted and revoked keys are kept in a state file by their
// tenant hash (never the key itself), so a revoked key stays revoked after a restart.
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

namespace kiln::http {

// The 401 detail for a key the server does not accept.
inline constexpr const char* kInvalidApiKey = "invalid API key: unknown, revoked or expired";

// What GET /api/v1/auth/apikey/me says of a key: {key_id, name, note, details}.
struct ApiKeyInfo {
  int64_t key_id = 0;
  std::string name, note, email;
};

class ApiKeys {
 public:
  // listed: key → email ("" for the default); state_file: "" keeps minted and revoked keys in memory.
  ApiKeys(std::map<std::string, std::string> listed, std::string state_file);

  bool accepts(const std::string& key) const;
  // The email a key's identity carries: the listed one, the minted one, else "<tenant>@kiln.local".
  std::string email(const std::string& key) const;
  // nullopt when the key is not accepted.
  std::optional<ApiKeyInfo> info(const std::string& key) const;
  // A new key for the user a WorkOS access token stands for. The token itself must not be a key
  // this server accepts: keys cannot mint keys. Throws InvalidRequest when name is empty.
  std::pair<std::string, ApiKeyInfo> mint(const std::string& name, const std::string& note);
  void revoke(const std::string& key);  // the key is refused from now on

 private:
  bool accepts_locked(const std::string& key) const;
  void save_locked() const;

  mutable std::mutex mu_;
  const std::map<std::string, std::string> listed_;
  const std::string state_file_;
  std::map<std::string, ApiKeyInfo> minted_;  // by tenant hash
  std::set<std::string> revoked_;             // tenant hashes
  int64_t next_id_ = 1;
};

}  // namespace kiln::http
