#pragma once
// The trainer backend every transport calls: tenants, sessions, models, ordered futures,
// samplers and checkpoints. A plain C++ API, usable in-process; the HTTP layer translates to it.
// This class is a facade: each kind of state has a class of its own (below), and they share one
// lock, the service's.
//
// Errors (errors.hpp): a call throws kiln::Error (InvalidRequest, NotFound, Conflict, ...), which
// the HTTP layer answers with the code's status. A request that fails while executing becomes a
// failed future with the code's category (user or server).
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "errors.hpp"
#include "model/registry.hpp"
#include "service/checkpoint_ops.hpp"
#include "service/checkpoint_store.hpp"
#include "service/executor.hpp"
#include "service/clock.hpp"
#include "service/future_table.hpp"
#include "service/ids.hpp"
#include "service/model_table.hpp"
#include "service/requests.hpp"
#include "service/samplers.hpp"
#include "service/seq_queue.hpp"
#include "service/service_types.hpp"
#include "service/audit_log.hpp"
#include "service/session_registry.hpp"
#include "service/deployments.hpp"
#include "service/trainer_jobs.hpp"
#include "service/worker_pool.hpp"

namespace kiln::service {

using kiln::Conflict;
using kiln::NotFound;

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
  // errors::session_finished (410) once the session is finished: the SDK's heartbeat loop stops.
  void heartbeat(const std::string& api_key, const std::string& session_id);
  // sessions/{id}/finish: `reason` is success, errored or interrupted. Its models, samplers and
  // futures keep working; the session takes no new models or samplers. Idempotent.
  void finish_session(const std::string& api_key, const std::string& session_id, std::string reason,
                      std::string detail);
  SessionInfo get_session(const std::string& api_key, const std::string& session_id) const;
  std::vector<SessionInfo> list_sessions(const std::string& api_key) const;
  void set_session_project(const std::string& api_key, const std::string& session_id, std::string project_id);

  // Returns "<session>:train:<model_seq_id>"; the same request again returns the same id (C16).
  std::string create_model(const std::string& api_key, const CreateModelRequest& req);
  // The same as a future (the wire's create_model answers with a request id).
  std::string submit_create_model(const std::string& api_key, const CreateModelRequest& req);
  ModelInfo get_info(const std::string& api_key, const std::string& model_id) const;
  // The create-via-load form of load_weights (protocol.md §W6.15): creates the model with the
  // checkpoint's base model (unless req.base_model overrides it) and LoRA layout, then loads it
  // as the model's seq 0. Returns (model id, request id of the load).
  std::pair<std::string, std::string> create_model_from_state(const std::string& api_key, CreateModelRequest req,
                                                              LoadWeightsRequest load);

  // Queues a request; executes per model in seq_id order (seq 1 first). Returns the request id.
  std::string submit(const std::string& api_key, const std::string& model_id, int64_t seq_id, TrainingRequest req);
  // A submit the HTTP layer refused before it became a request (an undecodable body, 400): its
  // seq_id counts as arrived, so the model's later seq_ids need not wait out the gap (B1). Does
  // nothing for a model the caller does not own.
  void refuse(const std::string& api_key, const std::string& model_id, int64_t seq_id);
  // The model or sampler a future belongs to; "" when unknown or it has none (fault matching).
  std::string future_owner(const std::string& api_key, const std::string& request_id) const;
  // Requests accepted and not yet run, of every tenant (a stopping server waits for these).
  size_t pending_requests() const;
  // Waits up to `wait` for the result. Throws NotFound for an unknown (or another tenant's) id.
  RetrieveResult retrieve(const std::string& api_key, const std::string& request_id,
                          std::chrono::milliseconds wait = std::chrono::milliseconds(0));

