// The OpenAI-compatible surface over loopback, as the vendor's Tinker end-to-end suite calls it:
// models, a completion and a streamed chat completion on a sampler checkpoint the trainer saved,
// their token logprobs scored against the trainer's forward.
#include "http/test_fixture.hpp"  // first: Eigen before httplib.h (see http/routes.hpp)

#include "client/service_client.hpp"
#include "model/tokenizer.hpp"

namespace kiln::client {
namespace {

using http::testing::HttpTest;
using nlohmann::json;

class OaiTest : public HttpTest {
 protected:
  ClientOptions quick() {
    ClientOptions o;
    o.retry.initial_delay_seconds = 0.01;
    o.retry.budget_seconds = 5;
    o.heartbeat_seconds = 0;
    return o;
  }
  // The trainer's log-probability of each of `tokens` after `prompt`.
  static std::vector<double> scored(TrainingClient& tc, const std::vector<int64_t>& prompt, const std::vector<int64_t>& tokens) {
    std::vector<int64_t> full = prompt;
    full.insert(full.end(), tokens.begin(), tokens.end());
    Datum d;
    d.model_input.assign(full.begin(), full.end() - 1);
    d.loss_fn_inputs["target_tokens"] = TensorData::ints({full.begin() + 1, full.end()});
    const auto all = tc.forward({d}).result().loss_fn_outputs[0].at("logprobs").data;
    return {all.end() - static_cast<long>(tokens.size()), all.end()};
  }
};

TEST_F(OaiTest, CompletionAndStreamedChatServeTheTrainedSamplerWithTheTrainersLogprobs) {
  ServiceClient service(server->base_url(), "tml-test", quick());
  auto tc = service.create_lora_training_client("Qwen/Qwen3-0.6B", {.rank = 4, .seed = 1});
  const auto tok = *model::StandInTokenizer::for_family("qwen3");
  Datum d;
  const auto text = tok.encode("Kiln says hello");
  d.model_input.assign(text.begin(), text.end() - 1);
  d.loss_fn_inputs["target_tokens"] = TensorData::ints({text.begin() + 1, text.end()});
  tc.forward_backward({d}, "cross_entropy").result();
  tc.optim_step({.learning_rate = 1e-2}).result();
  const std::string path = tc.save_weights_for_sampler("oai").result().path;

  auto [ms, models] = get("/oai/api/v1/models");
  ASSERT_EQ(ms, 200);
  EXPECT_EQ(models["object"], "list");
  EXPECT_NE(models["data"].dump().find("\"Qwen/Qwen3-8B\""), std::string::npos);

  // A text completion: the prompt is the family's byte tokens; the usage counts them.
  auto [cs, completion] = post("/oai/api/v1/completions", {{"model", path}, {"prompt", "Hello"}, {"max_tokens", 5},
                                                           {"temperature", 0.8}, {"seed", 4}, {"logprobs", true}});
  ASSERT_EQ(cs, 200) << completion;
  const json choice = completion["choices"][0];
  EXPECT_EQ(choice["raw_output"]["prompt_token_ids"], json(std::vector<int64_t>{39, 68, 75, 75, 78}));
  EXPECT_EQ(completion["usage"]["prompt_tokens"], 5);
  const std::vector<int64_t> tokens = choice["raw_output"]["completion_token_ids"];
  EXPECT_EQ(completion["usage"]["completion_tokens"], tokens.size());
  EXPECT_EQ(choice["text"], tok.decode(tokens));
  const auto want = scored(tc, tok.encode("Hello"), tokens);
  for (size_t i = 0; i < tokens.size(); ++i)
    EXPECT_NEAR(choice["logprobs"]["content"][i]["logprob"].get<double>(), want[i], 1e-4) << i;

  // A streamed chat completion: Qwen's ChatML around the message, deltas that add up to the
  // content, per-token logprobs equal to the trainer's forward on the same ids.
  auto sse = cli->Post("/oai/api/v1/chat/completions",
                       json{{"model", path}, {"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 6},
                            {"seed", 2}, {"logprobs", true}, {"stream", true}}.dump(),
                       "application/json");
  ASSERT_TRUE(sse);
  ASSERT_EQ(sse->status, 200) << sse->body;
  EXPECT_EQ(sse->get_header_value("Content-Type"), "text/event-stream");
  std::string content, finish;
  std::vector<int64_t> ids;
  std::vector<double> logprobs;
  json usage;
  const auto [chunks, done] = sse_chunks(sse->body);
  for (const json& chunk : chunks) {
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    if (chunk.contains("usage")) usage = chunk["usage"];
    for (const auto& c : chunk["choices"]) {
      content += c["delta"].value("content", "");
      if (!c["finish_reason"].is_null()) finish = c["finish_reason"];
      if (c.contains("logprobs"))
        for (const auto& e : c["logprobs"]["content"]) {
          ids.push_back(e["token_id"]);
          logprobs.push_back(e["logprob"]);
        }
    }
  }
  EXPECT_TRUE(done);
  EXPECT_FALSE(finish.empty());
  ASSERT_FALSE(ids.empty());
  const auto prompt = tok.chat_prompt({{"user", "Hi"}});
  EXPECT_EQ(usage["prompt_tokens"], prompt.size());
  EXPECT_EQ(usage["completion_tokens"], ids.size());
  const auto chat_want = scored(tc, prompt, ids);
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_NEAR(logprobs[i], chat_want[i], 1e-4) << i;
  size_t shown = 0;
  while (shown < ids.size() && ids[shown] != 151645 && ids[shown] != 151643) ++shown;
  EXPECT_EQ(content, tok.decode({ids.begin(), ids.begin() + static_cast<long>(shown)}));

  // Not streamed, the same request answers one assistant message with the same content.
  auto [whole_s, whole] = post("/oai/api/v1/chat/completions", {{"model", path}, {"messages", {{{"role", "user"}, {"content", "Hi"}}}},
                                                                {"max_tokens", 6}, {"seed", 2}});
  ASSERT_EQ(whole_s, 200) << whole;
  EXPECT_EQ(whole["object"], "chat.completion");
  EXPECT_EQ(whole["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(whole["choices"][0]["message"]["content"], content);
}

TEST_F(OaiTest, TextSurfacesRefuseWhatTheyCannotTokenizeAndNameTheField) {
  auto [s1, b1] = post("/oai/api/v1/chat/completions", {{"model", "kiln/tiny"}, {"messages", {{{"role", "user"}, {"content", "Hi"}}}}});
  EXPECT_EQ(s1, 400);
  EXPECT_NE(b1["detail"].get<std::string>().find("no chat template"), std::string::npos);
  auto [s2, b2] = post("/oai/api/v1/completions", {{"model", "deepseek-ai/DeepSeek-V3.1"}, {"prompt", "Hi"}});
  EXPECT_EQ(s2, 400);
  EXPECT_NE(b2["detail"].get<std::string>().find("family 'deepseek_v3', which has no built-in stand-in tokenizer"), std::string::npos);
  auto [s3, b3] = post("/oai/api/v1/chat/completions", {{"model", "Qwen/Qwen3-0.6B"}, {"messages", {{{"role", "user"}}}}});
  EXPECT_EQ(s3, 400);
  EXPECT_NE(b3["detail"].get<std::string>().find("messages[0].content"), std::string::npos);
  EXPECT_EQ(post("/oai/api/v1/completions", {{"model", "tinker://nope:train:0/sampler_weights/x"}, {"prompt", "Hi"}}).first, 404);
  // Kiln's own models take text byte by byte on /completions.
  auto [s4, b4] = post("/oai/api/v1/completions", {{"model", "kiln/tiny"}, {"prompt", "Hi"}, {"max_tokens", 2}});
  ASSERT_EQ(s4, 200) << b4;
  EXPECT_EQ(b4["choices"][0]["raw_output"]["prompt_token_ids"], json(std::vector<int64_t>{'H', 'i'}));
}

}  // namespace
}  // namespace kiln::client
