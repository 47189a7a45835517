#include "cli/serve_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <httplib.h>

namespace kiln::cli_testing {

ServeProcess::ServeProcess(Options o) : opts_(std::move(o)) {
  log_path_ = opts_.data_dir + ".log";
  int out[2];
  if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
  std::vector<std::string> argv = {KILN_BINARY, "serve", "--port", "0", "--data-dir", opts_.data_dir,
                                   "--log-format", "none"};
  argv.insert(argv.end(), opts_.args.begin(), opts_.args.end());
  pid_ = ::fork();
  if (pid_ == 0) {
    ::dup2(out[1], 1);
    const int err = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(err, 2);
    ::close(out[0]);
    if (opts_.file_size_limit) {
      const rlimit lim{*opts_.file_size_limit, *opts_.file_size_limit};
      ::setrlimit(RLIMIT_FSIZE, &lim);
    }
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(out[1]);
  // The first line names the address: "kiln: serving on http[s]://127.0.0.1:PORT (...".
  std::string line;
  char c;
  while (::read(out[0], &c, 1) == 1 && c != '\n') line.push_back(c);
  ::close(out[0]);  // later output (the "stopped" line) goes to a closed pipe: SIGPIPE is ignored there
  const auto at = line.find("://127.0.0.1:");
  if (at != std::string::npos) port_ = std::stoi(line.substr(at + 13));
}

ServeProcess::~ServeProcess() {
  if (!status_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    wait();
  }
}

void ServeProcess::signal(int sig) {
  if (!status_) ::kill(pid_, sig);
}

int ServeProcess::wait() {
  if (!status_) {
    int st = 0;
    ::waitpid(pid_, &st, 0);
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  return *status_;
}

std::string ServeProcess::log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Api::Api(const std::string& base_url, const std::string& api_key) : cli_(std::make_unique<httplib::Client>(base_url)) {
  cli_->set_default_headers({{"X-API-Key", api_key}, {"Accept", "application/json"}});
  cli_->set_read_timeout(std::chrono::seconds(60));
  cli_->set_connection_timeout(std::chrono::seconds(5));
}

Api::~Api() = default;

namespace {
std::pair<int, json> parsed(const httplib::Result& r) {
  if (!r) return {0, json()};
  return {r->status, r->body.empty() ? json() : json::parse(r->body, nullptr, false)};
}
}  // namespace

std::pair<int, json> Api::post(const std::string& path, const json& body) {
  return parsed(cli_->Post(path.c_str(), body.dump(), "application/json"));
}

std::pair<int, json> Api::get(const std::string& path) { return parsed(cli_->Get(path.c_str())); }

std::pair<int, json> Api::del(const std::string& path) { return parsed(cli_->Delete(path.c_str())); }

std::pair<int, json> Api::result(const std::string& request_id, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    auto [status, body] = post("/api/v1/retrieve_future", {{"request_id", request_id}});
    if (status != 408) return {status, body};
  }
  return {408, json()};
}

json Api::call(const std::string& path, const json& body) {
  auto [status, submitted] = post(path, body);
  if (status != 200 || !submitted.is_object() || !submitted.contains("request_id"))
    throw std::runtime_error(path + " answered " + std::to_string(status) + ": " + submitted.dump());
  auto [rs, result] = this->result(submitted["request_id"]);
  if (rs != 200) throw std::runtime_error(path + " result: " + std::to_string(rs) + ": " + result.dump());
  return result;
}

}  // namespace kiln::cli_testing
