#include "conformance/wire_schema.hpp"

#include <map>
#include <set>

namespace kiln::conformance {

using nlohmann::json;

namespace {


struct Field {
  const char* type;  // string, int, number, bool, object, array, or "=literal" for a fixed string
  bool required;
  const std::map<std::string, Field>* nested = nullptr;  // an object's own fields, checked too
};
using Schema = std::map<std::string, Field>;

const Schema kTensor = {{"data", {"array", true}}, {"dtype", {"string", true}}, {"shape", {"array", false}},
                        {"sparse_crow_indices", {"array", false}}, {"sparse_col_indices", {"array", false}}};
const Schema kLora = {{"rank", {"int", true}}, {"seed", {"int", false}}, {"alpha", {"number", false}},
                      {"train_unembed", {"bool", false}}, {"train_mlp", {"bool", false}}, {"train_attn", {"bool", false}}};
const Schema kAdam = {{"learning_rate", {"number", true}}, {"beta1", {"number", true}}, {"beta2", {"number", true}},
                      {"eps", {"number", true}}, {"weight_decay", {"number", true}}, {"grad_clip_norm", {"number", true}},
                      {"emit_grad_norm_metrics", {"any", false}}};
const Schema kForwardInput = {{"data", {"array", true}}, {"loss_fn", {"string", true}}, {"loss_fn_config", {"object?", false}}};

const std::map<std::string, Schema>& schemas() {
  static const std::map<std::string, Schema> s = {
      {"/api/v1/client/config", {{"sdk_version", {"string", true}}}},
      {"/api/v1/client/dynamic_config", {{"sdk_version", {"string", true}}}},
      {"/api/v1/auth/token", {}},
      {"/api/v1/create_session",
       {{"tags", {"array", true}}, {"user_metadata", {"object", true}}, {"sdk_version", {"string", true}},
        {"project_id", {"string", false}}, {"type", {"=create_session", true}}}},
      {"/api/v1/session_heartbeat", {{"session_id", {"string", true}}, {"type", {"=session_heartbeat", true}}}},
      {"/api/v1/create_model",
       {{"session_id", {"string", true}}, {"model_seq_id", {"int", true}}, {"base_model", {"string", true}},
        {"lora_config", {"object", false, &kLora}}, {"base_only", {"bool", false}}, {"user_metadata", {"object", false}},
        {"type", {"=create_model", true}}}},
      {"/api/v1/get_info", {{"model_id", {"string", true}}, {"type", {"=get_info", true}}}},
      {"/api/v1/retrieve_future", {{"request_id", {"string", true}}, {"allow_metadata_only", {"bool", false}}}},
      {"/api/v1/forward_backward",
       {{"forward_backward_input", {"object", true, &kForwardInput}}, {"model_id", {"string", true}}, {"seq_id", {"int", true}}}},
      {"/api/v1/forward",
       {{"forward_input", {"object", true, &kForwardInput}}, {"model_id", {"string", true}}, {"seq_id", {"int", true}}}},
      {"/api/v1/optim_step",
       {{"adam_params", {"object", true, &kAdam}}, {"model_id", {"string", true}}, {"seq_id", {"int", true}},
        {"type", {"=optim_step", true}}, {"grad_accumulation_normalization", {"string", false}}}},
      {"/api/v1/save_weights",
       {{"model_id", {"string", true}}, {"path", {"string", true}}, {"seq_id", {"int", true}}, {"ttl_seconds", {"int", false}},
        {"overwrite", {"bool", true}}, {"type", {"=save_weights", true}}}},
      {"/api/v1/load_weights",
       {{"model_id", {"string", false}}, {"seq_id", {"int", false}}, {"path", {"string", true}}, {"optimizer", {"bool", true}},
        {"weights_access_token", {"string", false}}, {"session_id", {"string", false}}, {"model_seq_id", {"int", false}},
        {"base_model", {"string", false}}, {"user_metadata", {"object", false}}, {"type", {"=load_weights", true}}}},
      {"/api/v1/save_weights_for_sampler",
       {{"model_id", {"string", true}}, {"seq_id", {"int", true}}, {"path", {"string", false}}, {"ttl_seconds", {"int", false}},
        {"checkpoint_type", {"string", false}}, {"sampling_session_seq_id", {"int", false}},
        {"type", {"=save_weights_for_sampler", true}}}},
      {"/api/v1/weights_info", {{"tinker_path", {"string", true}}}},
      {"/api/v1/telemetry",
       {{"events", {"array", false}}, {"platform", {"string", false}}, {"process_uuid", {"string", false}},
        {"sdk_version", {"string", false}}, {"session_id", {"string", false}}}},
  };
  return s;
}

bool has_type(const json& v, const std::string& type) {
  if (type == "any") return true;
  if (type == "string") return v.is_string();
  if (type == "int") return v.is_number_integer();
  if (type == "number") return v.is_number();
  if (type == "bool") return v.is_boolean();
  if (type == "object") return v.is_object();
  if (type == "object?") return v.is_object() || v.is_null();
  if (type == "array") return v.is_array();
  return v.is_string() && v.get<std::string>() == type.substr(1);  // "=literal"
}

// Problems of one object against its schema, with `where` in front.
void check_object(const json& obj, const Schema& schema, const std::string& where, std::vector<std::string>& problems) {
  for (const auto& [name, f] : schema)
    if (f.required && !obj.contains(name)) problems.push_back(where + ": required field '" + name + "' is missing");
  for (const auto& [name, value] : obj.items()) {
    auto it = schema.find(name);
    if (it == schema.end()) {
      problems.push_back(where + ": field '" + name + "' is not part of the API");
      continue;
    }
    const std::string type = it->second.type;
    if (!has_type(value, type))
      problems.push_back(where + ": field '" + name + "' is " + value.dump().substr(0, 60) + ", expected " +
                         (type[0] == '=' ? "\"" + type.substr(1) + "\"" : type));
    else if (it->second.nested && value.is_object())
      check_object(value, *it->second.nested, where + "." + name, problems);
  }
}

void check_datums(const json& input, const std::string& where, std::vector<std::string>& problems) {
  const json data = input.value("data", json::array());
  for (size_t i = 0; i < data.size(); ++i) {
    const std::string w = where + ".data[" + std::to_string(i) + "]";
    if (!data[i].is_object()) {
      problems.push_back(w + " is not an object");
      continue;
    }
    static const Schema datum = {{"model_input", {"object", true}}, {"loss_fn_inputs", {"object", true}}};
    check_object(data[i], datum, w, problems);
    const json mi = data[i].value("model_input", json::object());
    static const Schema model_input = {{"chunks", {"array", true}}};
    check_object(mi, model_input, w + ".model_input", problems);
    const json chunks = mi.value("chunks", json::array());
    for (const auto& c : chunks) {
      static const Schema chunk = {{"tokens", {"array", true}}, {"type", {"=encoded_text", true}}};
      check_object(c, chunk, w + ".model_input.chunks[]", problems);
    }
    const json inputs = data[i].value("loss_fn_inputs", json::object());
    for (const auto& [name, t] : inputs.items()) check_object(t, kTensor, w + ".loss_fn_inputs." + name, problems);
  }
}

}  // namespace

std::vector<std::string> request_problems(const std::string& path, const json& request) {
  std::vector<std::string> problems;
  auto s = schemas().find(path);
  if (s == schemas().end()) return {"POST " + path + " is not an endpoint of the API"};
  if (!request.is_object()) return {path + ": the body is not a JSON object"};
  json body = request;
  if (body.value("transport", "") == "protobuf") {  // decoded by the journal: its own annotations
    body.erase("transport");
    body.erase("zstd");
    // tinker_public.ForwardBackwardRequest has forward_only (0.25 sends forward this way); the
    // protobuf decoder always fills it and loss_fn_config.
    if (body.contains("forward_only") && !body["forward_only"].is_boolean())
      problems.push_back(path + ": field 'forward_only' is " + body["forward_only"].dump() + ", expected bool");
    body.erase("forward_only");
  }
  check_object(body, s->second, path, problems);
  if (body.contains("forward_input")) check_datums(body["forward_input"], path + ".forward_input", problems);
  if (body.contains("forward_backward_input")) check_datums(body["forward_backward_input"], path + ".forward_backward_input", problems);
  return problems;
}

bool is_get_endpoint(const std::string& path) {
  static const std::set<std::string> exact = {"/api/v1/list_checkpoints", "/api/v1/get_server_capabilities", "/api/v1/healthz"};
  if (exact.count(path)) return true;
  for (const char* prefix : {"/api/v1/training_runs", "/api/v1/samplers/", "/api/v1/sessions", "/api/v1/checkpoints"})
    if (path.rfind(prefix, 0) == 0) return true;
  return false;
}

}  // namespace kiln::conformance
