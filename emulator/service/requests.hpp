#pragma once
// The training requests a model executes in seq_id order, and their results.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "model/sampler.hpp"
#include "service/provenance.hpp"
#include "train/loss.hpp"
#include "train/optimizer.hpp"
#include "train/training_state.hpp"

namespace kiln::service {

// forward (backward = false) and forward_backward.
struct ForwardRequest {
  std::vector<train::Datum> data;
  std::string loss_fn = "cross_entropy";
  std::map<std::string, train::ConfigValue> loss_fn_config;
  bool backward = true;
  train::LossSpec loss;  // loss_fn and loss_fn_config, parsed once at submit (envelope.cpp)
  std::vector<DatumSpans> spans;  // provenance spans, one per datum, or none (checked at submit)
};
struct OptimStepRequest {
  train::AdamParams adam;
  train::Normalization normalization = train::Normalization::none;
};
// save_state: weights and optimizer state.
struct SaveWeightsRequest {
  std::string name;
  std::optional<int64_t> ttl_seconds;
  bool overwrite = false;
  std::map<std::string, std::string> user_metadata;  // tinker 0.30+: kept with the checkpoint
};
// load_state (optimizer = false) and load_state_with_optimizer.
struct LoadWeightsRequest {
  std::string path;
  bool optimizer = false;
  std::string access_key;  // weights_access_token: look the checkpoint up as this API key's
};
// save_weights_for_sampler; checkpoint_type "" means base (protocol.md rule E15). The ephemeral
// form (tinker's save_weights_and_get_sampling_client) has no name and a sampling_session_seq_id:
// it snapshots the weights into a sampler instead of writing a checkpoint (E21).
struct SaveSamplerRequest {
  std::string name;
  std::optional<int64_t> ttl_seconds;
  std::string checkpoint_type;
  std::optional<int64_t> sampling_session_seq_id;
  std::map<std::string, std::string> user_metadata;  // tinker 0.30+: kept with the checkpoint
};
// save_weights_external (tinker 0.39): the weights in Hugging Face form, under
// tinker://<run>/external_weights/<name>, to download file by file (external_weights_urls).
struct SaveExternalRequest {
  std::string name;
  std::optional<int64_t> ttl_seconds;
};
// Fireworks load_adapter: a weights-only warm start of a LoRA model from a sampler checkpoint.
struct LoadAdapterRequest {
  std::string adapter_path;
};
struct UnloadModelRequest {};

using TrainingRequest = std::variant<ForwardRequest, OptimStepRequest, SaveWeightsRequest, LoadWeightsRequest,
                                     SaveSamplerRequest, SaveExternalRequest, LoadAdapterRequest, UnloadModelRequest>;

// A digest of a request's type and payload, to tell a resubmission from a reused seq_id.
uint64_t fingerprint(const TrainingRequest& r);
uint64_t fingerprint(const model::SampleSpec& s);

struct CreateModelResult {
  std::string model_id;
};
struct OptimStepResult {
  std::map<std::string, double> metrics;
};
struct SaveResult {
  std::string path;  // tinker://<model_id>/<weights|sampler_weights|external_weights>/<name>; empty for an ephemeral save
  std::string sampling_session_id;  // ephemeral sampler saves only
  std::optional<int64_t> size_bytes;  // save_weights_external only
};
struct LoadResult {
  std::string path;
  std::string model_id;
};
struct LoadAdapterResult {
  std::string model_id;
  std::string adapter_path;
};
struct UnloadResult {
  std::string model_id;
};

using TrainingResult = std::variant<CreateModelResult, train::ForwardResult, OptimStepResult, SaveResult, LoadResult,
                                    LoadAdapterResult, UnloadResult, model::SampleOutput>;

}  // namespace kiln::service
