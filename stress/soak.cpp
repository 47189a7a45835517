// Soak test (README "Guarantees", `make stress`): a child `kiln serve` with faults injected at a
// few percent, N concurrent clients (the C++ client over HTTP, four tenants) training, saving,
// reloading with optimizer state, sampling and polling for M minutes. Then it checks that no step
// was lost or applied twice (each model's optimizer step equals what its client saw
// acknowledged), that no tenant can see another's models, and reports the server's resident
// memory (after warm-up, peak, end) and the p99 latency of a no-op future under the load.
// Exits non-zero on any violation.
//
//   soak [--clients N] [--minutes M] [--fault-rate P]
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

#include "cli/serve_process.hpp"
#include "client/service_client.hpp"

using namespace std::chrono;
using kiln::cli_testing::Api;
using kiln::cli_testing::ServeProcess;
using nlohmann::json;

namespace {

// Results stay pollable this long after delivery (--result-retention): short, so that the run
// reaches the steady state where results are forgotten as fast as they are made. At the default
// 600 s the memory held by results grows for the first ten minutes (about 1 KiB per result).
constexpr int kRetentionSeconds = 60;

long rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

std::vector<kiln::client::Datum> batch(int client, int step) {
  std::vector<kiln::client::Datum> data;
  for (int d = 0; d < 2; ++d) {
    std::vector<int64_t> tokens;
    for (int i = 0; i < 24; ++i) tokens.push_back(32 + (client * 7 + step * 3 + d * 5 + i * 11) % 90);
    kiln::client::Datum datum;
    datum.model_input.assign(tokens.begin(), tokens.end() - 1);
    datum.loss_fn_inputs["target_tokens"] = kiln::client::TensorData::ints({tokens.begin() + 1, tokens.end()});
    data.push_back(std::move(datum));
  }
  return data;
}

struct ClientReport {
  std::string tenant_key;
  std::vector<std::pair<std::string, int64_t>> models;  // each model and the steps acknowledged on it
  int64_t steps = 0, saves = 0, loads = 0, samples = 0;
  std::string error;
};

// POST until an answer that is not a fault (503, a dropped connection): the raw requests here
// (sampling) are idempotent by their seq ids.
std::pair<int, json> post_retrying(Api& api, const std::string& path, const json& body) {
  for (int attempt = 0;; ++attempt) {
    auto r = api.post(path, body);
    if ((r.first != 0 && r.first < 500) || attempt == 20) return r;
    std::this_thread::sleep_for(milliseconds(100));
  }
}

// One client: a LoRA model of its own, trained until the deadline; every 5th step a training
// save (two names in turn); every 12th a new model from the last save with its optimizer state
// (it continues from the saved step), the old one unloaded and the checkpoints of the one before
// it deleted; every 3rd a sample from a sampler on the client's first sampler save.
void run_client(const std::string& url, int index, steady_clock::time_point deadline, ClientReport& report) {
  report.tenant_key = "soak-tenant-" + std::to_string(index % 4);
  try {
    kiln::client::ClientOptions opts;
    opts.heartbeat_seconds = 5;
    kiln::client::ServiceClient sc(url, report.tenant_key, opts);
    auto tc = sc.create_lora_training_client("kiln/tiny", {.rank = 4});
    report.models.push_back({tc.model_id(), 0});
    Api raw(url, report.tenant_key);
    const std::string sampler_path =
        tc.save_weights_for_sampler("sampler-" + std::to_string(index)).result().path;
    auto [cs, created] = post_retrying(raw, "/api/v1/create_sampling_session",
                                  {{"session_id", sc.session_id()}, {"sampling_session_seq_id", 0},
                                   {"model_path", sampler_path}, {"type", "create_sampling_session"}});
    if (cs != 200) throw std::runtime_error("create_sampling_session: " + created.dump());
    const std::string sampler = created["sampling_session_id"];
    std::string last_save;
    int64_t saved_step = 0;
    kiln::client::AdamParams adam;
    adam.learning_rate = 1e-3;
    for (int step = 0; steady_clock::now() < deadline; ++step) {
      tc.forward_backward(batch(index, step), "cross_entropy").result();
      tc.optim_step(adam).result();
      ++report.models.back().second;
      ++report.steps;
      if (step % 5 == 4) {
        last_save = tc.save_state("c" + std::to_string(index) + "-" + std::to_string(step / 5 % 2)).result().path;
        saved_step = report.models.back().second;
        ++report.saves;
      }
      if (step % 12 == 11 && !last_save.empty()) {
        auto next = sc.create_training_client_from_state_with_optimizer(last_save);
        tc.unload().result();
        tc = next;
        report.models.push_back({tc.model_id(), saved_step});
        ++report.loads;
        // Clean up as a user would: the checkpoints of the model before the one just left (the
        // one just left holds the save the new model loaded). Memory then stays flat.
        if (report.models.size() >= 3) {
          const std::string old_run = report.models[report.models.size() - 3].first;
          for (int k = 0; k < 2; ++k)
            raw.del("/api/v1/training_runs/" + old_run + "/checkpoints/weights/c" + std::to_string(index) + "-" + std::to_string(k));
        }
      }
      if (step % 3 == 2) {
        auto [s, sub] = post_retrying(raw, "/api/v1/asample", {{"sampling_session_id", sampler}, {"seq_id", step}, {"num_samples", 1},
                                                     {"prompt", {{"chunks", {{{"tokens", {72, 105}}, {"type", "encoded_text"}}}}}},
                                                     {"sampling_params", {{"max_tokens", 8}, {"seed", step}}}, {"type", "sample"}});
        if (s == 200 && sub.contains("request_id")) {
          auto [rs, out] = raw.result(sub["request_id"]);
          if (rs == 200 && out.contains("sequences")) ++report.samples;
        }  // a fault on a sample is the client's to retry; this raw loop just moves on
      }
    }
  } catch (const std::exception& e) {
    report.error = e.what();
  }
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  int clients = 32;
  double minutes = 10, fault_rate = 0.02;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--clients") clients = std::stoi(argv[i + 1]);
    else if (a == "--minutes") minutes = std::stod(argv[i + 1]);
    else if (a == "--fault-rate") fault_rate = std::stod(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: soak [--clients N] [--minutes M] [--fault-rate P]\n");
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  char tmpl[] = "/tmp/kiln-soak-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  // Faults on every request about the clients' kiln/tiny models (submits and their polls): 503s,
  // dropped connections, try_again. The client's retries must turn each into exactly one
  // execution. The probe's model is kiln/small, so its latency is the server's, not a back-off.
  const json faults = {{"seed", 7},
                       {"rules", {{{"model", "kiln/tiny"}, {"times", -1}, {"probability", fault_rate},
                                   {"action", {{"kind", "status"}, {"status", 503}}}},
                                  {{"model", "kiln/tiny"}, {"times", -1}, {"probability", fault_rate / 2}, {"action", {{"kind", "close"}}}},
                                  {{"model", "kiln/tiny"}, {"endpoint", "retrieve_future"}, {"times", -1}, {"probability", fault_rate},
                                   {"action", {{"kind", "try_again"}}}}}}};
  { std::ofstream(dir + "/faults.json") << faults.dump(); }
  ServeProcess server({.data_dir = dir + "/data",
                       .args = {"--faults", dir + "/faults.json", "--overwrite-training-state", "--workers", "2",
                                "--result-retention", std::to_string(kRetentionSeconds)}});
  if (!server.running()) {
    std::fprintf(stderr, "soak: kiln serve did not start:\n%s\n", server.log().c_str());
    return 1;
  }
  const int pid = server.pid();
  const auto start = steady_clock::now();
  const auto deadline = start + duration_cast<steady_clock::duration>(duration<double>(minutes * 60));
  std::vector<ClientReport> reports(static_cast<size_t>(clients));
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i)
    threads.emplace_back(run_client, server.base_url(), i, deadline, std::ref(reports[static_cast<size_t>(i)]));

  // The probe: a one-token forward on a model of its own, submit to result, twice a second.
  std::vector<double> probe_ms;
  long rss_start = -1, rss_warm = -1, rss_peak = 0, rss_end = 0;  // peak: after warm-up
  {
    kiln::client::ServiceClient sc(server.base_url(), "soak-probe");
    auto probe = sc.create_lora_training_client("kiln/small", {.rank = 1});
    kiln::client::Datum one;
    one.model_input = {65};
    one.loss_fn_inputs["target_tokens"] = kiln::client::TensorData::ints({66});
    // Warm: results delivered since the start have begun to be forgotten (the retention window).
    const auto warm = start + duration_cast<steady_clock::duration>(
                                  duration<double>(std::max(minutes * 60 * 0.2, kRetentionSeconds + 30.0)));
    while (steady_clock::now() < deadline) {
      const auto t0 = steady_clock::now();
      probe.forward({one}).result();
      probe_ms.push_back(duration<double, std::milli>(steady_clock::now() - t0).count());
      const long rss = rss_kib(pid);
      if (rss_start < 0) rss_start = rss;
      if (steady_clock::now() >= warm) {
        if (rss_warm < 0) rss_warm = rss;
        rss_peak = std::max(rss_peak, rss);
      }
      rss_end = rss;
      std::this_thread::sleep_for(milliseconds(500));
    }
  }
  for (auto& t : threads) t.join();

  // Checks: steps, tenants; with the faults off, so that every answer below is the server's own.
  int failures = 0;
  Api control(server.base_url(), "soak-probe");
  const json fired = control.get("/_kiln/faults").second;
  int64_t faults_fired = 0;
  for (const auto& r : fired["rules"]) faults_fired += r.value("fired", 0);
  control.del("/_kiln/faults");
  const json state = control.get("/_kiln/state").second;
  int64_t steps = 0, saves = 0, loads = 0, samples = 0;
  for (const auto& r : reports) {
    steps += r.steps, saves += r.saves, loads += r.loads, samples += r.samples;
    if (!r.error.empty()) {
      std::printf("a client of %s failed: %s\n", r.tenant_key.c_str(), r.error.c_str());
      ++failures;
      continue;
    }
    for (const auto& [model_id, acknowledged] : r.models) {
      int64_t server_step = -1;
      for (const auto& m : state["models"])
        if (m["model_id"] == model_id) server_step = m["optimizer_step"];
      if (server_step != acknowledged) {
        std::printf("model %s: the server applied %lld optimizer steps, its client saw %lld acknowledged\n",
                    model_id.c_str(), static_cast<long long>(server_step), static_cast<long long>(acknowledged));
        ++failures;
      }
    }
  }
  // Tenants: another tenant's model is 404, and a tenant lists only checkpoints of its own models.
  std::map<std::string, std::string> owner;  // model id → tenant key
  for (const auto& r : reports)
    for (const auto& m : r.models) owner[m.first] = r.tenant_key;
  for (int t = 0; t < std::min(clients, 4); ++t) {
    const std::string tenant = "soak-tenant-" + std::to_string(t);
    Api as(server.base_url(), tenant);
    for (const auto& [model_id, key] : owner)
      if (key != tenant) {
        const int s = as.post("/api/v1/get_info", {{"model_id", model_id}}).first;
        if (s != 404) {
          std::printf("%s sees model %s of %s (HTTP %d)\n", tenant.c_str(), model_id.c_str(), key.c_str(), s);
          ++failures;
        }
      }
    const json listed = as.get("/api/v1/checkpoints?limit=100000").second;  // kept: not a temporary's member
    for (const auto& c : listed["checkpoints"]) {
      const std::string path = c["tinker_path"];
      const std::string run = path.substr(9, path.find('/', 9) - 9);  // tinker://<run>/...
      if (owner.count(run) && owner[run] != tenant) {
        std::printf("%s lists %s of %s\n", tenant.c_str(), path.c_str(), owner[run].c_str());
        ++failures;
      }
    }
  }
  std::printf("soak: %d clients x %.1f min, %lld optimizer steps acknowledged (%lld saves, %lld models from saves, %lld samples), "
              "%lld faults injected\n",
              clients, minutes, static_cast<long long>(steps), static_cast<long long>(saves), static_cast<long long>(loads),
              static_cast<long long>(samples), static_cast<long long>(faults_fired));
  const int warm_seconds = static_cast<int>(std::max(minutes * 60 * 0.2, kRetentionSeconds + 30.0));
  char after_warm[96] = "not reached (the run is shorter)";
  if (rss_warm >= 0) std::snprintf(after_warm, sizeof after_warm, "%.1f MiB, peak after it %.1f MiB", rss_warm / 1024.0, rss_peak / 1024.0);
  std::printf("soak: server RSS at start %.1f MiB; after warm-up (%d s, results kept %d s) %s; end %.1f MiB\n",
              rss_start / 1024.0, warm_seconds, kRetentionSeconds, after_warm, rss_end / 1024.0);
  std::printf("soak: no-op future (one-token forward, submit to result) under load: p50 %.1f ms, p99 %.1f ms over %zu probes\n",
              percentile(probe_ms, 0.5), percentile(probe_ms, 0.99), probe_ms.size());
  std::printf("soak: %s (%d violation%s)\n", failures ? "FAILED" : "passed", failures, failures == 1 ? "" : "s");
  server.signal(SIGTERM);
  server.wait();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return failures ? 1 : 0;
}
