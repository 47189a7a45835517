#pragma once
// What the client under test is and what it can do, from the driver's answer to `describe`
// (DRIVER.md): its name and version head the report, and the generators leave out what it lacks,
// so that a tinker client is not failed (or skipped) for lacking Fireworks' full-parameter
// training or grad_accumulation_normalization.
#include <set>
#include <string>

#include <nlohmann/json.hpp>

namespace kiln::conformance {

struct ClientTraits {
  std::string name = "unnamed client", version;  // "tinker", "0.25.0"
  std::set<std::string> lacks;                   // features of DRIVER.md's list the client does not have
  bool has(const std::string& feature) const { return !lacks.count(feature); }
  std::string label() const { return version.empty() ? name : name + " " + version; }
};
// The features a driver may list as lacking; any other name is a driver error.
const std::set<std::string>& known_features();

// Starts the driver once and asks `describe`. A driver that answers not_implemented is an unnamed
// client with every feature. Throws std::invalid_argument for a malformed answer (an unknown
// feature, a name that is not a string) and DriverBroken when the driver does not answer.
ClientTraits describe_client(const std::string& driver_command, double timeout_seconds);

// The traits of the client the properties are checking (process-wide, like rapidcheck's own
// configuration: set before the properties run, read by the generators).
const ClientTraits& client_traits();
void set_client_traits(ClientTraits traits);

}  // namespace kiln::conformance
