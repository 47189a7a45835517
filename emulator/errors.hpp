#pragma once
// Kiln's one error type. Every failure the user can see carries a code, the field it is about
// (when there is one) and the message; the code alone decides what the user gets:
//
//   code              HTTP answer (at submit)   a failed future's category (while executing)
//   invalid_request   400                       user
//   user              400                       user
//   not_found         404                       user
//   conflict          409                       user
//   gone              410                       user
//   unsupported_media 415                       user
//   too_early         425                       user    (a deployment still hot-loading)
//   internal          500                       server
//   unavailable       503                       server  (a trainer job still booting)
//
// invalid_request is an envelope problem found before anything runs (protocol.md rule A11: answered
// 400 at submit); user is a content problem (a failed future when found while executing, 400
// when found at submit). Texts the SDKs, the documented server errors or the recorded exchanges
// match on are named factories in errors.cpp (errors_snapshot_test pins them); the subclasses
// below bind a code for the many one-off texts that name their own field.
#include <cstdint>
#include <stdexcept>
#include <string>

namespace kiln {

enum class ErrorCode { invalid_request, user, not_found, conflict, gone, unsupported_media, too_early, internal, unavailable };

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, std::string message, std::string field = "")
      : std::runtime_error(field.empty() ? message : field + ": " + message),
        code_(code), field_(std::move(field)), message_(std::move(message)) {}
  ErrorCode code() const { return code_; }
  const std::string& field() const { return field_; }
  const std::string& message() const { return message_; }  // without the field

 private:
  ErrorCode code_;
  std::string field_, message_;
};

// The error of each code, for throw sites and catch clauses that care about one kind.
class InvalidRequest : public Error {
 public:
  explicit InvalidRequest(std::string message) : Error(ErrorCode::invalid_request, std::move(message)) {}
};
class UserError : public Error {
 public:
  explicit UserError(std::string message, std::string field = "")
      : Error(ErrorCode::user, std::move(message), std::move(field)) {}
};
class NotFound : public Error {
 public:
  explicit NotFound(std::string message) : Error(ErrorCode::not_found, std::move(message)) {}
};
class Conflict : public Error {
 public:
  explicit Conflict(std::string message) : Error(ErrorCode::conflict, std::move(message)) {}
};
class Gone : public Error {
 public:
  explicit Gone(std::string message) : Error(ErrorCode::gone, std::move(message)) {}
};
class InternalError : public Error {  // the server's fault (a full disk): category "server"
 public:
  explicit InternalError(std::string message) : Error(ErrorCode::internal, std::move(message)) {}
};
class TooEarly : public Error {
 public:
  explicit TooEarly(std::string message) : Error(ErrorCode::too_early, std::move(message)) {}
};
class Unavailable : public Error {
 public:
  explicit Unavailable(std::string message) : Error(ErrorCode::unavailable, std::move(message)) {}
};
class UnsupportedMediaType : public Error {
 public:
  explicit UnsupportedMediaType(std::string message) : Error(ErrorCode::unsupported_media, std::move(message)) {}
};

int http_status(ErrorCode code);
const char* future_category(ErrorCode code);  // "user" or "server"

// The outcome of anything that failed while executing: the code's category, and the text a
// user reads (an internal error's text says so).
struct FailureOutcome {
  std::string message;
  const char* category;
};
FailureOutcome outcome_of(const std::exception& e);

namespace errors {
// Texts matched by clients, documented by the services, or shared by several call sites.
NotFound future_not_found();                                         // 404 "Future not found"
NotFound session_not_found(const std::string& session_id);           // 404
NotFound model_not_found(const std::string& model_id);               // 404
NotFound sampler_not_found(const std::string& sampler_id);           // 404
Gone session_finished(const std::string& session_id);                // 410 "session '<id>' is finished"
InvalidRequest seq_id_reused();                                            // 400 "Training request sequence number was reused"
InvalidRequest base_model_required();                                      // 400 "base_model is required"
InvalidRequest base_only(const std::string& model_id);                     // 400 (model_id may be "")
InvalidRequest empty_data();                                               // 400 "data must contain at least one datum"
InvalidRequest load_not_first(const char* what, int64_t seq_id);           // 400 "LoadWeights is not permitted with seq_id N"
InvalidRequest sampler_source_required();                                  // 400 "Either model_path or base_model must be provided"
InvalidRequest model_path_not_tinker();                                    // 400 "model_path must start with 'tinker://'"
InvalidRequest invalid_tinker_path(const std::string& path);               // 400
InvalidRequest invalid_checkpoint_id();                                    // 400 (protocol.md §W10.6)
NotFound checkpoint_not_found(const std::string& ref);               // 404, or a failed future (user)
InvalidRequest unknown_base_model(const std::string& name, const std::string& known);  // 400
InvalidRequest ttl_not_positive(int64_t ttl);                              // 400
UserError missing_credential();
// A save whose files could not be written (a full disk, a file-size limit): nothing was listed.
InternalError checkpoint_not_written(const std::string& checkpoint_id, const std::string& cause);                                       // 401 (answered by the HTTP layer)
}  // namespace errors

}  // namespace kiln
