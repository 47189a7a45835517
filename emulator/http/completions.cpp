#include "http/completions.hpp"

#include <algorithm>
#include <cmath>

#include "errors.hpp"

namespace kiln::http {

using nlohmann::json;

namespace {

double number(const json& body, const char* key, double fallback) {
  if (!body.contains(key) || body[key].is_null()) return fallback;
  if (!body[key].is_number()) throw InvalidRequest(std::string(key) + ": expected a number, got " + body[key].dump());
  return body[key].get<double>();
}

int64_t integer(const json& body, const char* key, int64_t fallback) {
  if (!body.contains(key) || body[key].is_null()) return fallback;
  if (!body[key].is_number_integer()) throw InvalidRequest(std::string(key) + ": expected an integer, got " + body[key].dump());
  return body[key].get<int64_t>();
}

json logprob_value(float v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// One logprobs.content entry (the Fireworks form the SDK reads: logprob, sampling_logprob).
json token_entry(const model::StandInTokenizer& tok, int64_t token, float raw, float sampling) {
  json bytes = json::array();
  const auto b = tok.bytes_of(token);
  if (!b.empty()) bytes.push_back(b[0]);
  else
    for (unsigned char c : tok.decode({token})) bytes.push_back(c);
  return {{"token", tok.decode({token})}, {"token_id", token}, {"bytes", bytes}, {"logprob", logprob_value(raw)},
          {"sampling_logprob", logprob_value(sampling)}, {"top_logprobs", json::array()}};
}

const char* finish_reason(const model::SampledSequence& s) { return s.stopped ? "stop" : "length"; }

int64_t prompt_tokens(const CompletionRequest& r) { return static_cast<int64_t>(r.spec.prompt.size()); }

}  // namespace

CompletionRequest completion_request_from_json(const json& body) {
  if (!body.is_object()) throw InvalidRequest("body: expected a JSON object (a completion request)");
  CompletionRequest r;
  if (!body.contains("model") || !body["model"].is_string() || body["model"].get<std::string>().empty())
    throw InvalidRequest("model: required (accounts/<account>/deployments/<id>, or a model name)");
  r.model = body["model"];
  if (!body.contains("prompt")) throw InvalidRequest("prompt: required (a list of token ids)");
  const json& prompt = body["prompt"];
  if (prompt.is_string())
    throw InvalidRequest("prompt: a deployment's completions take token ids (a list of integers); text prompts go to "
                         "/oai/api/v1/completions, which tokenizes");
  if (!prompt.is_array() || prompt.empty()) throw InvalidRequest("prompt: expected a non-empty list of token ids");
  for (const auto& t : prompt) {
    if (!t.is_number_integer()) throw InvalidRequest("prompt: expected a list of integer token ids, got " + t.dump());
    r.spec.prompt.push_back(t.get<int64_t>());
  }
  auto& p = r.spec.params;
  p.max_tokens = integer(body, "max_tokens", 16);
  if (*p.max_tokens < 1) throw InvalidRequest("max_tokens: expected a positive integer, got " + std::to_string(*p.max_tokens));
  p.temperature = number(body, "temperature", 1.0);
  if (!std::isfinite(p.temperature) || p.temperature < 0) throw InvalidRequest("temperature: expected a number >= 0");
  p.top_p = number(body, "top_p", 1.0);
  if (!(p.top_p > 0 && p.top_p <= 1)) throw InvalidRequest("top_p: expected a number in (0, 1]");
  p.top_k = integer(body, "top_k", 0);
  if (p.top_k < 0) throw InvalidRequest("top_k: expected 0 (off) or a positive integer");
  if (p.top_k == 0) p.top_k = -1;
  r.spec.num_samples = integer(body, "n", 1);
  if (r.spec.num_samples < 1 || r.spec.num_samples > 128) throw InvalidRequest("n: expected an integer from 1 to 128");
  if (body.contains("seed") && !body["seed"].is_null()) p.seed = static_cast<uint64_t>(integer(body, "seed", 0));
  if (body.contains("stop") && !body["stop"].is_null()) {
    const json& stop = body["stop"];
    if (stop.is_string()) {
      p.stop_strings.push_back(stop);
    } else if (stop.is_array()) {
      for (const auto& s : stop) {
        if (!s.is_string() || s.get<std::string>().empty()) throw InvalidRequest("stop: expected non-empty strings");
        p.stop_strings.push_back(s);
      }
    } else {
      throw InvalidRequest("stop: expected a string or a list of strings");
    }
  }
  if (body.contains("stream")) {
    if (!body["stream"].is_boolean()) throw InvalidRequest("stream: expected a boolean");
    r.stream = body["stream"];
  }
  if (body.contains("echo")) {
    if (!body["echo"].is_boolean()) throw InvalidRequest("echo: expected a boolean");
    r.echo = body["echo"];
  }
  if (body.contains("logprobs") && !body["logprobs"].is_null()) {
    const json& lp = body["logprobs"];
    if (lp.is_boolean()) {
      r.logprobs = lp;
    } else if (lp.is_number_integer() && lp.get<int64_t>() >= 0) {
      r.logprobs = true;
      r.top_logprobs = lp;
    } else {
      throw InvalidRequest("logprobs: expected a boolean or a non-negative integer");
    }
  }
  r.spec.prompt_logprobs = r.echo && r.logprobs;
  return r;
}

std::vector<CompletionChoice> run_completion(const model::Transformer<float>& model, const CompletionRequest& r) {
  model::SampleOutput out;
  try {
    out = model::sample(model, r.spec);
  } catch (const UserError& e) {
    throw InvalidRequest(e.what());
  }
  const auto& p = r.spec.params;
  const bool tempered = p.temperature != 1.0;
  std::vector<CompletionChoice> choices;
  for (auto& seq : out.sequences) {
    CompletionChoice c;
    c.raw_logprobs = seq.logprobs;
    if (r.logprobs && tempered && !seq.tokens.empty()) {
      // The model's own log-probabilities (temperature 1) of the tokens drawn: a scoring pass.
      model::SampleSpec score;
      score.prompt = r.spec.prompt;
      score.prompt.insert(score.prompt.end(), seq.tokens.begin(), seq.tokens.end());
      score.params.max_tokens = 1;
      score.params.temperature = 1;
      score.prompt_logprobs = true;
      if (static_cast<int64_t>(score.prompt.size()) < model.config().max_context) {
        const auto scored = model::sample(model, score);
        const auto& lp = *scored.prompt_logprobs;
        for (size_t i = 0; i < seq.tokens.size(); ++i) c.raw_logprobs[i] = lp[r.spec.prompt.size() + i];
      }
    }
    if (out.prompt_logprobs) c.prompt_logprobs = *out.prompt_logprobs;
    c.sequence = std::move(seq);
    choices.push_back(std::move(c));
  }
  return choices;
}

namespace {

// logprobs.content for generated tokens [from, to), after the prompt's when `with_prompt` (echo).
json choice_logprobs(const model::StandInTokenizer& tok, const CompletionRequest& r, const CompletionChoice& c, size_t from,
                     size_t to, bool with_prompt) {
  json content = json::array();
  if (with_prompt)
    for (size_t t = 0; t < r.spec.prompt.size(); ++t) {
      // The first prompt token has no context: 0, as the service answers it (the SDK drops it).
      const float v = t == 0 ? 0.0f : t < c.prompt_logprobs.size() ? c.prompt_logprobs[t] : NAN;
      content.push_back(token_entry(tok, r.spec.prompt[t], v, v));
    }
  for (size_t i = from; i < to; ++i)
    content.push_back(token_entry(tok, c.sequence.tokens[i], c.raw_logprobs[i], c.sequence.logprobs[i]));
  return {{"content", content}};
}

json raw_output(const CompletionRequest& r, const CompletionChoice& c) {
  std::vector<int64_t> completion = c.sequence.tokens;
  if (r.echo) completion.insert(completion.begin(), r.spec.prompt.begin(), r.spec.prompt.end());
  return {{"prompt_token_ids", r.spec.prompt}, {"completion_token_ids", completion}};
}

json usage(const CompletionRequest& r, const std::vector<CompletionChoice>& choices) {
  int64_t completion = 0;
  for (const auto& c : choices) completion += static_cast<int64_t>(c.sequence.tokens.size());
  return {{"prompt_tokens", prompt_tokens(r)}, {"completion_tokens", completion}, {"total_tokens", prompt_tokens(r) + completion}};
}

std::string prefix_text(const model::StandInTokenizer& tok, const CompletionRequest& r) {
  return r.echo ? tok.decode(r.spec.prompt) : "";
}

}  // namespace

json completion_to_json(const model::StandInTokenizer& tok, const CompletionRequest& r,
                        const std::vector<CompletionChoice>& choices, const std::string& id, int64_t created) {
  json out = {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", r.model}, {"choices", json::array()}};
  for (size_t i = 0; i < choices.size(); ++i) {
    const auto& c = choices[i];
    json choice = {{"index", i},
                   {"text", prefix_text(tok, r) + tok.decode(c.sequence.tokens)},
                   {"finish_reason", finish_reason(c.sequence)},
                   {"raw_output", raw_output(r, c)}};
    choice["logprobs"] = r.logprobs ? choice_logprobs(tok, r, c, 0, c.sequence.tokens.size(), r.echo) : json(nullptr);
    out["choices"].push_back(choice);
  }
  out["usage"] = usage(r, choices);
  return out;
}

std::string completion_to_sse(const model::StandInTokenizer& tok, const CompletionRequest& r,
                              const std::vector<CompletionChoice>& choices, const std::string& id, int64_t created) {
  std::string sse;
  const auto event = [&](json choice) {
    const json chunk = {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", r.model}, {"choices", {choice}}};
    sse += "data: " + chunk.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
  };
  for (size_t i = 0; i < choices.size(); ++i) {
    const auto& c = choices[i];
    const size_t n = c.sequence.tokens.size();
    if (r.echo) {
      json first = {{"index", i}, {"text", prefix_text(tok, r)}, {"finish_reason", nullptr}};
      if (r.logprobs) first["logprobs"] = choice_logprobs(tok, r, c, 0, 0, true);
      event(first);
    }
    std::string sent;  // the text of the tokens so far, as deltas went out
    for (size_t t = 0; t < n; ++t) {
      const std::string upto = tok.decode({c.sequence.tokens.begin(), c.sequence.tokens.begin() + t + 1}, t + 1 < n);
      json choice = {{"index", i}, {"text", upto.substr(sent.size())}, {"finish_reason", nullptr}};
      sent = upto;
      if (r.logprobs) choice["logprobs"] = choice_logprobs(tok, r, c, t, t + 1, false);
      if (t + 1 == n) {
        choice["finish_reason"] = finish_reason(c.sequence);
        choice["raw_output"] = raw_output(r, c);
      }
      event(choice);
    }
    if (n == 0) event({{"index", i}, {"text", ""}, {"finish_reason", finish_reason(c.sequence)}, {"raw_output", raw_output(r, c)}});
  }
  const json last = {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", r.model},
                     {"choices", json::array()}, {"usage", usage(r, choices)}};
  sse += "data: " + last.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
  sse += "data: [DONE]\n\n";
  return sse;
}

std::vector<model::ChatMessage> chat_messages_from_json(const json& body) {
  if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty())
    throw InvalidRequest("messages: required (a non-empty list of {\"role\", \"content\"})");
  std::vector<model::ChatMessage> out;
  for (size_t i = 0; i < body["messages"].size(); ++i) {
    const json& m = body["messages"][i];
    const std::string at = "messages[" + std::to_string(i) + "]";
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      throw InvalidRequest(at + ".role: expected a string (system, user, assistant, …)");
    if (!m.contains("content") || !m["content"].is_string())
      throw InvalidRequest(at + ".content: expected a string (Kiln's stand-in tokenizers read text only)");
    out.push_back({m["role"], m["content"]});
  }
  return out;
}

namespace {

// The generated tokens a chat message shows: up to the first end-of-turn token.
size_t content_length(const model::StandInTokenizer& tok, const std::vector<int64_t>& tokens) {
  const auto& eot = tok.end_of_turn();
  for (size_t i = 0; i < tokens.size(); ++i)
    if (std::find(eot.begin(), eot.end(), tokens[i]) != eot.end()) return i;
  return tokens.size();
}

json chat_logprobs(const model::StandInTokenizer& tok, const CompletionChoice& c, size_t from, size_t to) {
  json content = json::array();
  for (size_t i = from; i < to; ++i) {
    json e = token_entry(tok, c.sequence.tokens[i], c.raw_logprobs[i], c.sequence.logprobs[i]);
    e.erase("sampling_logprob");  // token_id stays: Kiln's addition, so a client can score the ids
    content.push_back(e);
  }
  return {{"content", content}};
}

json chat_chunk(const CompletionRequest& r, const std::string& id, int64_t created, json choices) {
  return {{"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", r.model}, {"choices", choices}};
}

}  // namespace

json chat_completion_to_json(const model::StandInTokenizer& tok, const CompletionRequest& r,
                             const std::vector<CompletionChoice>& choices, const std::string& id, int64_t created) {
  json out = {{"id", id}, {"object", "chat.completion"}, {"created", created}, {"model", r.model}, {"choices", json::array()}};
  for (size_t i = 0; i < choices.size(); ++i) {
    const auto& c = choices[i];
    const size_t n = content_length(tok, c.sequence.tokens);
    json choice = {{"index", i},
                   {"message", {{"role", "assistant"}, {"content", tok.decode({c.sequence.tokens.begin(), c.sequence.tokens.begin() + n})}}},
                   {"finish_reason", finish_reason(c.sequence)}};
    choice["logprobs"] = r.logprobs ? chat_logprobs(tok, c, 0, c.sequence.tokens.size()) : json(nullptr);
    out["choices"].push_back(choice);
  }
  out["usage"] = usage(r, choices);
  return out;
}

std::string chat_completion_to_sse(const model::StandInTokenizer& tok, const CompletionRequest& r,
                                   const std::vector<CompletionChoice>& choices, const std::string& id, int64_t created) {
  std::string sse;
  const auto event = [&](const json& chunk) { sse += "data: " + chunk.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n"; };
  for (size_t i = 0; i < choices.size(); ++i) {
    const auto& c = choices[i];
    const size_t shown = content_length(tok, c.sequence.tokens), n = c.sequence.tokens.size();
    // One-element arrays are built with json::array: a braced {x} argument is the element itself
    // to clang (copy-initialization) and an array to gcc.
    const json opening = {{"index", i}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"finish_reason", nullptr}};
    event(chat_chunk(r, id, created, json::array({opening})));
    std::string sent;
    for (size_t t = 0; t < n; ++t) {
      const size_t upto_n = std::min(t + 1, shown);
      const std::string upto = tok.decode({c.sequence.tokens.begin(), c.sequence.tokens.begin() + upto_n}, t + 1 < shown);
      json choice = {{"index", i}, {"delta", {{"content", upto.substr(sent.size())}}}, {"finish_reason", nullptr}};
      sent = upto;
      if (r.logprobs) choice["logprobs"] = chat_logprobs(tok, c, t, t + 1);
      event(chat_chunk(r, id, created, json::array({choice})));
    }
    const json closing = {{"index", i}, {"delta", json::object()}, {"finish_reason", finish_reason(c.sequence)}};
    event(chat_chunk(r, id, created, json::array({closing})));
  }
  json last = chat_chunk(r, id, created, json::array());
  last["usage"] = usage(r, choices);
  event(last);
  sse += "data: [DONE]\n\n";
  return sse;
}

}  // namespace kiln::http
