#pragma once
// The in-process transport: requests go straight into an embedded kiln::http::HttpServer's
// routes (and so to its TrainerService), with no socket. For tests and embedding.
#include <memory>

#include "client/transport.hpp"

namespace kiln::http {
class HttpServer;
}

namespace kiln::client {

std::shared_ptr<Transport> in_process_transport(http::HttpServer& server);

}  // namespace kiln::client
