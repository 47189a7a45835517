#include "service/promotion.hpp"

#include "service/checkpoint_files.hpp"

namespace kiln::service {

ControlCheckpointType control_checkpoint_type(const CheckpointRecord& r) {
  const bool lora = r.lora.has_value();
  if (r.kind != CheckpointKind::sampler)
    return {lora ? "CHECKPOINT_TYPE_TRAINING_LORA" : "CHECKPOINT_TYPE_TRAINING", false};
  if (r.checkpoint_type == "merged_base") return {"CHECKPOINT_TYPE_INFERENCE_BASE", true};
  if (lora) return {"CHECKPOINT_TYPE_INFERENCE_LORA", true};  // LoRA stores the full adapter, delta or not
  if (r.checkpoint_type == "delta") return {"CHECKPOINT_TYPE_INFERENCE_ARC_V2", false};
  return {"CHECKPOINT_TYPE_INFERENCE_BASE", true};
}

nlohmann::json promoted_model_json(const std::string& account, const CheckpointRecord& r) {
  const bool adapter = r.lora && r.checkpoint_type != "merged_base";
  nlohmann::json m = {{"name", "accounts/" + account + "/models/" + r.name},
                      {"state", "READY"},
                      {"kind", adapter ? "HF_PEFT_ADDON" : "HF_BASE_MODEL"},
                      {"baseModel", r.base_model},
                      {"createTime", iso8601(r.created)},
                      {"promotedFrom", r.user_metadata.count("promoted_from") ? r.user_metadata.at("promoted_from") : ""}};
  if (adapter) {
    m["peftDetails"] = {{"baseModel", r.base_model}, {"r", r.lora->rank},
                        {"targetModules", lora_target_modules(*r.lora, r.config)}};
  }
  return m;
}

}  // namespace kiln::service
