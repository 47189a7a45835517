#include "model/registry.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "model/errors.hpp"

namespace kiln::model {
namespace {

TEST(Registry, BuiltinKeepsRealVocabulariesAndContexts) {
  const auto& r = ModelRegistry::builtin();
  EXPECT_EQ(r.get("Qwen/Qwen3-8B").config.vocab_size, 151936);
  EXPECT_EQ(r.get("Qwen/Qwen3-8B").config.max_context, 40960);
  EXPECT_EQ(r.get("Qwen/Qwen3-4B-Instruct-2507").config.vocab_size, 151936);
  EXPECT_EQ(r.get("accounts/fireworks/models/qwen3-8b").config.vocab_size, 151936);
  EXPECT_EQ(r.get("meta-llama/Llama-3.1-8B").config.vocab_size, 128256);
  EXPECT_EQ(r.get("meta-llama/Llama-3.1-8B").config.max_context, 131072);
  EXPECT_EQ(r.get("accounts/fireworks/models/llama-v3p1-8b-instruct").config.vocab_size, 128256);
  EXPECT_EQ(r.get("kiln/tiny").config.vocab_size, 256);
}

// The lineup both services train on (issue: Tinker's lineup and the Fireworks ids of the same
// families). Every stand-in carries the named model's sourced architecture and a factored head.
TEST(Registry, CoversTheLineupWithSourcedArchitectures) {
  const auto& r = ModelRegistry::builtin();
  for (const char* name :
       {"Qwen/Qwen3.5-4B", "Qwen/Qwen3.5-9B", "Qwen/Qwen3-0.6B", "Qwen/Qwen3-1.7B", "Qwen/Qwen3-4B", "Qwen/Qwen3-8B",
        "Qwen/Qwen3-14B", "Qwen/Qwen3-32B", "Qwen/Qwen3-30B-A3B", "Qwen/Qwen3-235B-A22B-Instruct-2507",
        "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-70B", "meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-3B",
        "meta-llama/Llama-3.3-70B-Instruct", "deepseek-ai/DeepSeek-V3.1", "openai/gpt-oss-20b", "openai/gpt-oss-120b",
        "moonshotai/Kimi-K2-Thinking", "accounts/fireworks/models/qwen3-8b", "accounts/fireworks/models/qwen3p5-9b",
        "accounts/fireworks/models/deepseek-v3p1", "accounts/fireworks/models/llama-v3p3-70b-instruct"}) {
    SCOPED_TRACE(name);
    const BaseModelEntry* e = r.find(name);
    ASSERT_NE(e, nullptr);
    ASSERT_TRUE(e->config.named);
    EXPECT_EQ(e->config.named->source.rfind("https://huggingface.co/", 0), 0u);
    EXPECT_TRUE(e->config.factored_head());
    EXPECT_FALSE(e->config.eos_token_ids.empty());
  }
  for (const auto& e : r.entries()) {
    const bool kilns_own = e.name.rfind("kiln/", 0) == 0;
    EXPECT_TRUE(kilns_own || e.config.named) << e.name << " has no sourced architecture";
  }
  // Figures of the vendor's end-to-end default, and an alias is the same model as its name.
  const auto& q35 = r.get("Qwen/Qwen3.5-4B").config;
  EXPECT_EQ(q35.vocab_size, 248320);
  EXPECT_EQ(q35.max_context, 262144);
  EXPECT_EQ(q35.named->hidden_size, 2560);
  EXPECT_EQ(q35.named->n_layers, 32);
  EXPECT_EQ(r.get("accounts/fireworks/models/qwen3p5-4b").alias_of, "Qwen/Qwen3.5-4B");
  EXPECT_EQ(r.get("accounts/fireworks/models/qwen3p5-4b").config, q35);
  EXPECT_EQ(r.get("Qwen/Qwen3-30B-A3B").config.named->experts, 128);  // a dense stand-in of an MoE model
  EXPECT_FALSE(r.get("kiln/tiny").config.named);
  EXPECT_FALSE(r.get("kiln/tiny").config.factored_head());
}

TEST(Registry, FamiliesAndTheStandinShapeFillAnEntry) {
  const auto doc = nlohmann::json::parse(R"({
      "standin": {"d_model": 8, "n_layers": 1, "n_heads": 2, "d_ff": 16, "head": "factored"},
      "families": {"f": {"vocab_size": 300, "eos_token_ids": [7], "rope_theta": 1e4, "norm_eps": 1e-5}},
      "models": [{"name": "a", "aliases": ["b"], "family": "f", "max_context": 64, "d_ff": 24,
                  "named": {"hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 4,
                            "num_attention_heads": 4, "source": "https://example.org/config.json"}}]})");
  const auto r = ModelRegistry::from_json(doc);
  const auto& c = r.get("a").config;
  EXPECT_EQ(c.vocab_size, 300);
  EXPECT_EQ(c.d_model, 8);
  EXPECT_EQ(c.d_ff, 24);  // the entry's own field wins
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{7});
  EXPECT_TRUE(c.factored_head());
  EXPECT_EQ(c.named->head_dim, 8);  // absent: hidden_size / heads
  EXPECT_EQ(r.get("b").config, c);
  auto bad = doc;
  bad["models"][0]["family"] = "g";
  try {
    ModelRegistry::from_json(bad);
    FAIL() << "expected an error";
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "models[0].family");
  }
  bad = doc;
  bad["models"][0]["named"]["source"] = "somewhere";
  try {
    ModelRegistry::from_json(bad);
    FAIL() << "expected an error";
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "models[0].named.source");
  }
}

TEST(Registry, UnknownNameListsTheKnownOnes) {
  try {
    ModelRegistry::builtin().get("gpt-17");
    FAIL() << "expected an error";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.field(), "base_model");
    EXPECT_NE(msg.find("unknown base model 'gpt-17'"), std::string::npos);
    EXPECT_NE(msg.find("kiln/tiny"), std::string::npos);
    EXPECT_NE(msg.find("Qwen/Qwen3-8B"), std::string::npos);
  }
}

TEST(Registry, RejectsBadDocuments) {
  EXPECT_THROW(ModelRegistry::from_json(nlohmann::json::object()), InputError);
  auto doc = nlohmann::json::parse(R"({"models": [{"name": "x", "vocab_size": 0, "d_model": 8,
      "n_layers": 1, "n_heads": 2, "d_ff": 8, "max_context": 8, "rope_theta": 1e4, "norm_eps": 1e-5}]})");
  try {
    ModelRegistry::from_json(doc);
    FAIL() << "expected an error";
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "models[0].vocab_size");
  }
  doc["models"][0]["vocab_size"] = 16;
  doc["models"].push_back(doc["models"][0]);
  EXPECT_THROW(ModelRegistry::from_json(doc), InputError);  // duplicate name
  EXPECT_THROW(ModelRegistry::from_file("/nonexistent/models.json"), InputError);
}

}  // namespace
}  // namespace kiln::model
