#pragma once
// A driver program (DRIVER.md) run as a child process: JSON lines to its stdin, one JSON line
// back from its stdout per request.
#include <cstdio>
#include <string>

#include <sys/types.h>

#include <nlohmann/json.hpp>

namespace kiln::conformance {

class DriverProcess {
 public:
  // Runs `command` with /bin/sh -c. Throws std::runtime_error if it cannot start.
  explicit DriverProcess(const std::string& command);
  ~DriverProcess();  // sends close, then waits (kills after 5 s)
  DriverProcess(const DriverProcess&) = delete;
  DriverProcess& operator=(const DriverProcess&) = delete;

  // Sends {"id", "op", "args"} and returns the response. Throws std::runtime_error if the driver
  // exits, answers something that is not JSON, or answers with another id.
  nlohmann::json request(const std::string& op, const nlohmann::json& args = nlohmann::json::object());

 private:
  pid_t pid_ = -1;
  FILE* in_ = nullptr;   // the driver's stdin
  FILE* out_ = nullptr;  // the driver's stdout
  int64_t next_id_ = 1;
};

}  // namespace kiln::conformance
