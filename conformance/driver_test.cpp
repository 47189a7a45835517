// The C++ driver speaks DRIVER.md: every operation, and each error kind, against a real server.
#include "http/test_fixture.hpp"  // first: Eigen before httplib.h (see http/routes.hpp)

#include "conformance/driver_process.hpp"

namespace kiln::conformance {
namespace {

using http::testing::HttpTest;
using nlohmann::json;

json text_datum(const std::string& text) {
  std::vector<int64_t> b(text.begin(), text.end());
  return {{"model_input", std::vector<int64_t>(b.begin(), b.end() - 1)},
          {"loss_fn_inputs", {{"target_tokens", {{"data", std::vector<int64_t>(b.begin() + 1, b.end())}, {"dtype", "int64"},
                                                 {"shape", {b.size() - 1}}}}}}};
}

class DriverTest : public HttpTest {
 protected:
  DriverProcess driver{KILN_CPP_DRIVER};
  json ok(const std::string& op, const json& args = json::object()) {
    const json r = driver.request(op, args);
    EXPECT_TRUE(r.value("ok", false)) << op << ": " << r.dump();
    return r.value("result", json());
  }
  json error(const std::string& op, const json& args) {
    const json r = driver.request(op, args);
    EXPECT_FALSE(r.value("ok", true)) << op << ": " << r.dump();
    return r.value("error", json());
  }
};

TEST_F(DriverTest, EveryOperationAnswers) {
  const json s = ok("create_service", {{"base_url", server->base_url()}, {"api_key", "tml-driver"},
                                       {"options", {{"retry_initial_delay_seconds", 0.01}, {"heartbeat_seconds", 0}}}});
  const std::string service = s["service"];
  const json t = ok("create_training_client", {{"service", service}, {"base_model", "kiln/tiny"}, {"lora_rank", 4},
                                               {"lora", {{"seed", 1}}}});
  const std::string c = t["client"];
  EXPECT_EQ(t["model_id"], s["session_id"].get<std::string>() + ":train:0");
  const json data = json::array({text_datum("driver one"), text_datum("driver two")});
  EXPECT_EQ(ok("forward", {{"client", c}, {"data", data}})["loss_fn_outputs"].size(), 2u);
  const json f = ok("submit_forward_backward", {{"client", c}, {"data", data}, {"loss_fn", "cross_entropy"}});
  const json st = ok("submit_optim_step", {{"client", c}, {"adam_params", {{"learning_rate", 0.01}}}});
  EXPECT_GT(ok("await", {{"future", f["future"]}})["metrics"]["loss:sum"].get<double>(), 0);
  EXPECT_TRUE(ok("await", {{"future", st["future"]}}).contains("metrics"));
  for (const char* loss : {"neg_logprob_sum", "logprob_squared", "dpo_margin"})
    EXPECT_TRUE(ok("forward_backward_custom", {{"client", c}, {"data", data}, {"loss", loss}})["metrics"].contains("custom_loss")) << loss;
  EXPECT_TRUE(ok("optim_step", {{"client", c}, {"adam_params", json::object()}, {"grad_accumulation_normalization", "num_sequences"}})
                  .contains("metrics"));
  const std::string path = ok("save_state", {{"client", c}, {"name", "d1"}})["path"];
  EXPECT_EQ(ok("list_checkpoints", {{"client", c}})["checkpoints"], json::array({"d1"}));
  // load_state is a model's first request only: a fresh client (another seed) loads the checkpoint.
  const std::string fresh = ok("create_training_client", {{"service", service}, {"base_model", "kiln/tiny"}, {"lora_rank", 4},
                                                          {"lora", {{"seed", 2}}}})["client"];
  EXPECT_EQ(ok("load_state", {{"client", fresh}, {"path", path}})["path"], path);
  const json sampler = ok("save_weights_for_sampler_ext", {{"client", c}, {"name", "smp"}});
  EXPECT_EQ(sampler["snapshot_name"].get<std::string>().rfind("smp-", 0), 0u);
  const json restored = ok("create_training_client_from_state", {{"service", service}, {"path", path}, {"with_optimizer", true}});
  EXPECT_NE(restored["model_id"], t["model_id"]);
  EXPECT_TRUE(ok("create_base_training_client", {{"service", service}, {"base_model", "kiln/tiny"}}).contains("client"));
  EXPECT_EQ(ok("get_info", {{"client", c}})["lora_rank"], 4);
  EXPECT_EQ(ok("resolve_checkpoint_path", {{"name", "step-2"}, {"source_job_id", "job"}})["path"], "cross_job://job/step-2");
}

TEST_F(DriverTest, ErrorsComeBackWithTheirKinds) {
  const std::string service = ok("create_service", {{"base_url", server->base_url()}, {"api_key", "tml-driver"},
                                                    {"options", {{"retry_initial_delay_seconds", 0.01}, {"retry_budget_seconds", 0.2},
                                                                 {"heartbeat_seconds", 0}}}})["service"];
  const std::string c = ok("create_training_client", {{"service", service}, {"base_model", "kiln/tiny"}, {"lora_rank", 4}})["client"];
  const json dup = error("create_training_client", {{"service", service}, {"base_model", "kiln/tiny"}, {"lora_rank", 4}});
  EXPECT_EQ(dup["kind"], "invalid_argument");
  EXPECT_NE(dup["message"].get<std::string>().find("already exists on this service"), std::string::npos);
  EXPECT_EQ(error("forward", {{"client", c}, {"data", json::array()}})["message"], "No data provided");
  EXPECT_EQ(error("get_sampler", {{"client", c}})["kind"], "not_implemented");  // an operation DRIVER.md does not have
  EXPECT_EQ(error("forward", {{"client", "t99"}, {"data", json::array()}})["kind"], "bad_request");
  EXPECT_EQ(error("forward_backward_custom", {{"client", c}, {"data", json::array({text_datum("odd")})}, {"loss", "dpo_margin"}})["kind"],
            "invalid_argument");
  // Faults last: a submit refused by a fault leaves a gap in this model's seq_ids.
  post("/_kiln/faults", {{"rules", {{{"request_type", "optim_step"}, {"action", {{"kind", "fail_future"}, {"category", "user"}, {"message", "no"}}}}}}});
  const json failed = error("optim_step", {{"client", c}, {"adam_params", json::object()}});
  EXPECT_EQ(failed["kind"], "request_failed");
  EXPECT_EQ(failed["category"], "user");
  post("/_kiln/faults", {{"rules", {{{"endpoint", "/api/v1/forward"}, {"action", {{"kind", "status"}, {"status", 404}}}}}}});
  const json api = error("forward", {{"client", c}, {"data", json::array({text_datum("x y")})}});
  EXPECT_EQ(api["kind"], "api_error");
  EXPECT_EQ(api["status"], 404);
  post("/_kiln/faults", {{"rules", {{{"endpoint", "retrieve_future"}, {"action", {{"kind", "status"}, {"status", 410}}}}}}});
  EXPECT_EQ(error("forward", {{"client", c}, {"data", json::array({text_datum("x y")})}})["kind"], "promise_expired");
}

}  // namespace
}  // namespace kiln::conformance
