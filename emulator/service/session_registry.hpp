#pragma once
// Sessions, one map per service, each owned by a tenant. A tenant never sees another's: an id
// that is not theirs behaves exactly like an unknown one. Not synchronised: the service calls it
// under its lock.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "service/service_types.hpp"

namespace kiln::service {

class SessionRegistry {
 public:
  struct Session {
    std::string tenant;
    SessionInfo info;
  };

  // Adds a session with id `session_id` (the caller picks a fresh one).
  Session& add(const std::string& tenant, SessionInfo info);
  bool contains(const std::string& session_id) const { return sessions_.count(session_id) > 0; }
  // The session `session_id` of `tenant`; NotFound (errors::session_not_found) otherwise.
  Session& find_owned(const std::string& tenant, const std::string& session_id);
  const Session& find_owned(const std::string& tenant, const std::string& session_id) const;
  // find_owned, for new work: a finished session is errors::session_finished (410).
  Session& find_open(const std::string& tenant, const std::string& session_id);
  // The session, whoever owns it (a run or sampler records itself there); null when unknown.
  Session* find(const std::string& session_id);
  std::vector<SessionInfo> list(const std::string& tenant) const;
  // Notes a training run or sampler made in the session (a forgotten session notes nothing).
  void record_run(const std::string& session_id, const std::string& model_id);
  void record_sampler(const std::string& session_id, const std::string& sampler_id);
  // Forgets the sessions of `tenant` (every tenant when empty).
  void forget(const std::string& tenant);
  const std::map<std::string, std::unique_ptr<Session>>& all() const { return sessions_; }

 private:
  std::map<std::string, std::unique_ptr<Session>> sessions_;
};

}  // namespace kiln::service
