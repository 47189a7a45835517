#include "model/init.hpp"

#include <gtest/gtest.h>

#include "model/registry.hpp"

namespace kiln::model {
namespace {

const ModelConfig& tiny() { return ModelRegistry::builtin().get("kiln/tiny").config; }

TEST(Init, SameNameAndSeedGiveBitwiseEqualWeights) {
  const auto a = init_base_weights<float>(tiny(), "kiln/tiny", 0);
  const auto b = init_base_weights<float>(tiny(), "kiln/tiny", 0);
  ASSERT_EQ(a.size(), b.size());
  for (int i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].data, b[i].data) << a[i].name;
}

TEST(Init, NameAndSeedBothMatter) {
  const auto a = init_base_weights<float>(tiny(), "kiln/tiny", 0);
  const auto b = init_base_weights<float>(tiny(), "kiln/tiny", 1);
  const auto c = init_base_weights<float>(tiny(), "other/name", 0);
  const int e = a.find(kEmbedName);
  EXPECT_NE(a[e].data, b[e].data);
  EXPECT_NE(a[e].data, c[e].data);
}

TEST(Init, FloatIsDoubleRounded) {
  const auto f = init_base_weights<float>(tiny(), "kiln/tiny", 5);
  const auto d = init_base_weights<double>(tiny(), "kiln/tiny", 5);
  for (int i = 0; i < f.size(); ++i)
    for (size_t j = 0; j < f[i].data.size(); ++j)
      ASSERT_EQ(f[i].data[j], static_cast<float>(d[i].data[j])) << f[i].name;
}

TEST(Init, LlamaNamesAndShapes) {
  const auto p = init_base_weights<float>(tiny(), "kiln/tiny", 0);
  const auto& c = tiny();
  EXPECT_EQ(p[p.find("model.embed_tokens.weight")].shape, (std::vector<int64_t>{c.vocab_size, c.d_model}));
  EXPECT_EQ(p[p.find("model.layers.1.mlp.down_proj.weight")].shape, (std::vector<int64_t>{c.d_model, c.d_ff}));
  EXPECT_EQ(p[p.find("lm_head.weight")].shape, (std::vector<int64_t>{c.vocab_size, c.d_model}));
  EXPECT_GE(p.find("model.layers.0.post_attention_layernorm.weight"), 0);
  EXPECT_EQ(p.size(), 2 + 9 * static_cast<int>(c.n_layers) + 1);
}

TEST(Init, BaseWeightsAreSharedWhileHeld) {
  auto a = shared_base_weights<float>(tiny(), "kiln/tiny", 0);
  auto b = shared_base_weights<float>(tiny(), "kiln/tiny", 0);
  auto c = shared_base_weights<float>(tiny(), "kiln/tiny", 1);
  EXPECT_EQ(a.get(), b.get());
  EXPECT_NE(a.get(), c.get());
}

TEST(Init, LoraAdaptersFollowTheTrainFlags) {
  LoraConfig lora{.rank = 4, .seed = 9, .train_attn = true, .train_mlp = false, .train_unembed = true};
  const auto p = init_lora_adapters<float>(tiny(), lora);
  EXPECT_EQ(p.size(), 2 * (4 * static_cast<int>(tiny().n_layers) + 1));
  const int a = p.find("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  const int b = p.find("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  EXPECT_EQ(p[a].shape, (std::vector<int64_t>{4, tiny().d_model}));
  EXPECT_EQ(p[b].shape, (std::vector<int64_t>{tiny().d_model, 4}));
  for (float x : p[b].data) EXPECT_EQ(x, 0.0f);
  bool any_nonzero = false;
  for (float x : p[a].data) any_nonzero |= x != 0.0f;
  EXPECT_TRUE(any_nonzero);
  EXPECT_LT(p.find("base_model.model.model.layers.0.mlp.up_proj.lora_A.weight"), 0);
  EXPECT_GE(p.find("base_model.model.lm_head.lora_A.weight"), 0);
}

}  // namespace
}  // namespace kiln::model
