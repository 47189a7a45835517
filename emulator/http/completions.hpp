#pragma once
// OpenAI-style completions as a Fireworks deployment answers them (protocol.md §W13.7): the
// request Kiln reads, and the answer whole or as server-sent events. Every field of the
// surface lives here.
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/sampler.hpp"
#include "model/tokenizer.hpp"

namespace kiln::http {

struct CompletionRequest {
  std::string model;
  model::SampleSpec spec;  // prompt, n, sampling params
  bool stream = false;
  bool logprobs = false;  // logprobs: true, or a number of top alternatives (k ≥ 0)
  int64_t top_logprobs = 0;
  bool echo = false;      // the answer covers the prompt's tokens too
};

// Throws InvalidRequest naming the field.
CompletionRequest completion_request_from_json(const nlohmann::json& body);

struct CompletionChoice {
  model::SampledSequence sequence;
  std::vector<float> raw_logprobs;       // each generated token's log-probability at temperature 1
  std::vector<float> prompt_logprobs;    // echo only: one per prompt token, the first NaN
};

// Runs the request on `model` (validation errors as InvalidRequest naming the field).
std::vector<CompletionChoice> run_completion(const model::Transformer<float>& model, const CompletionRequest& r);

// The whole answer: {"id", "object": "text_completion", "created", "model", "choices":
// [{"index", "text", "finish_reason", "logprobs"?, "raw_output"}], "usage"}.
// Text and token strings come from `tok` (protocol.md §W13.9).
nlohmann::json completion_to_json(const model::StandInTokenizer& tok, const CompletionRequest& r,
                                  const std::vector<CompletionChoice>& choices, const std::string& id, int64_t created);
// The same as SSE: one event per generated token per choice, the last of a choice carrying its
// finish_reason and raw_output, a final event with usage, then "data: [DONE]".
std::string completion_to_sse(const model::StandInTokenizer& tok, const CompletionRequest& r,
                              const std::vector<CompletionChoice>& choices, const std::string& id, int64_t created);

// Chat completions (the OpenAI-compatible surface): the same choices as an assistant message,
// {"id": "chatcmpl-…", "object": "chat.completion", "choices": [{"index", "message": {"role":
// "assistant", "content"}, "finish_reason", "logprobs"}], "usage"}; streamed as
// chat.completion.chunk deltas. Trailing end-of-turn tokens are not part of the content.
nlohmann::json chat_completion_to_json(const model::StandInTokenizer& tok, const CompletionRequest& r,
                                       const std::vector<CompletionChoice>& choices, const std::string& id, int64_t created);
std::string chat_completion_to_sse(const model::StandInTokenizer& tok, const CompletionRequest& r,
                                   const std::vector<CompletionChoice>& choices, const std::string& id, int64_t created);
// The request's messages as the family's chat template renders them; InvalidRequest naming the
// field (messages[i].role / .content) when malformed.
std::vector<model::ChatMessage> chat_messages_from_json(const nlohmann::json& body);

}  // namespace kiln::http
