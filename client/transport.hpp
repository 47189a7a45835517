#pragma once
// How requests reach a server: over HTTP (cpp-httplib), or in process through an embedded
// kiln::http::HttpServer (in_process_transport.hpp), with the same routes and no socket.
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace kiln::client {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Reply {
  int status = 0;            // 0: no answer (connection refused, reset, timed out)
  std::string body, content_type, error;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual Reply send(const std::string& method, const std::string& path, const Headers& headers,
                     const std::string& body) = 0;
};

// base_url like "http://127.0.0.1:8000" (a path prefix is kept). Thread-safe: each call uses its
// own connection. timeout_seconds bounds each request (the SDKs use 45 s per poll).
std::shared_ptr<Transport> http_transport(const std::string& base_url, double timeout_seconds = 60);

}  // namespace kiln::client
