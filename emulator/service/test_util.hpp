#pragma once
// Helpers for the service tests: a temporary data directory, a service on a virtual clock, and
// small training requests on kiln/tiny.
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "service/trainer_service.hpp"

namespace kiln::service::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kiln-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline ServiceOptions options(const std::string& dir, std::shared_ptr<VirtualClock> clock, uint64_t seed = 7) {
  ServiceOptions o;
  o.data_dir = dir;
  o.seed = seed;
  o.clock = std::move(clock);
  o.workers = 2;
  return o;
}

// A sentence of bytes as one cross_entropy datum (model_input, shifted targets).
inline train::Datum text_datum(const std::string& text) {
  std::vector<int64_t> b(text.begin(), text.end());
  return {{b.begin(), b.end() - 1}, {{"target_tokens", train::TensorData::ints({b.begin() + 1, b.end()})}}};
}

inline ForwardRequest fb(const std::string& text, bool backward = true) {
  return ForwardRequest{{text_datum(text)}, "cross_entropy", {}, backward};
}

inline OptimStepRequest step(double lr = 1e-2) {
  return OptimStepRequest{{.learning_rate = lr, .emit_grad_norm_metrics = train::GradNormMetrics::basic},
                          train::Normalization::num_loss_tokens};
}

// Waits for a result (up to 30 s) and returns it; fails the test on a pending future.
inline RetrieveResult wait_for(TrainerService& s, const std::string& key, const std::string& rid) {
  auto r = s.retrieve(key, rid, std::chrono::seconds(30));
  EXPECT_NE(r.status, RetrieveResult::Status::pending) << rid;
  return r;
}

inline double loss_of(const RetrieveResult& r) {
  EXPECT_EQ(r.status, RetrieveResult::Status::done) << r.error;
  return std::get<train::ForwardResult>(r.result).metrics.at("loss:sum");
}

}  // namespace kiln::service::testing
