#pragma once
// The audit log: what happened to a tenant's sessions, runs and checkpoints, recorded when it
// happens (so a deleted checkpoint's creation and deletion stay listed), kept in
// <data_dir>/audit.jsonl so it survives a restart. Memory holds the newest `memory_entries`; a
// listing that reaches further back reads the file (without a file, older entries are gone). An
// unbounded copy in memory grew by ~4 MiB a minute in the soak test's save-heavy workload.
// One mutex: saves are recorded by workers.
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "service/clock.hpp"

namespace kiln::service {

struct AuditEntry {
  TimePoint time;
  std::string tenant;
  // session_created, training_run_created, checkpoint_created, checkpoint_deleted,
  // checkpoint_published, checkpoint_unpublished, checkpoint_ttl_changed.
  std::string event;
  std::string model_id, tinker_path, purpose;  // purpose: training | sampler (checkpoint events)
  std::map<std::string, std::string> details;  // AuditLogEntry.event_details (tinker 0.30+)
};

class AuditLog {
 public:
  static constexpr size_t kMemoryEntries = 10000;
  // Reads the entries `file` holds ("" keeps them in memory only).
  explicit AuditLog(std::string file, size_t memory_entries = kMemoryEntries);
  void record(AuditEntry e);
  std::vector<AuditEntry> list(const std::string& tenant) const;  // newest first
  void forget(const std::string& tenant);                         // every tenant's when empty

 private:
  std::vector<AuditEntry> read_file() const;   // every entry the file holds, oldest first
  void keep_newest(std::vector<AuditEntry> all);  // memory takes the newest of `all` (under mu_)
  void rewrite(const std::vector<AuditEntry>& all) const;  // the file holds exactly `all` (under mu_)

  mutable std::mutex mu_;
  std::string file_;
  size_t memory_entries_;
  std::deque<AuditEntry> entries_;  // the newest, oldest first
  bool dropped_ = false;            // older entries than entries_ exist (in the file, if any)
};

}  // namespace kiln::service
