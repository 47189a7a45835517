#pragma once
// The client's view of the API's data types (protocol.md §W7), independent of the emulator: this
// library drives any endpoint that speaks the protocol. JSON codecs live in codec.cpp.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace kiln::client {

struct TensorData {
  std::vector<double> data;
  std::string dtype = "float32";  // float32 | int64
  std::vector<int64_t> shape;     // empty: one dimension of data.size()

  static TensorData ints(std::vector<int64_t> v);
  static TensorData floats(std::vector<double> v);
  size_t numel() const { return data.size(); }
};

struct Datum {
  std::vector<int64_t> model_input;  // token ids (one encoded_text chunk)
  std::map<std::string, TensorData> loss_fn_inputs;
};

// Result of forward / forward_backward, merged over chunks.
struct ForwardBackwardOutput {
  std::string loss_fn_output_type;
  std::vector<std::map<std::string, TensorData>> loss_fn_outputs;
  std::map<std::string, double> metrics;
};

enum class GradAccNormalization { unset, num_loss_tokens, num_sequences, none };

struct AdamParams {
  double learning_rate = 1e-4, beta1 = 0.9, beta2 = 0.95, eps = 1e-12, weight_decay = 0.0, grad_clip_norm = 0.0;
  std::optional<std::string> emit_grad_norm_metrics;  // Fireworks: off | basic | detailed
};

struct OptimStepResponse {
  std::map<std::string, double> metrics;
};

struct SaveResponse {
  std::string path;
};

struct SaveSamplerResult {
  std::string path, snapshot_name;
};

struct LoadResponse {
  std::string path;
};

struct UnloadResponse {
  std::string model_id;
};

struct ModelInfo {
  std::string model_id, model_name;
  bool is_lora = false;
  int64_t lora_rank = 0;
};

struct SamplingParams {
  std::optional<int64_t> max_tokens, seed;
  std::vector<int64_t> stop_tokens;
  std::vector<std::string> stop_strings;
  double temperature = 1.0, top_p = 1.0;
  int64_t top_k = -1;
};

struct SampledSequence {
  std::string stop_reason;  // stop | length
  std::string sequence_id;  // the asample promise's sample_sequence_ids entry (tinker 0.26+)
  std::vector<int64_t> tokens;
  std::vector<double> logprobs;
};

struct SampleResponse {
  std::vector<SampledSequence> sequences;
  std::vector<std::optional<double>> prompt_logprobs;  // empty unless requested
};

void to_json(nlohmann::json& j, const TensorData& t);
void from_json(const nlohmann::json& j, TensorData& t);
void to_json(nlohmann::json& j, const Datum& d);
void from_json(const nlohmann::json& j, ForwardBackwardOutput& o);
void to_json(nlohmann::json& j, const AdamParams& a);
void to_json(nlohmann::json& j, const SamplingParams& p);
void from_json(const nlohmann::json& j, SampleResponse& r);
const char* normalization_name(GradAccNormalization n);

}  // namespace kiln::client
