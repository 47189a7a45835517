#include "service/ids.hpp"

#include <cstdio>
#include <random>

#include "model/rng.hpp"

namespace kiln::service {

IdGenerator::IdGenerator(std::optional<uint64_t> seed)
    : seed_(seed ? *seed : std::random_device{}() * 0x9E3779B97F4A7C15ULL ^ std::random_device{}()) {}

std::string IdGenerator::next(const char* prefix) {
  model::SplitMix64 rng(seed_ ^ (++counter_ * 0xD1B54A32D192ED03ULL));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s%012llx", prefix, static_cast<unsigned long long>(rng.next() >> 16));
  return buf;
}

uint64_t fnv1a(const std::string& s) { return model::fnv1a64(s); }

namespace {
constexpr char kScopeSeparator = '\x1f';  // cannot occur in an HTTP header value
}  // namespace

std::string scoped_credential(const std::string& api_key, const std::string& scope) {
  return api_key + kScopeSeparator + scope;
}

std::string job_scope(const std::string& job_id) { return "job:" + job_id; }

std::string base_tenant(const std::string& tenant) { return tenant.substr(0, tenant.find('@')); }

std::string scope_of_tenant(const std::string& tenant) {
  const size_t at = tenant.find('@');
  return at == std::string::npos ? "" : tenant.substr(at + 1);
}

std::string job_tenant(const std::string& tenant, const std::string& job_id) {
  return base_tenant(tenant) + "@" + job_scope(job_id);
}

std::string tenant_key(const std::string& api_key) {
  if (const size_t sep = api_key.rfind(kScopeSeparator); sep != std::string::npos)
    return tenant_key(api_key.substr(0, sep)) + "@" + api_key.substr(sep + 1);
  char buf[32];
  std::snprintf(buf, sizeof buf, "tenant-%016llx", static_cast<unsigned long long>(fnv1a(api_key)));
  return buf;
}

std::string owner_urn(const std::string& tenant) { return "tml:organization_user:" + tenant; }

}  // namespace kiln::service
