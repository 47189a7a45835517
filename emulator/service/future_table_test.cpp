// FutureTable on a virtual clock: completion, the progression, retention, tenants, and a reset
// that forgets a future while a poll waits on it.
#include "service/future_table.hpp"

#include <map>
#include <thread>

#include <gtest/gtest.h>

namespace kiln::service {
namespace {

struct Table {
  std::mutex mu;
  IdGenerator ids{uint64_t{1}};
  VirtualClock clock;
  FutureTable t{ids, clock, /*result_retention_seconds=*/300, /*unpolled_retention_seconds=*/3600};

  RetrieveResult poll(const std::string& tenant, const std::string& rid, int wait_ms = 0) {
    std::unique_lock lock(mu);
    return t.retrieve(lock, tenant, rid, std::chrono::milliseconds(wait_ms));
  }
  static RetrieveResult done() {
    RetrieveResult r;
    r.status = RetrieveResult::Status::done;
    r.result = UnloadResult{"m"};
    return r;
  }
};

using S = RetrieveResult::Status;

TEST(FutureTable, APendingFutureCompletesOnceItsRequestHasRun) {
  Table f;
  const std::string rid = f.t.add_pending("t1", "model-1");
  EXPECT_EQ(f.poll("t1", rid).status, S::pending);
  EXPECT_EQ(f.t.owner("t1", rid), "model-1");
  f.t.complete(rid, Table::done());
  EXPECT_EQ(f.poll("t1", rid).status, S::done);
  const std::string failed = f.t.add_failed("t1", {ErrorCategory::user, "bad"});
  const auto r = f.poll("t1", failed);
  EXPECT_EQ(r.status, S::failed);
  EXPECT_EQ(r.error, "bad");
  EXPECT_EQ(r.category, ErrorCategory::user);
}

TEST(FutureTable, CountsSayWhichFuturesWaitAndWhichRun) {
  Table f;
  const std::string a = f.t.add_pending("t1", "m"), b = f.t.add_pending("t1", "m");
  using Counts = std::map<std::string, int64_t>;
  EXPECT_EQ(f.t.counts(), (Counts{{"pending", 2}, {"running", 0}, {"done", 0}, {"failed", 0}}));
  f.t.start(a);
  EXPECT_EQ(f.t.counts(), (Counts{{"pending", 1}, {"running", 1}, {"done", 0}, {"failed", 0}}));
  EXPECT_EQ(f.poll("t1", a).status, S::pending);  // running is still pending to a poller
  EXPECT_EQ(f.t.view()["running"].size(), 1u);
  f.t.complete(a, Table::done());
  f.t.start(a);  // too late: a completed future stays done
  f.t.start("req-unknown");
  EXPECT_EQ(f.t.counts(), (Counts{{"pending", 1}, {"running", 0}, {"done", 1}, {"failed", 0}}));
  EXPECT_EQ(f.t.pending(), 1u);
  f.t.start(b);
  EXPECT_EQ(f.t.pending(), 1u);  // a running request is still in flight (a draining server waits for it)
}

TEST(FutureTable, AnotherTenantsFutureIsUnknown) {
  Table f;
  const std::string rid = f.t.add_done("t1", CreateModelResult{"m"});
  try {
    f.poll("t2", rid);
    FAIL() << "another tenant read the future";
  } catch (const NotFound& e) {
    EXPECT_STREQ(e.what(), "Future not found");
  }
  EXPECT_EQ(f.t.owner("t2", rid), "");
}

TEST(FutureTable, TheProgressionHoldsResultsForPollsOrSeconds) {
  Table f;
  f.t.set_progression({Progression::Mode::after_polls, 2, 0, "paused_capacity", "busy"});
  const std::string rid = f.t.add_done("t1", CreateModelResult{"m"});
  auto r = f.poll("t1", rid);
  EXPECT_EQ(r.status, S::pending);
  EXPECT_EQ(r.queue_state, "paused_capacity");
  EXPECT_EQ(r.queue_state_reason, "busy");
  EXPECT_EQ(f.poll("t1", rid).status, S::pending);
  EXPECT_EQ(f.poll("t1", rid).status, S::done);  // the third poll
  f.t.set_progression({Progression::Mode::after_seconds, 0, 10, "active", ""});
  EXPECT_EQ(f.poll("t1", rid).status, S::done);  // once delivered, always delivered
  const std::string later = f.t.add_done("t1", CreateModelResult{"m"});
  EXPECT_EQ(f.poll("t1", later).status, S::pending);
  f.clock.advance_seconds(10);
  EXPECT_EQ(f.poll("t1", later).status, S::done);
}

TEST(FutureTable, ResultsAreKeptForTheRetentionPeriods) {
  Table f;
  const std::string delivered = f.t.add_done("t1", CreateModelResult{"m"});
  const std::string unpolled = f.t.add_done("t1", CreateModelResult{"m"});
  const std::string pending = f.t.add_pending("t1", "m");
  f.poll("t1", delivered);
  f.clock.advance_seconds(300);
  f.t.purge();
  EXPECT_EQ(f.poll("t1", delivered).status, S::done);  // exactly at the limit: kept
  f.clock.advance_seconds(1);
  f.t.purge();
  EXPECT_THROW(f.poll("t1", delivered), NotFound);
  EXPECT_EQ(f.poll("t1", unpolled).status, S::done);  // polled now: its 300 s start
  f.clock.advance_seconds(3600);
  f.t.purge();
  EXPECT_THROW(f.poll("t1", unpolled), NotFound);
  EXPECT_EQ(f.poll("t1", pending).status, S::pending);  // never purged while pending
}

TEST(FutureTable, ANeverPolledResultIsKeptAnHour) {
  Table f;
  const std::string rid = f.t.add_done("t1", CreateModelResult{"m"});
  f.clock.advance_seconds(3600);
  f.t.purge();
  f.clock.advance_seconds(1);
  f.t.purge();
  EXPECT_THROW(f.poll("t1", rid), NotFound);
}

TEST(FutureTable, AWaitingPollSeesTheResultAsSoonAsItCompletes) {
  Table f;
  const std::string rid = f.t.add_pending("t1", "m");
  std::thread worker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::lock_guard lock(f.mu);
    f.t.complete(rid, Table::done());
  });
  EXPECT_EQ(f.poll("t1", rid, 30000).status, S::done);
  worker.join();
}

