#pragma once
// What the service does with checkpoints: the training requests that save and load them
// (save_state, load_state, save_weights_for_sampler, load_adapter), the weights a sampler
// checkpoint describes, what a reference names, and the lookups of the REST views. The store
// keeps the files and records; this class decides what goes in them and what a name means.
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "model/registry.hpp"
#include "model/transformer.hpp"
#include "service/checkpoint_store.hpp"
#include "service/audit_log.hpp"
#include "service/model_table.hpp"
#include "service/service_types.hpp"

namespace kiln::service {

class CheckpointOps {
 public:
  // `mu` is the service's lock, taken only to change what other threads read (a model's info).
  // Every change to a checkpoint (created, deleted, published, unpublished, TTL) goes to `audit`.
  CheckpointOps(CheckpointStore& store, const model::ModelRegistry& registry, const Clock& clock, std::mutex& mu,
                bool overwrite_training_state, AuditLog& audit)
      : store_(store), registry_(registry), clock_(clock), mu_(mu), overwrite_training_state_(overwrite_training_state),
        audit_(audit) {}

  // Training requests, run by the worker that holds the model.
  SaveResult save_state(ModelTable::Model& m, const SaveWeightsRequest& r);
  LoadResult load_state(ModelTable::Model& m, const LoadWeightsRequest& r);
  SaveResult save_sampler(ModelTable::Model& m, const SaveSamplerRequest& r);  // a named save
  SaveResult save_external(ModelTable::Model& m, const SaveExternalRequest& r);
  LoadAdapterResult load_adapter(ModelTable::Model& m, const LoadAdapterRequest& r);

  // The checkpoint `ref` names among `tenant`'s (checkpoint_ref.hpp), of kind `want`:
  // errors::checkpoint_not_found, or a UserError saying what `purpose` needs instead.
  CheckpointRecord resolve(const std::string& tenant, const std::string& ref, CheckpointKind want,
                           const std::string& purpose) const;
  // The sampler checkpoint create_sampling_session's model_path names (rule E19).
  CheckpointRecord sampler_source(const std::string& tenant, const std::string& model_path) const;
  // The model a sampler checkpoint describes: LoRA adapters over the shared base, or full
  // weights (a full-parameter "delta" applied to the "base" save it names).
  std::shared_ptr<const model::Transformer<float>> sampler_weights(const CheckpointRecord& rec) const;
  // The base save a full-parameter delta sampler save is a delta of; "" for any other checkpoint.
  std::string delta_anchor(const CheckpointRecord& rec) const;

  // REST views.
  WeightsInfo weights_info(const std::string& tenant, const std::string& path) const;
  // The checkpoint of a REST path (run id, "weights/<name>"); errors for a malformed id and a
  // missing checkpoint.
  CheckpointRecord find(const std::string& tenant, const std::string& run_id, const std::string& checkpoint_id) const;
  // The tenant's runs: the live ones given, and those known only from their checkpoints, each
  // with its newest checkpoint of either kind. By run id.
  std::vector<TrainingRunInfo> training_runs(const std::string& tenant, std::vector<TrainingRunInfo> live) const;
  void set_published(const CheckpointRecord& rec, bool published);
  void set_ttl(CheckpointRecord rec, std::optional<int64_t> ttl_seconds);
  void remove(const CheckpointRecord& rec);
  // copy_weights: `source`'s files stored again as `target` (its run, tenant, TTL and name), the
  // same atomic save as any other. ResourceAlreadyExists when `target` exists.
  CheckpointRecord copy(const CheckpointRecord& source, CheckpointRecord target);

  CheckpointStore& store() { return store_; }
  const CheckpointStore& store() const { return store_; }

 private:
  CheckpointRecord make_record(const ModelTable::Model& m, CheckpointKind kind, const std::string& name,
                               std::optional<int64_t> ttl, const std::string& type,
                               std::map<std::string, std::string> user_metadata = {}) const;
  void adopt_alpha(ModelTable::Model& m, const CheckpointRecord& rec);
  void audit(const std::string& event, const CheckpointRecord& r, std::map<std::string, std::string> details = {});

  CheckpointStore& store_;
  const model::ModelRegistry& registry_;
  const Clock& clock_;
  std::mutex& mu_;
  bool overwrite_training_state_;
  AuditLog& audit_;
};

// Throws errors::ttl_not_positive for a TTL that is given and not positive.
void check_ttl(const std::optional<int64_t>& ttl_seconds);

}  // namespace kiln::service
