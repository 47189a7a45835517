#include "wire/json_codec.hpp"

#include <algorithm>
#include <cmath>

#include "service/clock.hpp"
#include "train/errors.hpp"
#include "wire/sparse_csr.hpp"

namespace kiln::wire {

using train::InvalidRequest;

namespace {

std::string type_name(const json& j) { return j.type_name(); }

std::string at(const std::string& where, const char* key) { return where.empty() ? key : where + "." + key; }

}  // namespace

const json& require(const json& obj, const char* key, const std::string& where) {
  if (!obj.is_object()) throw InvalidRequest(where + ": expected an object, got " + type_name(obj));
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) throw InvalidRequest("missing required field '" + at(where, key) + "'");
  return *it;
}

std::string require_string(const json& obj, const char* key, const std::string& where) {
  const json& v = require(obj, key, where);
  if (!v.is_string()) throw InvalidRequest("field '" + at(where, key) + "' must be a string, got " + type_name(v));
  return v.get<std::string>();
}

int64_t require_int(const json& obj, const char* key, const std::string& where) {
  const json& v = require(obj, key, where);
  if (!v.is_number_integer()) throw InvalidRequest("field '" + at(where, key) + "' must be an integer, got " + type_name(v));
  return v.get<int64_t>();
}

namespace {

std::optional<int64_t> optional_int(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer()) throw InvalidRequest("field '" + at(where, key) + "' must be an integer or null");
  return it->get<int64_t>();
}

std::optional<std::string> optional_string(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) throw InvalidRequest("field '" + at(where, key) + "' must be a string, got " + type_name(*it));
  return it->get<std::string>();
}

// {"key": {...}} as strings: string values as they are, any other value as its JSON text.
std::map<std::string, std::string> string_map(const json& obj, const char* key, const std::string& where) {
  std::map<std::string, std::string> out;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return out;
  if (!it->is_object()) throw InvalidRequest("field '" + at(where, key) + "' must be an object, got " + type_name(*it));
  for (const auto& [k, v] : it->items()) out[k] = v.is_string() ? v.get<std::string>() : v.dump();
  return out;
}

bool optional_bool(const json& obj, const char* key, bool fallback, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw InvalidRequest("field '" + at(where, key) + "' must be a boolean, got " + type_name(*it));
  return it->get<bool>();
}

double number(const json& v, const std::string& field) {
  if (!v.is_number()) throw InvalidRequest("field '" + field + "' must be a number, got " + type_name(v));
  return v.get<double>();
}

std::vector<int64_t> int_list(const json& v, const std::string& field) {
  if (!v.is_array()) throw InvalidRequest("field '" + field + "' must be a list of integers");
  std::vector<int64_t> out;
  out.reserve(v.size());
  for (const auto& x : v) {
    if (!x.is_number_integer()) throw InvalidRequest("field '" + field + "' must be a list of integers");
    out.push_back(x.get<int64_t>());
  }
  return out;
}

}  // namespace

train::TensorData tensor_from_json(const json& j, const std::string& field) {
  const std::string dtype = require_string(j, "dtype", field);
  train::TensorData t;
  if (dtype == "int64")
    t.dtype = train::DType::int64;
  else if (dtype == "float32")
    t.dtype = train::DType::float32;
  else
    throw InvalidRequest("field '" + field + ".dtype' must be 'int64' or 'float32', got '" + dtype + "'");
  const json& data = require(j, "data", field);
  if (!data.is_array()) throw InvalidRequest("field '" + field + ".data' must be a list of numbers");
  std::vector<double> values;
  values.reserve(data.size());
  for (const auto& x : data) {
    // NaN and Inf have no JSON form; the SDK's encoder writes them as the strings Python uses.
    if (x.is_string() && (x == "NaN" || x == "Infinity" || x == "-Infinity"))
      values.push_back(x == "NaN" ? std::nan("") : (x == "Infinity" ? INFINITY : -INFINITY));
    else
      values.push_back(number(x, field + ".data"));
  }
  auto shape_it = j.find("shape");
  t.shape = shape_it == j.end() || shape_it->is_null() ? std::vector<int64_t>{static_cast<int64_t>(values.size())}
                                                       : int_list(*shape_it, field + ".shape");
  auto crow = j.find("sparse_crow_indices");
  if (crow == j.end() || crow->is_null()) {
    t.data = std::move(values);
    return t;
  }
  // Sparse CSR: data holds the non-zeros.
  const auto rows = int_list(*crow, field + ".sparse_crow_indices");
  const auto cols = int_list(require(j, "sparse_col_indices", field), field + ".sparse_col_indices");
  t.data = dense_from_csr(values, rows, cols, t.shape, field);
  return t;
}

