#include "service/worker_pool.hpp"

#include <algorithm>

namespace kiln::service {

WorkerPool::WorkerPool(std::mutex& mu, int workers, std::vector<Source> sources, std::function<void()> tick,
                       std::chrono::milliseconds tick_every)
    : mu_(mu), sources_(std::move(sources)), tick_(std::move(tick)), tick_every_(tick_every) {
  last_served_ = sources_.size() - 1;
  for (int i = 0; i < std::max(1, workers); ++i) threads_.emplace_back([this] { work(); });
  threads_.emplace_back([this] { ticker(); });
}

WorkerPool::~WorkerPool() { stop(); }

void WorkerPool::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  work_cv_.notify_all();
  tick_cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void WorkerPool::work() {
  std::unique_lock lock(mu_);
  const size_t n = sources_.size();
  const auto next_ready = [&]() -> size_t {
    for (size_t k = 1; k <= n; ++k)
      if (const size_t i = (last_served_ + k) % n; sources_[i].ready()) return i;
    return n;
  };
  while (true) {
    size_t i = n;
    work_cv_.wait(lock, [&] { return stopping_ || (i = next_ready()) < n; });
    if (stopping_) return;
    last_served_ = i;
    sources_[i].run(lock);
  }
}

void WorkerPool::ticker() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    tick_cv_.wait_for(lock, tick_every_);
    if (!stopping_) tick_();
  }
}

}  // namespace kiln::service
