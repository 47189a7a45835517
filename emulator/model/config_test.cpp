#include "model/config.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "model/errors.hpp"

namespace kiln::model {
namespace {

std::string error_of(const LoraConfig& c) {
  try {
    c.validate();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(LoraConfig, RankRulesUseTheSpecTexts) {
  EXPECT_EQ(error_of({.rank = 0}), "");
  EXPECT_EQ(error_of({.rank = 8}), "");
  EXPECT_NE(error_of({.rank = -1}).find("lora_config.rank must be positive"), std::string::npos);
  EXPECT_NE(error_of({.rank = 12}).find("lora_config.rank must be a power of 2, got 12"), std::string::npos);
  EXPECT_NE(error_of({.rank = 4, .train_attn = false, .train_mlp = false, .train_unembed = false})
                .find("At least one of train_unembed, train_mlp, or train_attn must be True"),
            std::string::npos);
}

TEST(LoraConfig, AlphaDefaultsToTwiceTheRank) {
  EXPECT_DOUBLE_EQ(LoraConfig{.rank = 8}.scale(), 2.0);
  EXPECT_DOUBLE_EQ((LoraConfig{.rank = 8, .alpha = 32}.scale()), 4.0);
}

TEST(ModelConfig, ValidationNamesTheField) {
  ModelConfig c;
  c.n_heads = 3;  // does not divide 64
  try {
    c.validate();
    FAIL() << "expected an error";
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "n_heads");
    EXPECT_NE(std::string(e.what()).find("must divide d_model 64, got 3"), std::string::npos);
  }
  c = ModelConfig{};
  c.vocab_size = 0;
  EXPECT_THROW(c.validate(), InputError);
}

TEST(ModelConfig, JsonRoundTrip) {
  ModelConfig c{.vocab_size = 151936, .d_model = 64, .n_layers = 2, .n_heads = 4, .d_ff = 192,
                .max_context = 40960, .rope_theta = 1e6, .norm_eps = 1e-6, .eos_token_ids = {151643, 151645}};
  EXPECT_EQ(nlohmann::json(c).get<ModelConfig>(), c);
}

}  // namespace
}  // namespace kiln::model
