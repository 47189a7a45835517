#include "client/chunking.hpp"

#include <gtest/gtest.h>

#include "client/errors.hpp"

namespace kiln::client {
namespace {

Datum datum(size_t tokens) {
  Datum d;
  d.model_input.assign(tokens, 1);
  d.loss_fn_inputs["target_tokens"] = TensorData::ints(std::vector<int64_t>(tokens, 2));
  return d;
}

ForwardBackwardOutput chunk(size_t outputs, std::map<std::string, double> metrics) {
  ForwardBackwardOutput o;
  o.loss_fn_output_type = "TorchLossReturn";
  o.loss_fn_outputs.resize(outputs);
  o.metrics = std::move(metrics);
  return o;
}

TEST(Chunking, SplitsByCountAndEstimatedBytes) {
  std::vector<Datum> data(5, datum(10));  // 200 estimated bytes each (10 tokens + 10 targets)
  EXPECT_EQ(plan_chunks(data, 2, 1 << 20), (std::vector<std::pair<size_t, size_t>>{{0, 2}, {2, 4}, {4, 5}}));
  EXPECT_EQ(plan_chunks(data, 1024, 450), (std::vector<std::pair<size_t, size_t>>{{0, 2}, {2, 4}, {4, 5}}));
  EXPECT_EQ(plan_chunks(data, 1024, 100), (std::vector<std::pair<size_t, size_t>>{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}}));
  EXPECT_EQ(plan_chunks(data, 1024, 1 << 20).size(), 1u);
}

TEST(Chunking, MergesMetricsBySuffix) {
  const auto merged = merge_chunks({chunk(1, {{"loss:sum", 1}, {"lr:mean", 2}, {"a:min", 5}, {"a:max", 5}, {"id:unique", 7}, {"x:slack", 1}, {"only:sum", 3}}),
                                    chunk(3, {{"loss:sum", 2}, {"lr:mean", 6}, {"a:min", 4}, {"a:max", 9}, {"id:unique", 8}, {"x:slack", 3}})});
  EXPECT_EQ(merged.loss_fn_outputs.size(), 4u);
  EXPECT_EQ(merged.metrics.at("loss:sum"), 3);
  EXPECT_EQ(merged.metrics.at("lr:mean"), 5);  // (1·2 + 3·6) / 4
  EXPECT_EQ(merged.metrics.at("a:min"), 4);
  EXPECT_EQ(merged.metrics.at("a:max"), 9);
  EXPECT_EQ(merged.metrics.at("id:unique"), 7);
  EXPECT_EQ(merged.metrics.at("id:unique_2"), 8);
  EXPECT_EQ(merged.metrics.at("x:slack"), 3 - 2.5);
  EXPECT_FALSE(merged.metrics.count("only:sum"));  // missing from a chunk: dropped
  EXPECT_THROW(merge_chunks({chunk(1, {{"loss", 1}})}), ClientError);  // even a single chunk is merged
  EXPECT_THROW(merge_chunks({chunk(1, {{"a:b:c", 1}})}), ClientError);
}

}  // namespace
}  // namespace kiln::client