json tensor_to_json(const train::TensorData& t) {
  json data = json::array();
  for (double v : t.data) {
    if (train::is_integer(t.dtype))
      data.push_back(static_cast<int64_t>(v));
    else
      data.push_back(static_cast<float>(v));
  }
  return {{"data", std::move(data)}, {"dtype", train::is_integer(t.dtype) ? "int64" : "float32"}, {"shape", t.shape}};
}

std::vector<int64_t> model_input_from_json(const json& mi, const std::string& field) {
  std::vector<int64_t> out;
  const json& chunks = require(mi, "chunks", field);
  if (!chunks.is_array()) throw InvalidRequest("field '" + field + ".chunks' must be a list");
  for (size_t c = 0; c < chunks.size(); ++c) {
    const std::string cf = field + ".chunks[" + std::to_string(c) + "]";
    if (!chunks[c].is_object()) throw InvalidRequest("field '" + cf + "' must be an object, got " + type_name(chunks[c]));
    const std::string type = optional_string(chunks[c], "type", cf).value_or("encoded_text");
    if (type != "encoded_text")
      throw InvalidRequest("field '" + cf + "': chunk type '" + type +
                           "' is not supported (Kiln's models take text tokens only)");
    const auto tokens = int_list(require(chunks[c], "tokens", cf), cf + ".tokens");
    out.insert(out.end(), tokens.begin(), tokens.end());
  }
  return out;
}

train::Datum datum_from_json(const json& j, const std::string& field) {
  train::Datum d;
  d.model_input = model_input_from_json(require(j, "model_input", field), field + ".model_input");
  auto inputs = j.find("loss_fn_inputs");
  if (inputs != j.end() && !inputs->is_null()) {
    if (!inputs->is_object()) throw InvalidRequest("field '" + field + ".loss_fn_inputs' must be an object");
    for (const auto& [name, value] : inputs->items())
      d.loss_fn_inputs[name] = tensor_from_json(value, field + ".loss_fn_inputs." + name);
  }
  return d;
}

namespace {
// A datum's provenance spans in JSON, read in the protobuf's shape (rule C17): a list of
// {"prompt_tokens" | "sampled_tokens": {"sequence_id", "offset", "length"}}.
service::DatumSpans datum_spans_from_json(const json& datum, const std::string& field) {
  service::DatumSpans out;
  for (auto [name, into] : {std::pair{"model_input_spans", &out.model_input}, std::pair{"loss_fn_input_spans", &out.loss_fn_inputs}}) {
    auto it = datum.find(name);
    if (it == datum.end() || it->is_null()) continue;
    const std::string f = field + "." + name;
    if (!it->is_array()) throw InvalidRequest("field '" + f + "' must be a list of spans");
    for (size_t r = 0; r < it->size(); ++r) {
      const json& s = (*it)[r];
      const std::string rf = f + "[" + std::to_string(r) + "]";
      const bool prompt = s.is_object() && s.contains("prompt_tokens");
      if (!s.is_object() || (prompt == s.contains("sampled_tokens")))
        throw InvalidRequest("field '" + rf + "' must hold exactly one of 'prompt_tokens' or 'sampled_tokens'");
      const json& t = s.at(prompt ? "prompt_tokens" : "sampled_tokens");
      const std::string tf = rf + (prompt ? ".prompt_tokens" : ".sampled_tokens");
      into->push_back({!prompt, require_string(t, "sequence_id", tf), optional_int(t, "offset", tf).value_or(0),
                       require_int(t, "length", tf)});
    }
  }
  return out;
}
}  // namespace

json datum_to_json(const train::Datum& d) {
  json inputs = json::object();
  for (const auto& [name, t] : d.loss_fn_inputs) inputs[name] = tensor_to_json(t);
  return {{"model_input", {{"chunks", json::array({{{"type", "encoded_text"}, {"tokens", d.model_input}}})}}},
          {"loss_fn_inputs", inputs}};
}

json forward_request_to_json(const service::ForwardRequest& r) {
  json data = json::array(), config = json::object();
  for (const auto& d : r.data) data.push_back(datum_to_json(d));
  for (const auto& [k, v] : r.loss_fn_config) std::visit([&, &k = k](const auto& x) { config[k] = x; }, v);
  return {{"forward_backward_input", {{"data", data}, {"loss_fn", r.loss_fn}, {"loss_fn_config", config}}},
          {"forward_only", !r.backward}};
}

