#include "conformance/kiln_server.hpp"

#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <chrono>
#include <thread>

namespace kiln::conformance {

ScratchDir::ScratchDir(const std::string& prefix) {
  std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("cannot create a scratch directory under /tmp");
  path_ = tmpl;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

KilnServer::KilnServer() {
  service::ServiceOptions o;
  o.data_dir = dir_.path();
  o.clock = std::make_shared<service::VirtualClock>();
  o.seed = 1;
  o.workers = 2;
  svc_ = std::make_unique<service::TrainerService>(o);
  http::ServerOptions h;
  h.port = 0;
  h.poll_hold_seconds = 0.2;  // a pending future answers try_again quickly: the properties wait less
  h.http_threads = 16;
  h.journal_capacity = 20000;
  http_ = std::make_unique<http::HttpServer>(*svc_, h);
  http_->bind();
  thread_ = std::thread([this] { http_->run(); });
}

KilnServer::~KilnServer() {
  http_->stop();
  thread_.join();
}

void KilnServer::reset() {
  svc_->reset();
  http_->faults().clear();
  http_->journal().clear();
  svc_->set_progression(service::Progression{});
}

service::ModelInfo KilnServer::model_info(const std::string& model_id) const { return svc_->get_info(kApiKey, model_id); }

void KilnServer::wait_idle(const std::string& model_id) const {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    bool busy = false;
    // The state is kept in a variable: iterating `svc_->state()["models"]` directly walks a
    // destroyed temporary (found by ASan; it made conformance tests fail now and then).
    const nlohmann::json state = svc_->state();
    for (const auto& m : state["models"])
      if (m["model_id"] == model_id) busy = m["running"].get<bool>() || !m["queued_seq_ids"].empty();
    if (!busy) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  throw std::runtime_error("model " + model_id + " still busy after 60 s");
}

int64_t KilnServer::faults_fired() const {
  int64_t fired = 0;
  const nlohmann::json rules = http_->faults().get()["rules"];
  for (const auto& r : rules) fired += r.value("fired", int64_t{0});
  return fired;
}

nlohmann::json KilnServer::journal() const { return http_->journal().read(0, 1u << 30)["entries"]; }

}  // namespace kiln::conformance
