#include "service/seq_queue.hpp"

#include <stdexcept>

#include "errors.hpp"

namespace kiln::service {

SeqQueue::Lane& SeqQueue::lane(const std::string& id) {
  auto it = lanes_.find(id);
  if (it == lanes_.end()) throw std::logic_error("SeqQueue: no lane '" + id + "'");
  return it->second;
}

const SeqQueue::Lane& SeqQueue::lane(const std::string& id) const { return const_cast<SeqQueue*>(this)->lane(id); }

void SeqQueue::add_lane(const std::string& id) { lanes_.try_emplace(id); }

void SeqQueue::remove_lane(const std::string& id) {
  lanes_.erase(id);
  std::erase(ready_, id);
}

std::optional<std::string> SeqQueue::resubmission(const std::string& id, int64_t seq_id, uint64_t fingerprint) const {
  const Lane& l = lane(id);
  if (auto it = l.seen.find(seq_id); it != l.seen.end()) {
    if (it->second.first == fingerprint) return it->second.second;
    throw errors::seq_id_reused();
  }
  if (seq_id < 1) throw InvalidRequest("seq_id must be >= 1, got " + std::to_string(seq_id));
  if (seq_id < l.next_seq || l.rejected.count(seq_id)) throw errors::seq_id_reused();
  return std::nullopt;
}

void SeqQueue::reject(const std::string& id, int64_t seq_id) {
  Lane& l = lane(id);
  if (seq_id < l.next_seq || l.seen.count(seq_id)) return;  // arrived already: nothing to skip
  l.rejected.insert(seq_id);
  advance(id, l);
}

void SeqQueue::push(const std::string& id, int64_t seq_id, uint64_t fingerprint, TrainingRequest request,
                    std::string request_id) {
  Lane& l = lane(id);
  l.seen[seq_id] = {fingerprint, request_id};
  l.waiting.emplace(seq_id, std::make_pair(std::move(request), std::move(request_id)));
  advance(id, l);
}

std::string SeqQueue::push_first(const std::string& id, uint64_t fingerprint, TrainingRequest request,
                                 const std::function<std::string()>& new_request_id) {
  Lane& l = lane(id);
  if (auto it = l.seen.find(0); it != l.seen.end()) return it->second.second;  // the same create again
  if (l.next_seq != 1 || !l.seen.empty())
    throw InvalidRequest("model " + id + " already exists and has run requests");
  l.next_seq = 0;
  const std::string rid = new_request_id();
  push(id, 0, fingerprint, std::move(request), rid);
  return rid;
}

SeqQueue::Next SeqQueue::pop() {
  const std::string id = ready_.front();
  ready_.pop_front();
  Lane& l = lane(id);
  l.queued = false;
  auto it = l.waiting.find(l.next_seq);  // queued lanes always have it: advance() checked
  Next next{id, l.next_seq, std::move(it->second.first), it->second.second};
  l.waiting.erase(it);
  l.running = true;
  return next;
}

void SeqQueue::done(const std::string& id) {
  auto it = lanes_.find(id);
  if (it == lanes_.end()) return;  // removed while running (a reset waits, but be safe)
  it->second.next_seq++;
  it->second.running = false;
  advance(id, it->second);
}

bool SeqQueue::running(const std::string& id) const {
  auto it = lanes_.find(id);
  return it != lanes_.end() && it->second.running;
}

void SeqQueue::advance(const std::string& id, Lane& l) {
  while (l.rejected.count(l.next_seq)) l.rejected.erase(l.next_seq++);
  if (!l.running && !l.queued && l.waiting.count(l.next_seq)) {
    l.queued = true;
    l.gap_since.reset();
    ready_.push_back(id);
    on_ready_();
  }
}

bool SeqQueue::idle(const std::string& id) const {
  const Lane& l = lane(id);
  return !l.running && !l.queued && l.waiting.empty() && l.seen.empty();
}

void SeqQueue::forget_finished(const std::function<bool(const std::string&)>& known) {
  for (auto& [id, l] : lanes_) {
    for (auto it = l.seen.begin(); it != l.seen.end() && it->first < l.next_seq && !known(it->second.second);)
      it = l.seen.erase(it);
    l.rejected.erase(l.rejected.begin(), l.rejected.lower_bound(l.next_seq));  // below next_seq: refused anyway
  }
}

std::vector<std::string> SeqQueue::skip_stalled(TimePoint now, TimePoint::duration grace) {
  std::vector<std::string> log;
  for (auto& [id, l] : lanes_) {
    if (l.running || l.queued || l.waiting.empty() || l.waiting.count(l.next_seq)) {
      l.gap_since.reset();
      continue;
    }
    if (!l.gap_since) l.gap_since = now;
    if (now - *l.gap_since >= grace) {  // give up on the missing seq_ids and go on in order
      log.push_back("model " + id + ": seq_id " + std::to_string(l.next_seq) + " never arrived; skipping to " +
                    std::to_string(l.waiting.begin()->first));
      l.next_seq = l.waiting.begin()->first;
      advance(id, l);
    }
  }
  return log;
}

nlohmann::json SeqQueue::view(const std::string& id) const {
  const Lane& l = lane(id);
  nlohmann::json queued = nlohmann::json::array();
  for (const auto& [seq, entry] : l.waiting) queued.push_back(seq);
  return {{"next_seq_id", l.next_seq}, {"queued_seq_ids", queued}, {"running", l.running}};
}

}  // namespace kiln::service
