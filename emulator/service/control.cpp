// The service's control surface for tests (served under /_kiln/ by the HTTP server): reset,
// future progression, the virtual clock, injected failures and a JSON view of the state.
#include <algorithm>
#include <cmath>

#include "service/trainer_service.hpp"

namespace kiln::service {

namespace {
thread_local std::optional<InjectedFailure> t_injected;

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
  // A key's namespaces (ids.hpp) go with it: its default one, serverless and each of its jobs.
  std::vector<std::string> namespaces = {tenant};
  if (!tenant.empty()) {
    namespaces.push_back(tenant + "@" + kServerlessScope);
    for (const auto& id : jobs_.ids(tenant)) namespaces.push_back(job_tenant(tenant, id));
  }
  jobs_.reset(tenant);
  deployments_.reset(tenant);
  std::unique_lock lock(mu_);
  for (const std::string& ns : namespaces) {
    // A model or sampler being executed is in a worker's hands: wait until it is done with it.
    futures_.wait_for(lock, [&] {
      for (const auto& [id, m] : models_.all())
        if ((ns.empty() || m->tenant == ns) && queue_.running(id)) return false;
      return !samplers_.any_running(ns);
    });
    for (const auto& id : models_.forget(ns)) queue_.remove_lane(id);
    samplers_.forget(ns);
    sessions_.forget(ns);
    futures_.forget(ns);
    store_->clear(ns);
    audit_.forget(ns);
  }
  if (tenant.empty()) ids_.restart();
}

void TrainerService::set_progression(Progression p) {
  if (p.queue_state != "active" && p.queue_state != "paused_capacity" && p.queue_state != "paused_rate_limit")
    throw InvalidRequest("queue_state must be active, paused_capacity or paused_rate_limit, got '" + p.queue_state +
                         "'");
  if (p.polls < 0 || p.seconds < 0 || !std::isfinite(p.seconds)) throw InvalidRequest("polls and seconds must be >= 0");
  std::lock_guard lock(mu_);
  futures_.set_progression(std::move(p));
}

Progression TrainerService::progression() const {
  std::lock_guard lock(mu_);
  return futures_.progression();
}

bool TrainerService::has_virtual_clock() const { return dynamic_cast<const VirtualClock*>(clock_.get()) != nullptr; }

void TrainerService::advance_clock(double seconds) {
  auto* v = dynamic_cast<const VirtualClock*>(clock_.get());
  if (!v) throw Conflict("the server runs on the real clock; start it with --virtual-clock to move time");
  if (!(seconds >= 0) || !std::isfinite(seconds)) throw InvalidRequest("advance_seconds must be a finite number >= 0");
  // The service owns its clock (created non-const), so moving it is well defined.
  const_cast<VirtualClock*>(v)->advance_seconds(seconds);
  std::lock_guard lock(mu_);
  futures_.purge();
  futures_.notify();
}

TrainerService::Metrics TrainerService::metrics() const {
  Metrics out;
  const auto totals = executor_.totals();
  out.tokens_trained = totals.tokens_trained;
  out.tokens_forward = totals.tokens_forward;
  out.optimizer_steps = totals.optimizer_steps;
  std::tie(out.checkpoints_written, out.checkpoint_bytes_written) = store_->written();
  out.checkpoints = static_cast<int64_t>(store_->all().size());
  std::lock_guard lock(mu_);
  out.tokens_sampled = static_cast<uint64_t>(samplers_.tokens_sampled());
  out.futures = futures_.counts();
  for (const auto& [id, m] : models_.all()) out.queue_depth[id] = static_cast<int64_t>(queue_.depth(id));
  out.sessions = static_cast<int64_t>(sessions_.all().size());
  out.models = static_cast<int64_t>(models_.all().size());
  out.samplers = static_cast<int64_t>(samplers_.count());
  return out;
}

nlohmann::json TrainerService::state() const {
  using nlohmann::json;
  std::lock_guard lock(mu_);
  json sessions = json::array(), models = json::array(), checkpoints = json::array();
  for (const auto& [id, s] : sessions_.all())
    sessions.push_back({{"session_id", id}, {"tenant", s->tenant}, {"created", iso8601(s->info.created)},
                        {"last_heartbeat", iso8601(s->info.last_heartbeat)},
                        {"training_run_ids", s->info.training_run_ids}, {"sampler_ids", s->info.sampler_ids},
                        {"finished", s->info.finish_reason ? json(*s->info.finish_reason) : json(nullptr)}});
  for (const auto& [id, m] : models_.all()) {
    json view = model_view(id, *m);
    view.update(queue_.view(id));
    models.push_back(std::move(view));
  }
  for (const auto& [id, r] : models_.retired()) models.push_back(model_view(id, r));
  for (const auto& c : store_->all())
    checkpoints.push_back({{"tinker_path", c.tinker_path()}, {"tenant", c.tenant}, {"created", iso8601(c.created)},
                           {"expires_at", c.expires ? json(iso8601(*c.expires)) : json(nullptr)},
                           {"expired", !store_->live(c)}, {"public", c.is_public}, {"size_bytes", c.size_bytes}});
  return {{"now", iso8601(clock_->now())},
          {"virtual_clock", has_virtual_clock()},
          {"progression", progression_view(futures_.progression())},
          {"sessions", sessions},
          {"models", models},
          {"samplers", samplers_.view()},
          {"futures", futures_.view()},
          {"checkpoints", checkpoints}};
}

}  // namespace kiln::service
