#pragma once
// JSON forms of the wire types (protocol.md §W6–7, §W10) and their backend counterparts: one codec per
// wire type, so a wire field name lives in exactly one place. Decoders throw
// train::InvalidRequest naming the field and what was expected.
#include <string>

#include <nlohmann/json.hpp>

#include "service/trainer_service.hpp"

namespace kiln::wire {

using nlohmann::json;

// TensorData: {"data", "dtype", "shape"?, "sparse_crow_indices"?, "sparse_col_indices"?}.
train::TensorData tensor_from_json(const json& j, const std::string& field);
json tensor_to_json(const train::TensorData& t);

// ModelInput: {"chunks": [{"type": "encoded_text", "tokens": [...]}, ...]} → the tokens in order.
std::vector<int64_t> model_input_from_json(const json& mi, const std::string& field);

// Datum: {"model_input": {"chunks": [...]}, "loss_fn_inputs": {name: TensorData}}.
train::Datum datum_from_json(const json& j, const std::string& field);
json datum_to_json(const train::Datum& d);
// A forward / forward_backward request in its JSON wire form ({"forward_backward_input": ...}).
json forward_request_to_json(const service::ForwardRequest& r);

// Request bodies of the future-returning endpoints.
service::ForwardRequest forward_from_json(const json& body, bool backward);
service::OptimStepRequest optim_step_from_json(const json& body);
service::SaveWeightsRequest save_weights_from_json(const json& body);
service::LoadWeightsRequest load_weights_from_json(const json& body);
service::SaveSamplerRequest save_sampler_from_json(const json& body);
service::SaveExternalRequest save_external_from_json(const json& body);  // tinker 0.39
service::LoadAdapterRequest load_adapter_from_json(const json& body);
// needs_lora_config = false for load_weights' create-via-load form, which takes it from the checkpoint.
service::CreateModelRequest create_model_from_json(const json& body, bool needs_lora_config = true);
service::CreateSamplerRequest create_sampler_from_json(const json& body);
// asample: prompt, num_samples, sampling_params (protocol.md §W7.5), prompt_logprobs, topk_prompt_logprobs.
model::SampleSpec sample_from_json(const json& body);

// create_session: {"tags"?, "user_metadata"?, "project_id"?}.
struct CreateSessionBody {
  std::vector<std::string> tags;
  std::map<std::string, std::string> user_metadata;
  std::string project_id;
};
CreateSessionBody create_session_from_json(const json& body);
// sessions/{id}/finish: {"reason": {"type": "success" | "errored" | "interrupted"}, "detail"?}.
struct FinishSessionBody {
  std::string reason, detail;
};
FinishSessionBody finish_session_from_json(const json& body);
// copy_weights (tinker 0.26+): {"session_id", "model_seq_id", "source_path", "ttl_seconds"?,
// "weights_access_token"?}; answered {"tinker_path"} at once.
service::CopyWeightsRequest copy_weights_from_json(const json& body);

// retrieve_futures (tinker 0.26+): {"target": {"type": "sampling_session", "sampling_session_id",
// "cloned_sampler_id"?}, "prev_cursor"?, "timeout"?}. The cursor is the decimal string this
// server answered (an integer is accepted too); absent or null starts from the oldest result kept.
struct RetrieveFuturesBody {
  std::string sampling_session_id;
  uint64_t cursor = 0;
  std::optional<double> timeout_seconds;
};
RetrieveFuturesBody retrieve_futures_from_json(const json& body);
// {"completions": [{"state": "finished" | "failed", "request_id"}], "cursor": "<n>"}.
json completions_to_json(const std::vector<service::FutureTable::Completion>& done, uint64_t cursor);
// cancel_future: {"request_id"} or, a batch, {"request_ids": [...]} (at most kMaxCancelBatch).
constexpr size_t kMaxCancelBatch = 64;
std::vector<std::string> cancel_future_from_json(const json& body);

// Immediate replies.
json submitted_to_json(const std::string& request_id, const std::string& model_id);  // {"request_id", "model_id"}
json sample_submission_to_json(const service::SampleSubmission& s);  // {"request_id", "sample_sequence_ids"}
// The 408 body of a poll still pending: {"type": "try_again", "request_id", "queue_state", "queue_state_reason"?}.
json try_again_to_json(const std::string& request_id, const std::string& queue_state, const std::string& reason);
json model_info_to_json(const service::ModelInfo& info);      // get_info
json weights_info_to_json(const service::WeightsInfo& w);      // weights_info
json session_to_json(const service::SessionInfo& s);           // GET sessions/{id}
json sampler_to_json(const service::SamplerInfo& s);           // GET samplers/{id}
json capabilities_to_json(const model::ModelRegistry& registry);  // get_server_capabilities

// Future results (protocol.md §W3.4) and failures ({"error", "category"}).
json result_to_json(const service::TrainingResult& r);
json failure_to_json(const service::RetrieveResult& r);
json sample_output_to_json(const model::SampleOutput& r);  // SampleResponse, protocol.md §W7.8

// REST objects (protocol.md §W10.2, §W10.3).
json checkpoint_to_json(const service::CheckpointRecord& r);
json training_run_to_json(const service::TrainingRunInfo& r);
// {"timestamp", "event", "model_id"?, "tinker_path"?, "purpose"?, "event_details"}.
json audit_entry_to_json(const service::AuditEntry& e);

// Field access with the error texts of this layer.
const json& require(const json& obj, const char* key, const std::string& where);
std::string require_string(const json& obj, const char* key, const std::string& where);
int64_t require_int(const json& obj, const char* key, const std::string& where);

}  // namespace kiln::wire