  // Sampling. A sampler holds its weights from creation on: later training or a deleted or
  // expired checkpoint does not change it (E13). The same create request again returns the same id.
  std::string create_sampler(const std::string& api_key, const CreateSamplerRequest& req);
  SamplerInfo get_sampler(const std::string& api_key, const std::string& sampler_id) const;
  int64_t join_sampler(const std::string& api_key, const std::string& sampler_id);  // join_sampling_session
  // Queues num_samples continuations; stateless, so not ordered. Resubmitting the same seq_id and
  // request returns the same future (a retry after 429). Invalid specs throw InvalidRequest.
  // The submission fixes one id per sequence (tinker >= 0.26 asserts them on the promise).
  SampleSubmission submit_sample(const std::string& api_key, const std::string& sampler_id, int64_t seq_id,
                            model::SampleSpec spec);
  // retrieve_futures (tinker 0.26+, the session's futures poller): the sampler's futures that
  // completed after `cursor`, oldest first, with the cursor to pass next; waits up to `wait` for
  // the first. errors::sampler_not_found for an unknown (or another tenant's) sampler.
  std::pair<std::vector<FutureTable::Completion>, uint64_t> sampler_completions(
      const std::string& api_key, const std::string& sampler_id, uint64_t cursor, std::chrono::milliseconds wait);
  // cancel_future: see Samplers::cancel.
  std::vector<bool> cancel_samples(const std::string& api_key, const std::vector<std::string>& request_ids);

  // copy_weights: the checkpoint `source_path` names (the caller's, or the weights_access_token's
  // owner's) copied to the run <session_id>:train:<model_seq_id> under the same kind and name;
  // the copy's record. The run must not be a model's (a model_seq_id create_model used).
  CheckpointRecord copy_weights(const std::string& api_key, const CopyWeightsRequest& req);

  // Checkpoint views.
  WeightsInfo weights_info(const std::string& api_key, const std::string& tinker_path) const;
  std::vector<TrainingRunInfo> list_training_runs(const std::string& api_key) const;
  TrainingRunInfo get_training_run(const std::string& api_key, const std::string& run_id) const;
  std::vector<CheckpointRecord> list_run_checkpoints(const std::string& api_key, const std::string& run_id) const;
  std::vector<CheckpointRecord> list_user_checkpoints(const std::string& api_key) const;  // newest first
  std::vector<AuditEntry> audit(const std::string& api_key) const;                        // newest first
  // Stored checkpoints (files on disk) grouped by the project of the session that saved them
  // (none when it had none or is forgotten), only `project` when given: tinker 0.32+
  // billing/usage/checkpoints/current.
  struct CheckpointStorage {
    std::optional<std::string> project_id;
    int64_t count = 0, size_bytes = 0;
  };
  std::vector<CheckpointStorage> checkpoint_storage(const std::string& api_key, const std::optional<std::string>& project) const;
  std::vector<std::string> list_checkpoint_names(const std::string& api_key) const;     // Fireworks, sorted
  void delete_checkpoint(const std::string& api_key, const std::string& run_id, const std::string& checkpoint_id);
  void set_published(const std::string& api_key, const std::string& run_id, const std::string& checkpoint_id,
                     bool published);
  void set_ttl(const std::string& api_key, const std::string& run_id, const std::string& checkpoint_id,
               std::optional<int64_t> ttl_seconds);
  // The files of a checkpoint of the caller's, (name, path), as CheckpointStore::files gives them.
  std::vector<std::pair<std::string, std::string>> checkpoint_files(const std::string& api_key, const std::string& run_id,
                                                                    const std::string& checkpoint_id);
  std::string archive_checkpoint(const std::string& api_key, const std::string& run_id,
                                 const std::string& checkpoint_id);  // path of a tar file

  // Control (the /_kiln/ API, and in-process tests). reset forgets sessions, models, samplers,
  // futures and checkpoints: of the tenant of api_key, or of everyone when it is empty (then ids
  // start over too, so a seeded server repeats itself).
  void reset(const std::string& api_key = "");
  // Deletes a checkpoint of any tenant (`tenant` as the state view names it): the dashboard's
  // delete button. errors as delete_checkpoint.
  void delete_checkpoint_of_tenant(const std::string& tenant, const std::string& tinker_path);
  void set_progression(Progression p);
  Progression progression() const;
  // Moves a virtual clock (kiln serve --virtual-clock); throws Conflict on the real clock.
  void advance_clock(double seconds);
  bool has_virtual_clock() const;
  // Sessions, models (steps, recent losses, queued seq_ids), samplers, futures by state and
  // checkpoints with expiry, as JSON.
  nlohmann::json state() const;
  // What GET /metrics reports of the service: totals since the process started (counters; a
  // reset does not lower them) and what is held now (gauges).
  struct Metrics {
    uint64_t tokens_trained = 0, tokens_forward = 0, tokens_sampled = 0, optimizer_steps = 0;
    uint64_t checkpoints_written = 0, checkpoint_bytes_written = 0;
    std::map<std::string, int64_t> futures;      // by state: pending, done, failed
    std::map<std::string, int64_t> queue_depth;  // by model id: requests arrived, not yet run
    int64_t sessions = 0, models = 0, samplers = 0, checkpoints = 0;
  };
  Metrics metrics() const;
  // While alive, the next submit on this thread (training, create_model, sample) fails with `f`.
  class ScopedFailure {
   public:
    explicit ScopedFailure(InjectedFailure f);
    ~ScopedFailure();
    ScopedFailure(const ScopedFailure&) = delete;
    ScopedFailure& operator=(const ScopedFailure&) = delete;
  };

