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

std::string tenant_key(const std::string& api_key) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "tenant-%016llx", static_cast<unsigned long long>(fnv1a(api_key)));
  return buf;
}

std::string owner_urn(const std::string& tenant) { return "tml:organization_user:" + tenant; }

}  // namespace kiln::service
