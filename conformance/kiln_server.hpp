#pragma once
// The Kiln server a conformance run checks a client against: in this process, on an ephemeral
// loopback port, with a virtual clock (TTL properties move it) and the control API's levers
// (faults, progression, journal) at hand as C++ calls.
#include <memory>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "http/server.hpp"
#include "service/trainer_service.hpp"

namespace kiln::conformance {

// A fresh directory under /tmp, removed with everything in it.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix = "kiln-conform");
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class KilnServer {
 public:
  static constexpr const char* kApiKey = "tml-conformance";  // the credential drivers are given

  KilnServer();
  ~KilnServer();
  std::string base_url() const { return http_->base_url(); }

  // Forgets every session, model, future, checkpoint, fault rule and journal entry; ids start over.
  void reset();
  void set_faults(const nlohmann::json& rules_doc) { http_->faults().set(rules_doc); }
  void clear_faults() { http_->faults().clear(); }
  int64_t faults_fired() const;  // by the rules set now
  void set_progression(const service::Progression& p) { svc_->set_progression(p); }
  void advance_clock(double seconds) { svc_->advance_clock(seconds); }
  // A model as the server holds it: the LoRA layout it was given (the client's request with its
  // defaults filled), the optimizer steps it has taken.
  service::ModelInfo model_info(const std::string& model_id) const;
  // Waits (up to 60 s) until the model has no request queued or running: a client that gave up
  // on a future (a 410, say) returns before the server has finished executing it.
  void wait_idle(const std::string& model_id) const;
  // Every API request since the last reset, oldest first (journal entries, control_routes.cpp).
  nlohmann::json journal() const;

 private:
  ScratchDir dir_;
  std::unique_ptr<service::TrainerService> svc_;
  std::unique_ptr<http::HttpServer> http_;
  std::thread thread_;
};

}  // namespace kiln::conformance
