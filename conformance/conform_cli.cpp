#include "conformance/conform_cli.hpp"

#include <cstdlib>
#include <fstream>

#include <nlohmann/json.hpp>
#include <iostream>
#include <sstream>
#include <string>

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
  --driver CMD        the driver, run with /bin/sh -c (required)
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

}  // namespace

int conform_main(int argc, char** argv) {
  RunOptions o;
  std::string junit, json_file;
  bool list = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    try {
      if (a == "--driver") o.driver_command = value();
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
  if (!json_file.empty()) std::ofstream(json_file) << json_report(results, o.driver_command).dump(2) << "\n";
  for (const auto& r : results)
    if (r.status == PropertyResult::Status::fail) return 1;
  return 0;
}

}  // namespace kiln::conformance
