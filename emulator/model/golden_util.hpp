#pragma once
// Test helpers for the golden fixtures written by fixtures/golden/*.py.
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "model/init.hpp"
#include "model/rng.hpp"
#include "model/transformer.hpp"

namespace kiln::model {

// Reads fixtures/<relative> ($KILN_FIXTURES, set by CTest, or ./fixtures).
inline nlohmann::json load_fixture(const std::string& relative) {
  const char* dir = std::getenv("KILN_FIXTURES");
  const std::string path = std::string(dir ? dir : "fixtures") + "/" + relative;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  return nlohmann::json::parse(in);
}

// The reference's perturbation: tensor += std·N(0,1) from the stream (owner, tensor name, 0).
template <typename T>
void perturb_like_reference(ParamSet<T>& p, const std::string& owner, double std, bool only_lora_b) {
  for (auto& t : p) {
    if (only_lora_b && t.name.find("lora_B") == std::string::npos) continue;
    SplitMix64 rng = tensor_stream(owner, t.name, 0);
    for (auto& x : t.data) x = static_cast<T>(static_cast<double>(x) + std * rng.normal());
  }
}

// The golden scripts' model: base weights of (doc.base_model, doc.seed) perturbed by
// "golden-perturb" 0.1, and for LoRA, adapters whose B is perturbed by "golden-b" 0.05.
template <typename T>
Transformer<T> golden_model(const nlohmann::json& doc, const LoraConfig& lora) {
  const auto config = doc["config"].get<ModelConfig>();
  auto base = init_base_weights<double>(config, doc["base_model"], doc["seed"]);
  perturb_like_reference(base, "golden-perturb", 0.1, false);
  Transformer<T> model(config, std::make_shared<const ParamSet<T>>(base.template cast<T>()), lora);
  if (!lora.full_parameter()) {
    auto adapters = model.params().template cast<double>();
    perturb_like_reference(adapters, "golden-b", 0.05, true);
    model.params() = adapters.template cast<T>();
  }
  return model;
}

}  // namespace kiln::model
