#pragma once
// What running a training request does to its model: forward and backward, the optimizer step,
// checkpoint saves and loads, an ephemeral sampler snapshot, unloading. Runs on the worker that
// holds the model, without the service's lock; it takes the lock only to publish a sampler.
#include <atomic>
#include <cstdint>
#include <mutex>

#include "service/checkpoint_ops.hpp"
#include "service/model_table.hpp"
#include "service/requests.hpp"
#include "service/samplers.hpp"
#include "service/session_registry.hpp"

namespace kiln::service {

class TrainingExecutor {
 public:
  TrainingExecutor(CheckpointOps& checkpoints, Samplers& samplers, SessionRegistry& sessions, std::mutex& mu)
      : checkpoints_(checkpoints), samplers_(samplers), sessions_(sessions), mu_(mu) {}

  // Throws kiln::Error (and anything else) for a failure; the caller turns it into the future's.
  TrainingResult execute(ModelTable::Model& m, const TrainingRequest& req);

  // Totals since the process started (GET /metrics): input tokens of forward_backward and of
  // forward requests that ran, and optimizer steps taken.
  struct Totals {
    uint64_t tokens_trained = 0, tokens_forward = 0, optimizer_steps = 0;
  };
  Totals totals() const { return {tokens_trained_.load(), tokens_forward_.load(), optimizer_steps_.load()}; }

 private:
  CheckpointOps& checkpoints_;
  Samplers& samplers_;
  SessionRegistry& sessions_;
  std::mutex& mu_;
  std::atomic<uint64_t> tokens_trained_{0}, tokens_forward_{0}, optimizer_steps_{0};
};

}  // namespace kiln::service
