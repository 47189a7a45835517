#pragma once
// A conformance property: a named, documented statement about a client, checked by rapidcheck
// over generated test cases. Each test case gets a Case: a fresh driver process talking to a
// freshly reset Kiln server.
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "conformance/driver_process.hpp"
#include "conformance/kiln_server.hpp"
#include "conformance/workload.hpp"

namespace kiln::conformance {

using nlohmann::json;

// The client broke the property; the message says how.
class Failure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// The driver answered not_implemented for an operation the property needs: the property is skipped.
class Unsupported : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct CaseOptions {
  std::string driver_command;
  double timeout_seconds = 30;  // per driver request
  json client_options = json::object();  // added to create_service's options (DRIVER.md)
};

class Case {
 public:
  Case(KilnServer& server, const CaseOptions& options);

  KilnServer& server;

  // The driver's answer to one request, whatever it is.
  json call(const std::string& op, const json& args);
  // The result of a request that must succeed (Failure otherwise; Unsupported on not_implemented).
  json ok(const std::string& op, const json& args);
  // The same, or nothing when the driver does not implement `op`.
  std::optional<json> ok_if_implemented(const std::string& op, const json& args);
  // The error of a request that must fail (Failure if it succeeds).
  json error(const std::string& op, const json& args);

  // create_service against the server, with quick retries and the run's client options;
  // returns the service handle.
  std::string service();
  // create_training_client on `service`; returns the client handle.
  std::string training_client(const std::string& service, int64_t lora_rank, uint64_t seed,
                              const std::string& base_model = kBaseModel);
  // The model id the driver reported for a training-client handle.
  std::string model_id(const std::string& client) const;
  std::string driver_stderr() const { return driver_.stderr_tail(); }

 private:
  DriverProcess driver_;
  json client_options_;
  std::map<std::string, std::string> model_ids_;
};

struct Property {
  std::string suite;  // numbers, ordering, accumulation, checkpoints, naming, custom_loss, wire, resilience, behaviour
  std::string name;   // <suite>.<what>
  std::string doc;    // what a client must do for it to pass
  std::function<void(Case&)> test_case;  // one generated test case; throws to fail
};

// Every property, suite by suite (suites/*.cpp).
const std::vector<Property>& all_properties();
void add_training_properties(std::vector<Property>& out);
void add_checkpoint_properties(std::vector<Property>& out);
void add_naming_properties(std::vector<Property>& out);
void add_wire_properties(std::vector<Property>& out);
void add_resilience_properties(std::vector<Property>& out);
void add_behaviour_properties(std::vector<Property>& out);

// Output comparison against the oracle: every logprob and every oracle metric within
// tol·(1 + |expected|). Throws Failure naming the first difference, with `what` in front.
void expect_output_close(const json& got, const json& expected, const std::string& what, double tol = 2e-5);

}  // namespace kiln::conformance
