#include "conformance/driver_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <thread>

namespace kiln::conformance {

DriverProcess::DriverProcess(const std::string& command) {
  int to_child[2], from_child[2];
  if (pipe(to_child) != 0 || pipe(from_child) != 0) throw std::runtime_error("pipe() failed");
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork() failed");
  if (pid_ == 0) {
    dup2(to_child[0], STDIN_FILENO);
    dup2(from_child[1], STDOUT_FILENO);
    close(to_child[0]);
    close(to_child[1]);
    close(from_child[0]);
    close(from_child[1]);
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(to_child[0]);
  close(from_child[1]);
  // Drivers started later must not inherit this one's pipes (it would never see end of input).
  fcntl(to_child[1], F_SETFD, FD_CLOEXEC);
  fcntl(from_child[0], F_SETFD, FD_CLOEXEC);
  in_ = fdopen(to_child[1], "w");
  out_ = fdopen(from_child[0], "r");
}

DriverProcess::~DriverProcess() {
  if (in_) {
    std::fprintf(in_, "%s\n", nlohmann::json{{"id", next_id_++}, {"op", "close"}, {"args", nlohmann::json::object()}}.dump().c_str());
    std::fflush(in_);
    std::fclose(in_);
  }
  int status = 0;
  for (int i = 0; i < 50 && waitpid(pid_, &status, WNOHANG) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (waitpid(pid_, &status, WNOHANG) == 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
  }
  if (out_) std::fclose(out_);
}

nlohmann::json DriverProcess::request(const std::string& op, const nlohmann::json& args) {
  const int64_t id = next_id_++;
  const std::string line = nlohmann::json{{"id", id}, {"op", op}, {"args", args}}.dump();
  if (std::fprintf(in_, "%s\n", line.c_str()) < 0 || std::fflush(in_) != 0)
    throw std::runtime_error("the driver's stdin is closed (did it exit?)");
  std::string reply;
  for (int c; (c = std::fgetc(out_)) != EOF && c != '\n';) reply.push_back(static_cast<char>(c));
  if (reply.empty()) throw std::runtime_error("the driver exited without answering '" + op + "'");
  const auto j = nlohmann::json::parse(reply, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw std::runtime_error("the driver answered a line that is not a JSON object: " + reply);
  if (j.value("id", nlohmann::json()) != id)
    throw std::runtime_error("the driver answered id " + j.value("id", nlohmann::json()).dump() + " to request " + std::to_string(id));
  return j;
}

}  // namespace kiln::conformance
