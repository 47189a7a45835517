#include "conformance/driver_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cerrno>
#include <cstdlib>
#include <thread>

namespace kiln::conformance {

namespace {
bool write_all(int fd, const std::string& s) {
  for (size_t done = 0; done < s.size();) {
    const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}
}  // namespace

DriverProcess::DriverProcess(const std::string& command, double timeout_seconds) : timeout_seconds_(timeout_seconds) {
  int to_child[2], from_child[2];
  if (pipe(to_child) != 0 || pipe(from_child) != 0) throw std::runtime_error("pipe() failed");
  char err_path[] = "/tmp/kiln-driver-stderr-XXXXXX";
  err_fd_ = mkstemp(err_path);
  if (err_fd_ < 0) throw std::runtime_error("cannot create a file for the driver's stderr");
  unlink(err_path);  // kept open, gone from the file system
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork() failed");
  if (pid_ == 0) {
    dup2(to_child[0], STDIN_FILENO);
    dup2(from_child[1], STDOUT_FILENO);
    dup2(err_fd_, STDERR_FILENO);
    close(to_child[0]);
    close(to_child[1]);
    close(from_child[0]);
    close(from_child[1]);
    close(err_fd_);
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(to_child[0]);
  close(from_child[1]);
  in_fd_ = to_child[1];
  out_fd_ = from_child[0];
  // Drivers started later must not inherit this one's pipes (it would never see end of input).
  for (int fd : {in_fd_, out_fd_, err_fd_}) fcntl(fd, F_SETFD, FD_CLOEXEC);
  signal(SIGPIPE, SIG_IGN);  // a driver that exits must not take the harness with it
}

DriverProcess::~DriverProcess() {
  if (!broken_)
    write_all(in_fd_, nlohmann::json{{"id", next_id_++}, {"op", "close"}, {"args", nlohmann::json::object()}}.dump() + "\n");
  close(in_fd_);
  int status = 0;
  for (int i = 0; i < 50 && !broken_ && waitpid(pid_, &status, WNOHANG) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (waitpid(pid_, &status, WNOHANG) == 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
  }
  close(out_fd_);
  close(err_fd_);
}

nlohmann::json DriverProcess::request(const std::string& op, const nlohmann::json& args) {
  if (broken_) throw DriverBroken("the driver is no longer usable (an earlier request broke the protocol)");
  const int64_t id = next_id_++;
  if (!write_all(in_fd_, nlohmann::json{{"id", id}, {"op", op}, {"args", args}}.dump() + "\n")) {
    broken_ = true;
    throw DriverBroken("the driver's stdin is closed (did it exit?) at '" + op + "'");
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds_);
  size_t eol;
  while ((eol = buffered_.find('\n')) == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    pollfd p{out_fd_, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) == 0) {
      broken_ = true;
      throw DriverBroken("the driver did not answer '" + op + "' within " + std::to_string(static_cast<int>(timeout_seconds_)) + " s");
    }
    char chunk[65536];
    const ssize_t n = ::read(out_fd_, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      broken_ = true;
      throw DriverBroken("the driver exited without answering '" + op + "'");
    }
    buffered_.append(chunk, static_cast<size_t>(n));
  }
  const std::string reply = buffered_.substr(0, eol);
  buffered_.erase(0, eol + 1);
  const auto j = nlohmann::json::parse(reply, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    broken_ = true;
    throw DriverBroken("the driver answered a line that is not a JSON object: " + reply.substr(0, 500));
  }
  if (j.value("id", nlohmann::json()) != id) {
    broken_ = true;
    throw DriverBroken("the driver answered id " + j.value("id", nlohmann::json()).dump() + " to request " + std::to_string(id));
  }
  return j;
}

std::string DriverProcess::stderr_tail(size_t max_bytes) const {
  const off_t end = lseek(err_fd_, 0, SEEK_END);
  if (end <= 0) return "";
  const off_t start = end > static_cast<off_t>(max_bytes) ? end - static_cast<off_t>(max_bytes) : 0;
  std::string out(static_cast<size_t>(end - start), '\0');
  const ssize_t n = pread(err_fd_, out.data(), out.size(), start);
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

}  // namespace kiln::conformance
