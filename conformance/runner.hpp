#pragma once
// Runs properties against a driver with rapidcheck: each property on its own Kiln server, each
// test case with a fresh driver on a reset server, failures shrunk to a minimal operation sequence.
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "conformance/client_traits.hpp"

namespace kiln::conformance {

struct RunOptions {
  std::string driver_command;
  std::vector<std::string> suites;      // empty: every suite
  std::vector<std::string> properties;  // empty: every property of those suites
  int cases = 10;                       // passing test cases a property needs
  int max_size = 12;                    // longest generated operation sequence
  uint64_t seed = 1;                    // rapidcheck seed: the same seed generates the same cases
  double timeout_seconds = 30;          // per driver request
  nlohmann::json client_options = nlohmann::json::object();  // added to every create_service's options
  double shrink_seconds = 30;
  // Properties run at once, each in a forked worker process with its own server (rapidcheck keeps
  // global state, so not threads). Call with jobs > 1 only from a process with no other threads.
  int jobs = 1;           // then shrinking stops at the smallest failure found so far
  // The client's describe answer; run_properties asks the driver when it is absent.
  std::optional<ClientTraits> client;
};

struct PropertyResult {
  enum class Status { pass, fail, skip };
  std::string suite, name, doc;
  Status status = Status::pass;
  int cases = 0;                            // test cases that passed
  int shrinks = 0;                          // accepted shrink steps of a failure
  std::string message;                      // why it failed, or why it was skipped
  std::vector<std::string> counterexample;  // the minimal failing case, one line each
  std::string rc_params;                    // RC_PARAMS value that reproduces the failure
  std::string driver_stderr;                // the end of the driver's stderr in the minimal case
  double seconds = 0;
};
const char* status_name(PropertyResult::Status s);
// The JSON report's form of one result (also how --jobs workers hand results back).
void to_json(nlohmann::json& j, const PropertyResult& r);
void from_json(const nlohmann::json& j, PropertyResult& r);

// Throws std::invalid_argument when a suite or property filter matches nothing.
std::vector<PropertyResult> run_properties(const RunOptions& options,
                                           const std::function<void(const PropertyResult&)>& on_result = {});

}  // namespace kiln::conformance
