#include <httplib.h>

#include "client/transport.hpp"

namespace kiln::client {

namespace {

class HttpTransport : public Transport {
 public:
  HttpTransport(const std::string& base_url, double timeout) : timeout_(timeout) {
    // scheme://host:port[/prefix]
    const size_t scheme = base_url.find("://");
    const size_t path = base_url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
    host_ = path == std::string::npos ? base_url : base_url.substr(0, path);
    prefix_ = path == std::string::npos ? "" : base_url.substr(path);
    while (!prefix_.empty() && prefix_.back() == '/') prefix_.pop_back();
  }

  Reply send(const std::string& method, const std::string& path, const Headers& headers,
             const std::string& body) override {
    httplib::Client cli(host_);
    const auto t = std::chrono::duration<double>(timeout_);
    cli.set_connection_timeout(std::chrono::duration_cast<std::chrono::microseconds>(t));
    cli.set_read_timeout(std::chrono::duration_cast<std::chrono::microseconds>(t));
    cli.set_write_timeout(std::chrono::duration_cast<std::chrono::microseconds>(t));
    httplib::Headers h;
    std::string content_type = "application/json";
    for (const auto& [k, v] : headers) {
      if (k == "Content-Type")
        content_type = v;
      else
        h.emplace(k, v);
    }
    const std::string full = prefix_ + path;
    httplib::Result r = method == "GET"      ? cli.Get(full, h)
                        : method == "DELETE" ? cli.Delete(full, h, body, content_type)
                        : method == "PUT"    ? cli.Put(full, h, body, content_type)
                                             : cli.Post(full, h, body, content_type);
    Reply out;
    if (!r) {
      out.error = httplib::to_string(r.error());
      return out;
    }
    out.status = r->status;
    out.body = r->body;
    out.content_type = r->get_header_value("Content-Type");
    return out;
  }

 private:
  std::string host_, prefix_;
  double timeout_;
};

}  // namespace

std::shared_ptr<Transport> http_transport(const std::string& base_url, double timeout_seconds) {
  return std::make_shared<HttpTransport>(base_url, timeout_seconds);
}

}  // namespace kiln::client
