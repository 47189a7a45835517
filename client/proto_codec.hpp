#pragma once
// The protobuf transport of tinker 0.25 from the client's side (protocol.md §W8, §W9): forward /
// forward_backward requests out (optionally zstd-compressed), ForwardBackwardOutput results in.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/types.hpp"

namespace kiln::client {

// A serialized tinker_public.ForwardBackwardRequest. Numeric loss_fn_config values only.
std::string forward_request_to_proto(const std::string& model_id, int64_t seq_id, const std::vector<Datum>& data,
                                     const std::string& loss_fn, const nlohmann::json& loss_fn_config, bool forward_only);
// Throws ApiError("Proto deserialization failed: ...") for bytes that are not one.
ForwardBackwardOutput forward_output_from_proto(const std::string& bytes);
std::string zstd_compress(const std::string& bytes, int level = 3);

}  // namespace kiln::client
