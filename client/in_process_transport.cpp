#include "client/in_process_transport.hpp"

#include "http/server.hpp"

namespace kiln::client {

namespace {

class InProcessTransport : public Transport {
 public:
  explicit InProcessTransport(http::HttpServer& server) : server_(server) {}
  Reply send(const std::string& method, const std::string& path, const Headers& headers,
             const std::string& body) override {
    const auto r = server_.dispatch(method, path, headers, body);
    Reply out{r.status, r.body, r.content_type, ""};
    if (r.status == 0) out.error = "connection closed (injected fault)";
    return out;
  }

 private:
  http::HttpServer& server_;
};

}  // namespace

std::shared_ptr<Transport> in_process_transport(http::HttpServer& server) {
  return std::make_shared<InProcessTransport>(server);
}

}  // namespace kiln::client
