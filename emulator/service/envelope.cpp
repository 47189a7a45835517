#include "service/envelope.hpp"

#include "service/checkpoint_ops.hpp"
#include "service/checkpoint_ref.hpp"

namespace kiln::service {

void accept_envelope(const ModelInfo& model, int64_t seq_id, TrainingRequest& req) {
  const auto trainable = [&] {
    if (model.base_only) throw errors::base_only(model.model_id);
  };
  std::visit(
      [&](auto& r) {
        using R = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<R, ForwardRequest>) {
          r.loss = train::LossSpec::parse(r.loss_fn, r.loss_fn_config);
          if (r.data.empty()) throw errors::empty_data();
          if (r.backward) trainable();
        } else if constexpr (std::is_same_v<R, OptimStepRequest>) {
          r.adam.validate();
          trainable();
        } else if constexpr (std::is_same_v<R, SaveWeightsRequest>) {
          validate_checkpoint_name(r.name);
          check_ttl(r.ttl_seconds);
          trainable();
        } else if constexpr (std::is_same_v<R, LoadWeightsRequest>) {
          if (seq_id != 1) throw errors::load_not_first("LoadWeights", seq_id);
          if (r.path.empty()) throw InvalidRequest("path is required");
          if (CheckpointRef::is_tinker_path(r.path)) CheckpointRef::parse(r.path);
          trainable();
        } else if constexpr (std::is_same_v<R, SaveSamplerRequest>) {
          if (r.sampling_session_seq_id) {
            if (*r.sampling_session_seq_id < 0) throw InvalidRequest("sampling_session_seq_id must be >= 0");
          } else {
            validate_checkpoint_name(r.name);
          }
          check_ttl(r.ttl_seconds);
          if (!r.checkpoint_type.empty() && r.checkpoint_type != "base" && r.checkpoint_type != "delta" &&
              r.checkpoint_type != "merged_base")
            throw InvalidRequest("checkpoint_type must be one of ('base', 'delta', 'merged_base')");
          trainable();
        } else if constexpr (std::is_same_v<R, SaveExternalRequest>) {
          validate_checkpoint_name(r.name);
          check_ttl(r.ttl_seconds);
          trainable();
        } else if constexpr (std::is_same_v<R, LoadAdapterRequest>) {
          if (seq_id != 1) throw errors::load_not_first("LoadAdapter", seq_id);
          if (r.adapter_path.find_first_not_of(" \t\n") == std::string::npos)
            throw InvalidRequest("adapter_path must be a non-empty string");
          if (model.base_only || model.lora.full_parameter()) throw InvalidRequest("load_adapter requires a LoRA model");
        }
      },
      req);
}

}  // namespace kiln::service
