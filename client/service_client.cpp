#include "client/service_client.hpp"

#include <sstream>

#include "client/errors.hpp"

namespace kiln::client {

namespace {

std::string number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace

ServiceClient::ServiceClient(const std::string& base_url, const std::string& api_key, ClientOptions options)
    : ServiceClient(http_transport(base_url, options.poll_timeout_seconds + 15), api_key, options) {}

ServiceClient::ServiceClient(std::shared_ptr<Transport> transport, const std::string& api_key, ClientOptions options)
    : conn_(std::make_shared<Connection>(std::move(transport), api_key, std::move(options))) {}

TrainingClient ServiceClient::create(const std::string& base_model, const json& lora_config, bool base_only,
                                     const std::map<std::string, std::string>& user_metadata) {
  json body = {{"session_id", conn_->session_id()}, {"model_seq_id", conn_->next_model_seq()},
               {"base_model", base_model}, {"user_metadata", user_metadata}, {"type", "create_model"}};
  if (base_only)
    body["base_only"] = true;
  else
    body["lora_config"] = lora_config;
  const std::string rid = conn_->call("POST", "/api/v1/create_model", body).at("request_id");
  const std::string model_id = conn_->poll(rid, "CreateModelResponse").at("model_id");
  return TrainingClient(conn_, model_id, base_model);
}

TrainingClient ServiceClient::create_training_client(const std::string& base_model, int64_t lora_rank,
                                                     const std::map<std::string, std::string>& user_metadata) {
  LoraOptions lora;
  lora.rank = lora_rank;
  return create_lora_training_client(base_model, lora, user_metadata);
}

TrainingClient ServiceClient::create_lora_training_client(const std::string& base_model, const LoraOptions& lora,
                                                          const std::map<std::string, std::string>& user_metadata) {
  const std::string key = base_model + "|" + std::to_string(lora.rank) + "|" + (lora.seed ? std::to_string(*lora.seed) : "-") +
                          "|" + std::to_string(lora.train_mlp) + std::to_string(lora.train_attn) +
                          std::to_string(lora.train_unembed) + "|" + number(lora.alpha);
  {
    std::lock_guard lock(mu_);
    if (!created_.insert(key).second)
      throw ClientError("A training client for '" + base_model + "' (lora_rank=" + std::to_string(lora.rank) +
                        ") already exists on this service. Create a new FiretitanServiceClient for a separate trainer.");
  }
  json cfg = {{"rank", lora.rank}, {"alpha", lora.alpha}, {"train_mlp", lora.train_mlp}, {"train_attn", lora.train_attn},
              {"train_unembed", lora.train_unembed}};
  if (lora.seed) cfg["seed"] = *lora.seed;
  try {
    return create(base_model, cfg, false, user_metadata);
  } catch (...) {
    std::lock_guard lock(mu_);
    created_.erase(key);  // nothing was created: the same request may be made again
    throw;
  }
}

TrainingClient ServiceClient::create_base_training_client(const std::string& base_model,
                                                          const std::map<std::string, std::string>& user_metadata) {
  return create(base_model, json(), true, user_metadata);
}

TrainingClient ServiceClient::from_state(const std::string& path, bool optimizer) {
  const json info = conn_->call("POST", "/api/v1/weights_info", {{"tinker_path", path}});
  json cfg = {{"rank", info.value("is_lora", false) ? info.value("lora_rank", 0) : 0}};
  for (const char* k : {"train_mlp", "train_attn", "train_unembed"})
    cfg[k] = info.contains(k) && info[k].is_boolean() ? info[k].get<bool>() : true;
  TrainingClient client = create(info.at("base_model"), cfg, false, {});
  (optimizer ? client.load_state_with_optimizer(path) : client.load_state(path)).result();
  return client;
}

TrainingClient ServiceClient::create_training_client_from_state(const std::string& path) { return from_state(path, false); }

TrainingClient ServiceClient::create_training_client_from_state_with_optimizer(const std::string& path) {
  return from_state(path, true);
}

SamplingClient ServiceClient::create_sampling_client(const std::string& model_path, const std::string& base_model) {
  if (model_path.empty() && base_model.empty()) throw ClientError("Either model_path or base_model must be provided");
  if (!model_path.empty() && model_path.rfind("tinker://", 0) != 0) throw ClientError("model_path must start with 'tinker://'");
  json body = {{"session_id", conn_->session_id()}, {"sampling_session_seq_id", conn_->next_sampler_seq()},
               {"type", "create_sampling_session"}};
  if (!model_path.empty()) body["model_path"] = model_path;
  if (!base_model.empty()) body["base_model"] = base_model;
  const json r = conn_->call("POST", "/api/v1/create_sampling_session", body);
  if (!r.contains("sampling_session_id") || !r["sampling_session_id"].is_string())
    throw ApiError(200, r.dump(), "create_sampling_session returned no sampling_session_id");
  return SamplingClient(conn_, r["sampling_session_id"]);
}

void ServiceClient::delete_checkpoint(const std::string& tinker_path) {
  const std::string prefix = "tinker://";
  const std::string rest = tinker_path.rfind(prefix, 0) == 0 ? tinker_path.substr(prefix.size()) : "";
  const size_t a = rest.find('/'), b = a == std::string::npos ? a : rest.find('/', a + 1);
  if (a == std::string::npos || a == 0 || b == std::string::npos || b == a + 1 || b + 1 == rest.size() ||
      rest.find('/', b + 1) != std::string::npos)
    throw ClientError("Invalid tinker path: " + tinker_path);
  conn_->call("DELETE", "/api/v1/training_runs/" + rest.substr(0, a) + "/checkpoints/" + rest.substr(a + 1));
}

std::vector<std::string> ServiceClient::supported_models() {
  std::vector<std::string> out;
  for (const auto& m : conn_->call("GET", "/api/v1/get_server_capabilities").value("supported_models", json::array()))
    out.push_back(m.value("model_name", ""));
  return out;
}

}  // namespace kiln::client
