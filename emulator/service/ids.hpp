#pragma once
// Ids: request, session and other opaque ids, predictable from a seed; tenants from API keys.
#include <cstdint>
#include <optional>
#include <string>

namespace kiln::service {

class IdGenerator {
 public:
  explicit IdGenerator(std::optional<uint64_t> seed);
  // "<prefix><12 hex>", unique per generator; the same seed gives the same sequence.
  std::string next(const char* prefix);
  void restart() { counter_ = 0; }  // a full reset: ids start over
  uint64_t seed() const { return seed_; }

 private:
  uint64_t seed_ = 0, counter_ = 0;
};

// The tenant an API key names (a hash: the key itself is never stored or written). A scoped
// credential (below) names a namespace of its key's tenant: "<tenant>@<scope>".
std::string tenant_key(const std::string& api_key);

// Namespaces inside one key's tenant (protocol.md §W13.2): each Fireworks trainer job
// ("job:<id>", reached through /training/v1/rlorTrainerJobs/<account>/<id>) and serverless
// ("serverless", through /training/v1/serverless) hold their own sessions, models and
// checkpoints; the unprefixed endpoint is the key's default namespace. The HTTP layer scopes the
// caller's credential by the path; the service sees only the tenant it yields.
std::string scoped_credential(const std::string& api_key, const std::string& scope);
std::string job_scope(const std::string& job_id);              // "job:<id>"
inline constexpr const char* kServerlessScope = "serverless";
std::string base_tenant(const std::string& tenant);            // the tenant without its scope
std::string scope_of_tenant(const std::string& tenant);        // "job:<id>", "serverless" or ""
std::string job_tenant(const std::string& tenant, const std::string& job_id);  // a job of tenant's key

// The identity a tenant has on the wire (model_owner, the JWT's sub): the live service's form,
// tml:organization_user:<id>.
std::string owner_urn(const std::string& tenant);

// FNV-1a, 64 bit: the one digest of names the service uses (ids, tenants).
uint64_t fnv1a(const std::string& s);

}  // namespace kiln::service
