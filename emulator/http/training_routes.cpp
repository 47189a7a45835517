// Models and the future-returning training endpoints, and retrieve_future (wire.md §3, §6.9–6.22).
#include "http/routes.hpp"
#include "http/server.hpp"
#include "wire/json_codec.hpp"
#include "wire/proto_codec.hpp"

namespace kiln::http {

namespace {
// tinker 0.25 polls forward results with Accept: application/x-protobuf alone and rejects JSON;
// older clients and Fireworks list application/json too and need JSON (wire.md §3.3). The same
// holds for sample results.
bool wants_protobuf(const httplib::Request& req) {
  const std::string accept = req.get_header_value("Accept");
  return accept.find("application/x-protobuf") != std::string::npos && accept.find("application/json") == std::string::npos;
}
}  // namespace

void HttpServer::register_training_routes() {
  using service::TrainingRequest;
  // Every training submit: {"model_id", "seq_id", ...} → {"request_id", "model_id"} at once.
  auto submit = [this](const char* path, std::function<TrainingRequest(const json&)> decode) {
    route("POST", path, [this, decode](auto& req, auto& res, auto& key) {
      const json b = body_json(req);
      const std::string model_id = wire::require_string(b, "model_id", "");
      const int64_t seq_id = wire::require_int(b, "seq_id", "");
      const std::string rid = svc_.submit(key, model_id, seq_id, decode(b));
      send_json(res, 200, {{"request_id", rid}, {"model_id", model_id}});
    });
  };
  submit("/api/v1/forward", [](const json& b) { return wire::forward_from_json(b, false); });
  // forward_backward: JSON (tinker <= 0.24, Fireworks) or protobuf, maybe zstd (tinker 0.25, where
  // forward is forward_backward with forward_only).
  route("POST", "/api/v1/forward_backward", [this](auto& req, auto& res, auto& key) {
    if (req.get_header_value("Content-Type").find("application/x-protobuf") != std::string::npos) {
      const bool zstd = req.get_header_value("Content-Encoding").find("zstd") != std::string::npos;
      auto p = wire::forward_backward_from_proto(zstd ? wire::zstd_decompress(req.body, opts_.max_body_bytes) : req.body);
      const std::string rid = svc_.submit(key, p.model_id, p.seq_id, std::move(p.request));
      send_json(res, 200, {{"request_id", rid}, {"model_id", p.model_id}});
      return;
    }
    const json b = body_json(req);
    const std::string model_id = wire::require_string(b, "model_id", "");
    const std::string rid = svc_.submit(key, model_id, wire::require_int(b, "seq_id", ""), wire::forward_from_json(b, true));
    send_json(res, 200, {{"request_id", rid}, {"model_id", model_id}});
  });
  submit("/api/v1/optim_step", [](const json& b) { return wire::optim_step_from_json(b); });
  submit("/api/v1/save_weights", [](const json& b) { return wire::save_weights_from_json(b); });
  submit("/api/v1/save_weights_for_sampler", [](const json& b) { return wire::save_sampler_from_json(b); });
  submit("/api/v1/load_adapter", [](const json& b) { return wire::load_adapter_from_json(b); });
  submit("/api/v1/unload_model", [](const json&) { return service::UnloadModelRequest{}; });
  route("POST", "/api/v1/load_weights", [this](auto& req, auto& res, auto& key) {
    const json b = body_json(req);
    if (!b.contains("model_id") || b["model_id"].is_null()) {  // the create-via-load form
      auto create = wire::create_model_from_json(b, false);
      const auto [model_id, rid] = svc_.create_model_from_state(key, std::move(create), wire::load_weights_from_json(b));
      send_json(res, 200, {{"request_id", rid}, {"model_id", model_id}});
      return;
    }
    const std::string model_id = wire::require_string(b, "model_id", "");
    const std::string rid = svc_.submit(key, model_id, wire::require_int(b, "seq_id", ""), wire::load_weights_from_json(b));
    send_json(res, 200, {{"request_id", rid}, {"model_id", model_id}});
  });

  route("POST", "/api/v1/create_model", [this](auto& req, auto& res, auto& key) {
    const auto r = wire::create_model_from_json(body_json(req));
    const std::string rid = svc_.submit_create_model(key, r);
    send_json(res, 200, {{"request_id", rid}, {"model_id", r.session_id + ":train:" + std::to_string(r.model_seq_id)}});
  });
  route("POST", "/api/v1/get_info", [this](auto& req, auto& res, auto& key) {
    const auto info = svc_.get_info(key, wire::require_string(body_json(req), "model_id", ""));
    json j = {{"model_id", info.model_id},
              {"model_data", {{"arch", "llama"}, {"model_name", info.base_model}, {"tokenizer_id", info.base_model}}},
              {"is_lora", !info.lora.full_parameter() && !info.base_only},
              {"model_name", info.base_model},
              {"type", "get_info"}};
    if (!info.lora.full_parameter()) j["lora_rank"] = info.lora.rank;
    send_json(res, 200, j);
  });

  // Long-poll: hold up to poll_hold_seconds, then 408 try_again (the SDK re-polls at once). A
  // held poll occupies an HTTP thread, so at most half of them may hold: beyond that a poll is
  // answered at once, and pollers can never starve the other requests.
  route("POST", "/api/v1/retrieve_future", [this](auto& req, auto& res, auto& key) {
    const std::string rid = wire::require_string(body_json(req), "request_id", "");
    const int max_holding = std::max(1, opts_.http_threads / 2);
    const bool may_hold = holding_polls_.fetch_add(1) < max_holding;
    const auto hold = may_hold ? std::chrono::milliseconds(static_cast<int64_t>(opts_.poll_hold_seconds * 1000))
                               : std::chrono::milliseconds(0);
    struct Release {
      std::atomic<int>& n;
      ~Release() { n.fetch_sub(1); }
    } release{holding_polls_};
    const auto r = svc_.retrieve(key, rid, hold);
    using Status = service::RetrieveResult::Status;
    if (r.status == Status::pending) {
      json body = {{"type", "try_again"}, {"request_id", rid}, {"queue_state", r.queue_state}};
      if (!r.queue_state_reason.empty()) body["queue_state_reason"] = r.queue_state_reason;
      send_json(res, 408, body);
    } else if (r.status == Status::failed) {
      send_json(res, 200, wire::failure_to_json(r));  // failures are always JSON
    } else if (wants_protobuf(req) && std::holds_alternative<train::ForwardResult>(r.result)) {
      res.set_content(wire::forward_result_to_proto(std::get<train::ForwardResult>(r.result)), "application/x-protobuf");
    } else if (wants_protobuf(req) && std::holds_alternative<model::SampleOutput>(r.result)) {
      res.set_content(wire::sample_result_to_proto(std::get<model::SampleOutput>(r.result)), "application/x-protobuf");
    } else {
      send_json(res, 200, wire::result_to_json(r.result));
    }
  });

  route("POST", "/api/v1/weights_info", [this](auto& req, auto& res, auto& key) {
    const auto w = svc_.weights_info(key, wire::require_string(body_json(req), "tinker_path", ""));
    json j = {{"base_model", w.base_model}, {"is_lora", w.is_lora}};
    if (w.is_lora) {
      j["lora_rank"] = w.lora_rank;
      j["train_attn"] = w.train_attn;
      j["train_mlp"] = w.train_mlp;
      j["train_unembed"] = w.train_unembed;
    }
    send_json(res, 200, j);
  });
  route("GET", "/api/v1/list_checkpoints", [this](auto&, auto& res, auto& key) {
    send_json(res, 200, {{"checkpoints", svc_.list_checkpoint_names(key)}});
  });
}

}  // namespace kiln::http
