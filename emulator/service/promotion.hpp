#pragma once
// What the Fireworks control plane says of a checkpoint (protocol.md §W13.4) and promoted models
// (§W13.8): the row's checkpointType and its authoritative promotable flag (semantics'
// promotability matrix), and the model object a promotion yields.
#include <string>

#include <nlohmann/json.hpp>

#include "service/checkpoint_store.hpp"

namespace kiln::service {

struct ControlCheckpointType {
  std::string type;  // CHECKPOINT_TYPE_…
  bool promotable = false;
};
ControlCheckpointType control_checkpoint_type(const CheckpointRecord& r);

// Promoted models are sampler checkpoints of the account's default namespace in this run.
inline constexpr const char* kPromotedRun = "models";

// accounts/<a>/models/<id>: kind HF_PEFT_ADDON (with peftDetails) for an adapter, HF_BASE_MODEL
// for full weights and merged_base saves.
nlohmann::json promoted_model_json(const std::string& account, const CheckpointRecord& r);

}  // namespace kiln::service
