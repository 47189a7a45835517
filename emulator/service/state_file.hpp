#pragma once
// A small JSON file of the control plane's state (trainer jobs, deployments): replaced whole on
// each change (written beside, then renamed over), read back at start.
#include <string>

#include <nlohmann/json.hpp>

namespace kiln::service {

// InternalError when it cannot be written.
void write_state_file(const std::string& path, const nlohmann::json& doc);
// The JSON array the file holds, [] when it does not exist; std::runtime_error naming `what`
// when it is not a JSON array.
nlohmann::json read_state_file(const std::string& path, const std::string& what);

}  // namespace kiln::service
