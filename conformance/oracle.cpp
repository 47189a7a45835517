#include "conformance/oracle.hpp"

#include <stdexcept>

#include "conformance/custom_losses.hpp"
#include "wire/json_codec.hpp"

namespace kiln::conformance {

using nlohmann::json;

namespace {
const std::string kKey = "tml-oracle";
}

Oracle::Oracle(const std::string& data_dir) {
  service::ServiceOptions o;
  o.data_dir = data_dir;
  o.clock = clock_;
  o.seed = 1;
  o.workers = 1;
  svc_ = std::make_unique<service::TrainerService>(o);
  session_ = svc_->create_session(kKey, {}, {}, "").session_id;
}

void Oracle::create(const std::string& client, const model::LoraConfig& lora) {
  service::CreateModelRequest req;
  req.session_id = session_;
  req.model_seq_id = model_seq_++;
  req.base_model = kBaseModel;
  req.lora = lora;
  req.lora_seed_given = true;
  models_[client] = {svc_->create_model(kKey, req), 0};
}

void Oracle::create_from_state(const std::string& client, const std::string& path, bool with_optimizer) {
  service::CreateModelRequest req;
  req.session_id = session_;
  req.model_seq_id = model_seq_++;
  service::LoadWeightsRequest load;
  load.path = path;
  load.optimizer = with_optimizer;
  auto [model_id, rid] = svc_->create_model_from_state(kKey, req, load);
  const auto r = svc_->retrieve(kKey, rid, std::chrono::seconds(60));
  if (r.status != service::RetrieveResult::Status::done) throw std::runtime_error("oracle: load from " + path + " failed: " + r.error);
  models_[client] = {model_id, 0};
}

service::TrainingResult Oracle::run(const std::string& client, service::TrainingRequest req) {
  auto it = models_.find(client);
  if (it == models_.end()) throw std::logic_error("oracle: no model for client " + client);
  const std::string rid = svc_->submit(kKey, it->second.id, ++it->second.seq, std::move(req));
  const auto r = svc_->retrieve(kKey, rid, std::chrono::seconds(60));
  if (r.status != service::RetrieveResult::Status::done) throw std::runtime_error("oracle: request failed: " + r.error);
  return r.result;
}

json Oracle::forward(const std::string& client, const std::vector<Example>& batch, bool backward, const LossChoice& loss) {
  // Read as the server reads a request body: the same codec turns the config into the loss's.
  json data = json::array();
  for (const auto& d : to_train(batch)) data.push_back(wire::datum_to_json(d));
  const char* key = backward ? "forward_backward_input" : "forward_input";
  const json body = {{key, {{"data", data}, {"loss_fn", loss.loss_fn}, {"loss_fn_config", loss.config}}}};
  return wire::result_to_json(run(client, wire::forward_from_json(body, backward)));
}

json Oracle::optim_step(const std::string& client, const Adam& adam) {
  return wire::result_to_json(run(client, wire::optim_step_from_json(to_driver(adam))));
}

json Oracle::forward_backward_custom(const std::string& client, const std::vector<Example>& batch, const std::string& loss) {
  // 1. forward, cross_entropy, datums without weights get all-zero weights (protocol.md §S9.7)
  std::vector<Example> zeroed = batch;
  for (auto& e : zeroed)
    if (!e.weights) e.weights = std::vector<double>(e.targets.size(), 0.0);
  const json fwd = forward(client, zeroed, false);
  std::vector<std::vector<double>> lp, weights;
  for (size_t i = 0; i < batch.size(); ++i) {
    lp.push_back(fwd["loss_fn_outputs"][i]["logprobs"]["data"].get<std::vector<double>>());
    weights.push_back(batch[i].weights.value_or(std::vector<double>{}));
  }
  // 2. the user's loss and its gradient; 3. forward_backward with weights = -g
  const CustomLossValue v = evaluate_custom_loss(loss, weights, lp);
  std::vector<Example> linear = batch;
  for (size_t i = 0; i < linear.size(); ++i) {
    std::vector<double> w(v.grads[i].size());
    for (size_t t = 0; t < w.size(); ++t) w[t] = -v.grads[i][t];
    linear[i].weights = w;
  }
  json out = forward(client, linear, true);
  out["metrics"]["custom_loss"] = v.loss;
  return out;
}

service::ModelInfo Oracle::model_info(const std::string& client) const { return svc_->get_info(kKey, models_.at(client).id); }

std::string Oracle::save_state(const std::string& client, const std::string& name) {
  const auto r = run(client, service::SaveWeightsRequest{name, std::nullopt, false});
  return std::get<service::SaveResult>(r).path;
}

void Oracle::load_state(const std::string& client, const std::string& path, bool with_optimizer) {
  service::LoadWeightsRequest load;
  load.path = path;
  load.optimizer = with_optimizer;
  run(client, load);
}

}  // namespace kiln::conformance
