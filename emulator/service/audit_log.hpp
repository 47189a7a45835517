#pragma once
// The audit log: what happened to a tenant's sessions, runs and checkpoints, recorded when it
// happens (so a deleted checkpoint's creation and deletion stay listed), kept in
// <data_dir>/audit.jsonl so it survives a restart. One mutex: saves are recorded by workers.
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
  // Reads the entries `file` holds ("" keeps them in memory only).
  explicit AuditLog(std::string file);
  void record(AuditEntry e);
  std::vector<AuditEntry> list(const std::string& tenant) const;  // newest first
  void forget(const std::string& tenant);                         // every tenant's when empty

 private:
  void rewrite() const;  // under mu_

  mutable std::mutex mu_;
  std::string file_;
  std::vector<AuditEntry> entries_;  // oldest first
};

}  // namespace kiln::service
