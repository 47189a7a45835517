// The drivers for real Python SDKs (driver/tinker_sdk_driver.py, driver/fireworks_sdk_driver.py)
// against every property, and the one-bug SDKs of driver/tinker_sdk_mutants.py each failed by its
// property. The SDKs are never part of the repository: these tests run with every interpreter
// named in KILN_TINKER_PYTHON / KILN_FIREWORKS_PYTHON (':' between them; default python3) that can
// import the SDK, and are skipped, saying what to install, when none can.
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "conformance/runner.hpp"

namespace kiln::conformance {
namespace {

const std::string kDriverDir = std::string(KILN_SOURCE_DIR) + "/conformance/driver/";

// The properties a tinker client cannot run: Fireworks' own operations and rules (DRIVER.md,
// "describe"), and custom losses where the interpreter has no torch.
bool tinker_skip(const std::string& property, bool has_torch) {
  return property == "naming.sampler_suffix" || property == "naming.resolve_checkpoint_path" ||
         property == "naming.duplicate_client" || (property == "custom_loss.linearisation" && !has_torch);
}
// The ones the Fireworks SDK cannot: custom losses without torch. (It samples through a
// deployment it hot-loads, on Kiln's control plane: fireworks_sdk_driver.py.)
bool fireworks_skip(const std::string& property, bool has_torch) {
  return property == "custom_loss.linearisation" && !has_torch;
}

// Runs `python -c CODE` quietly; true when it exits 0.
bool python_runs(const std::string& python, const std::string& code) {
  return std::system((python + " -c '" + code + "' >/dev/null 2>&1").c_str()) == 0;
}

// The interpreters named in `env_var` (default python3) that can import `module`.
std::vector<std::string> interpreters_with(const char* env_var, const std::string& module) {
  const char* env = std::getenv(env_var);
  std::istringstream list(env && *env ? env : "python3");
  std::vector<std::string> out;
  for (std::string p; std::getline(list, p, ':');)
    if (!p.empty() && python_runs(p, "import " + module)) out.push_back(p);
  return out;
}
std::vector<std::string> interpreters_with_tinker() { return interpreters_with("KILN_TINKER_PYTHON", "tinker"); }

std::string skip_message(const std::string& env_var, const std::string& module, const std::string& package) {
  return "no interpreter in " + env_var + " (default python3) can import " + module + ": install " + package +
         " (pip install " + package + ") into one, or set " + env_var + "=/path/to/venv/bin/python";
}
std::string skip_message() { return skip_message("KILN_TINKER_PYTHON", "tinker", "tinker"); }

RunOptions sdk_options(const std::string& driver) {
  RunOptions o;
  o.driver_command = driver;
  o.cases = 3;
  o.timeout_seconds = 300;  // only a hung driver reaches it
  o.shrink_seconds = 5;
  return o;
}

std::string describe(const PropertyResult& r) {
  std::string out = std::string(status_name(r.status)) + " " + r.name + ": " + r.message;
  for (const auto& line : r.counterexample) out += "\n  " + line;
  return out + (r.driver_stderr.empty() ? "" : "\n  driver stderr: " + r.driver_stderr);
}

// Every property passes with `driver` run by `python`, but the documented skips, which skip.
void expect_passes(const std::string& python, const std::string& driver, const std::string& name,
                   bool (*skips)(const std::string&, bool)) {
  const bool has_torch = python_runs(python, "import torch");
  RunOptions o = sdk_options(python + " " + kDriverDir + driver);
  o.jobs = 2;
  const auto results = run_properties(o);
  EXPECT_EQ(client_traits().name, name) << python;
  EXPECT_FALSE(client_traits().version.empty()) << python;
  for (const auto& r : results) {
    if (skips(r.name, has_torch)) {
      EXPECT_EQ(r.status, PropertyResult::Status::skip) << python << ": " << describe(r);
    } else {
      EXPECT_EQ(r.status, PropertyResult::Status::pass) << python << " (" << client_traits().label() << "): " << describe(r);
    }
  }
}

TEST(TinkerSdkTest, PassesEveryPropertyItCanRun) {
  const auto pythons = interpreters_with_tinker();
  if (pythons.empty()) GTEST_SKIP() << skip_message();
  for (const auto& python : pythons) expect_passes(python, "tinker_sdk_driver.py", "tinker", tinker_skip);
}

TEST(FireworksSdkTest, PassesEveryPropertyItCanRun) {
  const auto pythons = interpreters_with("KILN_FIREWORKS_PYTHON", "fireworks.training.sdk");
  if (pythons.empty()) GTEST_SKIP() << skip_message("KILN_FIREWORKS_PYTHON", "fireworks.training.sdk", "fireworks-ai");
  for (const auto& python : pythons) expect_passes(python, "fireworks_sdk_driver.py", "fireworks-ai", fireworks_skip);
}

TEST(TinkerSdkTest, EachMutantFailsItsProperty) {
  const auto pythons = interpreters_with_tinker();
  if (pythons.empty()) GTEST_SKIP() << skip_message();
  const std::string python = pythons.front();
  const std::string mutants_py = kDriverDir + "tinker_sdk_mutants.py";
  FILE* p = popen((python + " " + mutants_py + " --list").c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string listing;
  for (char buf[4096]; size_t n = fread(buf, 1, sizeof buf, p);) listing.append(buf, n);
  ASSERT_EQ(pclose(p), 0) << listing;
  const auto mutants = nlohmann::json::parse(listing);
  EXPECT_GE(mutants.size(), 5u);
  for (const auto& [name, m] : mutants.items()) {
    RunOptions o = sdk_options(python + " " + mutants_py + " " + name);
    o.properties = {m.at("property").get<std::string>()};
    o.cases = 5;
    const auto results = run_properties(o);
    ASSERT_EQ(results.size(), 1u);
    EXPECT_EQ(results[0].status, PropertyResult::Status::fail)
        << "the mutant " << name << " (" << m.value("bug", "") << ") was not caught by " << o.properties[0] << ": "
        << describe(results[0]);
  }
}

}  // namespace
}  // namespace kiln::conformance
