#include "conformance/property.hpp"

#include <cmath>
#include <sstream>

namespace kiln::conformance {

Case::Case(KilnServer& s, const CaseOptions& options)
    : server(s), driver_(options.driver_command, options.timeout_seconds), client_options_(options.client_options) {}

json Case::call(const std::string& op, const json& args) {
  try {
    return driver_.request(op, args);
  } catch (const DriverBroken& e) {
    throw Failure(std::string(e.what()) + (driver_stderr().empty() ? "" : "; driver stderr: " + driver_stderr()));
  }
}

json Case::ok(const std::string& op, const json& args) {
  const json r = call(op, args);
  if (r.value("ok", false)) {
    json result = r.value("result", json::object());
    if (result.is_object() && result.contains("client") && result.contains("model_id"))
      model_ids_[result["client"].get<std::string>()] = result["model_id"].get<std::string>();
    return result;
  }
  const json e = r.value("error", json::object());
  if (e.value("kind", "") == "not_implemented") throw Unsupported("the driver does not implement '" + op + "'");
  throw Failure(op + " failed: " + e.dump());
}

std::optional<json> Case::ok_if_implemented(const std::string& op, const json& args) {
  try {
    return ok(op, args);
  } catch (const Unsupported&) {
    return std::nullopt;
  }
}

json Case::error(const std::string& op, const json& args) {
  const json r = call(op, args);
  if (r.value("ok", false)) throw Failure(op + " succeeded (" + r.value("result", json()).dump() + ") but must fail");
  const json e = r.value("error", json::object());
  if (e.value("kind", "") == "not_implemented") throw Unsupported("the driver does not implement '" + op + "'");
  return e;
}

std::string Case::service() {
  json options = {{"retry_initial_delay_seconds", 0.01}, {"heartbeat_seconds", 0}};
  options.update(client_options_);
  return ok("create_service", {{"base_url", server.base_url()}, {"api_key", KilnServer::kApiKey}, {"options", options}})["service"];
}

std::string Case::training_client(const std::string& service, int64_t lora_rank, uint64_t seed, const std::string& base_model) {
  return ok("create_training_client", {{"service", service}, {"base_model", base_model}, {"lora_rank", lora_rank},
                                       {"lora", {{"seed", seed}}}})["client"];
}

std::string Case::model_id(const std::string& client) const {
  auto it = model_ids_.find(client);
  if (it == model_ids_.end()) throw Failure("no model_id was reported for training client " + client);
  return it->second;
}

const std::vector<Property>& all_properties() {
  static const std::vector<Property> all = [] {
    std::vector<Property> out;
    add_training_properties(out);
    add_checkpoint_properties(out);
    add_naming_properties(out);
    add_wire_properties(out);
    add_resilience_properties(out);
    add_behaviour_properties(out);
    return out;
  }();
  return all;
}

namespace {
bool close_enough(double got, double want, double tol) { return std::abs(got - want) <= tol * (1 + std::abs(want)); }
}  // namespace

void expect_output_close(const json& got, const json& expected, const std::string& what, double tol) {
  auto fail = [&](const std::string& detail) { throw Failure(what + ": " + detail); };
  if (!got.is_object()) fail("not an object: " + got.dump().substr(0, 200));
  const json& want_outs = expected["loss_fn_outputs"];
  if (!got.contains("loss_fn_outputs") || got["loss_fn_outputs"].size() != want_outs.size())
    fail("expected " + std::to_string(want_outs.size()) + " loss_fn_outputs, got " +
         (got.contains("loss_fn_outputs") ? std::to_string(got["loss_fn_outputs"].size()) : "none"));
  for (size_t i = 0; i < want_outs.size(); ++i) {
    const auto want = want_outs[i].at("logprobs").at("data").get<std::vector<double>>();
    const json& g = got["loss_fn_outputs"][i];
    if (!g.contains("logprobs")) fail("datum " + std::to_string(i) + " has no logprobs");
    const auto have = g.at("logprobs").at("data").get<std::vector<double>>();
    if (have.size() != want.size())
      fail("datum " + std::to_string(i) + ": " + std::to_string(have.size()) + " logprobs, expected " + std::to_string(want.size()));
    for (size_t t = 0; t < want.size(); ++t)
      if (!close_enough(have[t], want[t], tol)) {
        std::ostringstream os;
        os << "datum " << i << " token " << t << ": logprob " << have[t] << ", the oracle says " << want[t];
        fail(os.str());
      }
  }
  const json metrics = expected.value("metrics", json::object());
  for (const auto& [k, v] : metrics.items()) {
    if (!got.contains("metrics") || !got["metrics"].contains(k)) fail("metric '" + k + "' is missing");
    const double have = got["metrics"][k].get<double>();
    if (!close_enough(have, v.get<double>(), tol)) {
      std::ostringstream os;
      os << "metric '" << k << "' is " << have << ", the oracle says " << v.get<double>();
      fail(os.str());
    }
  }
}

}  // namespace kiln::conformance
