// The README's Fireworks-flow and OpenAI-surface examples (docs/examples/*.py) run as shown against
// a `kiln serve` process, with every interpreter in KILN_FIREWORKS_PYTHON / KILN_TINKER_PYTHON
// (':'-separated; default python3) that can import what the example needs. Without one the test
// skips, saying what to install: the SDKs are never part of this repository.
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cli/serve_process.hpp"
#include "service/test_util.hpp"

namespace kiln::cli_testing {
namespace {

std::vector<std::string> interpreters(const char* env_var, const std::string& imports) {
  const char* env = std::getenv(env_var);
  std::istringstream list(env && *env ? env : "python3");
  std::vector<std::string> out;
  for (std::string p; std::getline(list, p, ':');)
    if (!p.empty() && std::system((p + " -c 'import " + imports + "' >/dev/null 2>&1").c_str()) == 0) out.push_back(p);
  return out;
}

// Runs `python - <base_url>` with the example on standard input (so an interpreter in a chroot
// need not see this tree); its exit status and output.
std::pair<int, std::string> run(const std::string& python, const std::string& example, const std::string& base_url) {
  const std::string cmd = python + " - " + base_url + " < " KILN_SOURCE_DIR "/docs/examples/" + example + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  for (size_t n; p && (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int status = p ? ::pclose(p) : -1;
  return {status, out};
}

TEST(ReadmeExamples, TheFireworksFlowRunsWithTheRealSdk) {
  const auto pythons = interpreters("KILN_FIREWORKS_PYTHON", "fireworks.training.sdk");
  if (pythons.empty())
    GTEST_SKIP() << "no interpreter in KILN_FIREWORKS_PYTHON (default python3) can import fireworks.training.sdk: "
                    "install fireworks-ai into one, or set KILN_FIREWORKS_PYTHON=/path/to/venv/bin/python";
  for (const auto& python : pythons) {
    service::testing::TempDir dir;
    ServeProcess kiln({dir.path(), {}, std::nullopt});
    ASSERT_TRUE(kiln.running()) << kiln.log();
    const auto [status, out] = run(python, "fireworks_flow.py", kiln.base_url());
    EXPECT_EQ(status, 0) << python << "\n" << out;
    EXPECT_NE(out.find("hot-loaded step-1-"), std::string::npos) << out;
    EXPECT_NE(out.find("CHECKPOINT_TYPE_INFERENCE_ARC_V2', False"), std::string::npos) << out;
    EXPECT_NE(out.find("HF_BASE_MODEL"), std::string::npos) << out;
    EXPECT_NE(out.find("after delete: JOB_STATE_DELETED"), std::string::npos) << out;
  }
}

TEST(ReadmeExamples, TheOpenAiSurfaceRunsWithTheOpenAiClient) {
  const auto pythons = interpreters("KILN_TINKER_PYTHON", "tinker, openai");
  if (pythons.empty())
    GTEST_SKIP() << "no interpreter in KILN_TINKER_PYTHON (default python3) can import tinker and openai: install both "
                    "into one, or set KILN_TINKER_PYTHON=/path/to/venv/bin/python";
  for (const auto& python : pythons) {
    service::testing::TempDir dir;
    ServeProcess kiln({dir.path(), {}, std::nullopt});
    ASSERT_TRUE(kiln.running()) << kiln.log();
    const auto [status, out] = run(python, "oai_sampling.py", kiln.base_url());
    EXPECT_EQ(status, 0) << python << "\n" << out;
    EXPECT_NE(out.find("completion usage: 5 8"), std::string::npos) << out;
    EXPECT_NE(out.find("chat: length 4 logprobs"), std::string::npos) << out;
  }
}

}  // namespace
}  // namespace kiln::cli_testing