namespace {
// fireworks-ai 1.2.12+ "comms v2": a client sends "comms": "v2" and compact float32 JSON only
// after a create_model result offered it. Kiln never offers it (the encoding is not public), so
// only v1, or no field, is accepted (protocol.md §W14.2).
void check_comms(const json& body) {
  auto it = body.find("comms");
  if (it == body.end() || it->is_null() || (it->is_string() && it->get<std::string>() == "v1")) return;
  throw InvalidRequest("field 'comms': " + (it->is_string() ? "'" + it->get<std::string>() + "'" : type_name(*it)) +
                       " is not supported; Kiln speaks comms v1 (plain JSON) only and never offers v2 at create_model");
}
}  // namespace

service::ForwardRequest forward_from_json(const json& body, bool backward) {
  const char* key = backward ? "forward_backward_input" : "forward_input";
  check_comms(body);
  const json& in = require(body, key, "");
  service::ForwardRequest r;
  r.backward = backward;
  r.loss_fn = require_string(in, "loss_fn", key);
  const json& data = require(in, "data", key);
  if (!data.is_array()) throw InvalidRequest(std::string("field '") + key + ".data' must be a list");
  for (size_t i = 0; i < data.size(); ++i) {
    const std::string field = std::string(key) + ".data[" + std::to_string(i) + "]";
    r.data.push_back(datum_from_json(data[i], field));
    r.spans.push_back(datum_spans_from_json(data[i], field));
  }
  if (std::all_of(r.spans.begin(), r.spans.end(), [](const auto& s) { return s == service::DatumSpans{}; })) r.spans.clear();
  if (auto cfg = in.find("loss_fn_config"); cfg != in.end() && !cfg->is_null()) {
    if (!cfg->is_object()) throw InvalidRequest(std::string("field '") + key + ".loss_fn_config' must be an object");
    for (const auto& [k, v] : cfg->items()) {
      if (v.is_string())
        r.loss_fn_config[k] = v.get<std::string>();
      else if (v.is_boolean())  // fireworks-ai 1.2.x: bools travel as their text (protocol.md §W14.3)
        r.loss_fn_config[k] = std::string(v.get<bool>() ? "true" : "false");
      else
        r.loss_fn_config[k] = number(v, std::string(key) + ".loss_fn_config." + k);
    }
  }
  return r;
}

namespace {
// tinker 0.29+ names the optimizer: {"type": "adamw"} (what Kiln implements) or {"type":
// "dimuon", ...}, whose exact definition is not public; anything but adamw is refused by name.
void check_optimizer_type(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return;
  if (!it->is_object()) throw InvalidRequest(std::string("field '") + key + "' must be an object, got " + type_name(*it));
  const std::string type = require_string(*it, "type", key);
  if (type != "adamw")
    throw InvalidRequest(std::string("field '") + key + ".type': optimizer '" + type +
                         "' is not supported; Kiln implements 'adamw' only");
}
}  // namespace

service::OptimStepRequest optim_step_from_json(const json& body) {
  check_optimizer_type(body, "optimizer_params");
  const json& a = require(body, "adam_params", "");
  service::OptimStepRequest r;
  auto num = [&](const char* k, double& dst) {
    if (auto it = a.find(k); it != a.end() && !it->is_null()) dst = number(*it, std::string("adam_params.") + k);
  };
  num("learning_rate", r.adam.learning_rate);
  num("beta1", r.adam.beta1);
  num("beta2", r.adam.beta2);
  num("eps", r.adam.eps);
  num("weight_decay", r.adam.weight_decay);
  num("grad_clip_norm", r.adam.grad_clip_norm);
  if (auto it = a.find("emit_grad_norm_metrics"); it != a.end() && it->is_boolean())
    r.adam.emit_grad_norm_metrics = train::parse_grad_norm_metrics(it->get<bool>() ? "true" : "false");
  else if (auto mode = optional_string(a, "emit_grad_norm_metrics", "adam_params"))
    r.adam.emit_grad_norm_metrics = train::parse_grad_norm_metrics(*mode);
  if (auto norm = optional_string(body, "grad_accumulation_normalization", ""))
    r.normalization = train::parse_normalization(*norm);
  return r;
}

service::SaveWeightsRequest save_weights_from_json(const json& body) {
  return {require_string(body, "path", ""), optional_int(body, "ttl_seconds", ""),
          optional_bool(body, "overwrite", false, ""), string_map(body, "user_metadata", "")};
}

