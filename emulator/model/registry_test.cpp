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
