#pragma once
// A driver program (DRIVER.md) run as a child process: JSON lines to its stdin, one JSON line
// back from its stdout per request. Its stderr goes to a file, kept for failure reports.
#include <cstdio>
#include <stdexcept>
#include <string>

#include <sys/types.h>

#include <nlohmann/json.hpp>

namespace kiln::conformance {

// The driver broke the protocol: it exited, answered something that is not a JSON object or
// answered another id, or did not answer within the timeout.
class DriverBroken : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class DriverProcess {
 public:
  // Runs `command` with /bin/sh -c. Throws std::runtime_error if it cannot start.
  explicit DriverProcess(const std::string& command, double timeout_seconds = 60);
  ~DriverProcess();  // sends close, then waits (kills after 5 s, or at once after a timeout)
  DriverProcess(const DriverProcess&) = delete;
  DriverProcess& operator=(const DriverProcess&) = delete;

  // Sends {"id", "op", "args"} and returns the response. Throws DriverBroken.
  nlohmann::json request(const std::string& op, const nlohmann::json& args = nlohmann::json::object());
  // The last `max_bytes` the driver wrote to stderr.
  std::string stderr_tail(size_t max_bytes = 2000) const;

 private:
  pid_t pid_ = -1;
  int in_fd_ = -1, out_fd_ = -1, err_fd_ = -1;
  std::string buffered_;  // read from stdout, not yet a whole line
  double timeout_seconds_;
  bool broken_ = false;
  int64_t next_id_ = 1;
};

}  // namespace kiln::conformance
