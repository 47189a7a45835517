// Every error text a client matches on — the SDKs' own checks, the services' documented errors,
// the third-party texts the spec adopts, the recorded exchanges — pinned byte for byte, with its
// status (or failed-future category), as the user sees it over HTTP.
#include "http/test_fixture.hpp"

namespace kiln::http {
namespace {

using testing::HttpTest;
using nlohmann::json;

struct Seen {
  int status;
  std::string detail;  // the "detail" of an HTTP error, or "<category>: <error>" of a failed future
};
void PrintTo(const Seen& s, std::ostream* os) { *os << s.status << " " << s.detail; }
bool operator==(const Seen& a, const Seen& b) { return a.status == b.status && a.detail == b.detail; }

class ErrorsSnapshot : public HttpTest {
 protected:
  Seen http(const std::pair<int, json>& r) {
    return {r.first, r.second.is_object() && r.second.contains("detail") ? r.second["detail"].get<std::string>() : r.second.dump()};
  }
  Seen future(const std::pair<int, json>& submit) {
    EXPECT_EQ(submit.first, 200) << submit.second;
    const json out = result(submit.second["request_id"]);
    return {200, out.value("category", "?") + ": " + out.value("error", out.dump())};
  }
  json create_model_body(const std::string& session, json lora) {
    return {{"session_id", session}, {"model_seq_id", 1}, {"base_model", "kiln/tiny"}, {"lora_config", lora},
            {"type", "create_model"}};
  }
};

TEST_F(ErrorsSnapshot, TextsClientsMatchOn) {
  const std::string sess = session();
  const std::string m = model();
  const std::string run = m;
  std::vector<std::pair<std::string, Seen>> seen;
  auto add = [&](const char* what, Seen s) { seen.emplace_back(what, std::move(s)); };

  add("unknown future", http(post("/api/v1/retrieve_future", {{"request_id", "req-nope"}})));
  add("unknown session (create_model)", http(post("/api/v1/create_model", create_model_body("session-nope", {{"rank", 4}}))));
  add("unknown session (heartbeat)", http(post("/api/v1/session_heartbeat", {{"session_id", "session-nope"}})));
  add("unknown model", http(post("/api/v1/get_info", {{"model_id", "session-nope:train:0"}})));
  add("base_model missing", http(post("/api/v1/create_model", {{"session_id", sess}, {"model_seq_id", 2}, {"lora_config", {{"rank", 4}}}})));
  add("unknown base model", http(post("/api/v1/create_model", {{"session_id", sess}, {"model_seq_id", 3}, {"base_model", "gpt-17"},
                                                               {"lora_config", {{"rank", 4}}}})));
  add("rank not a power of 2", http(post("/api/v1/create_model", create_model_body(sess, {{"rank", 3}}))));
  add("rank negative", http(post("/api/v1/create_model", create_model_body(sess, {{"rank", -1}}))));
  add("no train flags", http(post("/api/v1/create_model", create_model_body(sess, {{"rank", 4}, {"train_attn", false},
                                                                                   {"train_mlp", false}, {"train_unembed", false}}))));
  add("unknown loss", http(post("/api/v1/forward_backward", {{"model_id", m}, {"seq_id", 1},
                                                            {"forward_backward_input", {{"data", {datum({1, 2, 3})}}, {"loss_fn", "mse"}}}})));
  add("missing target_tokens", future(post("/api/v1/forward_backward",
                                           {{"model_id", m}, {"seq_id", 2},
                                            {"forward_backward_input", {{"data", {{{"model_input", {{"chunks", {{{"tokens", {1, 2}}, {"type", "encoded_text"}}}}}},
                                                                                    {"loss_fn_inputs", json::object()}}}},
                                                                        {"loss_fn", "cross_entropy"}}}})));
  add("seq_id reused", http(post("/api/v1/optim_step", {{"model_id", m}, {"seq_id", 2}, {"adam_params", {{"learning_rate", 1e-3}}}})));
  add("load not first", http(post("/api/v1/load_weights", {{"model_id", m}, {"seq_id", 3}, {"path", "tinker://x/weights/y"}})));
  post("/api/v1/save_weights", {{"model_id", m}, {"seq_id", 4}, {"path", "w"}});
  add("name taken", future(post("/api/v1/save_weights", {{"model_id", m}, {"seq_id", 5}, {"path", "w"}})));
  add("sampler without source", http(post("/api/v1/create_sampling_session", {{"session_id", sess}, {"sampling_session_seq_id", 0}})));
  add("model_path not tinker", http(post("/api/v1/create_sampling_session", {{"session_id", sess}, {"sampling_session_seq_id", 1},
                                                                            {"model_path", "s3://x"}})));
  const std::string sampler = post("/api/v1/create_sampling_session", {{"session_id", sess}, {"sampling_session_seq_id", 2},
                                                                       {"base_model", "kiln/tiny"}})
                                  .second["sampling_session_id"];
  add("context window", http(post("/api/v1/asample", {{"sampling_session_id", sampler}, {"seq_id", 0},
                                                      {"prompt", {{"chunks", {{{"tokens", {1, 2, 3}}, {"type", "encoded_text"}}}}}},
                                                      {"sampling_params", {{"max_tokens", 4000}}}})));
  add("unknown sampler", http(post("/api/v1/asample", {{"sampling_session_id", sess + ":sample:99"}, {"seq_id", 0},
                                                       {"prompt", {{"chunks", {{{"tokens", {1}}, {"type", "encoded_text"}}}}}}})));
  add("invalid checkpoint id", http(get("/api/v1/training_runs/" + run + "/checkpoints/bogus/x/archive")));
  add("missing checkpoint (weights_info)", http(post("/api/v1/weights_info", {{"tinker_path", "tinker://" + run + "/weights/none"}})));
  add("gs:// reference (weights_info)", http(post("/api/v1/weights_info", {{"tinker_path", "gs://bucket/x"}})));

  const std::vector<std::pair<std::string, Seen>> expected = {
      {"unknown future", {404, "Future not found"}},
      {"unknown session (create_model)", {404, "session 'session-nope' not found"}},
      {"unknown session (heartbeat)", {404, "session 'session-nope' not found"}},
      {"unknown model", {404, "model 'session-nope:train:0' not found"}},
      {"base_model missing", {400, "base_model is required"}},
      {"unknown base model", {400, "unknown base model 'gpt-17'; supported: " + svc.registry().known_names()}},
      {"rank not a power of 2", {400, "lora_config.rank must be a power of 2, got 3"}},
      {"rank negative", {400, "lora_config.rank must be positive"}},
      {"no train flags", {400, "At least one of train_unembed, train_mlp, or train_attn must be True"}},
      {"unknown loss", {400, "Unknown loss_fn 'mse'. Supported: cross_entropy, importance_sampling, ppo, cispo, dro, dapo, gspo."}},
      {"missing target_tokens", {200, "user: missing required field 'target_tokens' (datum 0)"}},
      {"seq_id reused", {400, "Training request sequence number was reused"}},
      {"load not first", {400, "LoadWeights is not permitted with seq_id 3"}},
      {"name taken", {200, "user: ResourceAlreadyExists: checkpoint 'weights/w' already exists for " + m +
                               "; use a new name or overwrite=true"}},
      {"sampler without source", {400, "Either model_path or base_model must be provided"}},
      {"model_path not tinker", {400, "model_path must start with 'tinker://'"}},
      {"context window", {400, "Prompt length plus max_tokens exceeds the model's context window: 3 + 4000 > 2048"}},
      {"unknown sampler", {404, "sampling session '" + sess + ":sample:99' not found"}},
      {"invalid checkpoint id", {400, "Invalid checkpoint identifier. Expected format 'weights/<name>' (training weights) or "
                                      "'sampler_weights/<name>' (sampler weights), where <name> is a single path segment."}},
      {"missing checkpoint (weights_info)", {404, "checkpoint 'tinker://" + run + "/weights/none' not found"}},
      {"gs:// reference (weights_info)", {400, "gs:// references are not available offline: 'gs://bucket/x'"}},
  };
  ASSERT_EQ(seen.size(), expected.size());
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].first, expected[i].first);
    EXPECT_EQ(seen[i].second, expected[i].second) << seen[i].first;
  }
}

}  // namespace
}  // namespace kiln::http
