// Models and the future-returning training endpoints, and retrieve_future (protocol.md §W3, §W6.9–6.22).
#include "http/routes.hpp"
#include "http/server.hpp"
#include "wire/json_codec.hpp"

namespace kiln::http {

void HttpServer::register_training_routes() {
  using service::TrainingRequest;
  using Decode = std::function<TrainingRequest(const json&)>;
  // A JSON submit: {"model_id", "seq_id", ...} → {"request_id", "model_id"} at once. A body that
  // names its model and seq_id but does not decode is a 400 whose seq_id counts as arrived (B1).
  auto submit_json = [this](const json& b, const Decode& decode, httplib::Response& res, const std::string& key) {
    const std::string model_id = wire::require_string(b, "model_id", "");
    const int64_t seq_id = wire::require_int(b, "seq_id", "");
    std::optional<TrainingRequest> request;
    try {
      request = decode(b);
    } catch (...) {
      svc_.refuse(key, model_id, seq_id);
      throw;
    }
    send_json(res, 200, wire::submitted_to_json(svc_.submit(key, model_id, seq_id, std::move(*request)), model_id));
  };
  auto submit = [this, submit_json](const char* path, Decode decode) {
    route("POST", path, [submit_json, decode](auto& req, auto& res, auto& key) { submit_json(body_json(req), decode, res, key); });
  };
  submit("/api/v1/forward", [](const json& b) { return wire::forward_from_json(b, false); });
  // forward_backward: JSON (tinker <= 0.24, Fireworks) or protobuf, maybe zstd (tinker 0.25, where
  // forward is forward_backward with forward_only).
  route("POST", "/api/v1/forward_backward", [this, submit_json](auto& req, auto& res, auto& key) {
    if (is_protobuf(req)) {
      auto p = wire::forward_backward_from_proto(protobuf_bytes(req, opts_.max_body_bytes));
      send_json(res, 200, wire::submitted_to_json(svc_.submit(key, p.model_id, p.seq_id, std::move(p.request)), p.model_id));
      return;
    }
    submit_json(body_json(req), [](const json& b) { return wire::forward_from_json(b, true); }, res, key);
  });
  submit("/api/v1/optim_step", [](const json& b) { return wire::optim_step_from_json(b); });
  submit("/api/v1/save_weights", [](const json& b) { return wire::save_weights_from_json(b); });
  submit("/api/v1/save_weights_for_sampler", [](const json& b) { return wire::save_sampler_from_json(b); });
  submit("/api/v1/save_weights_external", [](const json& b) { return wire::save_external_from_json(b); });
  submit("/api/v1/load_adapter", [](const json& b) { return wire::load_adapter_from_json(b); });
  submit("/api/v1/unload_model", [](const json&) { return service::UnloadModelRequest{}; });
  route("POST", "/api/v1/load_weights", [this, submit_json](auto& req, auto& res, auto& key) {
    const json b = body_json(req);
    if (!b.contains("model_id") || b["model_id"].is_null()) {  // the create-via-load form
      auto create = wire::create_model_from_json(b, false);
      const auto [model_id, rid] = svc_.create_model_from_state(key, std::move(create), wire::load_weights_from_json(b));
      send_json(res, 200, wire::submitted_to_json(rid, model_id));
      return;
    }
    submit_json(b, [](const json& body) { return wire::load_weights_from_json(body); }, res, key);
  });

  route("POST", "/api/v1/create_model", [this](auto& req, auto& res, auto& key) {
    const auto r = wire::create_model_from_json(body_json(req));
    const std::string rid = svc_.submit_create_model(key, r);
    send_json(res, 200, wire::submitted_to_json(rid, r.session_id + ":train:" + std::to_string(r.model_seq_id)));
  });
  route("POST", "/api/v1/get_info", [this](auto& req, auto& res, auto& key) {
    send_json(res, 200, wire::model_info_to_json(svc_.get_info(key, wire::require_string(body_json(req), "model_id", ""))));
  });
}

void HttpServer::register_future_routes() {
  // Long-poll: hold up to poll_hold_seconds (when a slot is free), then 408 try_again (the SDK
  // re-polls at once).
  route("POST", "/api/v1/retrieve_future", [this](auto& req, auto& res, auto& key) {
    const std::string rid = wire::require_string(body_json(req), "request_id", "");
    const auto slot = hold_poll_slot();
    const auto hold = slot.may_hold ? std::chrono::milliseconds(static_cast<int64_t>(opts_.poll_hold_seconds * 1000))
                                    : std::chrono::milliseconds(0);
    const auto r = svc_.retrieve(key, rid, hold);
    using Status = service::RetrieveResult::Status;
    if (r.status == Status::pending) {
      send_json(res, 408, wire::try_again_to_json(rid, r.queue_state, r.queue_state_reason));
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
}

}  // namespace kiln::http
