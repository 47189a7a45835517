#include "http/completions.hpp"

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

// Text from the bytes the tokens decode to, always valid UTF-8: a byte that cannot start or
// continue a valid sequence becomes U+FFFD. An incomplete sequence at the end is held back (it
// may complete with the next token) unless `final`, when it too becomes U+FFFD. So the text of a
// prefix of the tokens is a prefix of the text of all of them (stream deltas add up).
std::string utf8_text(const std::string& bytes, bool final) {
  static const std::string replacement = "\xEF\xBF\xBD";
  std::string out;
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = b[i];
    const size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0) {
      out += replacement;
      ++i;
      continue;
    }
    size_t k = 1;
    while (k < len && i + k < n && (b[i + k] & 0xC0) == 0x80) ++k;
    if (k == len) {
      out.append(bytes, i, len);
      i += len;
    } else if (i + k == n && !final) {
      break;  // incomplete at the end: wait for the next token
    } else {
      out += replacement;
      i += k;
    }
  }
  return out;
}

std::string token_text(const std::vector<int64_t>& tokens, bool final = true) {
  return utf8_text(model::decode_bytes(tokens), final);
}

json logprob_value(float v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// One logprobs.content entry (the Fireworks form the SDK reads: logprob, sampling_logprob).
json token_entry(int64_t token, float raw, float sampling) {
  json bytes = json::array();
  for (unsigned char c : model::decode_bytes({token})) bytes.push_back(c);
  return {{"token", token_text({token})}, {"token_id", token}, {"bytes", bytes}, {"logprob", logprob_value(raw)},
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
json choice_logprobs(const CompletionRequest& r, const CompletionChoice& c, size_t from, size_t to, bool with_prompt) {
  json content = json::array();
  if (with_prompt)
    for (size_t t = 0; t < r.spec.prompt.size(); ++t) {
      const float v = t < c.prompt_logprobs.size() ? c.prompt_logprobs[t] : NAN;
      content.push_back(token_entry(r.spec.prompt[t], v, v));
    }
  for (size_t i = from; i < to; ++i)
    content.push_back(token_entry(c.sequence.tokens[i], c.raw_logprobs[i], c.sequence.logprobs[i]));
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

std::string prefix_text(const CompletionRequest& r) { return r.echo ? token_text(r.spec.prompt) : ""; }

}  // namespace

json completion_to_json(const CompletionRequest& r, const std::vector<CompletionChoice>& choices, const std::string& id,
                        int64_t created) {
  json out = {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", r.model}, {"choices", json::array()}};
  for (size_t i = 0; i < choices.size(); ++i) {
    const auto& c = choices[i];
    json choice = {{"index", i},
                   {"text", prefix_text(r) + token_text(c.sequence.tokens)},
                   {"finish_reason", finish_reason(c.sequence)},
                   {"raw_output", raw_output(r, c)}};
    choice["logprobs"] = r.logprobs ? choice_logprobs(r, c, 0, c.sequence.tokens.size(), r.echo) : json(nullptr);
    out["choices"].push_back(choice);
  }
  out["usage"] = usage(r, choices);
  return out;
}

std::string completion_to_sse(const CompletionRequest& r, const std::vector<CompletionChoice>& choices, const std::string& id,
                              int64_t created) {
  std::string sse;
  const auto event = [&](json choice) {
    const json chunk = {{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", r.model}, {"choices", {choice}}};
    sse += "data: " + chunk.dump() + "\n\n";
  };
  for (size_t i = 0; i < choices.size(); ++i) {
    const auto& c = choices[i];
    const size_t n = c.sequence.tokens.size();
    if (r.echo) {
      json first = {{"index", i}, {"text", prefix_text(r)}, {"finish_reason", nullptr}};
      if (r.logprobs) first["logprobs"] = choice_logprobs(r, c, 0, 0, true);
      event(first);
    }
    std::string sent;  // the text of the tokens so far, as deltas went out
    for (size_t t = 0; t < n; ++t) {
      const std::string upto = token_text({c.sequence.tokens.begin(), c.sequence.tokens.begin() + t + 1}, t + 1 == n);
      json choice = {{"index", i}, {"text", upto.substr(sent.size())}, {"finish_reason", nullptr}};
      sent = upto;
      if (r.logprobs) choice["logprobs"] = choice_logprobs(r, c, t, t + 1, false);
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
  sse += "data: " + last.dump() + "\n\n";
  sse += "data: [DONE]\n\n";
  return sse;
}

}  // namespace kiln::http