service::LoadWeightsRequest load_weights_from_json(const json& body) {
  service::LoadWeightsRequest r{require_string(body, "path", ""), optional_bool(body, "optimizer", false, ""), ""};
  if (body.contains("weights_access_token") && !body["weights_access_token"].is_null())
    r.access_key = require_string(body, "weights_access_token", "");
  return r;
}

service::SaveSamplerRequest save_sampler_from_json(const json& body) {
  service::SaveSamplerRequest r;
  r.sampling_session_seq_id = optional_int(body, "sampling_session_seq_id", "");
  const bool named = body.contains("path") && !body["path"].is_null();
  if (!named && !r.sampling_session_seq_id)
    throw InvalidRequest("save_weights_for_sampler needs 'path' (a name) or 'sampling_session_seq_id' (ephemeral)");
  if (named) {
    r.name = require_string(body, "path", "");
    r.sampling_session_seq_id.reset();  // a named save is a checkpoint, even if a counter came along
  }
  r.ttl_seconds = optional_int(body, "ttl_seconds", "");
  r.user_metadata = string_map(body, "user_metadata", "");
  if (auto it = body.find("checkpoint_type"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) throw InvalidRequest("field 'checkpoint_type' must be a string, got " + type_name(*it));
    r.checkpoint_type = it->get<std::string>();
  }
  return r;
}

service::SaveExternalRequest save_external_from_json(const json& body) {
  return {require_string(body, "path", ""), optional_int(body, "ttl_seconds", "")};
}

service::CreateSamplerRequest create_sampler_from_json(const json& body) {
  service::CreateSamplerRequest r;
  r.session_id = require_string(body, "session_id", "");
  r.sampling_session_seq_id = optional_int(body, "sampling_session_seq_id", "").value_or(0);
  r.base_model = optional_string(body, "base_model", "").value_or("");
  r.model_path = optional_string(body, "model_path", "").value_or("");
  return r;
}

namespace {
// tinker 0.31+ target_prompt_logprobs: an int64 TensorData [len(prompt) - 1, K], dense (-1: no
// id) or sparse CSR (only the listed cells are asked), kept in its layout (rule F9).
model::TargetIds target_ids_from_json(const json& j) {
  const std::string f = "target_prompt_logprobs";
  if (!j.is_object()) throw InvalidRequest("field '" + f + "' must be a TensorData object, got " + type_name(j));
  const std::string dtype = require_string(j, "dtype", f);
  if (dtype != "int64") throw InvalidRequest("field '" + f + ".dtype' must be 'int64' (token ids), got '" + dtype + "'");
  const auto shape = int_list(require(j, "shape", f), f + ".shape");
  if (shape.size() != 2 || shape[0] < 0 || shape[1] < 0)
    throw InvalidRequest("field '" + f + ".shape' must be 2-D, [len(prompt) - 1, K], got " + train::shape_string(shape));
  model::TargetIds t{shape[0], shape[1], {}, {}, {}};
  const auto values = int_list(require(j, "data", f), f + ".data");
  auto crow = j.find("sparse_crow_indices");
  if (crow == j.end() || crow->is_null()) {
    if (static_cast<int64_t>(values.size()) != t.rows * t.k)
      throw InvalidRequest("field '" + f + ".data' has " + std::to_string(values.size()) + " values but shape " +
                           train::shape_string(shape));
    t.ids = values;
    return t;
  }
  t.crow = int_list(*crow, f + ".sparse_crow_indices");
  t.col = int_list(require(j, "sparse_col_indices", f), f + ".sparse_col_indices");
  // Validated as any CSR tensor; then the listed cells take their ids, every other cell -1.
  dense_from_csr(std::vector<double>(values.size(), 0.0), t.crow, t.col, shape, f);
  t.ids.assign(static_cast<size_t>(t.rows * t.k), -1);
  for (int64_t r = 0; r < t.rows; ++r)
    for (int64_t i = t.crow[r]; i < t.crow[r + 1]; ++i) t.ids[r * t.k + t.col[i]] = values[i];
  return t;
}
}  // namespace

