#pragma once
// The three forms of a conformance run's results: a table for people, JUnit XML for CI systems
// and JSON for programs.
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "conformance/runner.hpp"

namespace kiln::conformance {

// One line per property (status, suite, name, cases, seconds), then each failure in full:
// message, minimal failing sequence, how to reproduce it; then a summary line.
// The run's first line: the client and its version, the Kiln version and the seed.
std::string headline(const ClientTraits& client, uint64_t seed);
void print_table(std::ostream& os, const std::vector<PropertyResult>& results, const std::string& reproduce_command);
std::string junit_xml(const std::vector<PropertyResult>& results);
nlohmann::json json_report(const std::vector<PropertyResult>& results, const std::string& driver_command,
                           const ClientTraits& client, uint64_t seed);

}  // namespace kiln::conformance
