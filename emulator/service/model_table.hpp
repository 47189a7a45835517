#pragma once
// The training models, one per create_model, each owned by a tenant: what get_info shows, the
// training state, and the anchor of full-parameter "delta" sampler saves. A model whose request
// is executing is that worker's; everything else reads and writes under the service's lock.
#include <functional>
#include <map>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model/registry.hpp"
#include "service/service_types.hpp"
#include "train/training_state.hpp"

namespace kiln::service {

class ModelTable {
 public:
  struct Model {
    std::string tenant;
    ModelInfo info;
    std::unique_ptr<train::TrainingState<float>> state;  // null once unloaded
    bool unloaded = false;
    // Full-parameter sampler chain: the weights of the last "base" save, for "delta" saves.
    std::optional<model::ParamSet<float>> sampler_anchor;
    std::string sampler_anchor_name;
    // The loss curve (dashboard): one point per forward_backward, the last kCurvePoints kept.
    struct CurvePoint {
      int64_t step;       // the optimizer step these gradients go into (completed steps + 1)
      double loss;        // loss:sum per loss token (per position when no token is weighted)
      std::optional<double> grad_norm;  // of the optim_step that followed, when it emitted one
    };
    std::deque<CurvePoint> curve;
  };
  static constexpr size_t kCurvePoints = 5000;
  // What is left of a model once it is unloaded and no future of it is kept: training_runs lists
  // it and the state view shows its last step (a few hundred bytes where a model took a few KiB:
  // the soak test unloads ~1,700 a minute, and memory must stay flat).
  struct Retired {
    std::string tenant, base_model;
    bool is_lora = false, base_only = false;
    int64_t lora_rank = 0, optimizer_step = 0;
    TimePoint last_request_time;
    std::map<std::string, std::string> user_metadata;
  };

  // `lora_seed_salt` picks LoRA seeds for models created without one (rule C3): the service's id seed.
  ModelTable(const model::ModelRegistry& registry, uint64_t lora_seed_salt)
      : registry_(registry), lora_seed_salt_(lora_seed_salt) {}

  // The model `req` creates: "<session>:train:<model_seq_id>". The same request again finds the
  // model it made (rule C16); `created` says which. InvalidRequest for a bad request.
  std::pair<Model*, bool> create(const std::string& tenant, const CreateModelRequest& req, TimePoint now);
  // A base model's weights, untrained and frozen (a sampler of the base model); its registry
  // entry's name in `canonical`. errors::unknown_base_model for a name the registry lacks. Reads
  // only the registry: callable without the service's lock.
  std::shared_ptr<const model::Transformer<float>> frozen_base(const std::string& base_model,
                                                               std::string* canonical) const;
  // The live model `model_id` of `tenant`; errors::model_not_found otherwise (an unloaded model
  // is not found either).
  Model& find_owned(const std::string& tenant, const std::string& model_id);
  const Model& find_owned(const std::string& tenant, const std::string& model_id) const;
  Model* find(const std::string& model_id);
  // Forgets the models of `tenant` (every tenant's when empty), retired ones too; returns the ids
  // of those that were not retired.
  std::vector<std::string> forget(const std::string& tenant);
  const std::map<std::string, std::unique_ptr<Model>>& all() const { return models_; }
  // Retires the unloaded models `idle` says nothing refers to any more; returns their ids.
  std::vector<std::string> retire(const std::function<bool(const std::string& model_id)>& idle);
  const std::map<std::string, Retired>& retired() const { return retired_; }
  // Whether a model, live, unloaded or retired, has this id.
  bool used(const std::string& model_id) const { return models_.count(model_id) || retired_.count(model_id); }

  // After a request ran: recent losses of forward_backward, the optimizer step, unloading.
  void record_outcome(Model& m, const TrainingRequest& req, const RetrieveResult& outcome);

 private:
  const model::ModelRegistry& registry_;
  uint64_t lora_seed_salt_;
  std::map<std::string, std::unique_ptr<Model>> models_;  // by model id
  std::map<std::string, Retired> retired_;                 // by model id
};

// A model in the control API's state view (without its queue).
nlohmann::json model_view(const std::string& model_id, const ModelTable::Model& m);
nlohmann::json model_view(const std::string& model_id, const ModelTable::Retired& r);

}  // namespace kiln::service
