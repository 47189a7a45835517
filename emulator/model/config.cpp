#include "model/config.hpp"

#include <cmath>

#include <nlohmann/json.hpp>

#include "model/errors.hpp"

namespace kiln::model {
namespace {

void require_positive(const char* field, int64_t value) {
  if (value <= 0) throw InputError(field, "must be positive, got " + std::to_string(value));
}

}  // namespace

void ModelConfig::validate() const {
  require_positive("vocab_size", vocab_size);
  require_positive("d_model", d_model);
  require_positive("n_layers", n_layers);
  require_positive("n_heads", n_heads);
  require_positive("d_ff", d_ff);
  require_positive("max_context", max_context);
  if (d_model % n_heads != 0)
    throw InputError("n_heads", "must divide d_model " + std::to_string(d_model) + ", got " +
                                    std::to_string(n_heads));
  if (head_dim() % 2 != 0)
    throw InputError("n_heads", "head dimension d_model/n_heads must be even for rotary "
                                "embeddings, got " + std::to_string(head_dim()));
  if (!(rope_theta > 0.0) || !std::isfinite(rope_theta))
    throw InputError("rope_theta", "must be a positive finite number");
  if (!(norm_eps > 0.0) || !std::isfinite(norm_eps))
    throw InputError("norm_eps", "must be a positive finite number");
  if (named) {
    const auto& n = *named;
    for (auto [field, v] : {std::pair{"named.hidden_size", n.hidden_size}, {"named.intermediate_size", n.intermediate_size},
                            {"named.num_hidden_layers", n.n_layers}, {"named.num_attention_heads", n.n_heads},
                            {"named.num_key_value_heads", n.n_kv_heads}, {"named.head_dim", n.head_dim}})
      require_positive(field, v);
    if (n.source.rfind("https://", 0) != 0)
      throw InputError("named.source", "must be the https:// address of the published configuration");
  }
  for (int64_t id : eos_token_ids)
    if (id < 0 || id >= vocab_size)
      throw InputError("eos_token_ids", "token id " + std::to_string(id) + " is out of range [0, " +
                                            std::to_string(vocab_size) + ")");
}

void to_json(nlohmann::json& j, const ModelConfig& c) {
  j = {{"vocab_size", c.vocab_size}, {"d_model", c.d_model},     {"n_layers", c.n_layers},
       {"n_heads", c.n_heads},       {"d_ff", c.d_ff},           {"max_context", c.max_context},
       {"rope_theta", c.rope_theta}, {"norm_eps", c.norm_eps}};
  if (!c.eos_token_ids.empty()) j["eos_token_ids"] = c.eos_token_ids;
  if (c.factored_head()) j["head"] = "factored";
  if (c.named) {
    const auto& n = *c.named;
    j["named"] = {{"hidden_size", n.hidden_size},   {"intermediate_size", n.intermediate_size},
                  {"num_hidden_layers", n.n_layers}, {"num_attention_heads", n.n_heads},
                  {"num_key_value_heads", n.n_kv_heads}, {"head_dim", n.head_dim}, {"source", n.source}};
    if (n.experts > 0) {
      j["named"]["experts"] = n.experts;
      j["named"]["experts_per_token"] = n.experts_per_token;
    }
  }
}

void require_representable_numbers(const nlohmann::json& doc, const std::string& what) {
  if (doc.is_number_float()) {
    const double x = doc.get<double>();
    if (!std::isfinite(x) || std::fabs(x) >= 2147483648.0)
      throw InputError(what, "holds the number " + doc.dump() + ", outside the range Kiln reads");
  }
  if (doc.is_structured())
    for (const auto& v : doc) require_representable_numbers(v, what);
}

void from_json(const nlohmann::json& j, ModelConfig& c) {
  require_representable_numbers(j, "config");
  j.at("vocab_size").get_to(c.vocab_size);
  j.at("d_model").get_to(c.d_model);
  j.at("n_layers").get_to(c.n_layers);
  j.at("n_heads").get_to(c.n_heads);
  j.at("d_ff").get_to(c.d_ff);
  j.at("max_context").get_to(c.max_context);
  j.at("rope_theta").get_to(c.rope_theta);
  j.at("norm_eps").get_to(c.norm_eps);
  c.eos_token_ids = j.value("eos_token_ids", std::vector<int64_t>{});
  const std::string head = j.value("head", std::string("dense"));
  if (head != "dense" && head != "factored")
    throw InputError("head", "must be \"dense\" or \"factored\", got \"" + head + "\"");
  c.head = head == "factored" ? HeadKind::factored : HeadKind::dense;
  c.named.reset();
  if (auto it = j.find("named"); it != j.end() && !it->is_null()) {
    NamedArchitecture n;
    it->at("hidden_size").get_to(n.hidden_size);
    it->at("intermediate_size").get_to(n.intermediate_size);
    it->at("num_hidden_layers").get_to(n.n_layers);
    it->at("num_attention_heads").get_to(n.n_heads);
    n.n_kv_heads = it->value("num_key_value_heads", n.n_heads);
    n.head_dim = it->value("head_dim", n.n_heads > 0 ? n.hidden_size / n.n_heads : 0);
    n.experts = it->value("experts", int64_t{0});
    n.experts_per_token = it->value("experts_per_token", int64_t{0});
    n.source = it->value("source", std::string());
    c.named = n;
  }
}

void LoraConfig::validate() const {
  if (rank < 0) throw InputError("lora_config.rank", "lora_config.rank must be positive");
  if (rank > 0 && (rank & (rank - 1)) != 0)
    throw InputError("lora_config.rank", "lora_config.rank must be a power of 2, got " +
                                             std::to_string(rank));
  if (rank > 0 && !train_attn && !train_mlp && !train_unembed)
    throw InputError("lora_config",
                     "At least one of train_unembed, train_mlp, or train_attn must be True");
  if (!std::isfinite(alpha) || alpha < 0.0)
    throw InputError("lora_config.alpha", "must be a finite number >= 0");
}

void to_json(nlohmann::json& j, const LoraConfig& c) {
  j = {{"rank", c.rank},
       {"alpha", c.effective_alpha()},
       {"seed", c.seed},
       {"train_attn", c.train_attn},
       {"train_mlp", c.train_mlp},
       {"train_unembed", c.train_unembed}};
}

void from_json(const nlohmann::json& j, LoraConfig& c) {
  c = LoraConfig{};
  j.at("rank").get_to(c.rank);
  if (j.contains("alpha") && !j.at("alpha").is_null()) j.at("alpha").get_to(c.alpha);
  if (j.contains("seed") && !j.at("seed").is_null()) j.at("seed").get_to(c.seed);
  if (j.contains("train_attn")) j.at("train_attn").get_to(c.train_attn);
  if (j.contains("train_mlp")) j.at("train_mlp").get_to(c.train_mlp);
  if (j.contains("train_unembed")) j.at("train_unembed").get_to(c.train_unembed);
}

}  // namespace kiln::model
