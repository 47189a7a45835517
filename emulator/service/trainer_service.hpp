#pragma once
// The trainer backend every transport calls: tenants, sessions, models, ordered futures and
// checkpoints. A plain C++ API, usable in-process; the HTTP layer translates to it.
//
// Errors: train::InvalidRequest → HTTP 400 at submit; NotFound → 404; Conflict → 409 (publish
// only). Failures while executing a request become failed futures (category user or server).
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "errors.hpp"
#include "model/registry.hpp"
#include "service/checkpoint_store.hpp"
#include "service/clock.hpp"
#include "service/requests.hpp"
#include "train/training_state.hpp"

namespace kiln::service {

using kiln::Conflict;
using kiln::NotFound;

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
};

struct SessionInfo {
  std::string session_id;
  std::vector<std::string> tags;
  std::map<std::string, std::string> user_metadata;
  std::string project_id;
  TimePoint created, last_heartbeat;
  std::vector<std::string> training_run_ids;
  std::vector<std::string> sampler_ids;
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

// A sampling session: a snapshot of weights to sample from (wire.md §6.17–6.19).
struct SamplerInfo {
  std::string sampler_id;  // <session_id>:sample:<sampling_session_seq_id> (F6)
  std::string session_id, base_model;
  std::optional<std::string> model_path;  // the sampler checkpoint it was created from
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

class TrainerService {
 public:
  explicit TrainerService(ServiceOptions options);
  ~TrainerService();
  TrainerService(const TrainerService&) = delete;
  TrainerService& operator=(const TrainerService&) = delete;

  // Tenants are named by API key; a key never sees another key's sessions, models, futures or
  // checkpoints (they behave exactly like unknown ids).
  SessionInfo create_session(const std::string& api_key, std::vector<std::string> tags,
                             std::map<std::string, std::string> user_metadata, std::string project_id);
  void heartbeat(const std::string& api_key, const std::string& session_id);
  SessionInfo get_session(const std::string& api_key, const std::string& session_id) const;
  std::vector<SessionInfo> list_sessions(const std::string& api_key) const;
  void set_session_project(const std::string& api_key, const std::string& session_id, std::string project_id);

  // Returns "<session>:train:<model_seq_id>"; the same request again returns the same id (C16).
  std::string create_model(const std::string& api_key, const CreateModelRequest& req);
  // The same as a future (the wire's create_model answers with a request id).
  std::string submit_create_model(const std::string& api_key, const CreateModelRequest& req);
  ModelInfo get_info(const std::string& api_key, const std::string& model_id) const;
  // The create-via-load form of load_weights (wire.md §6.15): creates the model with the
  // checkpoint's base model (unless req.base_model overrides it) and LoRA layout, then loads it
  // as the model's seq 0. Returns (model id, request id of the load).
  std::pair<std::string, std::string> create_model_from_state(const std::string& api_key, CreateModelRequest req,
                                                              LoadWeightsRequest load);

  // Queues a request; executes per model in seq_id order (seq 1 first). Returns the request id.
  std::string submit(const std::string& api_key, const std::string& model_id, int64_t seq_id, TrainingRequest req);
  // The model or sampler a future belongs to; "" when unknown or it has none (fault matching).
  std::string future_owner(const std::string& api_key, const std::string& request_id) const;
  // Waits up to `wait` for the result. Throws NotFound for an unknown (or another tenant's) id.
  RetrieveResult retrieve(const std::string& api_key, const std::string& request_id,
                          std::chrono::milliseconds wait = std::chrono::milliseconds(0));

  // Sampling. A sampler holds its weights from creation on: later training or a deleted or
  // expired checkpoint does not change it (E13). The same create request again returns the same id.
  std::string create_sampler(const std::string& api_key, const CreateSamplerRequest& req);
  SamplerInfo get_sampler(const std::string& api_key, const std::string& sampler_id) const;
  // Queues num_samples continuations; stateless, so not ordered. Resubmitting the same seq_id and
  // request returns the same future (a retry after 429). Invalid specs throw InvalidRequest.
  // The submission fixes one id per sequence (tinker >= 0.26 asserts them on the promise).
  SampleSubmission submit_sample(const std::string& api_key, const std::string& sampler_id, int64_t seq_id,
                            model::SampleSpec spec);

  // Checkpoint views.
  WeightsInfo weights_info(const std::string& api_key, const std::string& tinker_path) const;
  std::vector<TrainingRunInfo> list_training_runs(const std::string& api_key) const;
  TrainingRunInfo get_training_run(const std::string& api_key, const std::string& run_id) const;
  std::vector<CheckpointRecord> list_run_checkpoints(const std::string& api_key, const std::string& run_id) const;
  std::vector<CheckpointRecord> list_user_checkpoints(const std::string& api_key) const;  // newest first
  std::vector<std::string> list_checkpoint_names(const std::string& api_key) const;     // Fireworks, sorted
  void delete_checkpoint(const std::string& api_key, const std::string& run_id, const std::string& checkpoint_id);
  void set_published(const std::string& api_key, const std::string& run_id, const std::string& checkpoint_id,
                     bool published);
  void set_ttl(const std::string& api_key, const std::string& run_id, const std::string& checkpoint_id,
               std::optional<int64_t> ttl_seconds);
  std::string archive_checkpoint(const std::string& api_key, const std::string& run_id,
                                 const std::string& checkpoint_id);  // path of a tar file

