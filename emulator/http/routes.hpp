#pragma once
// Helpers shared by the route files (one file per family of endpoints).
// Eigen (through the service headers) must come before httplib.h: glibc's <resolv.h>, which
// httplib pulls in, defines a macro `_res` that breaks Eigen's product kernels.
#include "service/trainer_service.hpp"
#include "train/errors.hpp"
#include "wire/proto_codec.hpp"

#include <httplib.h>

#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace kiln::http {

using nlohmann::json;

using kiln::UnsupportedMediaType;  // a body Kiln cannot read on this endpoint (protobuf anywhere but forward_backward): 415

// Strings that are not valid UTF-8 are sent with U+FFFD in their place: an answer never fails to
// encode (nor reads as the client's "malformed JSON body").
inline void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

// A protobuf request body (only forward_backward takes one, tinker 0.25+).
inline bool is_protobuf(const httplib::Request& req) {
  return req.get_header_value("Content-Type").find("application/x-protobuf") != std::string::npos;
}

// Whether a poll wants its forward or sample result as protobuf: tinker 0.25 polls with Accept:
// application/x-protobuf alone and rejects JSON; older clients and Fireworks list
// application/json too and need JSON (protocol.md §W3.3).
inline bool wants_protobuf(const httplib::Request& req) {
  const std::string accept = req.get_header_value("Accept");
  return accept.find("application/x-protobuf") != std::string::npos && accept.find("application/json") == std::string::npos;
}

// A protobuf body's bytes, zstd-decompressed when Content-Encoding says so.
inline std::string protobuf_bytes(const httplib::Request& req, size_t max_bytes) {
  const bool zstd = req.get_header_value("Content-Encoding").find("zstd") != std::string::npos;
  return zstd ? wire::zstd_decompress(req.body, max_bytes) : req.body;
}

// The request body as JSON ({} when empty). Protobuf bodies are refused with a clear 415.
inline json body_json(const httplib::Request& req) {
  if (is_protobuf(req))
    throw UnsupportedMediaType("this endpoint takes JSON; only forward_backward accepts application/x-protobuf");
  if (req.body.empty()) return json::object();
  return json::parse(req.body);
}

// The Fireworks control plane's account of a caller: its key's tenant, one account per key
// (protocol.md §W13.1). Another account's resources behave as unknown ones.
inline std::string account_of(const std::string& key) { return service::tenant_key(key); }
inline void check_account(const std::string& key, const std::string& account) {
  if (account != account_of(key))
    throw NotFound("account '" + account + "' not found; this API key's account is accounts/" + account_of(key));
}

// The checkpoint id after "/checkpoints/": one or two path segments, up to a known suffix. The
// service checks its form ("weights/<name>" or "sampler_weights/<name>"; 400 otherwise, protocol.md §W10.6).
inline const char* kRunId = R"(/api/v1/training_runs/([^/]+))";
inline const char* kCheckpointId = R"(/checkpoints/([^/]+(?:/[^/]+)?))";

}  // namespace kiln::http