model::SampleSpec sample_from_json(const json& body) {
  model::SampleSpec s;
  s.prompt = model_input_from_json(require(body, "prompt", ""), "prompt");
  s.num_samples = optional_int(body, "num_samples", "").value_or(1);
  s.prompt_logprobs = optional_bool(body, "prompt_logprobs", false, "");
  s.topk_prompt_logprobs = optional_int(body, "topk_prompt_logprobs", "").value_or(0);
  s.topk_sample_logprobs = optional_int(body, "topk_sample_logprobs", "").value_or(0);
  s.prompt_alt_tokens_k = optional_int(body, "prompt_alt_tokens_k", "").value_or(0);
  if (auto t = body.find("target_prompt_logprobs"); t != body.end() && !t->is_null()) s.target_prompt_logprobs = target_ids_from_json(*t);
  auto sp = body.find("sampling_params");
  if (sp == body.end() || sp->is_null()) return s;
  if (!sp->is_object()) throw InvalidRequest("field 'sampling_params' must be an object, got " + type_name(*sp));
  const std::string where = "sampling_params";
  auto& p = s.params;
  p.max_tokens = optional_int(*sp, "max_tokens", where);
  if (auto seed = sp->find("seed"); seed != sp->end() && !seed->is_null()) {
    if (!seed->is_number_integer()) throw InvalidRequest("field 'sampling_params.seed' must be an integer or null");
    p.seed = seed->is_number_unsigned() ? seed->get<uint64_t>() : static_cast<uint64_t>(seed->get<int64_t>());
  }
  if (auto stop = sp->find("stop"); stop != sp->end() && !stop->is_null()) {
    const std::string f = "sampling_params.stop";
    // tinker 0.26+: an explicit empty list turns off the model's end-of-sequence stop; absent or
    // null keeps it.
    if (stop->is_array() && stop->empty()) p.end_of_sequence = false;
    if (stop->is_string()) {
      p.stop_strings.push_back(stop->get<std::string>());
    } else if (stop->is_array() && std::all_of(stop->begin(), stop->end(), [](const json& x) { return x.is_string(); })) {
      for (const auto& x : *stop) p.stop_strings.push_back(x.get<std::string>());
    } else if (stop->is_array()) {
      p.stop_tokens = int_list(*stop, f);
    } else {
      throw InvalidRequest("field '" + f + "' must be a string, a list of strings or a list of token ids, got " +
                           type_name(*stop));
    }
  }
  auto real = [&](const char* key, double fallback) {
    auto it = sp->find(key);
    return it == sp->end() || it->is_null() ? fallback : number(*it, where + "." + key);
  };
  p.temperature = real("temperature", 1.0);
  p.top_p = real("top_p", 1.0);
  p.top_k = optional_int(*sp, "top_k", where).value_or(-1);
  return s;
}

service::LoadAdapterRequest load_adapter_from_json(const json& body) {
  return {require_string(body, "adapter_path", "")};
}

namespace {
// fireworks-ai 1.2.17+ lora_init_method / init_method: "kaiming" is what Kiln does anyway (A
// uniform ±1/sqrt(in), PEFT's kaiming_uniform(a=√5); B zero); "nora"'s definition is not public,
// so it is refused by name (protocol.md §W14.1).
void check_lora_init_method(const json& obj, const char* name, const std::string& where) {
  const auto method = optional_string(obj, name, where);
  if (!method || *method == "kaiming") return;
  const std::string field = where.empty() ? name : where + "." + name;
  if (*method == "nora")
    throw InvalidRequest("field '" + field + "': LoRA init method 'nora' is not supported (its definition is not "
                         "public); Kiln initialises LoRA the 'kaiming' way only");
  throw InvalidRequest("field '" + field + "' must be 'kaiming' or 'nora', got '" + *method + "'");
}

// fireworks-ai 1.2.16+ projection heads: what the trainer computes and returns is not public.
void refuse_projection_head(const json& obj, const std::string& where) {
  if (auto it = obj.find("projection_head_dim"); it != obj.end() && !it->is_null())
    throw InvalidRequest("field '" + (where.empty() ? std::string() : where + ".") +
                         "projection_head_dim': projection heads are not supported by Kiln");
}
}  // namespace

