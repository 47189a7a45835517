#pragma once
// The expected numbers: Kiln's trainer run in process, with no client and no HTTP, fed the
// requests a correct client sends for each driver operation (docs/protocol.md §W6, §S9.7).
// Models are named by the driver's client handles.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "conformance/workload.hpp"
#include "service/trainer_service.hpp"

namespace kiln::conformance {

class Oracle {
 public:
  explicit Oracle(const std::string& data_dir);

  // A model like the one the server made for the client (its LoRA layout, alpha and seed).
  void create(const std::string& client, const model::LoraConfig& lora);
  // create_training_client_from_state: a new model of the checkpoint's layout, loaded as its seq 0.
  void create_from_state(const std::string& client, const std::string& path, bool with_optimizer);

  // ForwardBackwardOutput JSON (DRIVER.md), as the server returns it.
  nlohmann::json forward(const std::string& client, const std::vector<Example>& batch, bool backward,
                         const LossChoice& loss = {});
  nlohmann::json optim_step(const std::string& client, const Adam& adam);
  // The two requests of the linearisation, and the custom_loss metric merged in.
  nlohmann::json forward_backward_custom(const std::string& client, const std::vector<Example>& batch,
                                         const std::string& loss);
  // The model as the trainer holds it: optimizer steps taken, losses of its forward_backward calls.
  service::ModelInfo model_info(const std::string& client) const;
  std::string save_state(const std::string& client, const std::string& name);  // the oracle's own path
  void load_state(const std::string& client, const std::string& path, bool with_optimizer);

 private:
  struct Model {
    std::string id;
    int64_t seq = 0;
  };
  service::TrainingResult run(const std::string& client, service::TrainingRequest req);

  std::shared_ptr<service::VirtualClock> clock_ = std::make_shared<service::VirtualClock>();
  std::unique_ptr<service::TrainerService> svc_;
  std::string session_;
  int64_t model_seq_ = 0;
  std::map<std::string, Model> models_;
};

}  // namespace kiln::conformance
