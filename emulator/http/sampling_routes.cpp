// Sampling sessions and asample (protocol.md §W6.17–6.19); results are polled with retrieve_future.
#include "http/routes.hpp"
#include "http/server.hpp"
#include "wire/json_codec.hpp"

namespace kiln::http {

namespace {
constexpr double kFuturesPollSeconds = 30;  // retrieve_futures' hold without a timeout (the SDK waits 45 s)
}  // namespace

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
  // tinker 0.26+ (client/config sample_use_retrieve_futures): the session's futures poller. A
  // long-poll like retrieve_future's, sharing its bound on held polls; results are then fetched
  // with retrieve_future.
  route("POST", "/api/v1/retrieve_futures", [this](auto& req, auto& res, auto& key) {
    const auto b = wire::retrieve_futures_from_json(body_json(req));
    const double hold_seconds = std::min(b.timeout_seconds.value_or(kFuturesPollSeconds), kFuturesPollSeconds * 2);
    const auto slot = hold_poll_slot();
    const auto hold = slot.may_hold ? std::chrono::milliseconds(static_cast<int64_t>(hold_seconds * 1000))
                                    : std::chrono::milliseconds(0);
    const auto [done, cursor] = svc_.sampler_completions(key, b.sampling_session_id, b.cursor, hold);
    send_json(res, 200, wire::completions_to_json(done, cursor));
  });
  // tinker 0.26+ (client/dynamic_config sample_cancel_enabled): abandoned samples.
  route("POST", "/api/v1/cancel_future", [this](auto& req, auto& res, auto& key) {
    const auto ids = wire::cancel_future_from_json(body_json(req));
    const auto cancelled = svc_.cancel_samples(key, ids);
    json yes = json::array(), complete = json::array();
    for (size_t i = 0; i < ids.size(); ++i) (cancelled[i] ? yes : complete).push_back(ids[i]);
    send_json(res, 200, {{"type", "cancel_future"}, {"cancelled", yes}, {"already_complete", complete}});
  });
  route("GET", R"(/api/v1/samplers/([^/]+))", [this](auto& req, auto& res, auto& key) {
    send_json(res, 200, wire::sampler_to_json(svc_.get_sampler(key, req.matches[1])));
  });
}

}  // namespace kiln::http
