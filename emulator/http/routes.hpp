#pragma once
// Helpers shared by the route files (one file per family of endpoints).
// Eigen (through the service headers) must come before httplib.h: glibc's <resolv.h>, which
// httplib pulls in, defines a macro `_res` that breaks Eigen's product kernels.
#include "service/trainer_service.hpp"
#include "train/errors.hpp"

#include <httplib.h>

#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace kiln::http {

using nlohmann::json;

using kiln::UnsupportedMediaType;  // a body Kiln cannot read on this endpoint (protobuf anywhere but forward_backward): 415

inline void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

// The request body as JSON ({} when empty). Protobuf bodies are refused with a clear 415.
inline json body_json(const httplib::Request& req) {
  if (req.get_header_value("Content-Type").find("application/x-protobuf") != std::string::npos)
    throw UnsupportedMediaType("this endpoint takes JSON; only forward_backward accepts application/x-protobuf");
  if (req.body.empty()) return json::object();
  return json::parse(req.body);
}

// The checkpoint id after "/checkpoints/": one or two path segments, up to a known suffix. The
// service checks its form ("weights/<name>" or "sampler_weights/<name>"; 400 otherwise, wire.md §10.6).
inline const char* kRunId = R"(/api/v1/training_runs/([^/]+))";
inline const char* kCheckpointId = R"(/checkpoints/([^/]+(?:/[^/]+)?))";

}  // namespace kiln::http
