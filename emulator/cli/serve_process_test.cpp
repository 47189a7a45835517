// `kiln serve` as a process (README "Guarantees"): one server per data directory, SIGTERM drains,
// a full disk fails a save cleanly, and SIGKILL at any point of a save leaves only whole checkpoints.
#include "cli/serve_process.hpp"

#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "service/test_util.hpp"

namespace kiln::cli_testing {
namespace {

namespace fs = std::filesystem;
using service::testing::TempDir;

json datum(const std::vector<int>& tokens) {
  std::vector<int> input(tokens.begin(), tokens.end() - 1), target(tokens.begin() + 1, tokens.end());
  return {{"model_input", {{"chunks", {{{"tokens", input}, {"type", "encoded_text"}}}}}},
          {"loss_fn_inputs", {{"target_tokens", {{"data", target}, {"dtype", "int64"}, {"shape", {target.size()}}}}}}};
}

const json kProbe = datum({72, 101, 108, 108, 111, 44, 32, 107, 105, 108, 110});

std::string new_session(Api& api) {
  auto [s, b] = api.post("/api/v1/create_session", {{"tags", json::array()}, {"user_metadata", json::object()},
                                                     {"sdk_version", "0.25.0"}, {"type", "create_session"}});
  if (s != 200) throw std::runtime_error("create_session: " + b.dump());
  return b["session_id"];
}

// A model of `base` (LoRA `rank`, 0 for full-parameter).
struct Trained {
  std::string model_id, base;
  int rank;
  int64_t next_seq = 1;
};

Trained create(Api& api, const std::string& session, int model_seq, const std::string& base, int rank) {
  return {api.call("/api/v1/create_model", {{"session_id", session}, {"model_seq_id", model_seq}, {"base_model", base},
                                            {"lora_config", {{"rank", rank}}}, {"type", "create_model"}})["model_id"],
          base, rank};
}

Trained train_one_step(Api& api, const std::string& session, int model_seq, const std::string& base, int rank) {
  Trained t = create(api, session, model_seq, base, rank);
  api.call("/api/v1/forward_backward", {{"model_id", t.model_id}, {"seq_id", t.next_seq++},
                                        {"forward_backward_input", {{"data", {kProbe}}, {"loss_fn", "cross_entropy"}}}});
  api.call("/api/v1/optim_step", {{"model_id", t.model_id}, {"seq_id", t.next_seq++},
                                  {"adam_params", {{"learning_rate", 0.01}, {"beta1", 0.9}, {"beta2", 0.95}, {"eps", 1e-8}}}});
  return t;
}

json probe_logprobs(Api& api, Trained& t) {
  return api.call("/api/v1/forward", {{"model_id", t.model_id}, {"seq_id", t.next_seq++},
                                      {"forward_input", {{"data", {kProbe}}, {"loss_fn", "cross_entropy"}}}})
      ["loss_fn_outputs"][0]["logprobs"]["data"];
}

// Directories under <tenant>/<run>/<kind>/ that are not whole checkpoints (no metadata.json).
std::vector<std::string> partial_checkpoint_dirs(const std::string& root) {
  std::vector<std::string> partial;
  for (const auto& tenant : fs::directory_iterator(root)) {
    if (!tenant.is_directory() || tenant.path().filename().string()[0] == '.') continue;
    for (const auto& run : fs::directory_iterator(tenant))
      for (const auto& kind : fs::directory_iterator(run))
        for (const auto& ckpt : fs::directory_iterator(kind))
          if (!fs::exists(ckpt.path() / "metadata.json")) partial.push_back(ckpt.path().string());
  }
  return partial;
}

bool tmp_is_empty(const std::string& root) {
  const fs::path tmp = fs::path(root) / ".tmp";
  return !fs::exists(tmp) || fs::is_empty(tmp);
}

TEST(ServeProcess, ASecondServerOnTheSameDataDirectoryRefusesToStart) {
  TempDir dir;
  ServeProcess first({.data_dir = dir.path() + "/data"});
  ASSERT_TRUE(first.running()) << first.log();
  ServeProcess second({.data_dir = dir.path() + "/data"});
  EXPECT_FALSE(second.running());
  EXPECT_EQ(second.wait(), 1);
  EXPECT_NE(second.log().find("is in use by another kiln serve (pid "), std::string::npos) << second.log();
  // The first one is untouched and still serving.
  Api api(first.base_url(), "tml-k");
  EXPECT_EQ(api.get("/_kiln/state").first, 200);
}

// --log-format json --log-level info: one JSON line per request, naming the model and the
// request id; with --progress-after 0 a save and a sample log their progress and their end.
TEST(ServeProcess, LogsOneJsonLinePerRequestAndTheProgressOfSavesAndSamples) {
  TempDir dir;
  ServeProcess server({.data_dir = dir.path() + "/data",
                       .args = {"--log-format", "json", "--log-level", "info", "--progress-after", "0"}});
  ASSERT_TRUE(server.running()) << server.log();
  Api api(server.base_url(), "tml-log");
  Trained t = train_one_step(api, new_session(api), 0, "kiln/tiny", 4);
  api.call("/api/v1/save_weights", {{"model_id", t.model_id}, {"path", "logged"}, {"seq_id", t.next_seq++}});
  const std::string sampler = api.call("/api/v1/save_weights_for_sampler",
                                       {{"model_id", t.model_id}, {"seq_id", t.next_seq++}, {"sampling_session_seq_id", 1}})
                                  ["sampling_session_id"];
  api.call("/api/v1/asample", {{"num_samples", 1}, {"sampling_session_id", sampler}, {"seq_id", 0},
                               {"prompt", {{"chunks", {{{"tokens", {72, 105}}, {"type", "encoded_text"}}}}}},
                               {"sampling_params", {{"max_tokens", 4}, {"seed", 1}, {"stop", json::array()}}}});
  EXPECT_EQ(api.get("/_kiln/state").first, 200);  // control API: debug level, not logged at info
  std::map<std::string, std::vector<json>> events;
  std::istringstream lines(server.log());
  for (std::string line; std::getline(lines, line);) {
    const json j = json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << "not a JSON line: " << line;
    ASSERT_TRUE(j.contains("time") && j.contains("level") && j.contains("event")) << line;
    EXPECT_EQ(line.rfind("{\"time\":", 0), 0u) << "time comes first: " << line;
    events[j["event"]].push_back(j);
  }
  std::vector<json> fb;
  for (const json& r : events["request"]) {
    EXPECT_TRUE(r["path"].get<std::string>().find("/_kiln/") == std::string::npos) << r;
    EXPECT_GE(r["duration_ms"].get<double>(), 0) << r;
    if (r["path"] == "/api/v1/forward_backward") fb.push_back(r);
  }
  ASSERT_EQ(fb.size(), 1u) << server.log();
  EXPECT_EQ(fb[0]["method"], "POST");
  EXPECT_EQ(fb[0]["status"], 200);
  EXPECT_EQ(fb[0]["model"], t.model_id);
  EXPECT_TRUE(fb[0]["request_id"].is_string() && !fb[0]["request_id"].get<std::string>().empty()) << fb[0];
  ASSERT_EQ(events["checkpoint_save.progress"].size(), 1u) << server.log();
  EXPECT_EQ(events["checkpoint_save.progress"][0]["checkpoint"], "tinker://" + t.model_id + "/weights/logged");
  ASSERT_EQ(events["checkpoint_save.done"].size(), 1u) << server.log();
  EXPECT_GT(events["checkpoint_save.done"][0]["bytes"].get<int64_t>(), 0);
  ASSERT_GE(events["sample.progress"].size(), 1u) << server.log();
  ASSERT_EQ(events["sample.done"].size(), 1u) << server.log();
  EXPECT_EQ(events["sample.done"][0]["sampler"], sampler);
  EXPECT_EQ(events["sample.done"][0]["decode_steps"], 4);
}

// SIGTERM: the save in flight finishes and its result can still be polled; new work is refused
// with a retryable 503; the process exits 0; the checkpoint is there after a restart.
TEST(ServeProcess, SigtermLetsWorkInFlightFinishAndRefusesNewWork) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  std::string path;
  json before;
  {
    ServeProcess server({.data_dir = data});
    ASSERT_TRUE(server.running()) << server.log();
    Api api(server.base_url(), "tml-k");
    Trained t = train_one_step(api, new_session(api), 0, "kiln/small", 0);
    before = probe_logprobs(api, t);
    // Several saves queued behind each other, then the signal at once.
    std::vector<std::string> rids;
    for (int i = 0; i < 4; ++i) {
      auto [s, f] = api.post("/api/v1/save_weights", {{"model_id", t.model_id}, {"path", "s" + std::to_string(i)},
                                                      {"seq_id", t.next_seq++}, {"type", "save_weights"}});
      ASSERT_EQ(s, 200) << f;
      rids.push_back(f["request_id"]);
    }
    server.signal(SIGTERM);
    for (int i = 0; i < 1000 && server.log().find("stopping") == std::string::npos; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    auto [refused, why] = api.post("/api/v1/forward", {{"model_id", t.model_id}, {"seq_id", t.next_seq},
                                                       {"forward_input", {{"data", {kProbe}}, {"loss_fn", "cross_entropy"}}}});
    EXPECT_EQ(refused, 503) << why;
    EXPECT_NE(why.value("detail", "").find("shutting down"), std::string::npos) << why;
    for (const auto& rid : rids) {
      auto [st, saved] = api.result(rid, 30);
      EXPECT_EQ(st, 200) << saved;
      path = saved.value("path", "");
    }
    EXPECT_EQ(server.wait(), 0) << server.log();
  }
  ServeProcess again({.data_dir = data});
  ASSERT_TRUE(again.running()) << again.log();
  Api api(again.base_url(), "tml-k");
  Trained fresh = create(api, new_session(api), 0, "kiln/small", 0);
  api.call("/api/v1/load_weights", {{"model_id", fresh.model_id}, {"path", path}, {"seq_id", fresh.next_seq++},
                                    {"optimizer", false}, {"type", "load_weights"}});
  EXPECT_EQ(probe_logprobs(api, fresh), before);
}

// A full disk (here a file-size limit, which fails writes the same way without root): the save's
// future fails with a message naming the checkpoint and the cause, nothing is listed or left
// behind, and the server goes on serving, small saves included.
TEST(ServeProcess, AFullDiskFailsTheSaveClearlyAndListsNothing) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  ServeProcess server({.data_dir = data, .file_size_limit = 512 * 1024});
  ASSERT_TRUE(server.running()) << server.log();
  Api api(server.base_url(), "tml-k");
  const std::string session = new_session(api);
  Trained big = train_one_step(api, session, 0, "kiln/small", 0);  // ~10 MB of weights
  auto [s, f] = api.post("/api/v1/save_weights", {{"model_id", big.model_id}, {"path", "too-big"},
                                                  {"seq_id", big.next_seq++}, {"type", "save_weights"}});
  ASSERT_EQ(s, 200) << f;
  auto [st, failed] = api.result(f["request_id"]);
  ASSERT_EQ(st, 200);
  const std::string error = failed.value("error", "");
  EXPECT_NE(error.find("checkpoint 'weights/too-big' was not saved"), std::string::npos) << failed;
  EXPECT_NE(error.find("File too large"), std::string::npos) << failed;
  EXPECT_EQ(failed["category"], "server");
  EXPECT_TRUE(api.get("/api/v1/training_runs/" + big.model_id + "/checkpoints").second["checkpoints"].empty());
  EXPECT_TRUE(tmp_is_empty(data));
  EXPECT_TRUE(partial_checkpoint_dirs(data).empty());
  // Still serving: the model trains on, and a small LoRA save fits.
  EXPECT_FALSE(probe_logprobs(api, big).empty());
  Trained small = train_one_step(api, session, 1, "kiln/tiny", 4);
  auto saved = api.call("/api/v1/save_weights", {{"model_id", small.model_id}, {"path", "fits"},
                                                 {"seq_id", small.next_seq++}, {"type", "save_weights"}});
  EXPECT_EQ(saved.value("path", ""), "tinker://" + small.model_id + "/weights/fits") << saved;
}

// SIGKILL at a random moment while saves of LoRA and full-parameter checkpoints are in flight.
// After each restart: no partial directory, nothing left in .tmp, every checkpoint listed before
// is still listed, and every newly listed one loads and computes exactly what the model computed
// when it was saved (a sampler checkpoint: a sampler is created from it). Trials accumulate on
// one data directory, so earlier checkpoints must survive later crashes; after the last trial
// every listed checkpoint is loaded and checked once more. KILN_CRASH_TRIALS sets the count
// (`make stress` runs 100).
TEST(ServeProcess, SigkillDuringSavesLeavesOnlyWholeCheckpoints) {
  const char* env = std::getenv("KILN_CRASH_TRIALS");
  const int trials = env ? std::atoi(env) : 4;
  TempDir dir;
  const std::string data = dir.path() + "/data";
  std::mt19937 rng(20261202);
  std::map<std::string, json> expected;                      // training-state tinker path → probe logprobs
  std::map<std::string, std::pair<std::string, int>> layout;  // tinker path → (base, rank)
  std::set<std::string> verified;  // loaded and checked after some restart
  int listed_total = 0, lost_in_flight = 0;
  for (int trial = 0; trial < trials; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    int submitted = 0;
    {
      ServeProcess server({.data_dir = data});
      ASSERT_TRUE(server.running()) << server.log();
      Api api(server.base_url(), "tml-k");
      const std::string session = new_session(api);
      std::vector<Trained> models = {train_one_step(api, session, 0, "kiln/small", 0),
                                     train_one_step(api, session, 1, "kiln/small", 8)};
      std::vector<json> probes;
      for (auto& m : models) probes.push_back(probe_logprobs(api, m));
      for (size_t i = 0; i < models.size(); ++i)
        for (int k = 0; k < 3; ++k) {
          // append(), not "t" + …: GCC 12 warns (-Wrestrict) falsely on that form here.
          const std::string name = std::string("t").append(std::to_string(trial)).append("-").append(std::to_string(k));
          api.post("/api/v1/save_weights", {{"model_id", models[i].model_id}, {"path", name},
                                            {"seq_id", models[i].next_seq++}, {"type", "save_weights"}});
          api.post("/api/v1/save_weights_for_sampler", {{"model_id", models[i].model_id}, {"path", name + "-s"},
                                                        {"seq_id", models[i].next_seq++}, {"type", "save_weights_for_sampler"}});
          const std::string path = "tinker://" + models[i].model_id + "/weights/" + name;
          expected[path] = probes[i];
          layout[path] = {models[i].base, models[i].rank};
          submitted += 2;
        }
      std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 400000)(rng)));
      server.signal(SIGKILL);
      EXPECT_EQ(server.wait(), 128 + SIGKILL);
    }
    ServeProcess server({.data_dir = data});
    ASSERT_TRUE(server.running()) << server.log();
    EXPECT_TRUE(tmp_is_empty(data)) << "leftovers of interrupted saves were not cleaned at start";
    EXPECT_TRUE(partial_checkpoint_dirs(data).empty());
    Api api(server.base_url(), "tml-k");
    const bool last = trial + 1 == trials;
    std::set<std::string> listed_paths;
    int listed_now = 0;
    const json listed = api.get("/api/v1/checkpoints?limit=100000").second["checkpoints"];
    const std::string session = new_session(api);
    int model_seq = 0;
    for (const auto& c : listed) {
      const std::string path = c["tinker_path"];
      listed_paths.insert(path);
      if (path.find("/t" + std::to_string(trial) + "-") != std::string::npos && c["checkpoint_type"] != "sampler") ++listed_now;
      if (verified.count(path) && !last) continue;  // checked after an earlier crash; files untouched since
      if (c["checkpoint_type"] == "sampler") {  // loads into a sampler
        auto [s, b] = api.post("/api/v1/create_sampling_session", {{"session_id", session}, {"sampling_session_seq_id", model_seq++},
                                                                   {"model_path", path}, {"type", "create_sampling_session"}});
        EXPECT_EQ(s, 200) << path << " " << b;
      } else {
        ASSERT_TRUE(expected.count(path)) << "listed but never saved: " << path;
        const auto [base, rank] = layout[path];
        Trained fresh = create(api, session, model_seq++, base, rank);
        api.call("/api/v1/load_weights", {{"model_id", fresh.model_id}, {"path", path}, {"seq_id", fresh.next_seq++},
                                          {"optimizer", true}, {"type", "load_weights"}});
        EXPECT_EQ(probe_logprobs(api, fresh), expected[path]) << path << " does not compute what was saved";
        // One model per checkpoint checked: unloaded at once, so long runs stay small.
        api.post("/api/v1/unload_model", {{"model_id", fresh.model_id}, {"seq_id", fresh.next_seq++}, {"type", "unload_model"}});
      }
      verified.insert(path);
    }
    for (const auto& path : verified) EXPECT_TRUE(listed_paths.count(path)) << path << " was listed before this crash, not after";
    listed_total += listed_now;
    lost_in_flight += submitted / 2 - listed_now;
  }
  std::printf("crash trials: %d; training-state saves listed after the kill: %d, not yet complete: %d\n", trials,
              listed_total, lost_in_flight);
}

}  // namespace
}  // namespace kiln::cli_testing
