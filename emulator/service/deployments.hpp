#pragma once
// Fireworks inference deployments with hot-load (protocol.md §W13.6): create, get, list, update,
// delete, and the snapshots a trainer saved loaded onto them. A deployment is in process and
// scales instantly (it is READY once created); a hot-load takes `hotload_seconds` of the service
// clock, during which its status and its completions answer 425. One mutex, guarded fields.
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/registry.hpp"
#include "model/transformer.hpp"
#include "service/clock.hpp"

namespace kiln::service {

// What a snapshot identity resolves to: the weights to serve and where they came from.
struct Snapshot {
  std::string identity, base_model, tinker_path;
  bool delta = false;          // a full-parameter XOR delta save
  std::string delta_anchor;    // the base save it is a delta of
  std::shared_ptr<const model::Transformer<float>> weights;
};

struct Deployment {
  std::string account, id;
  std::string base_model;
  std::string hot_load_trainer_job;  // a job id (PER_TRAINER); "" otherwise
  bool enable_hot_load = false;
  nlohmann::json body = nlohmann::json::object();  // what the client sent (echoed back)
  TimePoint created, updated;
  int64_t min_replicas = 0, max_replicas = 1;
  // Hot-load state (not kept across a restart: a restarted deployment holds no snapshot).
  std::string current_identity, base_identity, loading_identity, error, error_target;
  TimePoint ready_at;
  std::shared_ptr<const model::Transformer<float>> weights;

  std::string name() const { return "accounts/" + account + "/deployments/" + id; }
};

class Deployments {
 public:
  struct Options {
    double hotload_seconds = 0;  // a hot-load is "loading" this long
    std::string file;            // deployments survive a restart here when set (without snapshots)
  };
  Deployments(std::shared_ptr<const Clock> clock, const model::ModelRegistry& registry, Options options);

  // POST /v1/accounts/<a>/deployments?deploymentId=<id>: InvalidRequest naming the field;
  // Conflict when the id exists. `job_exists` says whether hotLoadTrainerJob names a job of the
  // account, and whether that job was created PER_DEPLOYMENT (mixing the scopes is refused).
  struct JobCheck {
    bool exists = false;
    std::string hot_load_deployment_id;
  };
  nlohmann::json create(const std::string& account, const std::string& id, const nlohmann::json& body,
                        const std::function<JobCheck(const std::string& job_id)>& job_check,
                        const std::function<bool(const std::string& model)>& model_known);
  nlohmann::json get(const std::string& account, const std::string& id) const;  // NotFound
  nlohmann::json list(const std::string& account) const;
  // PATCH with an updateMask of body keys (minReplicaCount, maxReplicaCount, hotLoadTrainerJob,
  // description, ...); an empty mask updates every key the body carries.
  nlohmann::json update(const std::string& account, const std::string& id, const nlohmann::json& body,
                        const std::string& update_mask);
  void remove(const std::string& account, const std::string& id);

  // The hot-load API. `deployment` is accounts/<a>/deployments/<d> (the fireworks-deployment
  // header), `model` the fireworks-model header. `resolve` finds a snapshot by identity in the
  // deployment's trainer namespace (NotFound otherwise).
  nlohmann::json hot_load(const std::string& account, const std::string& deployment, const std::string& model,
                          const nlohmann::json& body,
                          const std::function<Snapshot(const Deployment&, const std::string& identity)>& resolve);
  // {"replicas": [...]}; TooEarly (425) while a hot-load is loading.
  nlohmann::json hot_load_status(const std::string& account, const std::string& deployment) const;
  // The weights a completion on this deployment runs: NotFound for an unknown deployment,
  // TooEarly while loading or when no snapshot was ever loaded.
  std::pair<std::shared_ptr<const model::Transformer<float>>, std::string> serving(const std::string& account,
                                                                                   const std::string& deployment) const;
  std::vector<std::string> ids(const std::string& account) const;
  void reset(const std::string& account = "");

 private:
  nlohmann::json to_json(const Deployment& d) const;
  nlohmann::json replica_json(const Deployment& d) const;
  const Deployment& find(const std::string& account, const std::string& id) const;
  Deployment& find(const std::string& account, const std::string& id);
  Deployment& by_name(const std::string& account, const std::string& name);
  void persist() const;
  void restore();

  std::shared_ptr<const Clock> clock_;
  const model::ModelRegistry& registry_;
  Options opts_;
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, Deployment> deployments_;
};

}  // namespace kiln::service
