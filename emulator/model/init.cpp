#include "model/init.hpp"

#include <cmath>
#include <map>
#include <mutex>
#include <tuple>

#include <nlohmann/json.hpp>

#include "model/calibration.hpp"
#include "model/layers.hpp"
#include "model/rng.hpp"

namespace kiln::model {

std::string proj_name(int layer, Proj p) {
  static const char* names[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                "mlp.down_proj"};
  return "model.layers." + std::to_string(layer) + "." + names[static_cast<int>(p)];
}
std::string input_norm_name(int layer) {
  return "model.layers." + std::to_string(layer) + ".input_layernorm.weight";
}
std::string post_attn_norm_name(int layer) {
  return "model.layers." + std::to_string(layer) + ".post_attention_layernorm.weight";
}
std::string lora_a_name(const std::string& module) {
  return "base_model.model." + module + ".lora_A.weight";
}
std::string lora_b_name(const std::string& module) {
  return "base_model.model." + module + ".lora_B.weight";
}

namespace {

// N(0, std²) scaled by the stand-in calibration's gain for this tensor (1 for Kiln's own models).
template <typename T>
void fill_normal(Tensor<T>& t, const ModelConfig& c, const std::string& owner, uint64_t seed, double std) {
  std *= init_gain(t.name, c);
  SplitMix64 rng = tensor_stream(owner, t.name, seed);
  for (auto& x : t.data) x = static_cast<T>(std * rng.normal());
}

}  // namespace

template <typename T>
ParamSet<T> init_base_weights(const ModelConfig& c, const std::string& base_name, uint64_t seed) {
  c.validate();
  const double std = 0.02;
  const double resid_std = 0.02 / std::sqrt(2.0 * static_cast<double>(c.n_layers));
  ParamSet<T> p;
  const FactoredVocab fv(c.vocab_size);
  if (c.factored_head()) {
    fill_normal(p[p.add(kEmbedHiName, {fv.A, c.d_model})], c, base_name, seed, std);
    fill_normal(p[p.add(kEmbedLoName, {fv.m, c.d_model})], c, base_name, seed, std);
  } else {
    fill_normal(p[p.add(kEmbedName, {c.vocab_size, c.d_model})], c, base_name, seed, std);
  }
  for (int l = 0; l < c.n_layers; ++l) {
    auto& n1 = p[p.add(input_norm_name(l), {c.d_model})];
    std::fill(n1.data.begin(), n1.data.end(), T(1));
    for (Proj pr : kAttnProjs) {
      const double s = pr == Proj::o ? resid_std : std;
      fill_normal(p[p.add(proj_name(l, pr) + ".weight", {c.d_model, c.d_model})], c, base_name, seed, s);
    }
    auto& n2 = p[p.add(post_attn_norm_name(l), {c.d_model})];
    std::fill(n2.data.begin(), n2.data.end(), T(1));
    fill_normal(p[p.add(proj_name(l, Proj::gate) + ".weight", {c.d_ff, c.d_model})], c, base_name, seed, std);
    fill_normal(p[p.add(proj_name(l, Proj::up) + ".weight", {c.d_ff, c.d_model})], c, base_name, seed, std);
    fill_normal(p[p.add(proj_name(l, Proj::down) + ".weight", {c.d_model, c.d_ff})], c, base_name, seed,
                resid_std);
  }
  auto& nf = p[p.add(kFinalNormName, {c.d_model})];
  std::fill(nf.data.begin(), nf.data.end(), T(1));
  if (c.factored_head()) {
    fill_normal(p[p.add(std::string(kLmHeadHiModule) + ".weight", {fv.A, c.d_model})], c, base_name, seed, std);
    fill_normal(p[p.add(std::string(kLmHeadLoModule) + ".weight", {fv.m, c.d_model})], c, base_name, seed, std);
  } else {
    fill_normal(p[p.add(kLmHeadName, {c.vocab_size, c.d_model})], c, base_name, seed, std);
  }
  return p;
}

template <typename T>
std::shared_ptr<const ParamSet<T>> shared_base_weights(const ModelConfig& c,
                                                       const std::string& base_name, uint64_t seed) {
  using Key = std::tuple<std::string, uint64_t, std::string>;  // name, seed, the config as JSON
  static std::mutex mu;
  static std::map<Key, std::weak_ptr<const ParamSet<T>>> cache;
  const Key key{base_name, seed, nlohmann::json(c).dump()};
  std::lock_guard lock(mu);
  if (auto hit = cache[key].lock()) return hit;
  auto made = std::make_shared<const ParamSet<T>>(init_base_weights<T>(c, base_name, seed));
  cache[key] = made;
  return made;
}

template <typename T>
ParamSet<T> init_lora_adapters(const ModelConfig& c, const LoraConfig& lora) {
  lora.validate();
  ParamSet<T> p;
  if (lora.full_parameter()) return p;
  auto add_adapter = [&](const std::string& module, int64_t out, int64_t in) {
    auto& a = p[p.add(lora_a_name(module), {lora.rank, in})];
    SplitMix64 rng = tensor_stream("lora", a.name, lora.seed);
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    for (auto& x : a.data) x = static_cast<T>(bound * (2.0 * rng.uniform() - 1.0));
    p.add(lora_b_name(module), {out, lora.rank});
  };
  for (int l = 0; l < c.n_layers; ++l) {
    if (lora.train_attn)
      for (Proj pr : kAttnProjs) add_adapter(proj_name(l, pr), c.d_model, c.d_model);
    if (lora.train_mlp) {
      add_adapter(proj_name(l, Proj::gate), c.d_ff, c.d_model);
      add_adapter(proj_name(l, Proj::up), c.d_ff, c.d_model);
      add_adapter(proj_name(l, Proj::down), c.d_model, c.d_ff);
    }
  }
  if (lora.train_unembed) {
    if (c.factored_head()) {
      const FactoredVocab fv(c.vocab_size);
      add_adapter(kLmHeadHiModule, fv.A, c.d_model);
      add_adapter(kLmHeadLoModule, fv.m, c.d_model);
    } else {
      add_adapter("lm_head", c.vocab_size, c.d_model);
    }
  }
  return p;
}

template ParamSet<float> init_base_weights<float>(const ModelConfig&, const std::string&, uint64_t);
template ParamSet<double> init_base_weights<double>(const ModelConfig&, const std::string&, uint64_t);
template std::shared_ptr<const ParamSet<float>> shared_base_weights<float>(const ModelConfig&,
                                                                         const std::string&, uint64_t);
template std::shared_ptr<const ParamSet<double>> shared_base_weights<double>(const ModelConfig&,
                                                                           const std::string&, uint64_t);
template ParamSet<float> init_lora_adapters<float>(const ModelConfig&, const LoraConfig&);
template ParamSet<double> init_lora_adapters<double>(const ModelConfig&, const LoraConfig&);

}  // namespace kiln::model