  // The Fireworks control plane's trainer jobs (their own lock; a job's sessions, models and
  // checkpoints are this service's, in the job's namespace: ids.hpp).
  TrainerJobs& jobs() { return jobs_; }
  Deployments& deployments() { return deployments_; }
  // The newest sampler checkpoint named `identity` in the first of these namespaces (tenants)
  // that has one, as a deployment serves it (a full-parameter delta rebuilt on its base).
  // NotFound naming the namespaces searched.
  Snapshot sampler_snapshot(const std::vector<std::string>& namespaces, const std::string& identity) const;
  // Promotion (protocol.md §W13.8): the newest checkpoint named `checkpoint_id` of the job's
  // namespace (the account's default one when job_id is empty), if promotable, copied to the
  // account's model `model_id`; NotFound, or UserError saying why it cannot be promoted.
  CheckpointRecord promote(const std::string& account, const std::string& job_id, const std::string& checkpoint_id,
                           const std::string& model_id, const std::string& base_model);
  std::vector<CheckpointRecord> promoted_models(const std::string& account) const;  // newest first
  std::optional<CheckpointRecord> promoted_model(const std::string& account, const std::string& model_id) const;
  // A promoted model by its name, accounts/<a>/models/<id>, when <a> is the tenant's account.
  std::optional<CheckpointRecord> promoted_by_name(const std::string& tenant, const std::string& name) const;
  std::shared_ptr<const model::Transformer<float>> checkpoint_weights(const CheckpointRecord& rec) const {
    return checkpoints_.sampler_weights(rec);
  }
  // The weights of a sampler checkpoint of the caller's namespace (tinker://<run>/sampler_weights/<name>)
  // and its base model; the errors of create_sampler's model_path.
  std::pair<std::shared_ptr<const model::Transformer<float>>, std::string> sampler_path_weights(
      const std::string& api_key, const std::string& path) const {
    const CheckpointRecord rec = checkpoints_.sampler_source(tenant_key(api_key), path);
    return {checkpoints_.sampler_weights(rec), rec.base_model};
  }
  // A registered base model's frozen weights (errors::unknown_base_model otherwise).
  std::shared_ptr<const model::Transformer<float>> base_weights(const std::string& base_model) const {
    std::string canonical;
    return models_.frozen_base(base_model, &canonical);
  }
  const Clock& clock() const { return *clock_; }
  const model::ModelRegistry& registry() const { return *registry_; }
  static std::string tenant_key(const std::string& api_key) { return service::tenant_key(api_key); }

 private:
  void run_training(std::unique_lock<std::mutex>& lock);  // a worker's unit of training work
  void tick();  // the ticker: retention, progression wake-ups, the gap rule
  static std::optional<InjectedFailure> take_injected_failure();

  ServiceOptions opts_;
  std::shared_ptr<const Clock> clock_;
  const model::ModelRegistry* registry_;
  std::unique_ptr<CheckpointStore> store_;
  AuditLog audit_;  // its own lock: saves are recorded by workers
  TrainerJobs jobs_;  // its own lock
  Deployments deployments_;  // its own lock
  SampledSequences sequences_;  // its own lock: what provenance spans are checked against

  mutable std::mutex mu_;  // the service's one lock: guards everything below
  IdGenerator ids_;
  SessionRegistry sessions_;
  FutureTable futures_;
  ModelTable models_;
  SeqQueue queue_;
  Samplers samplers_;
  CheckpointOps checkpoints_;
  TrainingExecutor executor_;
  std::unique_ptr<WorkerPool> pool_;  // last: its threads use everything above
};

}  // namespace kiln::service
