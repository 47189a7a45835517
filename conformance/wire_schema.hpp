#pragma once
// What a client may put in each request body (protocol.md §W6–7, checked against the real SDKs'
// captures in wire_schema_test.cpp): required fields, their JSON types and fixed values, and
// nothing else.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kiln::conformance {

// Problems of one POST body, each naming the field; empty when it conforms. A journal body
// decoded from protobuf carries "transport" / "zstd" annotations, which are ignored.
std::vector<std::string> request_problems(const std::string& path, const nlohmann::json& body);
// A GET endpoint of the API (list_checkpoints, get_server_capabilities, healthz, the REST views).
bool is_get_endpoint(const std::string& path);

}  // namespace kiln::conformance
