#include "http/api_keys.hpp"

#include <random>

#include "errors.hpp"
#include "service/ids.hpp"
#include "service/state_file.hpp"

namespace kiln::http {

using nlohmann::json;

namespace {

// A stable public id for a key Kiln did not mint: 31 bits of its tenant hash, above the ids
// minted keys get (counted from 1), so the two never meet.
int64_t listed_key_id(const std::string& tenant) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : tenant) h = (h ^ c) * 1099511628211ull;
  return static_cast<int64_t>((h & 0x3fffffffull) | 0x40000000ull);
}

}  // namespace

ApiKeys::ApiKeys(std::map<std::string, std::string> listed, std::string state_file)
    : listed_(std::move(listed)), state_file_(std::move(state_file)) {
  if (state_file_.empty()) return;
  for (const json& e : service::read_state_file(state_file_, "API keys")) {
    if (e.value("revoked", false)) {
      revoked_.insert(e.at("tenant").get<std::string>());
      continue;
    }
    ApiKeyInfo i{e.at("key_id").get<int64_t>(), e.at("name").get<std::string>(), e.value("note", ""), e.at("email").get<std::string>()};
    next_id_ = std::max(next_id_, i.key_id + 1);
    minted_[e.at("tenant").get<std::string>()] = std::move(i);
  }
}

bool ApiKeys::accepts_locked(const std::string& key) const {
  if (key.empty()) return false;
  const std::string tenant = service::tenant_key(key);
  if (revoked_.count(tenant)) return false;
  return listed_.empty() || listed_.count(key) || minted_.count(tenant);
}

bool ApiKeys::accepts(const std::string& key) const {
  std::lock_guard lock(mu_);
  return accepts_locked(key);
}

std::string ApiKeys::email(const std::string& key) const {
  const std::string tenant = service::tenant_key(key);
  std::lock_guard lock(mu_);
  if (auto l = listed_.find(key); l != listed_.end() && !l->second.empty()) return l->second;
  if (auto m = minted_.find(tenant); m != minted_.end()) return m->second.email;
  return tenant + "@kiln.local";
}

std::optional<ApiKeyInfo> ApiKeys::info(const std::string& key) const {
  const std::string tenant = service::tenant_key(key);
  {
    std::lock_guard lock(mu_);
    if (!accepts_locked(key)) return std::nullopt;
    if (auto m = minted_.find(tenant); m != minted_.end()) return m->second;
  }
  return ApiKeyInfo{listed_key_id(tenant), "kiln", "", email(key)};
}

std::pair<std::string, ApiKeyInfo> ApiKeys::mint(const std::string& name, const std::string& note) {
  if (name.empty()) throw InvalidRequest("field 'name' must be a non-empty string");
  std::random_device rd;  // a key must not be guessable, so not from a seed
  std::string key = "tml-";
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 40; ++i) key += hex[rd() & 15];
  const std::string tenant = service::tenant_key(key);
  std::lock_guard lock(mu_);
  ApiKeyInfo i{next_id_++, name, note, tenant + "@kiln.local"};
  minted_[tenant] = i;
  save_locked();
  return {key, i};
}

void ApiKeys::revoke(const std::string& key) {
  const std::string tenant = service::tenant_key(key);
  std::lock_guard lock(mu_);
  minted_.erase(tenant);
  revoked_.insert(tenant);
  save_locked();
}

void ApiKeys::save_locked() const {
  if (state_file_.empty()) return;
  json doc = json::array();
  for (const auto& [tenant, i] : minted_)
    doc.push_back({{"tenant", tenant}, {"key_id", i.key_id}, {"name", i.name}, {"note", i.note}, {"email", i.email}});
  for (const auto& tenant : revoked_) doc.push_back({{"tenant", tenant}, {"revoked", true}});
  service::write_state_file(state_file_, doc);
}

}  // namespace kiln::http
