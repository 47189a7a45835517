// The protobuf codec against the spec's hex test vectors (protocol.md §W8.3, §W8.4), byte for byte.
#include "wire/proto_codec.hpp"

#include <zstd.h>

#include <cmath>
#include <cstring>

#include <gtest/gtest.h>

#include "tinker_public.pb.h"
#include "wire/sparse_csr.hpp"
#include "train/errors.hpp"

namespace kiln::wire {
namespace {

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

std::string to_hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) out += {digits[c >> 4], digits[c & 15]};
  return out;
}

const std::string kRequestVector =
    "0a09733a747261696e3a3010011a540a0c0a0a0a080100000002000000121a0a0777656967687473120f0a08000000000000803f1801"
    "22010212280a0d7461726765745f746f6b656e7312170a10020000000000000003000000000000001802220102220d63726f73735f656e"
    "74726f7079";

TEST(ProtoCodec, DecodesTheSpecRequestVector) {
  const auto r = forward_backward_from_proto(from_hex(kRequestVector));
  EXPECT_EQ(r.model_id, "s:train:0");
  EXPECT_EQ(r.seq_id, 1);
  EXPECT_EQ(r.request.loss_fn, "cross_entropy");
  EXPECT_TRUE(r.request.backward);
  ASSERT_EQ(r.request.data.size(), 1u);
  const auto& d = r.request.data[0];
  EXPECT_EQ(d.model_input, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(d.loss_fn_inputs.at("target_tokens").data, (std::vector<double>{2, 3}));
  EXPECT_EQ(d.loss_fn_inputs.at("target_tokens").dtype, train::DType::int64);
  EXPECT_EQ(d.loss_fn_inputs.at("weights").data, (std::vector<double>{0.0, 1.0}));
  EXPECT_EQ(d.loss_fn_inputs.at("weights").shape, (std::vector<int64_t>{2}));
  EXPECT_FALSE(forward_backward_from_proto(from_hex(kRequestVector + "3001")).request.backward);  // forward_only
}

TEST(ProtoCodec, EncodesTheSpecOutputVectorByteForByte) {
  train::ForwardResult r;
  r.loss_fn_outputs.push_back({train::TensorData{train::DType::float32, {2}, {-0.5, -1.5}}, {}});
  r.metrics = {{"loss:sum", 1.5}};
  EXPECT_EQ(to_hex(forward_result_to_proto(r, "ArrayRecord", false)),
            "0a0b41727261795265636f7264122e122a0a086c6f6770726f6273121e0a08000000bf0000c0bf12100000000000000000080000"
            "0000000000180118011a130a086c6f73733a73756d11000000000000f83f");
}

TEST(ProtoCodec, EncodesTheSpecSampleVectorByteForByte) {
  model::SampleOutput out;
  out.sequences.push_back({{7, 8}, {-0.25f, -0.5f}, true});
  EXPECT_EQ(to_hex(sample_result_to_proto(out)), "0a14120807000000080000001a08000080be000000bf");
}

TEST(ProtoCodec, SampleResponseCarriesPromptLogprobsAndTopK) {
  model::SampleOutput out;
  out.sequences.push_back({{5}, {-1.5f}, false});
  out.prompt_logprobs = std::vector<float>{std::nanf(""), -2.0f, -3.0f};
  out.topk_prompt_logprobs = std::vector<std::vector<std::pair<int64_t, float>>>{{}, {{4, -0.5f}, {9, -1.0f}}, {{2, -0.25f}}};
  tinker_public::SampleResponse msg;
  ASSERT_TRUE(msg.ParseFromString(sample_result_to_proto(out)));
  ASSERT_EQ(msg.sequences_size(), 1);
  EXPECT_EQ(msg.sequences(0).stop_reason(), tinker_public::STOP_REASON_LENGTH);
  EXPECT_EQ(msg.prompt_logprobs().size(), 12u);
  float lp[3];
  std::memcpy(lp, msg.prompt_logprobs().data(), 12);
  EXPECT_TRUE(std::isnan(lp[0]));
  EXPECT_EQ(lp[2], -3.0f);
  const auto& topk = msg.topk_prompt_logprobs();
  EXPECT_EQ(topk.k(), 2u);
  EXPECT_EQ(topk.length(), 3u);
  int32_t ids[6];
  float lps[6];
  std::memcpy(ids, topk.token_ids().data(), sizeof ids);
  std::memcpy(lps, topk.logprobs().data(), sizeof lps);
  // Row 0 and the short row's tail are empty cells: token 0, logprob -99999.
  EXPECT_EQ(std::vector<int32_t>(ids, ids + 6), (std::vector<int32_t>{0, 0, 4, 9, 2, 0}));
  EXPECT_EQ(std::vector<float>(lps, lps + 6), (std::vector<float>{-99999.0f, -99999.0f, -0.5f, -1.0f, -0.25f, -99999.0f}));
  // Without prompt logprobs requested, the optional fields are absent.
  out.prompt_logprobs.reset();
  out.topk_prompt_logprobs.reset();
  ASSERT_TRUE(msg.ParseFromString(sample_result_to_proto(out)));
  EXPECT_FALSE(msg.has_prompt_logprobs());
  EXPECT_FALSE(msg.has_topk_prompt_logprobs());
}

TEST(ProtoCodec, GroupsDatumsByTrailingShape) {
  train::ForwardResult r;
  auto out = [](std::vector<int64_t> shape, size_t n) {
    train::TensorData t{train::DType::float32, shape, std::vector<double>(n, -1.0)};
    return train::LossFnOutput{t, t};
  };
  r.loss_fn_outputs = {out({3}, 3), out({2}, 2), out({2, 4}, 8)};
  tinker_public::ForwardBackwardOutput msg;
  ASSERT_TRUE(msg.ParseFromString(forward_result_to_proto(r)));
  ASSERT_EQ(msg.loss_fn_outputs_size(), 2);
  EXPECT_EQ(msg.loss_fn_outputs(0).num_datums(), 2);
  EXPECT_EQ(msg.loss_fn_outputs(1).fields().at("logprobs").trailing_shape(0), 4);
  const auto& lp = msg.loss_fn_outputs(0).fields().at("elementwise_loss");
  EXPECT_EQ(lp.data().size(), 5 * sizeof(float));
  EXPECT_EQ(lp.offsets().size(), 3 * sizeof(int64_t));
}

TEST(ProtoCodec, SparseCsrTensorsDecode) {
  // The spec's example: a 4x8 float32 weights tensor with a single 1.0 at [1, 3].
  tinker_public::ForwardBackwardRequest req;
  req.set_model_id("m");
  req.set_seq_id(1);
  auto* d = req.add_data();
  int32_t tokens[4] = {1, 2, 3, 4};
  d->add_model_input()->mutable_encoded_text()->set_tokens(std::string(reinterpret_cast<char*>(tokens), sizeof tokens));
  auto& w = (*d->mutable_loss_fn_inputs())["weights"];
  w.set_dtype(tinker_public::DTYPE_FLOAT32);
  w.add_shape(4);
  w.add_shape(8);
  const float one = 1.0f;
  const int64_t crow[5] = {0, 0, 1, 1, 1}, col[1] = {3};
  w.mutable_sparse_csr()->set_values(std::string(reinterpret_cast<const char*>(&one), 4));
  w.mutable_sparse_csr()->set_crow_indices(std::string(reinterpret_cast<const char*>(crow), sizeof crow));
  w.mutable_sparse_csr()->set_col_indices(std::string(reinterpret_cast<const char*>(col), sizeof col));
  const auto t = forward_backward_from_proto(req.SerializeAsString()).request.data[0].loss_fn_inputs.at("weights");
  ASSERT_EQ(t.data.size(), 32u);
  for (size_t i = 0; i < 32; ++i) EXPECT_EQ(t.data[i], i == 1 * 8 + 3 ? 1.0 : 0.0) << i;
  w.mutable_sparse_csr()->set_col_indices(std::string(8, '\x7f'));  // out of range
  EXPECT_THROW(forward_backward_from_proto(req.SerializeAsString()), train::InvalidRequest);
}

TEST(ProtoCodec, MalformedBodiesAreRejected) {
  EXPECT_THROW(forward_backward_from_proto("\xff\xff\xff"), train::InvalidRequest);
  tinker_public::ForwardBackwardRequest req;
  req.add_data()->add_model_input()->mutable_encoded_text()->set_tokens("abc");  // not whole int32s
  EXPECT_THROW(forward_backward_from_proto(req.SerializeAsString()), train::InvalidRequest);
}

TEST(Zstd, DecompressesFramesWithinTheLimit) {
  const std::string body = from_hex(kRequestVector);
  std::string frame(ZSTD_compressBound(body.size()), '\0');
  frame.resize(ZSTD_compress(frame.data(), frame.size(), body.data(), body.size(), 3));
  EXPECT_EQ(zstd_decompress(frame, 1 << 20), body);
  EXPECT_THROW(zstd_decompress(frame, 10), train::InvalidRequest);
  EXPECT_THROW(zstd_decompress("not zstd at all", 1 << 20), train::InvalidRequest);
  EXPECT_THROW(zstd_decompress(frame.substr(0, frame.size() - 3), 1 << 20), train::InvalidRequest);
}

}  // namespace
}  // namespace kiln::wire

namespace kiln::wire {
namespace {

TEST(SparseCsr, RejectsOffsetsThatLeaveTheValues) {
  EXPECT_EQ(dense_from_csr({5}, {0, 0, 1}, {1}, {2, 2}, "t"), (std::vector<double>{0, 0, 0, 5}));
  EXPECT_THROW(dense_from_csr({5}, {0, 5, 1}, {1}, {2, 2}, "t"), train::InvalidRequest);  // not non-decreasing
  EXPECT_THROW(dense_from_csr({5}, {0, 1}, {1}, {2, 2}, "t"), train::InvalidRequest);     // rows+1 offsets
  EXPECT_THROW(dense_from_csr({5}, {0, 0, 1}, {2}, {2, 2}, "t"), train::InvalidRequest);  // column out of range
  EXPECT_THROW(dense_from_csr({5}, {0, 0, 1}, {1}, {4}, "t"), train::InvalidRequest);     // not 2-D
}

}  // namespace
}  // namespace kiln::wire
