// The service's control surface for tests (served under /_kiln/ by the HTTP server): reset,
// future progression, the virtual clock, injected failures and a JSON view of the state.
#include <algorithm>
#include <cmath>

#include "service/trainer_service.hpp"
#include "service/trainer_service_internal.hpp"
#include "train/errors.hpp"

namespace kiln::service {

namespace {
thread_local std::optional<InjectedFailure> t_injected;

const char* mode_name(Progression::Mode m) {
  switch (m) {
    case Progression::Mode::immediate: return "immediate";
    case Progression::Mode::after_polls: return "after_polls";
    case Progression::Mode::after_seconds: return "after_seconds";
  }
  return "immediate";
}
}  // namespace

TrainerService::ScopedFailure::ScopedFailure(InjectedFailure f) { t_injected = std::move(f); }
TrainerService::ScopedFailure::~ScopedFailure() { t_injected.reset(); }

std::optional<InjectedFailure> TrainerService::take_injected_failure() {
  auto f = std::move(t_injected);
  t_injected.reset();
  return f;
}

void TrainerService::reset(const std::string& api_key) {
  const std::string tenant = api_key.empty() ? "" : tenant_key(api_key);
  const auto mine = [&](const std::string& t) { return tenant.empty() || t == tenant; };
  std::unique_lock lock(mu_);
  // A model being executed is in a worker's hands: wait until it is done with it.
  done_cv_.wait(lock, [&] {
    return std::none_of(models_.begin(), models_.end(), [&](const auto& m) { return mine(m.second->tenant) && m.second->running; }) &&
           std::none_of(samplers_.begin(), samplers_.end(), [&](const auto& s) { return mine(s.second->tenant) && s.second->running; });
  });
  std::erase_if(ready_, [&](Model* m) { return mine(m->tenant); });
  std::erase_if(samplers_ready_, [&](Sampler* s) { return mine(s->tenant); });
  std::erase_if(models_, [&](const auto& m) { return mine(m.second->tenant); });
  std::erase_if(sessions_, [&](const auto& s) { return mine(s.second->tenant); });
  std::erase_if(samplers_, [&](const auto& s) { return mine(s.second->tenant); });
  std::erase_if(futures_, [&](const auto& f) { return mine(f.second->tenant); });
  store_->clear(tenant);
  if (tenant.empty()) {
    id_counter_ = 0;
    progression_ = {};
  }
}

void TrainerService::set_progression(Progression p) {
  if (p.queue_state != "active" && p.queue_state != "paused_capacity" && p.queue_state != "paused_rate_limit")
    throw train::InvalidRequest("queue_state must be active, paused_capacity or paused_rate_limit, got '" +
                                p.queue_state + "'");
  if (p.polls < 0 || p.seconds < 0 || !std::isfinite(p.seconds))
    throw train::InvalidRequest("polls and seconds must be >= 0");
  std::lock_guard lock(mu_);
  progression_ = std::move(p);
  done_cv_.notify_all();
}

Progression TrainerService::progression() const {
  std::lock_guard lock(mu_);
  return progression_;
}

bool TrainerService::has_virtual_clock() const { return dynamic_cast<const VirtualClock*>(clock_.get()) != nullptr; }

void TrainerService::advance_clock(double seconds) {
  auto* v = dynamic_cast<const VirtualClock*>(clock_.get());
  if (!v) throw Conflict("the server runs on the real clock; start it with --virtual-clock to move time");
  if (!(seconds >= 0) || !std::isfinite(seconds))
    throw train::InvalidRequest("advance_seconds must be a finite number >= 0");
  // The service owns its clock (created non-const), so moving it is well defined.
  const_cast<VirtualClock*>(v)->advance_seconds(seconds);
  std::lock_guard lock(mu_);
  purge_futures_locked();
  done_cv_.notify_all();
}

nlohmann::json TrainerService::state() const {
  using nlohmann::json;
  std::lock_guard lock(mu_);
  const TimePoint now = clock_->now();
  json sessions = json::array(), models = json::array(), samplers = json::array(), checkpoints = json::array();
  for (const auto& [id, s] : sessions_)
    sessions.push_back({{"session_id", id}, {"tenant", s->tenant}, {"created", iso8601(s->info.created)},
                        {"last_heartbeat", iso8601(s->info.last_heartbeat)},
                        {"training_run_ids", s->info.training_run_ids}, {"sampler_ids", s->info.sampler_ids}});
  for (const auto& [id, m] : models_) {
    json queued = json::array();
    for (const auto& [seq, entry] : m->waiting) queued.push_back(seq);
    models.push_back({{"model_id", id}, {"tenant", m->tenant}, {"base_model", m->info.base_model},
                      {"lora_rank", m->info.lora.rank}, {"base_only", m->info.base_only},
                      {"optimizer_step", m->info.optimizer_step}, {"recent_losses", m->info.recent_losses},
                      {"next_seq_id", m->next_seq}, {"queued_seq_ids", queued}, {"running", m->running},
                      {"unloaded", m->unloaded}, {"last_request_time", iso8601(m->info.last_request_time)}});
  }
  for (const auto& [id, s] : samplers_)
    samplers.push_back({{"sampler_id", id}, {"tenant", s->tenant}, {"base_model", s->info.base_model},
                        {"model_path", s->info.model_path ? json(*s->info.model_path) : json(nullptr)},
                        {"pending_requests", s->pending.size()}, {"decode_steps", s->decode_steps},
                        {"sampled_tokens", s->sampled_tokens}, {"largest_batch", s->largest_batch}});
  json futures = {{"pending", json::array()}, {"done", json::array()}, {"failed", json::array()}};
  for (const auto& [id, f] : futures_) {
    const char* bucket = f->state.status == RetrieveResult::Status::pending ? "pending"
                         : f->state.status == RetrieveResult::Status::done  ? "done"
                                                                            : "failed";
    json entry = {{"request_id", id}, {"tenant", f->tenant}, {"polls", f->polls}, {"delivered", f->first_delivered.has_value()}};
    if (f->state.status == RetrieveResult::Status::failed) {
      entry["error"] = f->state.error;
      entry["category"] = category_name(f->state.category);
    }
    futures[bucket].push_back(std::move(entry));
  }
  for (const auto& c : store_->all())
    checkpoints.push_back({{"tinker_path", c.tinker_path()}, {"tenant", c.tenant}, {"created", iso8601(c.created)},
                           {"expires_at", c.expires ? json(iso8601(*c.expires)) : json(nullptr)},
                           {"expired", !store_->live(c)}, {"public", c.is_public}, {"size_bytes", c.size_bytes}});
  return {{"now", iso8601(now)},
          {"virtual_clock", has_virtual_clock()},
          {"progression",
           {{"mode", mode_name(progression_.mode)}, {"polls", progression_.polls}, {"seconds", progression_.seconds},
            {"queue_state", progression_.queue_state}, {"reason", progression_.reason}}},
          {"sessions", sessions},
          {"models", models},
          {"samplers", samplers},
          {"futures", futures},
          {"checkpoints", checkpoints}};
}

}  // namespace kiln::service