TEST(FutureTable, AFutureForgottenWhileAPollWaitsIsAnsweredAsUnknown) {
  Table f;
  const std::string rid = f.t.add_pending("t1", "m");
  std::thread reset([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::lock_guard lock(f.mu);
    f.t.forget("t1");
  });
  EXPECT_THROW(f.poll("t1", rid, 30000), NotFound);
  reset.join();
}

TEST(FutureTable, ForgettingATenantKeepsTheOthers) {
  Table f;
  const std::string mine = f.t.add_done("t1", CreateModelResult{"m"});
  const std::string theirs = f.t.add_done("t2", CreateModelResult{"m"});
  f.t.set_progression({Progression::Mode::after_polls, 5, 0, "active", ""});
  f.t.forget("t1");
  EXPECT_THROW(f.poll("t1", mine), NotFound);
  EXPECT_EQ(f.poll("t2", theirs).status, S::pending);  // the progression stays for one tenant
  f.t.forget("");
  EXPECT_THROW(f.poll("t2", theirs), NotFound);
  EXPECT_EQ(f.t.progression().mode, Progression::Mode::immediate);
}

// retrieve_futures' view: an owner's completions after a cursor, in completion order, of its
// tenant only; held back while the progression holds them, a session poll counting as a poll.
TEST(FutureTable, CompletionsAfterACursorComeInCompletionOrder) {
  Table f;
  const auto completions = [&](const std::string& tenant, const std::string& owner, uint64_t cursor) {
    std::unique_lock lock(f.mu);
    return f.t.completions_after(lock, tenant, owner, cursor, std::chrono::milliseconds(0));
  };
  const std::string a = f.t.add_pending("t1", "s1"), b = f.t.add_pending("t1", "s1");
  const std::string elsewhere = f.t.add_pending("t1", "s2"), theirs = f.t.add_pending("t2", "s1");
  EXPECT_TRUE(completions("t1", "s1", 0).first.empty());
  f.t.complete(b, Table::done());  // b before a
  f.t.complete(elsewhere, Table::done());
  f.t.complete(theirs, Table::done());
  f.t.complete(a, RetrieveResult::failure("boom", ErrorCategory::server));
  f.t.complete(a, Table::done());  // a second outcome does not replace the first
  const auto [both, cursor] = completions("t1", "s1", 0);
  ASSERT_EQ(both.size(), 2u);
  EXPECT_EQ(both[0].request_id, b);
  EXPECT_FALSE(both[0].failed);
  EXPECT_EQ(both[1].request_id, a);
  EXPECT_TRUE(both[1].failed);
  EXPECT_EQ(cursor, 4u);  // the fourth completion of the table
  EXPECT_EQ(completions("t1", "s1", cursor), std::make_pair(std::vector<FutureTable::Completion>{}, cursor));
  EXPECT_EQ(completions("t1", "s1", 1).first.size(), 1u);  // after b: a only

  // A progression that waits for two polls: the session poll counts for each of its futures.
  f.t.set_progression({Progression::Mode::after_polls, 2, 0, "active", ""});
  const std::string c = f.t.add_pending("t1", "s1");
  f.t.complete(c, Table::done());
  EXPECT_TRUE(completions("t1", "s1", cursor).first.empty());  // poll 1: held
  EXPECT_TRUE(completions("t1", "s1", cursor).first.empty());  // poll 2: held
  const auto released = completions("t1", "s1", cursor).first;  // poll 3
  ASSERT_EQ(released.size(), 1u);
  EXPECT_EQ(released[0].request_id, c);
}

}  // namespace
}  // namespace kiln::service
