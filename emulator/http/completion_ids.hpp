#pragma once
// Ids of completion answers: "<prefix><16 hex>", unpredictable like the service's.
#include <cstdio>
#include <mutex>
#include <random>
#include <string>

namespace kiln::http {

inline std::string completion_id(const char* prefix) {
  static std::mt19937_64 rng{std::random_device{}()};
  static std::mutex mu;
  std::lock_guard lock(mu);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%s%016llx", prefix, static_cast<unsigned long long>(rng()));
  return buf;
}

}  // namespace kiln::http
