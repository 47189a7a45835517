#pragma once
// A result that arrives later: what the SDKs' APIFuture is. result() blocks; result(timeout)
// gives up after a while; ready() never blocks. Copies share one result.
#include <chrono>
#include <future>
#include <optional>
#include <utility>

namespace kiln::client {

template <typename T>
class Future {
 public:
  Future() = default;
  explicit Future(std::shared_future<T> f) : f_(std::move(f)) {}

  // Runs `work` (submit already done; this is the polling) on its own thread.
  template <typename F>
  static Future start(F&& work) {
    return Future(std::async(std::launch::async, std::forward<F>(work)).share());
  }
  static Future resolved(T value) {
    std::promise<T> p;
    p.set_value(std::move(value));
    return Future(p.get_future().share());
  }

  T result() const { return f_.get(); }  // rethrows the failure, if any
  template <typename Rep, typename Period>
  std::optional<T> result(std::chrono::duration<Rep, Period> timeout) const {
    if (f_.wait_for(timeout) != std::future_status::ready) return std::nullopt;
    return f_.get();
  }
  bool ready() const { return f_.wait_for(std::chrono::seconds(0)) == std::future_status::ready; }

 private:
  std::shared_future<T> f_;
};

}  // namespace kiln::client
