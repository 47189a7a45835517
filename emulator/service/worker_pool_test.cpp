// WorkerPool with fake sources: every unit runs, sources take turns, the ticker ticks, stop joins.
#include "service/worker_pool.hpp"

#include <atomic>
#include <string>

#include <gtest/gtest.h>

namespace kiln::service {
namespace {

TEST(WorkerPool, SourcesTakeTurnsWhenBothHaveWork) {
  std::mutex mu;
  int a = 6, b = 6;
  std::string order;
  std::condition_variable finished;
  std::unique_ptr<WorkerPool> pool;
  {
    std::unique_lock lock(mu);  // nothing runs until both sources are full
    pool = std::make_unique<WorkerPool>(
        mu, 1,
        std::vector<WorkerPool::Source>{
            {[&] { return a > 0; }, [&](auto&) { --a, order += 'a', finished.notify_all(); }},
            {[&] { return b > 0; }, [&](auto&) { --b, order += 'b', finished.notify_all(); }}},
        [] {});
    pool->notify();
    finished.wait(lock, [&] { return a == 0 && b == 0; });
  }
  pool->stop();
  EXPECT_EQ(order, "abababababab");
}

TEST(WorkerPool, AUnitMayReleaseTheLockWhileItComputes) {
  std::mutex mu;
  std::atomic<int> inside{0}, most{0}, done{0};
  int todo = 8;
  WorkerPool pool(mu, 2,
                  {{[&] { return todo > 0; },
                    [&](std::unique_lock<std::mutex>& lock) {
                      --todo;
                      lock.unlock();
                      most = std::max(most.load(), ++inside);
                      std::this_thread::sleep_for(std::chrono::milliseconds(20));
                      --inside;
                      ++done;
                      lock.lock();
                    }}},
                  [] {});
  {
    std::lock_guard lock(mu);
    pool.notify();
    pool.notify();
  }
  for (int i = 0; i < 500 && done < 8; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  pool.stop();
  EXPECT_EQ(done.load(), 8);
  EXPECT_EQ(most.load(), 2);  // two workers computed at once
}

TEST(WorkerPool, TheTickerTicksAndStopJoins) {
  std::mutex mu;
  std::atomic<int> ticks{0};
  WorkerPool pool(mu, 1, {{[] { return false; }, [](auto&) {}}}, [&] { ++ticks; }, std::chrono::milliseconds(5));
  for (int i = 0; i < 500 && ticks < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  pool.stop();
  const int after = ticks;
  EXPECT_GE(after, 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(ticks.load(), after);
  pool.stop();  // idempotent
}

}  // namespace
}  // namespace kiln::service
