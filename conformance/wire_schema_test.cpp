// The request schemas accept every request the real SDKs sent (fixtures/wire-captures) and name
// the field of a body that breaks them.
#include "conformance/wire_schema.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>

namespace kiln::conformance {
namespace {

using nlohmann::json;

// The capture tool shortens long bodies: it drops datums and says so in "_"-prefixed keys.
void strip_capture_annotations(json& j) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end();) it = it.key().rfind('_', 0) == 0 ? j.erase(it) : std::next(it);
    for (auto& v : j) strip_capture_annotations(v);
  } else if (j.is_array()) {
    for (auto it = j.begin(); it != j.end();) it = it->is_object() && !it->empty() && std::all_of(it->items().begin(), it->items().end(), [](const auto& kv) { return kv.key().rfind('_', 0) == 0; }) ? j.erase(it) : std::next(it);
    for (auto& v : j) strip_capture_annotations(v);
  }
}

TEST(WireSchemaTest, EveryCapturedSdkRequestConforms) {
  int checked = 0;
  for (const char* file : {"tinker-0.23.0.jsonl", "tinker-0.25.0.jsonl", "fireworks-fwkey.jsonl", "fireworks-tmlkey.jsonl"}) {
    const char* dir = std::getenv("KILN_FIXTURES");  // set by CTest
    std::ifstream in(std::string(dir ? dir : "fixtures") + "/wire-captures/" + file);
    ASSERT_TRUE(in) << file;
    for (std::string line; std::getline(in, line);) {
      const json e = json::parse(line, nullptr, false);
      if (!e.is_object() || !e.contains("path") || !e.contains("method")) continue;
      const std::string path = e["path"].get<std::string>().substr(0, e["path"].get<std::string>().find('?'));
      if (e["method"] == "GET") {
        EXPECT_TRUE(is_get_endpoint(path)) << file << ": GET " << path;
        ++checked;
      } else if (e.contains("body") && e["body"].is_object()) {  // protobuf bodies are recorded as text
        json body = e["body"];
        strip_capture_annotations(body);
        EXPECT_EQ(request_problems(path, body), std::vector<std::string>{}) << file << ": " << line.substr(0, 200);
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 100);
}

TEST(WireSchemaTest, NamesTheFieldThatBreaksTheSchema) {
  const json good = {{"adam_params", {{"learning_rate", 1e-4}, {"beta1", 0.9}, {"beta2", 0.95}, {"eps", 1e-12},
                                      {"weight_decay", 0.0}, {"grad_clip_norm", 0.0}}},
                     {"model_id", "m"}, {"seq_id", 3}, {"type", "optim_step"}};
  EXPECT_TRUE(request_problems("/api/v1/optim_step", good).empty());
  json extra = good;
  extra["client_tag"] = "x";
  EXPECT_EQ(request_problems("/api/v1/optim_step", extra),
            std::vector<std::string>{"/api/v1/optim_step: field 'client_tag' is not part of the API"});
  json missing = good;
  missing["adam_params"].erase("eps");
  EXPECT_EQ(request_problems("/api/v1/optim_step", missing),
            std::vector<std::string>{"/api/v1/optim_step.adam_params: required field 'eps' is missing"});
  json wrong = good;
  wrong["seq_id"] = "3";
  EXPECT_EQ(request_problems("/api/v1/optim_step", wrong),
            std::vector<std::string>{"/api/v1/optim_step: field 'seq_id' is \"3\", expected int"});
  json typed = good;
  typed["type"] = "forward";
  EXPECT_EQ(request_problems("/api/v1/optim_step", typed),
            std::vector<std::string>{"/api/v1/optim_step: field 'type' is \"forward\", expected \"optim_step\""});
  const json fb = {{"forward_backward_input", {{"data", {{{"model_input", {{"chunks", {{{"tokens", {1, 2}}, {"type", "encoded_text"}}}}}},
                                                          {"loss_fn_inputs", {{"target_tokens", {{"data", {2, 3}}}}}}}}},
                                              {"loss_fn", "cross_entropy"}}},
                   {"model_id", "m"}, {"seq_id", 1}, {"type", "forward_backward"}};
  const auto problems = request_problems("/api/v1/forward_backward", fb);
  EXPECT_NE(std::find(problems.begin(), problems.end(), "/api/v1/forward_backward: field 'type' is not part of the API"), problems.end());
  EXPECT_NE(std::find(problems.begin(), problems.end(),
                      "/api/v1/forward_backward.forward_backward_input.data[0].loss_fn_inputs.target_tokens: required field 'dtype' is missing"),
            problems.end());
  EXPECT_EQ(request_problems("/api/v1/train", good), std::vector<std::string>{"POST /api/v1/train is not an endpoint of the API"});
}

}  // namespace
}  // namespace kiln::conformance
