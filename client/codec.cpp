// JSON codecs of the client's wire types (protocol.md §W7).
#include <nlohmann/json.hpp>

#include "client/errors.hpp"
#include "client/types.hpp"

namespace kiln::client {

using nlohmann::json;

TensorData TensorData::ints(std::vector<int64_t> v) {
  TensorData t;
  t.dtype = "int64";
  t.data.assign(v.begin(), v.end());
  t.shape = {static_cast<int64_t>(v.size())};
  return t;
}

TensorData TensorData::floats(std::vector<double> v) {
  TensorData t;
  t.shape = {static_cast<int64_t>(v.size())};
  t.data = std::move(v);
  return t;
}

void to_json(json& j, const TensorData& t) {
  json data = json::array();
  for (double v : t.data)
    if (t.dtype == "int64")
      data.push_back(static_cast<int64_t>(v));
    else
      data.push_back(v);
  j = {{"data", std::move(data)}, {"dtype", t.dtype}};
  j["shape"] = t.shape.empty() ? std::vector<int64_t>{static_cast<int64_t>(t.data.size())} : t.shape;
}

void from_json(const json& j, TensorData& t) {
  t.dtype = j.value("dtype", "float32");
  t.data.clear();
  for (const auto& v : j.at("data")) t.data.push_back(v.is_null() ? std::nan("") : v.get<double>());
  t.shape = j.contains("shape") && !j["shape"].is_null() ? j["shape"].get<std::vector<int64_t>>()
                                                         : std::vector<int64_t>{static_cast<int64_t>(t.data.size())};
}

void to_json(json& j, const Datum& d) {
  json inputs = json::object();
  for (const auto& [k, v] : d.loss_fn_inputs) inputs[k] = v;
  j = {{"model_input", {{"chunks", json::array({{{"type", "encoded_text"}, {"tokens", d.model_input}}})}}},
       {"loss_fn_inputs", inputs}};
}

void from_json(const json& j, ForwardBackwardOutput& o) {
  o.loss_fn_output_type = j.value("loss_fn_output_type", "");
  o.loss_fn_outputs.clear();
  const json outputs = j.value("loss_fn_outputs", json::array());
  for (const auto& out : outputs) {
    std::map<std::string, TensorData> fields;
    for (const auto& [k, v] : out.items()) fields[k] = v.get<TensorData>();
    o.loss_fn_outputs.push_back(std::move(fields));
  }
  o.metrics.clear();
  const json metrics = j.value("metrics", json::object());  // named: items() must not outlive it
  for (const auto& [k, v] : metrics.items())
    if (v.is_number()) o.metrics[k] = v.get<double>();
}

void to_json(json& j, const AdamParams& a) {
  j = {{"learning_rate", a.learning_rate}, {"beta1", a.beta1}, {"beta2", a.beta2}, {"eps", a.eps},
       {"weight_decay", a.weight_decay}, {"grad_clip_norm", a.grad_clip_norm}};
  if (a.emit_grad_norm_metrics) j["emit_grad_norm_metrics"] = *a.emit_grad_norm_metrics;
}

void to_json(json& j, const SamplingParams& p) {
  j = {{"temperature", p.temperature}, {"top_k", p.top_k}, {"top_p", p.top_p}};
  if (p.max_tokens) j["max_tokens"] = *p.max_tokens;
  if (p.seed) j["seed"] = *p.seed;
  if (!p.stop_tokens.empty()) j["stop"] = p.stop_tokens;
  if (!p.stop_strings.empty()) j["stop"] = p.stop_strings;
}

void from_json(const json& j, SampleResponse& r) {
  r.sequences.clear();
  for (const auto& s : j.at("sequences")) {
    SampledSequence q;
    q.stop_reason = s.value("stop_reason", "");
    if (s.contains("sequence_id") && s["sequence_id"].is_string()) q.sequence_id = s["sequence_id"];
    q.tokens = s.at("tokens").get<std::vector<int64_t>>();
    if (s.contains("logprobs") && s["logprobs"].is_array()) q.logprobs = s["logprobs"].get<std::vector<double>>();
    r.sequences.push_back(std::move(q));
  }
  r.prompt_logprobs.clear();
  if (j.contains("prompt_logprobs") && j["prompt_logprobs"].is_array())
    for (const auto& v : j["prompt_logprobs"])
      r.prompt_logprobs.push_back(v.is_null() ? std::nullopt : std::optional<double>(v.get<double>()));
}

const char* normalization_name(GradAccNormalization n) {
  switch (n) {
    case GradAccNormalization::num_loss_tokens: return "num_loss_tokens";
    case GradAccNormalization::num_sequences: return "num_sequences";
    case GradAccNormalization::none: return "none";
    case GradAccNormalization::unset: return "";
  }
  return "";
}

}  // namespace kiln::client
