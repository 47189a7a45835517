// SeqQueue with a fake executor: no models, no weights, no threads. Requests are labelled by
// their seq_id (an UnloadModelRequest carries nothing, so fingerprints are made up per test).
#include "service/seq_queue.hpp"

#include <algorithm>
#include <numeric>

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "errors.hpp"

namespace kiln::service {
namespace {

struct Harness {
  int wakeups = 0;
  SeqQueue q{[this] { ++wakeups; }};
  std::vector<std::pair<std::string, int64_t>> ran;  // (lane, seq_id) in execution order

  std::string submit(const std::string& lane, int64_t seq, uint64_t fp = 0) {
    if (auto earlier = q.resubmission(lane, seq, fp)) return *earlier;
    const std::string rid = lane + "/req-" + std::to_string(seq);
    q.push(lane, seq, fp, UnloadModelRequest{}, rid);
    return rid;
  }
  // The fake executor: runs everything runnable, one request at a time.
  void drain() {
    while (q.has_ready()) {
      const auto next = q.pop();
      ran.emplace_back(next.lane, next.seq_id);
      q.done(next.lane);
    }
  }
};

// A seq_id's memory lasts as long as its future: forgotten once the future is, after which a
// resubmission is refused as reused (there is no result to give back).
TEST(SeqQueue, ForgetsRequestsWhoseFuturesAreGone) {
  Harness h;
  h.q.add_lane("m");
  const std::string one = h.submit("m", 1), two = h.submit("m", 2);
  h.drain();
  h.submit("m", 4);  // waits for 3: not run, never forgotten
  h.q.forget_finished([&](const std::string& rid) { return rid != one; });  // 1's future is gone
  EXPECT_THROW(h.q.resubmission("m", 1, 0), InvalidRequest);
  EXPECT_EQ(h.q.resubmission("m", 2, 0), two);  // still known: still the same future
  h.q.forget_finished([](const std::string&) { return false; });
  EXPECT_THROW(h.q.resubmission("m", 2, 0), InvalidRequest);
  EXPECT_EQ(h.q.resubmission("m", 4, 0), "m/req-4");  // waiting: kept whatever the futures say
  h.submit("m", 3);
  h.drain();
  EXPECT_EQ(h.ran.size(), 4u);
}

TEST(SeqQueue, RunsEachLaneInSeqIdOrderWhateverTheArrivalOrder) {
  rc::check([] {
    const int n = *rc::gen::inRange(1, 12);
    // A random arrival order (sorting 1..n by random keys), with the worker running between
    // arrivals where `drain_after` says so.
    const auto keys = *rc::gen::container<std::vector<uint32_t>>(n, rc::gen::arbitrary<uint32_t>());
    const auto drain_after = *rc::gen::container<std::vector<bool>>(n, rc::gen::arbitrary<bool>());
    std::vector<int64_t> arrival(n);
    std::iota(arrival.begin(), arrival.end(), 1);
    std::stable_sort(arrival.begin(), arrival.end(), [&](int64_t a, int64_t b) { return keys[a - 1] < keys[b - 1]; });
    Harness h;
    h.q.add_lane("a");
    for (int i = 0; i < n; ++i) {
      h.submit("a", arrival[i]);
      if (drain_after[i]) h.drain();
    }
    h.drain();
    std::vector<int64_t> ran;
    for (const auto& entry : h.ran) ran.push_back(entry.second);
    std::vector<int64_t> in_order(n);
    std::iota(in_order.begin(), in_order.end(), 1);
    RC_ASSERT(ran == in_order);
  });
}

TEST(SeqQueue, ALaneRunsOneRequestAtATimeAndLanesDoNotWaitForEachOther) {
  Harness h;
  h.q.add_lane("a");
  h.q.add_lane("b");
  h.submit("a", 1);
  h.submit("a", 2);
  h.submit("b", 2);  // b waits for its seq 1
  h.submit("b", 1);
  auto first = h.q.pop();
  EXPECT_EQ(first.lane, "a");
  EXPECT_TRUE(h.q.running("a"));
  auto second = h.q.pop();  // b runs while a does; a's seq 2 is not offered meanwhile
  EXPECT_EQ(second.lane, "b");
  EXPECT_EQ(second.seq_id, 1);
  EXPECT_FALSE(h.q.has_ready());
  h.q.done("a");
  ASSERT_TRUE(h.q.has_ready());
  EXPECT_EQ(h.q.pop().seq_id, 2);
}

TEST(SeqQueue, TheSameRequestAgainIsTheSameFutureAndAnotherIsRefused) {
  Harness h;
  h.q.add_lane("a");
  const std::string rid = h.submit("a", 1, 11);
  EXPECT_EQ(h.submit("a", 1, 11), rid);  // before it ran
  h.drain();
  EXPECT_EQ(h.submit("a", 1, 11), rid);  // and after
  EXPECT_THROW(h.submit("a", 1, 12), InvalidRequest);
  try {
    h.submit("a", 1, 12);
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "Training request sequence number was reused");
  }
  EXPECT_THROW(h.submit("a", 0), InvalidRequest);
  EXPECT_THROW(h.submit("a", -3), InvalidRequest);
  EXPECT_EQ(h.ran.size(), 1u);
}

TEST(SeqQueue, ARefusedSubmitCountsAsArrived) {
  Harness h;
  h.q.add_lane("a");
  h.submit("a", 2);
  EXPECT_FALSE(h.q.has_ready());
  ASSERT_FALSE(h.q.resubmission("a", 1, 0));
  h.q.reject("a", 1);  // say the envelope check refused seq 1
  h.drain();
  ASSERT_EQ(h.ran.size(), 1u);
  EXPECT_EQ(h.ran[0].second, 2);
  EXPECT_THROW(h.submit("a", 1), InvalidRequest);  // its number is spent
}

// A refusal of a seq_id that already arrived (a bad resubmission refused while decoding) must not
// make the lane skip the request that holds it.
TEST(SeqQueue, RefusingAnArrivedSeqIdSkipsNothing) {
  Harness h;
  h.q.add_lane("a");
  h.submit("a", 2);
  h.q.reject("a", 2);  // seq 2 is waiting for seq 1
  h.q.reject("a", 0);  // below the lane's next seq_id
  h.submit("a", 1);
  h.drain();
  ASSERT_EQ(h.ran.size(), 2u);
  EXPECT_EQ(h.ran[1].second, 2);
}

TEST(SeqQueue, AMissingSeqIdIsSkippedAfterTheGracePeriod) {
  Harness h;
  h.q.add_lane("a");
  h.submit("a", 1);
  h.submit("a", 3);
  h.drain();
  EXPECT_EQ(h.ran.size(), 1u);
  const TimePoint t0{};
  const auto grace = std::chrono::seconds(30);
  EXPECT_TRUE(h.q.skip_stalled(t0, grace).empty());  // the gap starts now
  EXPECT_TRUE(h.q.skip_stalled(t0 + std::chrono::seconds(29), grace).empty());
  EXPECT_FALSE(h.q.has_ready());
  const auto log = h.q.skip_stalled(t0 + std::chrono::seconds(30), grace);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0], "model a: seq_id 2 never arrived; skipping to 3");
  h.drain();
  ASSERT_EQ(h.ran.size(), 2u);
  EXPECT_EQ(h.ran[1].second, 3);
  EXPECT_THROW(h.submit("a", 2), InvalidRequest);  // too late now
}

