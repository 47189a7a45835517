#pragma once
// A `kiln serve` child process for the process-level tests and the stress programs: started on
// an ephemeral port with its own data directory, reached over loopback, stopped by signal.
#include <sys/resource.h>
#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace httplib {
class Client;
}

namespace kiln::cli_testing {

using nlohmann::json;

class ServeProcess {
 public:
  struct Options {
    std::string data_dir;
    std::vector<std::string> args;             // more `kiln serve` options
    std::optional<rlim_t> file_size_limit;      // RLIMIT_FSIZE in bytes: writes beyond it fail
  };
  // Starts `kiln serve` and waits until it prints its address. On failure to start, running()
  // is false and exit_status() / log() say why.
  explicit ServeProcess(Options o);
  ~ServeProcess();  // SIGKILL if still running

  bool running() const { return port_ > 0; }
  int port() const { return port_; }
  int pid() const { return static_cast<int>(pid_); }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void signal(int sig);
  // Waits for the process to end; its exit code, or 128 + signal.
  int wait();
  std::string log() const;  // everything it wrote to stderr so far

 private:
  Options opts_;
  pid_t pid_ = -1;
  int port_ = -1;
  std::optional<int> status_;
  std::string log_path_;
};

// A raw JSON client over loopback with an API key (no retries, nothing smoothed over).
class Api {
 public:
  Api(const std::string& base_url, const std::string& api_key);
  ~Api();
  std::pair<int, json> post(const std::string& path, const json& body);
  std::pair<int, json> get(const std::string& path);
  std::pair<int, json> del(const std::string& path);
  // Polls retrieve_future through 408s (up to `seconds`); the 200 body, or {} with status.
  std::pair<int, json> result(const std::string& request_id, double seconds = 60);
  // POST then poll: the result of a submitted request.
  json call(const std::string& path, const json& body);

 private:
  std::unique_ptr<httplib::Client> cli_;
};

}  // namespace kiln::cli_testing
