#include "model/threads.hpp"

#include <atomic>
#include <stdexcept>
#include <string>

#include <Eigen/Core>

namespace kiln::model {
namespace {
std::atomic<int> g_threads{1};
struct InitOnce {
  InitOnce() { Eigen::setNbThreads(1); }
} g_init;
}  // namespace

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("threads: must be at least 1, got " + std::to_string(n));
  g_threads = n;
  Eigen::setNbThreads(n);
}

int num_threads() { return g_threads; }

}  // namespace kiln::model
