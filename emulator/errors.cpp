#include "errors.hpp"

#include <new>

namespace kiln {

int http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_request:
    case ErrorCode::user: return 400;
    case ErrorCode::not_found: return 404;
    case ErrorCode::conflict: return 409;
    case ErrorCode::gone: return 410;
    case ErrorCode::unsupported_media: return 415;
    case ErrorCode::too_early: return 425;
    case ErrorCode::internal: return 500;
    case ErrorCode::unavailable: return 503;
  }
  return 500;
}

const char* future_category(ErrorCode code) {
  return code == ErrorCode::internal || code == ErrorCode::unavailable ? "server" : "user";
}

FailureOutcome outcome_of(const std::exception& e) {
  if (const auto* k = dynamic_cast<const Error*>(&e)) return {k->what(), future_category(k->code())};
  if (dynamic_cast<const std::bad_alloc*>(&e)) return {"internal error: out of memory", "server"};
  return {std::string("internal error: ") + e.what(), "server"};
}

namespace errors {

NotFound future_not_found() { return NotFound("Future not found"); }
NotFound session_not_found(const std::string& id) { return NotFound("session '" + id + "' not found"); }
NotFound model_not_found(const std::string& id) { return NotFound("model '" + id + "' not found"); }
NotFound sampler_not_found(const std::string& id) { return NotFound("sampling session '" + id + "' not found"); }
Gone session_finished(const std::string& id) {
  return Gone("session '" + id + "' is finished; create a new ServiceClient to continue");
}
InvalidRequest seq_id_reused() { return InvalidRequest("Training request sequence number was reused"); }
InvalidRequest base_model_required() { return InvalidRequest("base_model is required"); }
InvalidRequest base_only(const std::string& model_id) {
  return InvalidRequest("model " + (model_id.empty() ? "" : model_id + " ") + "is base-only; only forward is allowed");
}
InvalidRequest empty_data() { return InvalidRequest("data must contain at least one datum"); }
InvalidRequest load_not_first(const char* what, int64_t seq_id) {
  return InvalidRequest(std::string(what) + " is not permitted with seq_id " + std::to_string(seq_id));
}
InvalidRequest sampler_source_required() { return InvalidRequest("Either model_path or base_model must be provided"); }
InvalidRequest model_path_not_tinker() { return InvalidRequest("model_path must start with 'tinker://'"); }
InvalidRequest invalid_tinker_path(const std::string& path) {
  return InvalidRequest("Invalid tinker path: " + path +
                        " (expected tinker://<training_run_id>/weights/<name> or .../sampler_weights/<name>)");
}
InvalidRequest invalid_checkpoint_id() {
  return InvalidRequest(
      "Invalid checkpoint identifier. Expected format 'weights/<name>' (training weights) or "
      "'sampler_weights/<name>' (sampler weights), where <name> is a single path segment.");
}
NotFound checkpoint_not_found(const std::string& ref) { return NotFound("checkpoint '" + ref + "' not found"); }
InvalidRequest unknown_base_model(const std::string& name, const std::string& known) {
  return InvalidRequest("unknown base model '" + name + "'; supported: " + known);
}
InvalidRequest ttl_not_positive(int64_t ttl) {
  return InvalidRequest("ttl_seconds must be positive, got " + std::to_string(ttl));
}
InternalError checkpoint_not_written(const std::string& checkpoint_id, const std::string& cause) {
  return InternalError("checkpoint '" + checkpoint_id + "' was not saved: " + cause +
                       "; nothing was stored or listed, and the model is unchanged");
}
UserError missing_credential() {
  return UserError("missing or expired credential: send X-API-Key or Authorization: Bearer <key>");
}

}  // namespace errors
}  // namespace kiln