service::CreateModelRequest create_model_from_json(const json& body, bool needs_lora_config) {
  service::CreateModelRequest r;
  r.session_id = require_string(body, "session_id", "");
  r.model_seq_id = require_int(body, "model_seq_id", "");
  r.base_model = optional_string(body, "base_model", "").value_or("");
  check_optimizer_type(body, "optimizer_config");
  r.base_only = optional_bool(body, "base_only", false, "");
  check_lora_init_method(body, "lora_init_method", "");
  refuse_projection_head(body, "");
  if (auto it = body.find("lora_config"); it != body.end() && !it->is_null()) {
    const json& l = *it;
    check_lora_init_method(l, "lora_init_method", "lora_config");
    check_lora_init_method(l, "init_method", "lora_config");
    refuse_projection_head(l, "lora_config");
    r.lora.rank = require_int(l, "rank", "lora_config");
    if (auto a = l.find("alpha"); a != l.end() && !a->is_null()) r.lora.alpha = number(*a, "lora_config.alpha");
    if (auto s = optional_int(l, "seed", "lora_config")) {
      r.lora.seed = static_cast<uint64_t>(*s);
      r.lora_seed_given = true;
    }
    r.lora.train_attn = optional_bool(l, "train_attn", true, "lora_config");
    r.lora.train_mlp = optional_bool(l, "train_mlp", true, "lora_config");
    r.lora.train_unembed = optional_bool(l, "train_unembed", true, "lora_config");
  } else if (!r.base_only && needs_lora_config) {
    throw InvalidRequest("missing required field 'lora_config'");
  }
  r.user_metadata = string_map(body, "user_metadata", "");
  return r;
}

namespace {
// Rows of (token, logprob) pairs; an empty row (a position with none) is null.
json topk_rows_to_json(const std::vector<model::TopK>& rows) {
  json out = json::array();
  for (const auto& row : rows) {
    if (row.empty()) {
      out.push_back(nullptr);
      continue;
    }
    json cells = json::array();
    for (const auto& [tok, lp] : row) cells.push_back({tok, lp});
    out.push_back(std::move(cells));
  }
  return out;
}

template <typename T>
json matrix_to_json(const std::vector<T>& values, int64_t rows, int64_t k) {
  return {{"data", values}, {"dtype", std::is_floating_point_v<T> ? "float32" : "int64"}, {"shape", {rows, k}}};
}
}  // namespace

json sample_output_to_json(const model::SampleOutput& r) {
  json seqs = json::array();
  for (const auto& q : r.sequences) {
    json seq = {{"stop_reason", q.stopped ? "stop" : "length"}, {"tokens", q.tokens}, {"logprobs", q.logprobs}};
    if (!q.sequence_id.empty()) seq["sequence_id"] = q.sequence_id;
    if (q.topk_logprobs) seq["topk_logprobs"] = topk_rows_to_json(*q.topk_logprobs);
    seqs.push_back(std::move(seq));
  }
  json j = {{"sequences", std::move(seqs)}, {"type", "sample"}, {"prompt_cache_hit_tokens", 0}};
  if (r.prompt_logprobs) {
    json lp = json::array();
    for (float v : *r.prompt_logprobs) lp.push_back(std::isnan(v) ? json(nullptr) : json(v));
    j["prompt_logprobs"] = std::move(lp);
  }
  if (r.topk_prompt_logprobs) j["topk_prompt_logprobs"] = topk_rows_to_json(*r.topk_prompt_logprobs);
  if (const auto& t = r.target_prompt_logprobs) {
    if (t->crow.empty()) {
      j["target_prompt_logprobs"] = matrix_to_json(t->values, t->rows, t->k);
    } else {  // the request's CSR layout: one value per listed cell
      j["target_prompt_logprobs"] = matrix_to_json(t->listed(), t->rows, t->k);
      j["target_prompt_logprobs"]["sparse_crow_indices"] = t->crow;
      j["target_prompt_logprobs"]["sparse_col_indices"] = t->col;
    }
  }
  if (const auto& a = r.prompt_alt_tokens)
    j["prompt_alt_tokens"] = {{"tokens", matrix_to_json(a->tokens, a->rows, a->k)},
                              {"logprobs", matrix_to_json(a->logprobs, a->rows, a->k)}};
  return j;
}

