#include "conformance/conform_cli.hpp"

#include <cstdlib>
#include <fstream>

#include <nlohmann/json.hpp>
#include <iostream>
#include <sstream>
#include <map>
#include <string>
#include <vector>

#include "conformance/property.hpp"
#include "conformance/report.hpp"
#include "conformance/runner.hpp"

namespace kiln::conformance {

namespace {

const char* kUsage = R"(usage: kiln conform --driver "CMD ARGS" [options]

Checks a client of the Tinker / Fireworks training API, wrapped by a driver program that speaks
conformance/DRIVER.md, against the API's semantics. Each property runs on its own Kiln server on
an ephemeral loopback port; failures are shrunk to a minimal operation sequence.

options:
  --driver CMD        the driver, run with /bin/sh -c (required); or a short form for a real
                      SDK: tinker-sdk (any tinker-compatible SDK; add --module NAME for a fork)
                      or fireworks-sdk, e.g. --driver "tinker-sdk --module my_tinker_fork"
  --python PATH       the interpreter a short-form driver runs with (default python3), e.g.
                      the one of the virtualenv that has the SDK
  --suite NAME        run only this suite (repeatable): numbers, ordering, accumulation,
                      custom_loss, checkpoints, naming, wire, resilience, behaviour
  --property NAME     run only this property (repeatable), e.g. wire.seq_id_order
  --cases N           passing test cases per property (default 10)
  --max-size N        longest generated operation sequence (default 12)
  --seed N            rapidcheck seed (default 1)
  --timeout SECONDS   longest wait for one driver answer (default 30)
  --shrink-seconds S  time spent shrinking a failure to a smaller case (default 30)
  --client-options J  a JSON object added to every create_service's options, e.g.
                      '{"wire_format": "protobuf"}' (DRIVER.md lists the ones drivers know)
  --jobs N            properties run at once, each in its own process and server (default 1)
  --junit FILE        also write JUnit XML
  --json FILE         also write a JSON report
  --list              list the properties and exit

A failure prints RC_PARAMS="reproduce=..."; set it in the environment to re-run exactly that case.
)";

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The short forms of --driver: "tinker-sdk ARGS" runs conformance/driver/tinker_sdk_driver.py
// ARGS with `python`, found in $KILN_DRIVER_DIR, the source tree or the installed share/kiln/drivers.
// Any other command is returned as it is.
std::string expand_driver(const std::string& driver, const std::string& python) {
  const std::map<std::string, std::string> scripts = {{"tinker-sdk", "tinker_sdk_driver.py"},
                                                      {"fireworks-sdk", "fireworks_sdk_driver.py"}};
  const std::string first = driver.substr(0, driver.find(' '));
  const auto it = scripts.find(first);
  if (it == scripts.end()) return driver;
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("KILN_DRIVER_DIR")) dirs.push_back(env);
  std::istringstream builtin(KILN_DRIVER_DIRS);
  for (std::string d; std::getline(builtin, d, ':');) dirs.push_back(d);
  for (const auto& d : dirs) {
    const std::string script = d + "/" + it->second;
    if (std::ifstream(script).good()) return shell_quote(python) + " " + shell_quote(script) + driver.substr(first.size());
  }
  std::string searched;
  for (const auto& d : dirs) searched += (searched.empty() ? "" : ", ") + d;
  throw std::invalid_argument("--driver " + first + ": " + it->second + " is in none of " + searched +
                              " (set KILN_DRIVER_DIR to the directory that has it)");
}

}  // namespace

int conform_main(int argc, char** argv) {
  RunOptions o;
  std::string junit, json_file, python = "python3";
  bool list = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    try {
      if (a == "--driver") o.driver_command = value();
      else if (a == "--python") python = value();
      else if (a == "--suite") o.suites.push_back(value());
      else if (a == "--property") o.properties.push_back(value());
      else if (a == "--cases") o.cases = std::stoi(value());
      else if (a == "--max-size") o.max_size = std::stoi(value());
      else if (a == "--seed") o.seed = std::stoull(value());
      else if (a == "--timeout") o.timeout_seconds = std::stod(value());
      else if (a == "--shrink-seconds") o.shrink_seconds = std::stod(value());
      else if (a == "--jobs") o.jobs = std::stoi(value());
      else if (a == "--client-options") {
        o.client_options = nlohmann::json::parse(value(), nullptr, false);
        if (!o.client_options.is_object()) throw std::invalid_argument("--client-options must be a JSON object");
      }
      else if (a == "--junit") junit = value();
      else if (a == "--json") json_file = value();
      else if (a == "--list") list = true;
      else if (a == "--help" || a == "-h") {
        std::cout << kUsage;
        return 0;
      } else {
        throw std::invalid_argument("unknown option " + a);
      }
    } catch (const std::exception& e) {
      std::cerr << "kiln conform: " << e.what() << "\n\n" << kUsage;
      return 2;
    }
  }
  if (list) {
    for (const auto& p : all_properties()) std::cout << p.name << "\n    " << p.doc << "\n";
    return 0;
  }
  if (o.driver_command.empty()) {
    std::cerr << "kiln conform: --driver is required\n\n" << kUsage;
    return 2;
  }
  try {
    o.driver_command = expand_driver(o.driver_command, python);
  } catch (const std::invalid_argument& e) {
    std::cerr << "kiln conform: " << e.what() << "\n";
    return 2;
  }
  if (o.cases < 1 || o.max_size < 1 || o.jobs < 1 || o.timeout_seconds <= 0) {
    std::cerr << "kiln conform: --cases, --max-size and --jobs must be at least 1, --timeout positive\n";
    return 2;
  }
  // rapidcheck prints its configuration when it first reads RC_PARAMS: make it show the seed
  // this run uses (the runner passes it explicitly) rather than a random one it would not.
  const char* rc_params = std::getenv("RC_PARAMS");
  const std::string params = rc_params ? rc_params : "";
  if (params.find("seed=") == std::string::npos)
    setenv("RC_PARAMS", ("seed=" + std::to_string(o.seed) + (params.empty() ? "" : " " + params)).c_str(), 1);
  std::vector<PropertyResult> results;
  try {
    try {
      o.client = describe_client(o.driver_command, o.timeout_seconds);
    } catch (const DriverBroken&) {
      o.client = ClientTraits{};  // the properties meet the same breakage and report it
    }
    std::cout << headline(*o.client, o.seed) << "\n" << std::flush;
    results = run_properties(o, [](const PropertyResult& r) {
      std::cerr << "kiln conform: " << status_name(r.status) << " " << r.name << "\n";
    });
  } catch (const std::invalid_argument& e) {
    std::cerr << "kiln conform: " << e.what() << "\n";
    return 2;
  }
  std::ostringstream again;
  again << "kiln conform --driver " << shell_quote(o.driver_command) << " --seed " << o.seed << " --cases " << o.cases
        << " --max-size " << o.max_size;
  if (!o.client_options.empty()) again << " --client-options " << shell_quote(o.client_options.dump());
  print_table(std::cout, results, again.str());
  if (!junit.empty()) std::ofstream(junit) << junit_xml(results);
  if (!json_file.empty()) std::ofstream(json_file) << json_report(results, o.driver_command, *o.client, o.seed).dump(2) << "\n";
  for (const auto& r : results)
    if (r.status == PropertyResult::Status::fail) return 1;
  return 0;
}

}  // namespace kiln::conformance
