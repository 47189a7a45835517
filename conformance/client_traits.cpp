#include "conformance/client_traits.hpp"

#include <stdexcept>

#include "conformance/driver_process.hpp"

namespace kiln::conformance {

namespace {
ClientTraits& current() {
  static ClientTraits traits;
  return traits;
}
}  // namespace

const std::set<std::string>& known_features() {
  static const std::set<std::string> all = {
      "full_parameter",                   // lora_rank 0 trains every parameter (Fireworks)
      "grad_accumulation_normalization",  // optim_step's normalization (Fireworks)
      "duplicate_client_rule",            // a second identical create_training_client is refused (Fireworks)
  };
  return all;
}

ClientTraits describe_client(const std::string& driver_command, double timeout_seconds) {
  DriverProcess driver(driver_command, timeout_seconds);
  const nlohmann::json r = driver.request("describe");
  ClientTraits t;
  if (!r.value("ok", false)) {
    const auto e = r.value("error", nlohmann::json::object());
    if (e.value("kind", "") == "not_implemented" || e.value("kind", "") == "bad_request") return t;  // a driver from before describe
    throw std::invalid_argument("the driver's describe failed: " + e.dump());
  }
  const auto result = r.value("result", nlohmann::json::object());
  auto text = [&](const char* key, std::string& out) {
    if (!result.contains(key)) return;
    if (!result[key].is_string()) throw std::invalid_argument(std::string("describe: '") + key + "' must be a string, got " + result[key].dump());
    out = result[key];
  };
  text("name", t.name);
  text("version", t.version);
  for (const auto& f : result.value("lacks", nlohmann::json::array())) {
    if (!f.is_string() || !known_features().count(f.get<std::string>()))
      throw std::invalid_argument("describe: 'lacks' holds " + f.dump() + "; the features are full_parameter, "
                                  "grad_accumulation_normalization, duplicate_client_rule");
    t.lacks.insert(f.get<std::string>());
  }
  return t;
}

const ClientTraits& client_traits() { return current(); }
void set_client_traits(ClientTraits traits) { current() = std::move(traits); }

}  // namespace kiln::conformance
