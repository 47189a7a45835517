#include "service/checkpoint_files.hpp"

#include <cstring>

#include "model/init.hpp"
#include "model/transformer.hpp"
#include "train/errors.hpp"
#include "train/tensor.hpp"

namespace kiln::service {

nlohmann::json hf_config(const ModelInfo& info) {
  const auto& c = info.config;
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"vocab_size", c.vocab_size},
          {"hidden_size", c.d_model},
          {"num_hidden_layers", c.n_layers},
          {"num_attention_heads", c.n_heads},
          {"num_key_value_heads", c.n_heads},
          {"intermediate_size", c.d_ff},
          {"max_position_embeddings", c.max_context},
          {"rope_theta", c.rope_theta},
          {"rms_norm_eps", c.norm_eps},
          {"hidden_act", "silu"},
          {"tie_word_embeddings", false},
          {"torch_dtype", "float32"},
          {"kiln_head", c.factored_head() ? "factored" : "dense"},
          {"kiln_base_model", info.base_model}};
}

std::vector<std::string> lora_target_modules(const model::LoraConfig& lora, const model::ModelConfig& config) {
  std::vector<std::string> targets;
  if (lora.train_attn) targets.insert(targets.end(), {"q_proj", "k_proj", "v_proj", "o_proj"});
  if (lora.train_mlp) targets.insert(targets.end(), {"gate_proj", "up_proj", "down_proj"});
  if (lora.train_unembed) {
    if (config.factored_head())
      targets.insert(targets.end(), {model::kLmHeadHiModule, model::kLmHeadLoModule});
    else
      targets.push_back("lm_head");
  }
  return targets;
}

nlohmann::json peft_config(const ModelInfo& info) {
  const std::vector<std::string> targets = lora_target_modules(info.lora, info.config);
  return {{"peft_type", "LORA"}, {"base_model_name_or_path", info.base_model}, {"r", info.lora.rank},
          {"lora_alpha", info.lora.effective_alpha()}, {"target_modules", targets}, {"bias", "none"},
          {"task_type", "CAUSAL_LM"}};
}

SafetensorsFile weights_file(const model::ParamSet<float>& params, const ModelInfo& info) {
  SafetensorsFile f;
  f.metadata = {{"format", "pt"}, {"kiln_base_model", info.base_model}};
  f.tensors = params;
  return f;
}

SafetensorsFile optimizer_file(const train::AdamState<float>& adam) {
  SafetensorsFile f;
  f.metadata = {{"format", "pt"}, {"step", std::to_string(adam.step)}};
  for (int i = 0; i < adam.m.size(); ++i) {
    f.tensors[f.tensors.add(adam.m[i].name + ".exp_avg", adam.m[i].shape)].data = adam.m[i].data;
    f.tensors[f.tensors.add(adam.v[i].name + ".exp_avg_sq", adam.v[i].shape)].data = adam.v[i].data;
  }
  return f;
}

model::ParamSet<float> arrange_like(const model::ParamSet<float>& like, const model::ParamSet<float>& file,
                                    const std::string& suffix, const std::string& what) {
  model::ParamSet<float> out;
  for (const auto& t : like) {
    const int i = file.find(t.name + suffix);
    if (i < 0) throw UserError(what + " lacks tensor '" + t.name + suffix + "'");
    if (file[i].shape != t.shape)
      throw UserError(what + " tensor '" + t.name + suffix + "' has shape " + train::shape_string(file[i].shape) +
                      ", the model needs " + train::shape_string(t.shape));
    out[out.add(t.name, t.shape)].data = file[i].data;
  }
  return out;
}

train::AdamState<float> read_adam(const model::ParamSet<float>& like, const SafetensorsFile& file,
                                  const std::string& what) {
  train::AdamState<float> adam;
  adam.m = arrange_like(like, file.tensors, ".exp_avg", what);
  adam.v = arrange_like(like, file.tensors, ".exp_avg_sq", what);
  auto step = file.metadata.find("step");
  try {
    adam.step = step == file.metadata.end() ? 0 : std::stoll(step->second);
  } catch (const std::exception&) {
    throw UserError(what + " has a malformed step '" + step->second + "'");
  }
  return adam;
}

namespace {
uint32_t bits_of(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
}
float float_of(uint32_t b) {
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}
}  // namespace

SafetensorsFile xor_delta(const model::ParamSet<float>& now, const model::ParamSet<float>& anchor,
                          const std::string& anchor_name, const std::string& base_model) {
  SafetensorsFile f;
  f.metadata = {{"format", "kiln-xor-delta"}, {"base_checkpoint", anchor_name}, {"kiln_base_model", base_model}};
  for (int i = 0; i < now.size(); ++i) {
    auto& w = f.words[f.words.add(now[i].name, now[i].shape)].data;
    for (size_t j = 0; j < w.size(); ++j) w[j] = bits_of(now[i].data[j]) ^ bits_of(anchor[i].data[j]);
  }
  return f;
}

bool is_xor_delta(const SafetensorsFile& file) {
  auto f = file.metadata.find("format");
  return f != file.metadata.end() && f->second == "kiln-xor-delta";
}

std::string xor_delta_anchor(const SafetensorsFile& file) {
  auto a = file.metadata.find("base_checkpoint");
  return a == file.metadata.end() ? "" : a->second;
}

void xor_apply(model::ParamSet<float>& weights, const SafetensorsFile& delta, const std::string& what) {
  for (auto& t : weights) {
    const int i = delta.words.find(t.name);
    if (i < 0 || delta.words[i].data.size() != t.data.size()) throw UserError(what + " lacks delta tensor '" + t.name + "'");
    for (size_t j = 0; j < t.data.size(); ++j) t.data[j] = float_of(bits_of(t.data[j]) ^ delta.words[i].data[j]);
  }
}

}  // namespace kiln::service
