#pragma once
// Architecture of a Llama-style decoder and the LoRA configuration of a trainable model.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace kiln::model {

// How token ids map to embeddings and logits. dense: one row per id (a V×d embedding and head).
// factored: id t = hi·m + lo with m = ceil(sqrt(V)); embedding E_hi[hi] + E_lo[lo], logits
// α[hi] + β[lo] — exact over all V ids at O(sqrt(V)·d) per token (see FactoredVocab, layers.hpp).
enum class HeadKind { dense, factored };

// The published architecture of the model a stand-in is named after (its Hugging Face config):
// what the stand-in's initialisation and update sizes are calibrated against (calibration.hpp).
// Mixture-of-experts models get dense stand-ins; their experts are recorded, not modelled.
struct NamedArchitecture {
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // the MLP's (for MoE models: one expert's)
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t experts = 0, experts_per_token = 0;  // 0: dense
  std::string source;                           // the config's public URL
  bool operator==(const NamedArchitecture&) const = default;
};

struct ModelConfig {
  int64_t vocab_size = 256;
  int64_t d_model = 64;
  int64_t n_layers = 2;
  int64_t n_heads = 4;
  int64_t d_ff = 128;
  int64_t max_context = 1024;
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  std::vector<int64_t> eos_token_ids;  // end a sampled sequence (stop_reason "stop"); may be empty
  HeadKind head = HeadKind::dense;
  std::optional<NamedArchitecture> named;  // absent for Kiln's own models (kiln/tiny, kiln/small)

  int64_t head_dim() const { return d_model / n_heads; }
  bool factored_head() const { return head == HeadKind::factored; }
  // Throws InputError naming the first field that is out of its range.
  void validate() const;
  bool operator==(const ModelConfig&) const = default;
};

// Files Kiln reads back (checkpoint metadata, a --models registry) hold integers where a number
// is read into an integer field; nlohmann converts a floating-point value by a plain cast, which
// is undefined beyond the target's range. Throws InputError naming `what` if any number in `doc`
// is non-finite or a floating-point value of magnitude 2^31 or more (found by fuzzing).
void require_representable_numbers(const nlohmann::json& doc, const std::string& what);

void to_json(nlohmann::json& j, const ModelConfig& c);
void from_json(const nlohmann::json& j, ModelConfig& c);

// rank 0 means full-parameter training; otherwise adapters W + (alpha/rank)·B·A.
struct LoraConfig {
  int64_t rank = 0;
  double alpha = 0.0;  // 0 means "absent": 2·rank (spec protocol.md rule C2)
  uint64_t seed = 0;
  bool train_attn = true;
  bool train_mlp = true;
  bool train_unembed = true;

  bool full_parameter() const { return rank == 0; }
  double scale() const { return rank == 0 ? 0.0 : effective_alpha() / static_cast<double>(rank); }
  double effective_alpha() const { return alpha > 0.0 ? alpha : 2.0 * static_cast<double>(rank); }
  // Throws InputError with the spec's texts (protocol.md rule C1).
  void validate() const;
  bool operator==(const LoraConfig&) const = default;
};

void to_json(nlohmann::json& j, const LoraConfig& c);
void from_json(const nlohmann::json& j, LoraConfig& c);

}  // namespace kiln::model
