// The harness passes Kiln's own C++ client, fails each mutant on the property that names its bug,
// and `kiln conform` reports as documented: a table, JUnit XML, JSON, and an RC_PARAMS string
// that reproduces the failure.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "conformance/driver/mutants.hpp"
#include "conformance/kiln_server.hpp"
#include "conformance/runner.hpp"

namespace kiln::conformance {
namespace {

// A driver timeout that only a hung driver reaches: at the default 30 s a loaded machine could
// fail a property that was right (issue #18's flaky ConformCliTest).
RunOptions options() {
  RunOptions o;
  o.timeout_seconds = 300;
  return o;
}

std::string describe(const PropertyResult& r) {
  std::string out = std::string(status_name(r.status)) + " " + r.name + ": " + r.message;
  for (const auto& line : r.counterexample) out += "\n  " + line;
  return out;
}

TEST(ConformanceTest, TheCppDriverPassesEveryProperty) {
  RunOptions o = options();
  o.driver_command = KILN_CPP_DRIVER;
  const auto results = run_properties(o);
  EXPECT_GE(results.size(), 17u);
  for (const auto& r : results) {
    EXPECT_EQ(r.status, PropertyResult::Status::pass) << describe(r);
    EXPECT_EQ(r.cases, o.cases) << r.name;
  }
}

TEST(ConformanceTest, TheCppDriverOverProtobufPassesEveryProperty) {
  RunOptions o = options();
  o.driver_command = KILN_CPP_DRIVER;
  o.client_options = {{"wire_format", "protobuf"}};  // tinker 0.25's transport, zstd included
  o.cases = 5;
  for (const auto& r : run_properties(o)) EXPECT_EQ(r.status, PropertyResult::Status::pass) << describe(r);
}

}  // namespace

void PrintTo(const Mutant& m, std::ostream* os) { *os << m.name << " (caught by " << m.property << ")"; }

namespace {

class MutantTest : public ::testing::TestWithParam<Mutant> {};

TEST_P(MutantTest, FailsTheNamedProperty) {
  const Mutant& m = GetParam();
  RunOptions o = options();
  o.driver_command = std::string(KILN_CPP_DRIVER) + " --mutant " + m.name;
  o.properties = {m.property};
  o.shrink_seconds = 5;
  const auto results = run_properties(o);
  ASSERT_EQ(results.size(), 1u);
  const auto& r = results[0];
  EXPECT_EQ(r.status, PropertyResult::Status::fail) << m.name << " (" << m.bug << ") was not caught by " << m.property;
  EXPECT_FALSE(r.message.empty());
  EXPECT_FALSE(r.counterexample.empty());
  EXPECT_EQ(r.rc_params.rfind("reproduce=", 0), 0u) << r.rc_params;
}

TEST(ConformanceTest, TheSameSeedFindsTheSameMinimalCase) {
  RunOptions o = options();
  o.driver_command = std::string(KILN_CPP_DRIVER) + " --mutant custom_loss_wrong_sign";
  o.properties = {"custom_loss.linearisation"};
  o.shrink_seconds = 600;  // no time budget cutting shrinking short at a load-dependent point
  const auto a = run_properties(o), b = run_properties(o);
  ASSERT_EQ(a[0].status, PropertyResult::Status::fail);
  EXPECT_EQ(a[0].counterexample, b[0].counterexample);
  EXPECT_EQ(a[0].rc_params, b[0].rc_params);
  EXPECT_EQ(a[0].message, b[0].message);
}

INSTANTIATE_TEST_SUITE_P(EveryMutant, MutantTest, ::testing::ValuesIn(mutants()),
                         [](const auto& info) { return std::string(info.param.name); });

// Runs `kiln conform ARGS` with the environment prefix `env`; returns (exit status, stdout).
const std::string kDriverTimeout = std::to_string(static_cast<int>(options().timeout_seconds));

std::pair<int, std::string> conform(const std::string& env, const std::string& args) {
  // stdout only: stderr carries rapidcheck's banner once per worker process, which would make
  // runs with different --jobs differ.
  const std::string cmd = env + " " + KILN_BINARY + " conform --timeout " + kDriverTimeout + " " + args + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(ConformCliTest, ReportsAFailureThreeWaysAndReproducesIt) {
  ScratchDir dir;
  const std::string junit = dir.path() + "/r.xml", json_file = dir.path() + "/r.json";
  const std::string driver = std::string("'") + KILN_CPP_DRIVER + " --mutant no_ttl'";
  const auto [status, out] = conform("", "--driver " + driver + " --suite checkpoints --property checkpoints.ttl_expiry --junit " +
                                             junit + " --json " + json_file);
  EXPECT_EQ(status, 1) << out;
  EXPECT_NE(out.find("fail    checkpoints.ttl_expiry"), std::string::npos) << out;
  EXPECT_NE(out.find("still listed 1 s after it expired"), std::string::npos) << out;
  EXPECT_NE(out.find("minimal failing case"), std::string::npos) << out;
  EXPECT_NE(out.find("1 properties: 0 passed, 1 failed, 0 skipped"), std::string::npos) << out;

  std::stringstream xml;
  xml << std::ifstream(junit).rdbuf();
  EXPECT_NE(xml.str().find("<testcase classname=\"checkpoints\" name=\"checkpoints.ttl_expiry\""), std::string::npos) << xml.str();
  EXPECT_NE(xml.str().find("<failure message="), std::string::npos) << xml.str();

  const auto report = nlohmann::json::parse(std::ifstream(json_file));
  EXPECT_EQ(report["summary"]["failed"], 1);
  const auto& p = report["properties"][0];
  EXPECT_EQ(p["name"], "checkpoints.ttl_expiry");
  EXPECT_EQ(p["status"], "fail");
  ASSERT_TRUE(p["rc_params"].is_string());

  // The reproduce string re-runs exactly the minimal case: it fails at once, with the same message.
  const auto [again, out2] = conform("RC_PARAMS='" + p["rc_params"].get<std::string>() + "'",
                                     "--driver " + driver + " --property checkpoints.ttl_expiry");
  EXPECT_EQ(again, 1) << out2;
  EXPECT_NE(out2.find(p["message"].get<std::string>()), std::string::npos) << out2;
}

TEST(ConformCliTest, PassesAndRefusesBadUsage) {
  const auto [status, out] = conform("", std::string("--driver ") + KILN_CPP_DRIVER + " --suite naming --cases 3");
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("3 properties: 3 passed, 0 failed, 0 skipped"), std::string::npos) << out;
  EXPECT_EQ(conform("", std::string("--driver ") + KILN_CPP_DRIVER + " --suite nosuch").first, 2);
  EXPECT_EQ(conform("", "--suite naming").first, 2);  // no --driver
  const auto [listed, names] = conform("", "--list");
  EXPECT_EQ(listed, 0);
  EXPECT_NE(names.find("resilience.exactly_once"), std::string::npos);
}

TEST(ConformCliTest, WorkerProcessesReportTheSameAsOneProcess) {
  const std::string args = std::string("--driver '") + KILN_CPP_DRIVER + " --mutant no_ttl' --suite checkpoints --cases 4";
  const auto [one_status, one] = conform("", args);
  const auto [two_status, two] = conform("", args + " --jobs 2");
  EXPECT_EQ(one_status, 1) << one;
  EXPECT_EQ(two_status, 1) << two;
  auto without_times = [](const std::string& table) {  // the SECONDS column differs
    std::string out;
    std::istringstream in(table);
    for (std::string line; std::getline(in, line);) out += line.substr(0, line.find_last_of(' ')) + "\n";
    return out;
  };
  EXPECT_EQ(without_times(one), without_times(two));
  EXPECT_NE(two.find("fail    checkpoints.ttl_expiry"), std::string::npos) << two;
  EXPECT_NE(two.find("pass    checkpoints.resume_with_optimizer"), std::string::npos) << two;
  EXPECT_NE(two.find("reproduce: RC_PARAMS="), std::string::npos) << two;
}

// A client in another language: a stdlib-only Python client (driver/python_driver.py) that
// implements part of the protocol. What it implements passes; the rest is skipped, not failed.
TEST(ConformCliTest, APythonDriverPassesWhatItImplementsAndSkipsTheRest) {
  const auto [status, out] = conform("", std::string("--driver 'python3 ") + KILN_SOURCE_DIR +
                                             "/conformance/driver/python_driver.py' --cases 3 --jobs 2");
  EXPECT_EQ(status, 0) << out;
  for (const char* passes : {"numbers.oracle_agreement", "accumulation.until_optim_step", "naming.resolve_checkpoint_path",
                             "naming.duplicate_client", "wire.request_fields", "wire.seq_id_order", "wire.chunk_limits",
                             "wire.idempotent_resubmission", "resilience.retry_branches", "resilience.exactly_once",
                             "resilience.expired_promise"})
    EXPECT_NE(out.find(std::string("pass    ") + passes), std::string::npos) << passes << "\n" << out;
  EXPECT_NE(out.find("skip    custom_loss.linearisation"), std::string::npos) << out;
  EXPECT_NE(out.find("the driver does not implement 'forward_backward_custom'"), std::string::npos) << out;
}

// The report's first line names the client (the driver's describe), Kiln's version and the seed;
// the short forms run the SDK drivers of conformance/driver/ with the --python interpreter.
TEST(ConformCliTest, TheHeadlineAndTheShortForms) {
  const auto [status, out] = conform("", std::string("--driver ") + KILN_CPP_DRIVER + " --property naming.duplicate_client --cases 1 --seed 7");
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(out.substr(0, out.find('\n')), "kiln conform: kiln-cpp-client " KILN_VERSION " against Kiln " KILN_VERSION ", seed 7");
  // /bin/echo for an interpreter: the driver's one line is the command the short form ran.
  const auto [s2, echoed] = conform("", "--driver 'tinker-sdk --module my_fork' --python /bin/echo --property naming.duplicate_client --cases 1");
  EXPECT_EQ(s2, 1) << echoed;
  EXPECT_NE(echoed.find("not a JSON object: " KILN_SOURCE_DIR "/conformance/driver/tinker_sdk_driver.py --module my_fork"),
            std::string::npos) << echoed;
}

// The driver reads the request before it answers garbage: one that exits at once races the
// harness's write (under the sanitizer build the write lost, and the failure named the closed stdin).
TEST(ConformCliTest, ABrokenDriverFailsWithItsStderr) {
  const auto [status, out] = conform("", "--driver 'read request; echo not json; echo oops >&2' --property naming.duplicate_client --cases 1");
  EXPECT_EQ(status, 1) << out;
  EXPECT_NE(out.find("not a JSON object"), std::string::npos) << out;
}

}  // namespace
}  // namespace kiln::conformance