TEST(SeqQueue, ARunningLaneIsNotAGap) {
  Harness h;
  h.q.add_lane("a");
  h.submit("a", 1);
  h.submit("a", 3);
  h.q.pop();  // seq 1 runs for a long time
  const TimePoint t0{};
  EXPECT_TRUE(h.q.skip_stalled(t0, std::chrono::seconds(0)).empty());
  EXPECT_TRUE(h.q.skip_stalled(t0 + std::chrono::hours(1), std::chrono::seconds(0)).empty());
}

TEST(SeqQueue, AFirstRequestRunsBeforeSeqIdOne) {
  Harness h;
  h.q.add_lane("a");
  int made = 0;
  const auto make = [&] { return "load-" + std::to_string(++made); };
  const std::string rid = h.q.push_first("a", 5, LoadWeightsRequest{}, make);
  EXPECT_EQ(h.q.push_first("a", 5, LoadWeightsRequest{}, make), rid);  // a retried create
  EXPECT_EQ(made, 1);
  h.submit("a", 1);
  h.drain();
  ASSERT_EQ(h.ran.size(), 2u);
  EXPECT_EQ(h.ran[0].second, 0);
  EXPECT_EQ(h.ran[1].second, 1);

  h.q.add_lane("b");
  h.submit("b", 1);
  EXPECT_THROW(h.q.push_first("b", 5, LoadWeightsRequest{}, make), InvalidRequest);
}

TEST(SeqQueue, ReadyLanesWakeAWorkerOnce) {
  Harness h;
  h.q.add_lane("a");
  h.submit("a", 2);
  EXPECT_EQ(h.wakeups, 0);
  h.submit("a", 1);
  h.submit("a", 3);  // already queued: no second wake-up
  EXPECT_EQ(h.wakeups, 1);
  h.drain();
  EXPECT_EQ(h.wakeups, 3);  // re-queued after seq 1 and seq 2 finished
}

TEST(SeqQueue, ARemovedLaneLeavesTheReadyQueue) {
  Harness h;
  h.q.add_lane("a");
  h.submit("a", 1);
  h.q.remove_lane("a");
  EXPECT_FALSE(h.q.has_ready());
  EXPECT_FALSE(h.q.running("a"));
}

}  // namespace
}  // namespace kiln::service
