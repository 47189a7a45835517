#pragma once
// The service's private records, shared by trainer_service.cpp and control.cpp.
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "model/sampler.hpp"

#include "service/trainer_service.hpp"

namespace kiln::service {

struct TrainerService::Future {
  std::string tenant;
  std::string owner;  // the model or sampler it belongs to ("" for create_model's)
  RetrieveResult state;
  TimePoint submitted;
  std::optional<TimePoint> completed, first_delivered;
  int64_t polls = 0;
  std::optional<InjectedFailure> forced;  // fault injection: fail instead of executing
  std::vector<std::string> sequence_ids;  // asample futures: one per requested sample
};

struct TrainerService::Sampler {
  std::string tenant;
  SamplerInfo info;
  std::shared_ptr<const model::Transformer<float>> weights;
  std::map<int64_t, std::pair<uint64_t, std::string>> seen;  // seq → (fingerprint, request id)
  // Continuous batching: requests wait in `pending` until the worker driving the sampler admits
  // them into `batch` between decode steps. `batch` and `in_batch` belong to that worker.
  std::deque<SampleJob> pending;
  bool queued = false, running = false;
  std::unique_ptr<model::BatchSampler> batch;
  std::map<int64_t, SampleJob> in_batch;  // BatchSampler handle → its request
  // Decode statistics (state view): steps run, tokens they sampled, the largest batch.
  int64_t decode_steps = 0, sampled_tokens = 0, largest_batch = 0;
};

struct TrainerService::Session {
  std::string tenant;
  SessionInfo info;
};

struct TrainerService::Model {
  std::string tenant;
  ModelInfo info;
  CreateModelRequest created_by;
  std::unique_ptr<train::TrainingState<float>> state;
  int64_t next_seq = 1;                                                // next seq_id to execute
  std::map<int64_t, std::pair<TrainingRequest, std::string>> waiting;  // arrived, not yet run
  std::map<int64_t, std::pair<uint64_t, std::string>> seen;            // seq → (fingerprint, request id)
  std::set<int64_t> rejected;                                          // refused at submit: count as arrived
  bool running = false, queued = false, unloaded = false;
  std::optional<TimePoint> gap_since;  // waiting on a missing next_seq since
  // Full-parameter sampler chain: the weights of the last "base" save, for "delta" saves.
  std::optional<model::ParamSet<float>> sampler_anchor;
  std::string sampler_anchor_name;
};

}  // namespace kiln::service
