#include "service/training_shapes.hpp"

namespace kiln::service {

nlohmann::json TrainingShape::version_json() const {
  return {{"name", version_name()},
          {"state", "STATE_READY"},
          {"latestValidated", true},
          {"snapshot",
           {{"baseModel", base_model},
            {"trainerMode", trainer_mode},
            {"maxSupportedContextLength", max_context_length},
            {"acceleratorType", accelerator_type},
            {"acceleratorCount", accelerator_count},
            {"nodeCount", 1},
            {"trainerImageTag", "kiln"},
            {"deploymentImageTag", "kiln"},
            {"baseModelWeightPrecision", "float32"},
            {"trainerShardingScheme", {{"pipelineParallelism", 1}}},
            {"deploymentShapeVersion", deployment_shape_version}}}};
}

const std::vector<TrainingShape>& training_shapes() {
  static const std::vector<TrainingShape> shapes = [] {
    const std::string q8 = "accounts/fireworks/models/qwen3-8b", q9 = "accounts/fireworks/models/qwen3p5-9b";
    const std::string q8_deploy = "accounts/fireworks/deploymentShapes/rft-qwen3-8b/versions/gyiqbrd6";
    const std::string q9_deploy = "accounts/fireworks/deploymentShapes/rft-qwen3p5-9b/versions/kiln0001";
    return std::vector<TrainingShape>{
        {"qwen3-8b-128k", "vnuk8fdq", q8, "POLICY_TRAINER", 128000, "NVIDIA_B200_180GB", 4, q8_deploy},
        {"qwen3-8b-128k-lora", "kiln0001", q8, "LORA_TRAINER", 128000, "NVIDIA_B200_180GB", 4, q8_deploy},
        {"qwen3-8b-128k-forward-only", "kiln0001", q8, "FORWARD_ONLY", 128000, "NVIDIA_B200_180GB", 4, q8_deploy},
        {"qwen3-8b-128k-h200", "kiln0001", q8, "POLICY_TRAINER", 128000, "NVIDIA_H200_141GB", 8, q8_deploy},
        {"qwen3-8b-128k-h200-lora", "kiln0001", q8, "LORA_TRAINER", 128000, "NVIDIA_H200_141GB", 8, q8_deploy},
        {"qwen3p5-9b-256k", "kiln0001", q9, "POLICY_TRAINER", 256000, "NVIDIA_B200_180GB", 8, q9_deploy},
        {"qwen3p5-9b-256k-lora", "kiln0001", q9, "LORA_TRAINER", 256000, "NVIDIA_B200_180GB", 8, q9_deploy},
        {"qwen3p5-9b-65k-lora", "kiln0001", q9, "LORA_TRAINER", 65536, "NVIDIA_H200_141GB", 4, q9_deploy},
    };
  }();
  return shapes;
}

std::optional<TrainingShape> find_training_shape(const std::string& ref) {
  for (const auto& s : training_shapes())
    if (ref == s.name() || ref == s.version_name()) return s;
  return std::nullopt;
}

}  // namespace kiln::service
