#pragma once
// What running a training request does to its model: forward and backward, the optimizer step,
// checkpoint saves and loads, an ephemeral sampler snapshot, unloading. Runs on the worker that
// holds the model, without the service's lock; it takes the lock only to publish a sampler.
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

 private:
  CheckpointOps& checkpoints_;
  Samplers& samplers_;
  SessionRegistry& sessions_;
  std::mutex& mu_;
};

}  // namespace kiln::service
