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

AuditLog::AuditLog(std::string file, size_t memory_entries)
    : file_(std::move(file)), memory_entries_(std::max<size_t>(1, memory_entries)) {
  keep_newest(read_file());
}

std::vector<AuditEntry> AuditLog::read_file() const {
  std::vector<AuditEntry> all;
  if (file_.empty()) return all;
  std::ifstream in(file_);
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object()) try {
        all.push_back(from_line(j));
      } catch (const nlohmann::json::exception&) {  // a torn last line from a crash: skipped
      }
  }
  return all;
}

void AuditLog::keep_newest(std::vector<AuditEntry> all) {
  const size_t skip = all.size() > memory_entries_ ? all.size() - memory_entries_ : 0;
  entries_.assign(std::make_move_iterator(all.begin() + static_cast<std::ptrdiff_t>(skip)), std::make_move_iterator(all.end()));
  dropped_ = skip > 0;
}

void AuditLog::record(AuditEntry e) {
  std::lock_guard lock(mu_);
  if (!file_.empty()) std::ofstream(file_, std::ios::app) << to_line(e).dump() << "\n";
  entries_.push_back(std::move(e));
  if (entries_.size() > memory_entries_) {
    entries_.pop_front();
    dropped_ = true;
  }
}

std::vector<AuditEntry> AuditLog::list(const std::string& tenant) const {
  std::lock_guard lock(mu_);
  const bool from_file = dropped_ && !file_.empty();
  std::vector<AuditEntry> older;
  if (from_file) older = read_file();
  std::vector<AuditEntry> out;
  const auto take = [&](auto begin, auto end) {
    for (auto it = begin; it != end; ++it)
      if (it->tenant == tenant) out.push_back(*it);
  };
  if (from_file) take(older.rbegin(), older.rend());
  else take(entries_.rbegin(), entries_.rend());
  return out;
}

void AuditLog::forget(const std::string& tenant) {
  std::lock_guard lock(mu_);
  std::vector<AuditEntry> all = dropped_ && !file_.empty() ? read_file() : std::vector<AuditEntry>(entries_.begin(), entries_.end());
  std::erase_if(all, [&](const AuditEntry& e) { return tenant.empty() || e.tenant == tenant; });
  rewrite(all);
  keep_newest(std::move(all));
}

void AuditLog::rewrite(const std::vector<AuditEntry>& all) const {
  if (file_.empty()) return;
  if (all.empty()) {  // a full reset leaves the data folder empty
    std::remove(file_.c_str());
    return;
  }
  std::ofstream out(file_, std::ios::trunc);
  for (const auto& e : all) out << to_line(e).dump() << "\n";
}

}  // namespace kiln::service
