#pragma once
// What the client throws. Texts follow the SDKs' (protocol.md §S9.11) where one exists.
#include <stdexcept>
#include <string>

namespace kiln::client {

// Bad arguments, refused before anything is sent (ValueError in the SDKs).
class ClientError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// An HTTP status the retry layers gave up on, or one that is never retried.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string body, const std::string& what)
      : std::runtime_error(what), status_(status), body_(std::move(body)) {}
  int status() const { return status_; }   // 0: the connection failed
  const std::string& body() const { return body_; }

 private:
  int status_;
  std::string body_;
};

// A future that completed with {"error", "category"}.
class RequestFailedError : public std::runtime_error {
 public:
  RequestFailedError(const std::string& what, std::string category)
      : std::runtime_error(what), category_(std::move(category)) {}
  const std::string& category() const { return category_; }  // user | server | unknown

 private:
  std::string category_;
};

// HTTP 410 on retrieve_future: the promise expired ("Promise expired/broken for request <id>").
class PromiseExpiredError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace kiln::client
