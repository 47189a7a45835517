#include "service/session_registry.hpp"

#include "errors.hpp"

namespace kiln::service {

SessionRegistry::Session& SessionRegistry::add(const std::string& tenant, SessionInfo info) {
  auto s = std::make_unique<Session>(Session{tenant, std::move(info)});
  auto& slot = sessions_[s->info.session_id];
  slot = std::move(s);
  return *slot;
}

SessionRegistry::Session& SessionRegistry::find_owned(const std::string& tenant, const std::string& session_id) {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end() || it->second->tenant != tenant) throw errors::session_not_found(session_id);
  return *it->second;
}

const SessionRegistry::Session& SessionRegistry::find_owned(const std::string& tenant,
                                                            const std::string& session_id) const {
  return const_cast<SessionRegistry*>(this)->find_owned(tenant, session_id);
}

SessionRegistry::Session& SessionRegistry::find_open(const std::string& tenant, const std::string& session_id) {
  Session& s = find_owned(tenant, session_id);
  if (s.info.finish_reason) throw errors::session_finished(session_id);
  return s;
}

SessionRegistry::Session* SessionRegistry::find(const std::string& session_id) {
  auto it = sessions_.find(session_id);
  return it == sessions_.end() ? nullptr : it->second.get();
}

std::vector<SessionInfo> SessionRegistry::list(const std::string& tenant) const {
  std::vector<SessionInfo> out;
  for (const auto& [id, s] : sessions_)
    if (s->tenant == tenant) out.push_back(s->info);
  return out;
}

void SessionRegistry::record_run(const std::string& session_id, const std::string& model_id) {
  if (Session* s = find(session_id)) s->info.training_run_ids.push_back(model_id);
}

void SessionRegistry::record_sampler(const std::string& session_id, const std::string& sampler_id) {
  if (Session* s = find(session_id)) s->info.sampler_ids.push_back(sampler_id);
}

void SessionRegistry::forget(const std::string& tenant) {
  std::erase_if(sessions_, [&](const auto& s) { return tenant.empty() || s.second->tenant == tenant; });
}

}  // namespace kiln::service
