// The OpenAI-compatible surface Tinker serves under /oai/api/v1 (protocol.md §W13.9): models,
// completions and chat completions (streamed as server-sent events), on base models, promoted
// models and tinker://…/sampler_weights/… paths, text tokenized by the family's stand-in.
#include "http/completion_ids.hpp"
#include "http/completions.hpp"
#include "http/routes.hpp"
#include "http/server.hpp"
#include "service/checkpoint_ref.hpp"

namespace kiln::http {

void HttpServer::register_oai_routes() {
  route("GET", "/oai/api/v1/models", [this](auto&, auto& res, auto& key) {
    json data = json::array();
    for (const auto& e : svc_.registry().entries())
      data.push_back({{"id", e.name}, {"object", "model"}, {"created", 0}, {"owned_by", "kiln"}});
    for (const auto& r : svc_.promoted_models(account_of(key)))
      data.push_back({{"id", "accounts/" + account_of(key) + "/models/" + r.name}, {"object", "model"},
                      {"created", static_cast<int64_t>(service::to_unix_seconds(r.created))}, {"owned_by", account_of(key)}});
    send_json(res, 200, {{"object", "list"}, {"data", data}});
  });

  // The weights and tokenizer a text request names, with the prompt it becomes.
  struct Target {
    std::shared_ptr<const model::Transformer<float>> weights;
    model::StandInTokenizer tok = model::StandInTokenizer::opaque("");
  };
  const auto target = [this](const std::string& key, const std::string& name) {
    Target t;
    std::string base = name;
    if (service::CheckpointRef::is_tinker_path(name)) {
      std::tie(t.weights, base) = svc_.sampler_path_weights(key, name);
    } else if (!(t.weights = model_weights(account_of(key), name))) {
      throw NotFound("model '" + name + "' not found: expected a base model (GET /oai/api/v1/models), a promoted model, "
                     "or tinker://<run>/sampler_weights/<name>");
    }
    t.tok = tokenizer_for(account_of(key), base);
    if (!t.tok.can_encode())
      throw InvalidRequest("model: '" + name + "' is of family '" + t.tok.family() + "', which has no built-in stand-in "
                           "tokenizer (Kiln has: qwen3, qwen3_5, llama3, llama3_chat, and its own kiln/ models); send "
                           "token ids to /inference/v1/completions instead");
    return t;
  };
  const auto model_name = [](const json& body) {
    if (!body.is_object() || !body.contains("model") || !body["model"].is_string())
      throw InvalidRequest("model: required (a base model, a promoted model or a tinker:// sampler path)");
    return body["model"].get<std::string>();
  };
  const auto answer = [](httplib::Response& res, bool stream, const json& whole, const std::string& sse) {
    if (!stream) return send_json(res, 200, whole);
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_content(sse, "text/event-stream");
  };

  route("POST", "/oai/api/v1/completions", [this, target, model_name, answer](auto& req, auto& res, auto& key) {
    json body = body_json(req);
    const Target t = target(key, model_name(body));
    if (body.contains("prompt") && body["prompt"].is_string()) body["prompt"] = t.tok.encode(body["prompt"]);
    const CompletionRequest r = completion_request_from_json(body);
    const auto choices = run_completion(*t.weights, r);
    const int64_t created = static_cast<int64_t>(service::to_unix_seconds(svc_.clock().now()));
    const std::string id = completion_id("cmpl-");
    answer(res, r.stream, r.stream ? json() : completion_to_json(t.tok, r, choices, id, created),
           r.stream ? completion_to_sse(t.tok, r, choices, id, created) : "");
  });

  route("POST", "/oai/api/v1/chat/completions", [this, target, model_name, answer](auto& req, auto& res, auto& key) {
    json body = body_json(req);
    const Target t = target(key, model_name(body));
    if (!t.tok.has_chat_template())
      throw InvalidRequest("model: '" + body["model"].get<std::string>() + "' has no chat template (Kiln's own models); "
                           "use /oai/api/v1/completions");
    body["prompt"] = t.tok.chat_prompt(chat_messages_from_json(body));
    if (body.contains("max_completion_tokens") && !body.contains("max_tokens")) body["max_tokens"] = body["max_completion_tokens"];
    if (body.contains("logprobs") && body["logprobs"].is_boolean() && body.contains("top_logprobs"))
      body["logprobs"] = body["logprobs"].get<bool>() ? body["top_logprobs"] : json(false);
    body.erase("echo");
    CompletionRequest r = completion_request_from_json(body);
    for (int64_t id : t.tok.end_of_turn()) r.spec.params.stop_tokens.push_back(id);  // the assistant's turn ends there
    const auto choices = run_completion(*t.weights, r);
    const int64_t created = static_cast<int64_t>(service::to_unix_seconds(svc_.clock().now()));
    const std::string id = completion_id("chatcmpl-");
    answer(res, r.stream, r.stream ? json() : chat_completion_to_json(t.tok, r, choices, id, created),
           r.stream ? chat_completion_to_sse(t.tok, r, choices, id, created) : "");
  });
}

}  // namespace kiln::http