json result_to_json(const service::TrainingResult& r) {
  return std::visit(
      [](const auto& x) -> json {
        using X = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<X, service::CreateModelResult>) {
          // supports_router_replay: fireworks-ai 1.2.18 reads it; Kiln's stand-ins have no router.
          return {{"model_id", x.model_id}, {"type", "create_model"}, {"supports_router_replay", false}};
        } else if constexpr (std::is_same_v<X, train::ForwardResult>) {
          json outs = json::array();
          for (const auto& o : x.loss_fn_outputs)
            outs.push_back({{"logprobs", tensor_to_json(o.logprobs)}, {"elementwise_loss", tensor_to_json(o.elementwise_loss)}});
          return {{"loss_fn_output_type", "TorchLossReturn"}, {"loss_fn_outputs", outs}, {"metrics", x.metrics}};
        } else if constexpr (std::is_same_v<X, service::OptimStepResult>) {
          return {{"metrics", x.metrics}};
        } else if constexpr (std::is_same_v<X, service::SaveResult>) {
          if (!x.sampling_session_id.empty())  // the ephemeral sampler save
            return {{"path", nullptr}, {"sampling_session_id", x.sampling_session_id}, {"type", "save_weights_for_sampler"}};
          if (x.size_bytes) return {{"path", x.path}, {"size_bytes", *x.size_bytes}, {"type", "save_weights_external"}};
          const bool sampler = x.path.find("/sampler_weights/") != std::string::npos;
          return {{"path", x.path}, {"type", sampler ? "save_weights_for_sampler" : "save_weights"}};
        } else if constexpr (std::is_same_v<X, model::SampleOutput>) {
          return sample_output_to_json(x);
        } else if constexpr (std::is_same_v<X, service::LoadResult>) {
          return {{"path", x.path}, {"model_id", x.model_id}, {"type", "load_weights"}};
        } else if constexpr (std::is_same_v<X, service::LoadAdapterResult>) {
          return {{"model_id", x.model_id}, {"adapter_path", x.adapter_path}, {"type", "load_adapter"}};
        } else {
          return {{"model_id", x.model_id}, {"type", "unload_model"}};
        }
      },
      r);
}

json failure_to_json(const service::RetrieveResult& r) {
  return {{"error", r.error}, {"category", service::category_name(r.category)}};
}

json checkpoint_to_json(const service::CheckpointRecord& r) {
  return {{"checkpoint_id", r.checkpoint_id()},
          {"checkpoint_type", service::kind_name(r.kind)},
          {"time", service::iso8601(r.created)},
          {"tinker_path", r.tinker_path()},
          {"size_bytes", r.size_bytes},
          {"public", r.is_public},
          {"expires_at", r.expires ? json(service::iso8601(*r.expires)) : json(nullptr)},
          {"user_metadata", r.user_metadata}};
}

json training_run_to_json(const service::TrainingRunInfo& r) {
  json j = {{"training_run_id", r.training_run_id},
            {"base_model", r.base_model},
            {"model_owner", r.model_owner},
            {"is_lora", r.is_lora},
            {"last_request_time", service::iso8601(r.last_request_time)},
            {"corrupted", false},
            {"user_metadata", r.user_metadata}};
  if (r.is_lora) j["lora_rank"] = r.lora_rank;
  if (r.last_checkpoint) j["last_checkpoint"] = checkpoint_to_json(*r.last_checkpoint);
  if (r.last_sampler_checkpoint) j["last_sampler_checkpoint"] = checkpoint_to_json(*r.last_sampler_checkpoint);
  return j;
}

CreateSessionBody create_session_from_json(const json& body) {
  CreateSessionBody b;
  if (auto it = body.find("tags"); it != body.end() && !it->is_null()) {
    if (!it->is_array() || !std::all_of(it->begin(), it->end(), [](const json& t) { return t.is_string(); }))
      throw InvalidRequest("field 'tags' must be a list of strings, got " + type_name(*it));
    b.tags = it->get<std::vector<std::string>>();
  }
  b.user_metadata = string_map(body, "user_metadata", "");
  b.project_id = optional_string(body, "project_id", "").value_or("");
  return b;
}

FinishSessionBody finish_session_from_json(const json& body) {
  FinishSessionBody f;
  f.reason = require_string(require(body, "reason", ""), "type", "reason");
  f.detail = optional_string(body, "detail", "").value_or("");
  return f;
}

service::CopyWeightsRequest copy_weights_from_json(const json& body) {
  service::CopyWeightsRequest r;
  r.session_id = require_string(body, "session_id", "");
  r.model_seq_id = require_int(body, "model_seq_id", "");
  r.source_path = require_string(body, "source_path", "");
  r.ttl_seconds = optional_int(body, "ttl_seconds", "");
  r.access_key = optional_string(body, "weights_access_token", "").value_or("");
  return r;
}

