#pragma once
// Per-model ordering (rules B1, B2 in docs/protocol.md). Each model is a lane: its requests run
// one at a time in seq_id order, starting at 1; one that arrives early waits for those before it.
// The same seq_id with the same request again is a resubmission (the same future); with another
// request, or a seq_id already passed, it is refused. A refused submit counts as arrived, so it
// never holds up the line; a seq_id that never arrives is skipped after a grace period. A lane
// whose next request is waiting is queued for the workers, at most once.
// Not synchronised: the service calls it under its lock. The queue knows nothing of models or
// weights; whoever pops a request executes it and then calls done().
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "service/clock.hpp"
#include "service/requests.hpp"

namespace kiln::service {

class SeqQueue {
 public:
  struct Next {
    std::string lane;
    int64_t seq_id = 0;
    TrainingRequest request;
    std::string request_id;
  };

  // `on_ready` is called whenever a lane becomes runnable (to wake a worker).
  explicit SeqQueue(std::function<void()> on_ready) : on_ready_(std::move(on_ready)) {}

  void add_lane(const std::string& lane);
  void remove_lane(const std::string& lane);
  // The future of an earlier submission of exactly this request with this seq_id, if any.
  // Throws errors::seq_id_reused for a seq_id taken by another request or already passed, and
  // InvalidRequest for a seq_id below 1.
  std::optional<std::string> resubmission(const std::string& lane, int64_t seq_id, uint64_t fingerprint) const;
  // A submit refused (at decode or after resubmission()): the seq_id counts as arrived. A seq_id
  // that already arrived, or is below the lane's next one, is left as it is.
  void reject(const std::string& lane, int64_t seq_id);
  // Queues an accepted request (resubmission() returned nothing for it).
  void push(const std::string& lane, int64_t seq_id, uint64_t fingerprint, TrainingRequest request,
            std::string request_id);
  // A request that runs before seq_id 1 (create-from-state's load, seq_id 0). Returns the future
  // of the same request made before; throws InvalidRequest when the lane has taken requests.
  std::string push_first(const std::string& lane, uint64_t fingerprint, TrainingRequest request,
                         const std::function<std::string()>& new_request_id);

  bool has_ready() const { return !ready_.empty(); }
  // The next request of the first runnable lane; that lane runs until done(lane).
  Next pop();
  void done(const std::string& lane);
  bool running(const std::string& lane) const;
  // Nothing waits, runs or is remembered on the lane (its model may be retired).
  bool idle(const std::string& lane) const;
  // Forgets what it remembers of requests that ran and whose futures are gone (`known` says which
  // request ids still have one): a resubmission of such a seq_id is then refused as reused, as
  // the result it would return is gone too. Without this a lane's memory grows with every
  // request of a long run (found by the soak test). Cheap: each lane is pruned from its oldest
  // seq_id up to the first still known.
  void forget_finished(const std::function<bool(const std::string& request_id)>& known);
  // The gap rule: a lane waiting on a missing seq_id for `grace` skips to the next one that came.
  // Returns one line per skip, for the log.
  std::vector<std::string> skip_stalled(TimePoint now, TimePoint::duration grace);
  // Next seq_id, queued seq_ids and whether it runs (the control API's state view).
  nlohmann::json view(const std::string& lane) const;
  // Requests that arrived on the lane and have not run yet (GET /metrics).
  size_t depth(const std::string& id) const { return lane(id).waiting.size(); }

 private:
  struct Lane {
    int64_t next_seq = 1;                                                // next seq_id to run
    std::map<int64_t, std::pair<TrainingRequest, std::string>> waiting;  // arrived, not yet run
    std::map<int64_t, std::pair<uint64_t, std::string>> seen;            // seq → (fingerprint, request id)
    std::set<int64_t> rejected;                                          // refused at submit
    bool running = false, queued = false;
    std::optional<TimePoint> gap_since;  // waiting on a missing next_seq since
  };
  Lane& lane(const std::string& id);
  const Lane& lane(const std::string& id) const;
  void advance(const std::string& id, Lane& l);  // past rejected seq_ids; queue when runnable

  std::function<void()> on_ready_;
  std::map<std::string, Lane> lanes_;
  std::deque<std::string> ready_;
};

}  // namespace kiln::service
