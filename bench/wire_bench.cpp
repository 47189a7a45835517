// The HTTP layer's costs (wire-layer issue targets): a no-op future round trip (≤ 2 ms), a
// 4096-token forward_backward over HTTP against the same work in-process (overhead ≤ 15 %), and
// `kiln serve` start-up to the first healthz 200 (≤ 100 ms; needs KILN_BIN, set by bench/run).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "http/server.hpp"
#include "model/rng.hpp"
#include "service/trainer_service.hpp"

#include <benchmark/benchmark.h>
#include <httplib.h>

#include <nlohmann/json.hpp>

extern char** environ;

namespace kiln::bench {
namespace {

using nlohmann::json;

struct Served {
  std::string dir = (std::filesystem::temp_directory_path() / ("kiln-bench-" + std::to_string(::getpid()))).string();
  service::TrainerService svc{[this] {
    service::ServiceOptions o;
    o.data_dir = dir;
    o.seed = 1;
    return o;
  }()};
  http::HttpServer server{svc, [] {
    http::ServerOptions o;
    o.port = 0;
    return o;
  }()};
  std::thread thread;
  std::string model;
  int64_t seq = 1;
  Served() {
    server.bind();
    thread = std::thread([this] { server.run(); });
    const auto s = svc.create_session("tml-bench", {}, {}, "");
    model = svc.create_model("tml-bench", {.session_id = s.session_id, .base_model = "kiln/small", .lora = {.rank = 8}});
  }
  ~Served() {
    server.stop();
    thread.join();
    std::filesystem::remove_all(dir);
  }
};

json poll(httplib::Client& c, const std::string& rid) {
  while (true) {
    auto r = c.Post("/api/v1/retrieve_future", json{{"request_id", rid}}.dump(), "application/json");
    if (r && r->status == 200) return json::parse(r->body);
  }
}

// optim_step with nothing accumulated: a future that does no work.
void BM_NoopFutureRoundTrip(benchmark::State& state) {
  Served s;
  httplib::Client c(s.server.base_url());
  c.set_default_headers({{"X-API-Key", "tml-bench"}, {"Accept", "application/json"}});
  for (auto _ : state) {
    const json body = {{"adam_params", {{"learning_rate", 1e-4}, {"beta1", 0.9}, {"beta2", 0.95}, {"eps", 1e-12},
                                        {"weight_decay", 0.0}, {"grad_clip_norm", 0.0}}},
                       {"model_id", s.model}, {"seq_id", s.seq++}, {"type", "optim_step"}};
    auto r = c.Post("/api/v1/optim_step", body.dump(), "application/json");
    benchmark::DoNotOptimize(poll(c, json::parse(r->body)["request_id"]));
  }
}
BENCHMARK(BM_NoopFutureRoundTrip)->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();

// 16 sequences × 256 tokens on kiln/small (LoRA rank 8), cross_entropy.
std::vector<train::Datum> batch_4k() {
  model::SplitMix64 rng(3);
  std::vector<train::Datum> data;
  for (int i = 0; i < 16; ++i) {
    train::Datum d;
    std::vector<int64_t> targets;
    for (int t = 0; t < 256; ++t) {
      d.model_input.push_back(static_cast<int64_t>(rng.next() % 256));
      targets.push_back(static_cast<int64_t>(rng.next() % 256));
    }
    d.loss_fn_inputs["target_tokens"] = train::TensorData::ints(targets);
    data.push_back(std::move(d));
  }
  return data;
}

json batch_json(const std::vector<train::Datum>& data) {
  json list = json::array();
  for (const auto& d : data) {
    const auto& t = d.loss_fn_inputs.at("target_tokens");
    list.push_back({{"model_input", {{"chunks", {{{"type", "encoded_text"}, {"tokens", d.model_input}}}}}},
                    {"loss_fn_inputs", {{"target_tokens", {{"data", std::vector<int64_t>(t.data.begin(), t.data.end())},
                                                           {"dtype", "int64"}, {"shape", t.shape}}}}}});
  }
  return list;
}

void BM_ForwardBackward4kTokens_Http(benchmark::State& state) {
  Served s;
  httplib::Client c(s.server.base_url());
  c.set_default_headers({{"X-API-Key", "tml-bench"}, {"Accept", "application/json"}});
  c.set_read_timeout(std::chrono::seconds(60));
  const json data = batch_json(batch_4k());
  for (auto _ : state) {
    const json body = {{"forward_backward_input", {{"data", data}, {"loss_fn", "cross_entropy"}}},
                       {"model_id", s.model}, {"seq_id", s.seq++}};
    auto r = c.Post("/api/v1/forward_backward", body.dump(), "application/json");
    benchmark::DoNotOptimize(poll(c, json::parse(r->body)["request_id"]));
  }
  state.counters["tokens_per_s"] = benchmark::Counter(4096, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_ForwardBackward4kTokens_Http)->Unit(benchmark::kMillisecond)->MinTime(3.0)->UseRealTime();

void BM_ForwardBackward4kTokens_InProcess(benchmark::State& state) {
  Served s;
  const auto data = batch_4k();
  for (auto _ : state) {
    const auto rid = s.svc.submit("tml-bench", s.model, s.seq++, service::ForwardRequest{data, "cross_entropy", {}, true});
    benchmark::DoNotOptimize(s.svc.retrieve("tml-bench", rid, std::chrono::seconds(60)));
  }
  state.counters["tokens_per_s"] = benchmark::Counter(4096, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_ForwardBackward4kTokens_InProcess)->Unit(benchmark::kMillisecond)->MinTime(3.0)->UseRealTime();

// Spawns `kiln serve` and polls healthz until it answers 200.
void BM_ServeStartupToHealthz(benchmark::State& state) {
  const char* bin = std::getenv("KILN_BIN");
  if (!bin) {
    state.SkipWithError("KILN_BIN is not set (bench/run sets it to build/kiln)");
    return;
  }
  const std::string dir = (std::filesystem::temp_directory_path() / "kiln-bench-startup").string();
  int port = 18700;
  for (auto _ : state) {
    ++port;
    const std::string port_s = std::to_string(port);
    const char* argv[] = {bin, "serve", "--port", port_s.c_str(), "--data-dir", dir.c_str(), "--log-format", "none", nullptr};
    pid_t pid;
    const auto start = std::chrono::steady_clock::now();
    posix_spawn_file_actions_t quiet;  // the child's start-up line would clutter the report
    posix_spawn_file_actions_init(&quiet);
    posix_spawn_file_actions_addopen(&quiet, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn(&pid, bin, &quiet, nullptr, const_cast<char**>(argv), environ);
    posix_spawn_file_actions_destroy(&quiet);
    httplib::Client c("127.0.0.1", port);
    c.set_connection_timeout(std::chrono::milliseconds(50));
    while (true) {
      auto r = c.Get("/api/v1/healthz");
      if (r && r->status == 200) break;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
  }
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_ServeStartupToHealthz)->Unit(benchmark::kMillisecond)->Iterations(20)->UseManualTime();

}  // namespace
}  // namespace kiln::bench

BENCHMARK_MAIN();
