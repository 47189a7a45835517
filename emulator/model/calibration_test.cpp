// The stand-in calibration's factors for each kind of tensor (calibration.hpp).
#include "model/calibration.hpp"

#include <cmath>

#include <gtest/gtest.h>

#include "model/init.hpp"
#include "model/registry.hpp"

namespace kiln::model {
namespace {

TEST(Calibration, WidthRatiosFollowTheNamedModelsFanIns) {
  const auto& c = ModelRegistry::builtin().get("Qwen/Qwen3-8B").config;  // 4096 wide, 12288 MLP; stand-in 64 / 192
  EXPECT_DOUBLE_EQ(width_ratio("model.layers.0.self_attn.q_proj.weight", c), 64.0);
  EXPECT_DOUBLE_EQ(width_ratio("model.layers.1.self_attn.o_proj.weight", c), 64.0);   // 32 heads · 128
  EXPECT_DOUBLE_EQ(width_ratio("model.layers.0.mlp.down_proj.weight", c), 64.0);      // 12288 / 192
  EXPECT_DOUBLE_EQ(width_ratio("lm_head_hi.weight", c), 64.0);
  EXPECT_DOUBLE_EQ(width_ratio("base_model.model.model.layers.0.mlp.up_proj.lora_A.weight", c), 64.0);
  EXPECT_DOUBLE_EQ(width_ratio("base_model.model.model.layers.0.mlp.up_proj.lora_B.weight", c), 1.0);
  EXPECT_DOUBLE_EQ(width_ratio("base_model.model.lm_head_lo.lora_B.weight", c), 64.0);
  EXPECT_DOUBLE_EQ(width_ratio("model.embed_tokens_hi.weight", c), 1.0);
  EXPECT_DOUBLE_EQ(width_ratio("model.layers.0.input_layernorm.weight", c), 1.0);
  EXPECT_DOUBLE_EQ(init_gain("model.layers.0.self_attn.k_proj.weight", c), 8.0);
  EXPECT_DOUBLE_EQ(init_gain("lm_head_hi.weight", c), 8.0 * kHeadGain);
  // The 30B-A3B MoE's down_proj reads one expert's 768 units: a ratio of 4 against 192.
  EXPECT_DOUBLE_EQ(width_ratio("model.layers.0.mlp.down_proj.weight", ModelRegistry::builtin().get("Qwen/Qwen3-30B-A3B").config), 4.0);
}

TEST(Calibration, KilnsOwnModelsAreTextbook) {
  const auto& c = ModelRegistry::builtin().get("kiln/tiny").config;
  EXPECT_DOUBLE_EQ(width_ratio("model.layers.0.self_attn.q_proj.weight", c), 1.0);
  EXPECT_DOUBLE_EQ(init_gain("lm_head.weight", c), 1.0);
  EXPECT_TRUE(update_scale(init_base_weights<float>(c, "kiln/tiny", 0), c).empty());
}

TEST(Calibration, InitialisationCarriesTheGain) {
  auto c = ModelRegistry::builtin().get("Qwen/Qwen3-8B").config;
  const auto calibrated = init_base_weights<double>(c, "Qwen/Qwen3-8B", 0);
  c.named.reset();
  const auto textbook = init_base_weights<double>(c, "Qwen/Qwen3-8B", 0);
  for (const char* name : {"model.layers.0.self_attn.q_proj.weight", "lm_head_hi.weight", "model.embed_tokens_lo.weight"}) {
    const int i = calibrated.find(name);
    ASSERT_GE(i, 0) << name;
    c.named = ModelRegistry::builtin().get("Qwen/Qwen3-8B").config.named;
    const double gain = init_gain(name, c);
    c.named.reset();
    for (size_t j = 0; j < 5; ++j) EXPECT_NEAR(calibrated[i].data[j], gain * textbook[i].data[j], 1e-12) << name;
  }
}

}  // namespace
}  // namespace kiln::model