  // Control (the /_kiln/ API, and in-process tests). reset forgets sessions, models, samplers,
  // futures and checkpoints: of the tenant of api_key, or of everyone when it is empty (then ids
  // start over too, so a seeded server repeats itself).
  void reset(const std::string& api_key = "");
  void set_progression(Progression p);
  Progression progression() const;
  // Moves a virtual clock (kiln serve --virtual-clock); throws Conflict on the real clock.
  void advance_clock(double seconds);
  bool has_virtual_clock() const;
  // Sessions, models (steps, recent losses, queued seq_ids), samplers, futures by state and
  // checkpoints with expiry, as JSON.
  nlohmann::json state() const;
  // While alive, the next submit on this thread (training, create_model, sample) fails with `f`.
  class ScopedFailure {
   public:
    explicit ScopedFailure(InjectedFailure f);
    ~ScopedFailure();
    ScopedFailure(const ScopedFailure&) = delete;
    ScopedFailure& operator=(const ScopedFailure&) = delete;
  };

  const Clock& clock() const { return *clock_; }
  const model::ModelRegistry& registry() const { return *registry_; }
  static std::string tenant_key(const std::string& api_key);

 private:
  struct Future;
  struct Model;
  struct Session;
  struct Sampler;
  struct SampleJob {
    std::string request_id;
    model::SampleSpec spec;
    std::vector<std::string> sequence_ids;
  };

  std::string new_id(const char* prefix);
  Model& model_for(const std::string& tenant, const std::string& model_id);
  const Model& model_for(const std::string& tenant, const std::string& model_id) const;
  void validate_envelope(const Model& m, int64_t seq_id, const TrainingRequest& req) const;
  void advance_locked(Model& m);  // skip rejected seq ids; schedule if runnable
  void worker_loop();
  void ticker_loop();
  TrainingResult execute(Model& m, const TrainingRequest& req);
  TrainingResult do_save_weights(Model& m, const SaveWeightsRequest& r);
  TrainingResult do_load_weights(Model& m, const LoadWeightsRequest& r);
  void adopt_alpha(Model& m, const CheckpointRecord& rec);
  TrainingResult do_save_sampler(Model& m, const SaveSamplerRequest& r);
  TrainingResult do_load_adapter(Model& m, const LoadAdapterRequest& r);
  std::shared_ptr<const model::Transformer<float>> sampler_weights(const CheckpointRecord& rec) const;
  std::string add_sampler_locked(const std::string& tenant, const std::string& session_id, int64_t seq,
                                 std::shared_ptr<const model::Transformer<float>> weights, const std::string& base_model,
                                 std::optional<std::string> model_path);
  // Decodes a sampler's batch for a turn: admits its pending requests, steps the batch, completes
  // the futures of requests that finish. Called by a worker that holds the sampler (running).
  void drive_sampler(Sampler& s);
  void finish_sample(const SampleJob& job, RetrieveResult outcome);
  CheckpointRecord resolve_reference(const std::string& tenant, const std::string& ref, CheckpointKind want,
                                     const std::string& purpose) const;
  CheckpointRecord find_checkpoint(const std::string& tenant, const std::string& run_id,
                                   const std::string& checkpoint_id) const;
  CheckpointRecord make_record(const Model& m, CheckpointKind kind, const std::string& name,
                               std::optional<int64_t> ttl, const std::string& type) const;
  std::string complete_future(const std::string& tenant, TrainingResult result);
  std::string fail_future(const std::string& tenant, const InjectedFailure& f);
  static std::optional<InjectedFailure> take_injected_failure();
  bool held_locked(const Future& f) const;  // completed, but the progression holds it back
  void purge_futures_locked();

  ServiceOptions opts_;
  std::shared_ptr<const Clock> clock_;
  const model::ModelRegistry* registry_;
  std::unique_ptr<CheckpointStore> store_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_, done_cv_, tick_cv_;
  bool stopping_ = false;
  bool sample_turn_ = false;
  Progression progression_;
  uint64_t id_counter_ = 0, id_seed_ = 0;
  std::map<std::string, std::unique_ptr<Session>> sessions_;  // by session id
  std::map<std::string, std::unique_ptr<Model>> models_;      // by model id
  std::map<std::string, std::unique_ptr<Future>> futures_;    // by request id
  std::map<std::string, std::unique_ptr<Sampler>> samplers_;  // by sampler id
  std::deque<Model*> ready_;
  std::deque<Sampler*> samplers_ready_;  // samplers with pending requests or a batch in flight
  std::vector<std::thread> workers_;
  std::thread ticker_;
};

}  // namespace kiln::service
