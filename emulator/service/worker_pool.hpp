#pragma once
// The service's threads: `workers` threads that serve sources of work in turn (training
// requests, sampler decode turns), so no source starves another, and a ticker that runs
// housekeeping every `tick_every`. Every callback is called under the service's lock; a source's
// run may release it while it computes and must hold it again when it returns.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kiln::service {

class WorkerPool {
 public:
  struct Source {
    std::function<bool()> ready;                                    // has work now
    std::function<void(std::unique_lock<std::mutex>& lock)> run;  // does one unit of it
  };

  WorkerPool(std::mutex& mu, int workers, std::vector<Source> sources, std::function<void()> tick,
             std::chrono::milliseconds tick_every = std::chrono::milliseconds(200));
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Work arrived: wakes a worker. Call with the lock held.
  void notify() { work_cv_.notify_one(); }
  // Finishes the units in hand and joins the threads. Call without the lock; idempotent.
  void stop();

 private:
  void work();
  void ticker();

  std::mutex& mu_;
  std::vector<Source> sources_;
  std::function<void()> tick_;
  std::chrono::milliseconds tick_every_;
  std::condition_variable work_cv_, tick_cv_;
  bool stopping_ = false;
  size_t last_served_ = 0;  // round robin: the next search starts after it
  std::vector<std::thread> threads_;
};

}  // namespace kiln::service
