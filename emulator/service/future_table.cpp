#include "service/future_table.hpp"

#include <algorithm>

namespace kiln::service {

namespace {
TimePoint::duration seconds(double s) {
  return std::chrono::duration_cast<TimePoint::duration>(std::chrono::duration<double>(s));
}

const char* mode_name(Progression::Mode m) {
  switch (m) {
    case Progression::Mode::immediate: return "immediate";
    case Progression::Mode::after_polls: return "after_polls";
    case Progression::Mode::after_seconds: return "after_seconds";
  }
  return "immediate";
}
}  // namespace

const char* category_name(ErrorCategory c) {
  switch (c) {
    case ErrorCategory::user: return "user";
    case ErrorCategory::server: return "server";
    case ErrorCategory::unknown: return "unknown";
  }
  return "unknown";
}

FutureTable::FutureTable(IdGenerator& ids, const Clock& clock, double result_retention_seconds,
                         double unpolled_retention_seconds)
    : ids_(ids),
      clock_(clock),
      result_retention_seconds_(result_retention_seconds),
      unpolled_retention_seconds_(unpolled_retention_seconds) {}

std::string FutureTable::add_pending(const std::string& tenant, const std::string& owner,
                                     std::optional<InjectedFailure> forced) {
  const std::string rid = ids_.next("req-");
  auto f = std::make_unique<Future>();
  f->tenant = tenant;
  f->owner = owner;
  f->submitted = clock_.now();
  f->forced = std::move(forced);
  futures_[rid] = std::move(f);
  return rid;
}

std::string FutureTable::add_done(const std::string& tenant, TrainingResult result) {
  const std::string rid = add_pending(tenant, "");
  RetrieveResult done;
  done.status = RetrieveResult::Status::done;
  done.result = std::move(result);
  complete(rid, std::move(done));
  return rid;
}

std::string FutureTable::add_failed(const std::string& tenant, const InjectedFailure& failure,
                                    const std::string& owner) {
  const std::string rid = add_pending(tenant, owner);
  complete(rid, RetrieveResult::failure(failure.message, failure.category));
  return rid;
}

FutureTable::Future* FutureTable::find(const std::string& request_id) {
  auto it = futures_.find(request_id);
  return it == futures_.end() ? nullptr : it->second.get();
}

void FutureTable::complete(const std::string& request_id, RetrieveResult outcome) {
  if (Future* f = find(request_id); f && f->state.status == RetrieveResult::Status::pending) {
    f->state = std::move(outcome);
    f->completed = clock_.now();
    f->completion = ++completions_;
  }
  done_cv_.notify_all();
}

std::string FutureTable::owner(const std::string& tenant, const std::string& request_id) const {
  auto it = futures_.find(request_id);
  return it != futures_.end() && it->second->tenant == tenant ? it->second->owner : "";
}

RetrieveResult FutureTable::retrieve(std::unique_lock<std::mutex>& lock, const std::string& tenant,
                                     const std::string& request_id, std::chrono::milliseconds wait) {
  Future* f = find(request_id);
  if (!f || f->tenant != tenant) throw errors::future_not_found();
  ++f->polls;
  using S = RetrieveResult::Status;
  // Wait for the result; a result held back by the progression is answered pending at once when
  // it waits for more polls, and re-checked (the ticker wakes us) when it waits for time. A reset
  // may forget the future meanwhile: then it is answered like any unknown id.
  done_cv_.wait_for(lock, wait, [&] {
    f = find(request_id);
    if (stopping_ || !f) return true;
    if (f->state.status == S::pending) return false;
    return !held(*f) || progression_.mode == Progression::Mode::after_polls;
  });
  if (!f) throw errors::future_not_found();
  if (f->state.status != S::pending && !held(*f)) {
    if (!f->first_delivered) f->first_delivered = clock_.now();
    return f->state;
  }
  RetrieveResult pending;
  pending.queue_state = progression_.queue_state;
  pending.queue_state_reason = progression_.reason;
  return pending;
}

std::pair<std::vector<FutureTable::Completion>, uint64_t> FutureTable::completions_after(
    std::unique_lock<std::mutex>& lock, const std::string& tenant, const std::string& owner, uint64_t cursor,
    std::chrono::milliseconds wait) {
  const bool by_polls = progression_.mode == Progression::Mode::after_polls;
  const auto mine = [&](const Future& f) { return f.tenant == tenant && f.owner == owner; };
  // Under a progression that waits for polls, a poll of the session is a poll of each of its
  // futures not delivered yet (retrieve_future's rule, B3).
  if (by_polls)
    for (auto& [rid, f] : futures_)
      if (mine(*f) && !f->first_delivered) ++f->polls;
  std::vector<std::pair<uint64_t, Completion>> found;
  done_cv_.wait_for(lock, wait, [&] {
    found.clear();
    bool held_back = false;
    for (const auto& [rid, f] : futures_) {
      if (f->completion <= cursor || !mine(*f)) continue;
      if (held(*f)) held_back = true;
      else found.push_back({f->completion, {rid, f->state.status == RetrieveResult::Status::failed}});
    }
    return stopping_ || !found.empty() || (by_polls && held_back);  // held for polls: answer now
  });
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<Completion> out;
  for (auto& [n, c] : found) {
    cursor = n;
    out.push_back(std::move(c));
  }
  return {std::move(out), cursor};
}

void FutureTable::wait_for(std::unique_lock<std::mutex>& lock, const std::function<bool()>& done) {
  done_cv_.wait(lock, [&] { return stopping_ || done(); });
}

bool FutureTable::held(const Future& f) const {
  if (f.first_delivered) return false;  // once delivered, always delivered
  switch (progression_.mode) {
    case Progression::Mode::immediate: return false;
    case Progression::Mode::after_polls: return f.polls <= progression_.polls;
    case Progression::Mode::after_seconds: return clock_.now() - f.submitted < seconds(progression_.seconds);
  }
  return false;
}

void FutureTable::set_progression(Progression p) {
  progression_ = std::move(p);
  done_cv_.notify_all();
}

void FutureTable::tick() {
  purge();
  if (progression_.mode == Progression::Mode::after_seconds) done_cv_.notify_all();
}

void FutureTable::purge() {
  const TimePoint now = clock_.now();
  std::erase_if(futures_, [&](const auto& entry) {
    const Future& f = *entry.second;
    if (!f.completed) return false;
    return f.first_delivered ? now - *f.first_delivered > seconds(result_retention_seconds_)
                             : now - *f.completed > seconds(unpolled_retention_seconds_);
  });
}

void FutureTable::stop() {
  stopping_ = true;
  done_cv_.notify_all();
}

void FutureTable::forget(const std::string& tenant) {
  std::erase_if(futures_, [&](const auto& f) { return tenant.empty() || f.second->tenant == tenant; });
  if (tenant.empty()) progression_ = {};
  done_cv_.notify_all();
}

size_t FutureTable::pending() const {
  return static_cast<size_t>(std::count_if(futures_.begin(), futures_.end(), [](const auto& f) {
    return f.second->state.status == RetrieveResult::Status::pending;
  }));
}

namespace {

const char* bucket_of(const FutureTable::Future& f) {
  return f.state.status == RetrieveResult::Status::done     ? "done"
         : f.state.status == RetrieveResult::Status::failed ? "failed"
         : f.running                                        ? "running"
                                                            : "pending";
}

}  // namespace

void FutureTable::start(const std::string& request_id) {
  if (Future* f = find(request_id); f && f->state.status == RetrieveResult::Status::pending) f->running = true;
}

std::map<std::string, int64_t> FutureTable::counts() const {
  std::map<std::string, int64_t> n{{"pending", 0}, {"running", 0}, {"done", 0}, {"failed", 0}};
  for (const auto& [id, f] : futures_) ++n[bucket_of(*f)];
  return n;
}

nlohmann::json FutureTable::view() const {
  using nlohmann::json;
  json futures = {{"pending", json::array()}, {"running", json::array()}, {"done", json::array()}, {"failed", json::array()}};
  for (const auto& [id, f] : futures_) {
    const char* bucket = bucket_of(*f);
    json entry = {{"request_id", id}, {"tenant", f->tenant}, {"polls", f->polls},
                  {"delivered", f->first_delivered.has_value()}};
    if (f->state.status == RetrieveResult::Status::failed) {
      entry["error"] = f->state.error;
      entry["category"] = category_name(f->state.category);
    }
    futures[bucket].push_back(std::move(entry));
  }
  return futures;
}

nlohmann::json progression_view(const Progression& p) {
  return {{"mode", mode_name(p.mode)}, {"polls", p.polls}, {"seconds", p.seconds}, {"queue_state", p.queue_state},
          {"reason", p.reason}};
}

}  // namespace kiln::service
