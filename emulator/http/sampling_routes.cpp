// Sampling sessions and asample (protocol.md §W6.17–6.19); results are polled with retrieve_future.
#include "http/routes.hpp"
#include "http/server.hpp"
#include "wire/json_codec.hpp"

namespace kiln::http {

void HttpServer::register_sampling_routes() {
  route("POST", "/api/v1/create_sampling_session", [this](auto& req, auto& res, auto& key) {
    const std::string id = svc_.create_sampler(key, wire::create_sampler_from_json(body_json(req)));
    send_json(res, 200, {{"sampling_session_id", id}, {"type", "create_sampling_session"}});
  });
  route("POST", "/api/v1/asample", [this](auto& req, auto& res, auto& key) {
    const json b = body_json(req);
    if (!b.contains("sampling_session_id") || b["sampling_session_id"].is_null())
      throw train::InvalidRequest("field 'sampling_session_id' is required: create a sampler with "
                                  "create_sampling_session (or save_weights_for_sampler) first");
    const std::string sampler = wire::require_string(b, "sampling_session_id", "");
    const int64_t seq_id = b.contains("seq_id") && !b["seq_id"].is_null() ? wire::require_int(b, "seq_id", "") : -1;
    const auto sub = svc_.submit_sample(key, sampler, seq_id, wire::sample_from_json(b));
    send_json(res, 200, wire::sample_submission_to_json(sub));
  });
  // tinker 0.32: a cloned sampling client joins the session → {"type", "client_counter"}.
  route("POST", "/api/v1/join_sampling_session", [this](auto& req, auto& res, auto& key) {
    const int64_t n = svc_.join_sampler(key, wire::require_string(body_json(req), "sampling_session_id", ""));
    send_json(res, 200, {{"type", "join_sampling_session"}, {"client_counter", n}});
  });
  route("GET", R"(/api/v1/samplers/([^/]+))", [this](auto& req, auto& res, auto& key) {
    send_json(res, 200, wire::sampler_to_json(svc_.get_sampler(key, req.matches[1])));
  });
}

}  // namespace kiln::http
