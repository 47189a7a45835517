#pragma once
// Deterministic initialisation of base weights and LoRA adapters, and the Llama / PEFT tensor
// names both use.
#include <cstdint>
#include <memory>
#include <string>

#include "model/config.hpp"
#include "model/params.hpp"

namespace kiln::model {

// Names of the projections that LoRA can adapt, in the order they appear in a layer.
enum class Proj { q, k, v, o, gate, up, down };
inline constexpr Proj kAttnProjs[] = {Proj::q, Proj::k, Proj::v, Proj::o};
inline constexpr Proj kMlpProjs[] = {Proj::gate, Proj::up, Proj::down};

std::string proj_name(int layer, Proj p);  // "model.layers.3.self_attn.q_proj"
inline const char* kEmbedName = "model.embed_tokens.weight";
inline const char* kFinalNormName = "model.norm.weight";
inline const char* kLmHeadName = "lm_head.weight";
// A factored head (HeadKind::factored) replaces the two V-row tensors with two pairs: the
// embedding and head rows of an id's high part hi = t / m and low part lo = t % m.
inline const char* kEmbedHiName = "model.embed_tokens_hi.weight";  // [A, d]
inline const char* kEmbedLoName = "model.embed_tokens_lo.weight";  // [m, d]
inline const char* kLmHeadHiModule = "lm_head_hi";                 // weight [A, d]
inline const char* kLmHeadLoModule = "lm_head_lo";                 // weight [m, d]
std::string input_norm_name(int layer);
std::string post_attn_norm_name(int layer);
// PEFT adapter names: "base_model.model.<module>.lora_A.weight".
std::string lora_a_name(const std::string& module);
std::string lora_b_name(const std::string& module);

// Base weights for (base model name, seed): N(0, 0.02) for embeddings, heads and projections,
// N(0, 0.02/sqrt(2·n_layers)) for the residual-output projections (o_proj, down_proj), ones for
// norms. Values are drawn in double and rounded to T, so float and double models agree.
template <typename T>
ParamSet<T> init_base_weights(const ModelConfig& config, const std::string& base_name, uint64_t seed);

// Process-wide sharing of immutable base weights: models on the same (name, config, seed) get the
// same object, so a LoRA model costs its adapters only. Entries live while a model holds them.
template <typename T>
std::shared_ptr<const ParamSet<T>> shared_base_weights(const ModelConfig& config,
                                                       const std::string& base_name, uint64_t seed);

// LoRA adapters for the modules `lora` selects: A [r, in] uniform(±1/sqrt(in)) from lora.seed,
// B [out, r] zero, so a fresh adapter leaves the model equal to its base.
template <typename T>
ParamSet<T> init_lora_adapters(const ModelConfig& config, const LoraConfig& lora);

}  // namespace kiln::model
