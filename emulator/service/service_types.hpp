#pragma once
// The records the service hands out and takes in: sessions, models, runs, samplers, results and
// the control API's knobs. Plain data; the service's classes and the wire layer share them.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "errors.hpp"
#include "model/config.hpp"
#include "service/checkpoint_store.hpp"
#include "service/clock.hpp"
#include "service/requests.hpp"

namespace kiln::model {
class ModelRegistry;
}

namespace kiln::service {

enum class ErrorCategory { user, server, unknown };
const char* category_name(ErrorCategory c);

struct ServiceOptions {
  std::string data_dir = "kiln-data";
  int workers = 2;                                 // models executing at once
  std::optional<uint64_t> seed;                    // ids are predictable when given
  std::shared_ptr<const Clock> clock;              // real clock when null
  const model::ModelRegistry* registry = nullptr;  // the built-in registry when null
  double result_retention_seconds = 600;           // after a result's first delivery (spec: ≥ 300)
  double unpolled_retention_seconds = 3600;        // for results never retrieved (spec: ≥ 1 h)
  double seq_gap_grace_seconds = 30;               // then a missing seq_id is skipped (B1)
  bool overwrite_training_state = false;           // Fireworks-style: re-saving a name replaces it (E1)
  double trainer_boot_seconds = 0;                 // a Fireworks trainer job's CREATING phase
  double trainer_inactivity_seconds = 3600;        // then an idle trainer job pauses (open-questions H1)
  double hotload_seconds = 0;                      // a deployment's hot-load is "loading" this long
};

struct SessionInfo {
  std::string session_id;
  std::vector<std::string> tags;
  std::map<std::string, std::string> user_metadata;
  std::string project_id;
  TimePoint created, last_heartbeat;
  std::vector<std::string> training_run_ids;
  std::vector<std::string> sampler_ids;
  // Set by sessions/{id}/finish (tinker 0.29+ ServiceClient.close): "success", "errored" or
  // "interrupted", and the client's detail. A finished session takes no new work (410).
  std::optional<std::string> finish_reason;
  std::string finish_detail;
};

struct CreateModelRequest {
  std::string session_id;
  int64_t model_seq_id = 0;
  std::string base_model;
  model::LoraConfig lora;  // rank 0: full parameter; ignored when base_only
  bool lora_seed_given = false;
  bool base_only = false;
  std::map<std::string, std::string> user_metadata;
};

struct ModelInfo {
  std::string model_id, session_id, base_model;
  bool base_only = false;
  model::LoraConfig lora;  // rank 0: full parameter
  model::ModelConfig config;
  std::map<std::string, std::string> user_metadata;
  TimePoint created, last_request_time;
  int64_t optimizer_step = 0;
  std::vector<double> recent_losses;  // loss:sum of the last forward_backward calls, oldest first
};

// A training run as the REST views show it: a live model, or one known only from its checkpoints.
struct TrainingRunInfo {
  std::string training_run_id, base_model, model_owner;
  bool is_lora = false;
  int64_t lora_rank = 0;
  TimePoint last_request_time;
  std::optional<CheckpointRecord> last_checkpoint, last_sampler_checkpoint;
  std::map<std::string, std::string> user_metadata;
};

struct WeightsInfo {
  std::string base_model;
  bool is_lora = false;
  int64_t lora_rank = 0;
  bool train_attn = true, train_mlp = true, train_unembed = true;
};

// A sampling session: a snapshot of weights to sample from (protocol.md §W6.17–6.19).
struct SamplerInfo {
  std::string sampler_id;  // <session_id>:sample:<sampling_session_seq_id> (F6)
  std::string session_id, base_model;
  std::optional<std::string> model_path;  // the sampler checkpoint it was created from
};

// copy_weights (tinker 0.26+): a checkpoint copied into the run <session_id>:train:<model_seq_id>.
struct CopyWeightsRequest {
  std::string session_id;
  int64_t model_seq_id = 0;
  std::string source_path;               // a tinker:// path
  std::optional<int64_t> ttl_seconds;    // of the copy; none: kept until deleted
  std::string access_key;                // weights_access_token: the source is this API key's
};

struct CreateSamplerRequest {
  std::string session_id;
  int64_t sampling_session_seq_id = 0;
  std::string base_model;  // one of the two
  std::string model_path;  // tinker://<run>/sampler_weights/<name>
};

// An accepted asample: its future and the ids its sequences will carry, in order.
struct SampleSubmission {
  std::string request_id;
  std::vector<std::string> sequence_ids;
};

struct RetrieveResult {
  enum class Status { pending, done, failed } status = Status::pending;
  TrainingResult result;
  std::string error;
  ErrorCategory category = ErrorCategory::unknown;
  std::string queue_state = "active", queue_state_reason;  // while pending

  static RetrieveResult failure(std::string error, ErrorCategory category) {
    RetrieveResult r;
    r.status = Status::failed;
    r.error = std::move(error);
    r.category = category;
    return r;
  }
  // What anything that failed while executing becomes (errors.hpp's outcome_of).
  static RetrieveResult failure(const std::exception& e) {
    const auto o = outcome_of(e);
    return failure(o.message, std::string(o.category) == "user" ? ErrorCategory::user : ErrorCategory::server);
  }
};

// How results reach pollers (control API): at once, or held back until a future has been polled
// `polls` times or `seconds` have passed since it was submitted. Meanwhile polls are answered
// pending with this queue state (active, paused_capacity or paused_rate_limit) and reason.
struct Progression {
  enum class Mode { immediate, after_polls, after_seconds };
  Mode mode = Mode::immediate;
  int64_t polls = 0;
  double seconds = 0;
  std::string queue_state = "active";
  std::string reason;
};

// A failure injected into the next submit made on this thread (fault injection): the request is
// accepted and keeps its place in seq_id order, but changes nothing; its future fails with this.
struct InjectedFailure {
  ErrorCategory category = ErrorCategory::server;
  std::string message;
};

}  // namespace kiln::service
