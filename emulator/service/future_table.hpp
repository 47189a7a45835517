#pragma once
// Futures: one per accepted request, from submit until its retention ends. A future is pending
// until its request has run, then done or failed. Pollers see results through the progression
// (the control API can hold them back), and a result is forgotten a while after its first
// delivery, or after its completion when nobody ever polled it (rule B3 in docs/protocol.md).
// Not synchronised on its own: every call is made under the service's lock, which retrieve and
// wait_for_completion release while they wait.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "service/ids.hpp"
#include "service/service_types.hpp"

namespace kiln::service {

class FutureTable {
 public:
  struct Future {
    std::string tenant;
    std::string owner;  // the model or sampler it belongs to ("" for create_model's)
    RetrieveResult state;
    TimePoint submitted;
    std::optional<TimePoint> completed, first_delivered;
    int64_t polls = 0;
    bool running = false;  // pending, and its request is executing (a worker has it, or it decodes)
    std::optional<InjectedFailure> forced;  // fault injection: fail instead of executing
    std::vector<std::string> sequence_ids;  // asample futures: one per requested sample
    uint64_t completion = 0;  // its place in the order futures completed (1, 2, ...); 0 while pending
  };
  // A future of an owner that completed after a cursor (retrieve_futures).
  struct Completion {
    std::string request_id;
    bool failed = false;
    bool operator==(const Completion&) const = default;
  };

  FutureTable(IdGenerator& ids, const Clock& clock, double result_retention_seconds,
              double unpolled_retention_seconds);

  // A pending future; returns its request id.
  std::string add_pending(const std::string& tenant, const std::string& owner,
                          std::optional<InjectedFailure> forced = std::nullopt);
  // A future that is complete from the start (requests answered at once).
  std::string add_done(const std::string& tenant, TrainingResult result);
  std::string add_failed(const std::string& tenant, const InjectedFailure& failure, const std::string& owner = "");
  Future* find(const std::string& request_id);
  // Records the outcome of a pending future. The first outcome stands: a future that completed
  // already (a sample cancelled while it decoded) or is gone (a reset) is left as it is.
  void complete(const std::string& request_id, RetrieveResult outcome);

  // The model or sampler a future belongs to; "" when unknown, another tenant's or ownerless.
  std::string owner(const std::string& tenant, const std::string& request_id) const;
  // Waits up to `wait` for the result, releasing `lock` meanwhile. errors::future_not_found for
  // an unknown (or another tenant's) id.
  RetrieveResult retrieve(std::unique_lock<std::mutex>& lock, const std::string& tenant,
                          const std::string& request_id, std::chrono::milliseconds wait);
  // The futures of `owner` (of `tenant`) that completed after `cursor` and may be delivered, oldest
  // first, and the cursor after them (`cursor` itself when there are none). Waits up to `wait`
  // for the first, releasing `lock` meanwhile. A cursor counts completions of the whole table, so
  // one owner's cursor passes over other owners' completions; results forgotten after their
  // retention are not reported again.
  std::pair<std::vector<Completion>, uint64_t> completions_after(std::unique_lock<std::mutex>& lock,
                                                                 const std::string& tenant, const std::string& owner,
                                                                 uint64_t cursor, std::chrono::milliseconds wait);
  // Waits until `done` holds; re-checked whenever something completes or notify() is called.
  void wait_for(std::unique_lock<std::mutex>& lock, const std::function<bool()>& done);
  void notify() { done_cv_.notify_all(); }

  void set_progression(Progression p);
  const Progression& progression() const { return progression_; }
  // Housekeeping (the ticker): forgets results past retention, wakes pollers held for time.
  void tick();
  void purge();
  // Wakes every waiter for good (the service is stopping).
  void stop();
  // Forgets the futures of `tenant` (every tenant's when empty; then the progression resets too).
  void forget(const std::string& tenant);
  size_t pending() const;  // futures whose request has not run yet
  // Marks a pending future's request as executing (gone already after a reset: nothing happens).
  void start(const std::string& request_id);
  // Futures kept now, by state: pending (waiting), running, done, failed (GET /metrics).
  std::map<std::string, int64_t> counts() const;
  // Request ids by state, with polls, delivery and failures (the control API's state view).
  nlohmann::json view() const;

 private:
  bool held(const Future& f) const;  // completed, but the progression holds it back

  IdGenerator& ids_;
  const Clock& clock_;
  double result_retention_seconds_, unpolled_retention_seconds_;
  std::map<std::string, std::unique_ptr<Future>> futures_;  // by request id
  uint64_t completions_ = 0;  // futures completed so far (their `completion` numbers)
  Progression progression_;
  bool stopping_ = false;
  std::condition_variable done_cv_;
};

// The progression as the control API's state view shows it.
nlohmann::json progression_view(const Progression& p);

}  // namespace kiln::service