RetrieveFuturesBody retrieve_futures_from_json(const json& body) {
  RetrieveFuturesBody r;
  const json& target = require(body, "target", "");
  const std::string type = require_string(target, "type", "target");
  if (type != "sampling_session")
    throw InvalidRequest("field 'target.type' must be \"sampling_session\" (the only kind of futures target), got \"" +
                         type + "\"");
  r.sampling_session_id = require_string(target, "sampling_session_id", "target");
  optional_string(target, "cloned_sampler_id", "target");  // accepted; every client of the session sees all
  if (auto it = body.find("prev_cursor"); it != body.end() && !it->is_null()) {
    const auto bad = [] { return InvalidRequest("field 'prev_cursor' must be a cursor this server returned (a decimal string) or null"); };
    if (it->is_number_unsigned()) {
      r.cursor = it->get<uint64_t>();
    } else if (it->is_string()) {
      const std::string s = it->get<std::string>();
      if (s.empty() || s.size() > 19 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) throw bad();
      r.cursor = std::stoull(s);
    } else {
      throw bad();
    }
  }
  if (auto it = body.find("timeout"); it != body.end() && !it->is_null()) {
    if (!it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() < 0)
      throw InvalidRequest("field 'timeout' must be a number of seconds >= 0 or null");
    r.timeout_seconds = it->get<double>();
  }
  return r;
}

json completions_to_json(const std::vector<service::FutureTable::Completion>& done, uint64_t cursor) {
  json list = json::array();
  for (const auto& c : done) list.push_back({{"state", c.failed ? "failed" : "finished"}, {"request_id", c.request_id}});
  return {{"completions", list}, {"cursor", std::to_string(cursor)}};
}

std::vector<std::string> cancel_future_from_json(const json& body) {
  if (body.is_object() && body.contains("request_ids") && !body["request_ids"].is_null()) {
    const json& ids = body["request_ids"];
    if (!ids.is_array() || ids.empty() || ids.size() > kMaxCancelBatch)
      throw InvalidRequest("field 'request_ids' must be a list of 1 to " + std::to_string(kMaxCancelBatch) + " request ids");
    std::vector<std::string> out;
    for (const auto& id : ids) {
      if (!id.is_string()) throw InvalidRequest("field 'request_ids' must hold strings, got " + type_name(id));
      out.push_back(id.get<std::string>());
    }
    return out;
  }
  return {require_string(body, "request_id", "")};
}

json audit_entry_to_json(const service::AuditEntry& e) {
  json j = {{"timestamp", service::iso8601(e.time)}, {"event", e.event}, {"event_details", e.details}};
  if (!e.model_id.empty()) j["model_id"] = e.model_id;
  if (!e.tinker_path.empty()) j["tinker_path"] = e.tinker_path;
  if (!e.purpose.empty()) j["purpose"] = e.purpose;
  return j;
}

json submitted_to_json(const std::string& request_id, const std::string& model_id) {
  return {{"request_id", request_id}, {"model_id", model_id}};
}

json sample_submission_to_json(const service::SampleSubmission& s) {
  return {{"request_id", s.request_id}, {"sample_sequence_ids", s.sequence_ids}};
}

json try_again_to_json(const std::string& request_id, const std::string& queue_state, const std::string& reason) {
  json j = {{"type", "try_again"}, {"request_id", request_id}, {"queue_state", queue_state}};
  if (!reason.empty()) j["queue_state_reason"] = reason;
  return j;
}

json model_info_to_json(const service::ModelInfo& info) {
  json j = {{"model_id", info.model_id},
            {"model_data", {{"arch", "llama"}, {"model_name", info.base_model}, {"tokenizer_id", info.base_model}}},
            {"is_lora", !info.lora.full_parameter() && !info.base_only},
            {"model_name", info.base_model},
            {"type", "get_info"}};
  if (!info.lora.full_parameter()) j["lora_rank"] = info.lora.rank;
  return j;
}

json weights_info_to_json(const service::WeightsInfo& w) {
  json j = {{"base_model", w.base_model}, {"is_lora", w.is_lora}};
  if (w.is_lora) {
    j["lora_rank"] = w.lora_rank;
    j["train_attn"] = w.train_attn;
    j["train_mlp"] = w.train_mlp;
    j["train_unembed"] = w.train_unembed;
  }
  return j;
}

json session_to_json(const service::SessionInfo& s) {
  return {{"training_run_ids", s.training_run_ids}, {"sampler_ids", s.sampler_ids}};
}

json sampler_to_json(const service::SamplerInfo& s) {
  return {{"sampler_id", s.sampler_id}, {"base_model", s.base_model},
          {"model_path", s.model_path ? json(*s.model_path) : json(nullptr)}};
}

json capabilities_to_json(const model::ModelRegistry& registry) {
  json models = json::array();
  for (const auto& e : registry.entries()) models.push_back({{"model_name", e.name}, {"max_context_length", e.config.max_context}, {"trainable", true}, {"sampleable", true}});
  return {{"supported_models", models}};  // tinker 0.30+ reads trainable / sampleable too
}

}  // namespace kiln::wire
