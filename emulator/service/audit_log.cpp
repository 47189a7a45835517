#include "service/audit_log.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

namespace kiln::service {

namespace {

nlohmann::json to_line(const AuditEntry& e) {
  return {{"time_ns", e.time.time_since_epoch().count()}, {"tenant", e.tenant}, {"event", e.event},
          {"model_id", e.model_id}, {"tinker_path", e.tinker_path}, {"purpose", e.purpose}, {"details", e.details}};
}

AuditEntry from_line(const nlohmann::json& j) {
  return {TimePoint(TimePoint::duration(j.at("time_ns").get<TimePoint::duration::rep>())), j.at("tenant"), j.at("event"),
          j.at("model_id"), j.at("tinker_path"), j.at("purpose"),
          j.at("details").get<std::map<std::string, std::string>>()};
}

}  // namespace

AuditLog::AuditLog(std::string file) : file_(std::move(file)) {
  if (file_.empty()) return;
  std::ifstream in(file_);
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object()) try {
        entries_.push_back(from_line(j));
      } catch (const nlohmann::json::exception&) {  // a torn last line from a crash: skipped
      }
  }
}

void AuditLog::record(AuditEntry e) {
  std::lock_guard lock(mu_);
  if (!file_.empty()) std::ofstream(file_, std::ios::app) << to_line(e).dump() << "\n";
  entries_.push_back(std::move(e));
}

std::vector<AuditEntry> AuditLog::list(const std::string& tenant) const {
  std::lock_guard lock(mu_);
  std::vector<AuditEntry> out;
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it)
    if (it->tenant == tenant) out.push_back(*it);
  return out;
}

void AuditLog::forget(const std::string& tenant) {
  std::lock_guard lock(mu_);
  std::erase_if(entries_, [&](const AuditEntry& e) { return tenant.empty() || e.tenant == tenant; });
  rewrite();
}

void AuditLog::rewrite() const {
  if (file_.empty()) return;
  if (entries_.empty()) {  // a full reset leaves the data folder empty
    std::remove(file_.c_str());
    return;
  }
  std::ofstream out(file_, std::ios::trunc);
  for (const auto& e : entries_) out << to_line(e).dump() << "\n";
}

}  // namespace kiln::service
