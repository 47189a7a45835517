#pragma once
// Fireworks training shapes (protocol.md §W13.5): the shapes the control plane resolves,
// each fixing a base model, a trainer mode and a context length. Kiln's table names the shapes
// the vendor's docs and cookbook name; the hardware fields are descriptive only (a stand-in
// runs on the CPU whatever the shape says).
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kiln::service {

struct TrainingShape {
  std::string id;       // accounts/fireworks/trainingShapes/<id>
  std::string version;  // its one validated version
  std::string base_model;
  std::string trainer_mode;  // POLICY_TRAINER | LORA_TRAINER | FORWARD_ONLY
  int64_t max_context_length = 0;
  std::string accelerator_type;
  int64_t accelerator_count = 0;
  std::string deployment_shape_version;

  std::string name() const { return "accounts/fireworks/trainingShapes/" + id; }
  std::string version_name() const { return name() + "/versions/" + version; }
  nlohmann::json version_json() const;  // a trainingShapeVersions row, with its snapshot
};

const std::vector<TrainingShape>& training_shapes();
// `accounts/fireworks/trainingShapes/<s>[/versions/<v>]`: the shape, or nullopt when no such
// shape (or version) exists.
std::optional<TrainingShape> find_training_shape(const std::string& ref);

}  // namespace kiln::service
