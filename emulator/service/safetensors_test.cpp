#include "service/safetensors.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace kiln::service {
namespace {

TEST(Safetensors, RoundTripsFloatAndWordTensorsBitForBit) {
  SafetensorsFile f;
  f.metadata = {{"format", "pt"}, {"step", "3"}};
  const model::AlignedVector<float> a{1.5f, -0.0f, 3.25e-8f};
  f.tensors[f.tensors.add("model.norm.weight", {3})].data = a;
  f.tensors[f.tensors.add("lm_head.weight", {2, 2})].data = {1, 2, 3, 4};
  f.words[f.words.add("delta", {2})].data = {0xdeadbeef, 7};
  const std::string bytes = encode_safetensors(f);
  const SafetensorsFile g = decode_safetensors(bytes);
  EXPECT_EQ(g.metadata, f.metadata);
  ASSERT_EQ(g.tensors.size(), 2);
  EXPECT_EQ(g.tensors[0].name, "model.norm.weight");
  EXPECT_EQ(g.tensors[0].data, a);
  EXPECT_TRUE(std::signbit(g.tensors[0].data[1]));
  EXPECT_EQ(g.tensors[1].shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(g.words[0].data[0], 0xdeadbeefu);
}

TEST(Safetensors, LayoutFollowsTheFormat) {
  SafetensorsFile f;
  f.tensors[f.tensors.add("x", {2})].data = {1, 2};
  const std::string bytes = encode_safetensors(f);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  EXPECT_EQ((8 + n) % 8, 0u);  // data 8-byte aligned
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["x"]["dtype"], "F32");
  EXPECT_EQ(header["x"]["data_offsets"], nlohmann::json::array({0, 8}));
  EXPECT_EQ(bytes.size(), 8 + n + 8);
}

TEST(Safetensors, MalformedFilesAreRejectedWithAReason) {
  EXPECT_THROW(decode_safetensors("abc"), std::runtime_error);
  std::string bad(8, '\0');
  bad[0] = 100;
  EXPECT_THROW(decode_safetensors(bad), std::runtime_error);
  SafetensorsFile f;
  f.tensors[f.tensors.add("x", {4})].data = {1, 2, 3, 4};
  std::string bytes = encode_safetensors(f);
  bytes.resize(bytes.size() - 4);  // truncated data
  EXPECT_THROW(decode_safetensors(bytes), std::runtime_error);
}

}  // namespace
}  // namespace kiln::service
