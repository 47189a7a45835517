#pragma once
// What goes into a checkpoint's files (checkpoint_store.hpp says where they go): weights and
// Adam moments as safetensors, a Hugging Face style config.json, a PEFT adapter_config.json for
// LoRA, and the XOR delta format of full-parameter "delta" sampler saves.
#include <string>

#include <nlohmann/json.hpp>

#include "model/params.hpp"
#include "service/safetensors.hpp"
#include "service/service_types.hpp"
#include "train/optimizer.hpp"

namespace kiln::service {

nlohmann::json hf_config(const ModelInfo& info);
nlohmann::json peft_config(const ModelInfo& info);
// The modules an adapter trains, by their Hugging Face names (adapter_config.json's target_modules).
std::vector<std::string> lora_target_modules(const model::LoraConfig& lora, const model::ModelConfig& config);
SafetensorsFile weights_file(const model::ParamSet<float>& params, const ModelInfo& info);
// Adam moments as "<param>.exp_avg" / "<param>.exp_avg_sq", the step in the metadata.
SafetensorsFile optimizer_file(const train::AdamState<float>& adam);
// The tensors of `file` named like those of `like` (plus `suffix`), in `like`'s order; a
// UserError naming `what` when one is missing or has another shape.
model::ParamSet<float> arrange_like(const model::ParamSet<float>& like, const model::ParamSet<float>& file,
                                    const std::string& suffix, const std::string& what);
// The optimizer state of `file` for parameters shaped like `like`.
train::AdamState<float> read_adam(const model::ParamSet<float>& like, const SafetensorsFile& file,
                                  const std::string& what);

// Full-parameter deltas: the XOR of the float bits of `now` against those of `anchor`, which
// xor_apply undoes exactly (format "kiln-xor-delta", naming the anchor's save).
SafetensorsFile xor_delta(const model::ParamSet<float>& now, const model::ParamSet<float>& anchor,
                          const std::string& anchor_name, const std::string& base_model);
bool is_xor_delta(const SafetensorsFile& file);
std::string xor_delta_anchor(const SafetensorsFile& file);  // the save it is a delta of
// Applies `delta` to `weights` in place; UserError naming `what` when a tensor is missing.
void xor_apply(model::ParamSet<float>& weights, const SafetensorsFile& delta, const std::string& what);

}  // namespace kiln::service
