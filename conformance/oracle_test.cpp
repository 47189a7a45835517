// The oracle trains: a step after forward_backward moves the logprobs, a step after forward alone
// does not, and save / load round trips reproduce them.
#include "conformance/oracle.hpp"

#include <gtest/gtest.h>

#include "conformance/kiln_server.hpp"

namespace kiln::conformance {
namespace {

std::vector<double> logprobs(const nlohmann::json& out) { return out["loss_fn_outputs"][0]["logprobs"]["data"].get<std::vector<double>>(); }

const std::vector<Example> kBatch = {Example{{65, 66, 67}, {66, 67, 68}, std::nullopt}};

TEST(OracleTest, StepsApplyForwardBackwardGradientsOnly) {
  ScratchDir dir;
  Oracle o(dir.path());
  model::LoraConfig lora;
  lora.rank = 4;
  lora.seed = 3;
  o.create("t1", lora);
  const auto start = logprobs(o.forward("t1", kBatch, false));
  o.forward("t1", kBatch, false);
  o.optim_step("t1", Adam{});
  EXPECT_EQ(logprobs(o.forward("t1", kBatch, false)), start);  // forward accumulated nothing
  o.forward("t1", kBatch, true);
  o.optim_step("t1", Adam{});
  const auto trained = logprobs(o.forward("t1", kBatch, false));
  EXPECT_GT(trained[0], start[0] + 0.01);  // lr 1e-2 on the only datum: its targets got likelier
}

}  // namespace
}  // namespace kiln::conformance
