#include "service/model_table.hpp"

#include "model/errors.hpp"
#include "model/init.hpp"
#include "model/rng.hpp"

namespace kiln::service {

std::pair<ModelTable::Model*, bool> ModelTable::create(const std::string& tenant, const CreateModelRequest& req,
                                                       TimePoint now) {
  if (req.base_model.empty()) throw errors::base_model_required();
  if (req.model_seq_id < 0) throw InvalidRequest("model_seq_id must be >= 0, got " + std::to_string(req.model_seq_id));
  const std::string model_id = req.session_id + ":train:" + std::to_string(req.model_seq_id);
  if (auto it = models_.find(model_id); it != models_.end()) return {it->second.get(), false};  // C16
  if (retired_.count(model_id))
    throw InvalidRequest("model_seq_id " + std::to_string(req.model_seq_id) + " of session '" + req.session_id +
                         "' made model '" + model_id + "', which has been unloaded; use a new model_seq_id");

  const model::BaseModelEntry* entry = registry_.find(req.base_model);
  if (!entry) throw errors::unknown_base_model(req.base_model, registry_.known_names());
  model::LoraConfig lora = req.lora;
  if (!req.base_only) {
    try {
      lora.validate();
    } catch (const model::InputError& e) {
      throw InvalidRequest(e.message());  // the spec's texts name the field themselves
    }
    // Without a seed, a deterministic one chosen here and kept with the model (C3).
    if (!req.lora_seed_given) lora.seed = model::fnv1a64(model_id) ^ lora_seed_salt_;
  }
  auto base = model::shared_base_weights<float>(entry->config, registry_.weights_owner(entry->name), 0);
  auto m = std::make_unique<Model>();
  m->tenant = tenant;
  m->state = std::make_unique<train::TrainingState<float>>(
      req.base_only ? model::Transformer<float>::frozen(entry->config, base)
                    : model::Transformer<float>(entry->config, base, lora));
  auto& info = m->info;
  info.model_id = model_id;
  info.session_id = req.session_id;
  info.base_model = entry->name;
  info.base_only = req.base_only;
  info.lora = req.base_only ? model::LoraConfig{} : lora;
  info.config = entry->config;
  info.user_metadata = req.user_metadata;
  info.created = info.last_request_time = now;
  auto& slot = models_[model_id];
  slot = std::move(m);
  return {slot.get(), true};
}

std::shared_ptr<const model::Transformer<float>> ModelTable::frozen_base(const std::string& base_model,
                                                                         std::string* canonical) const {
  const model::BaseModelEntry* entry = registry_.find(base_model);
  if (!entry) throw errors::unknown_base_model(base_model, registry_.known_names());
  *canonical = entry->name;
  return std::make_shared<const model::Transformer<float>>(model::Transformer<float>::frozen(
      entry->config, model::shared_base_weights<float>(entry->config, registry_.weights_owner(entry->name), 0)));
}

ModelTable::Model& ModelTable::find_owned(const std::string& tenant, const std::string& model_id) {
  Model* m = find(model_id);
  if (!m || m->tenant != tenant || m->unloaded) throw errors::model_not_found(model_id);
  return *m;
}

const ModelTable::Model& ModelTable::find_owned(const std::string& tenant, const std::string& model_id) const {
  return const_cast<ModelTable*>(this)->find_owned(tenant, model_id);
}

ModelTable::Model* ModelTable::find(const std::string& model_id) {
  auto it = models_.find(model_id);
  return it == models_.end() ? nullptr : it->second.get();
}

std::vector<std::string> ModelTable::retire(const std::function<bool(const std::string&)>& idle) {
  std::vector<std::string> gone;
  for (auto it = models_.begin(); it != models_.end();) {
    const Model& m = *it->second;
    if (!m.unloaded || !idle(it->first)) {
      ++it;
      continue;
    }
    retired_[it->first] = {m.tenant,           m.info.base_model,           !m.info.lora.full_parameter(),
                           m.info.base_only,   m.info.lora.rank,            m.info.optimizer_step,
                           m.info.last_request_time, m.info.user_metadata};
    gone.push_back(it->first);
    it = models_.erase(it);
  }
  return gone;
}

std::vector<std::string> ModelTable::forget(const std::string& tenant) {
  std::erase_if(retired_, [&](const auto& r) { return tenant.empty() || r.second.tenant == tenant; });
  std::vector<std::string> gone;
  std::erase_if(models_, [&](const auto& m) {
    const bool mine = tenant.empty() || m.second->tenant == tenant;
    if (mine) gone.push_back(m.first);
    return mine;
  });
  return gone;
}

void ModelTable::record_outcome(Model& m, const TrainingRequest& req, const RetrieveResult& outcome) {
  if (outcome.status != RetrieveResult::Status::done) return;
  if (const auto* fr = std::get_if<train::ForwardResult>(&outcome.result); fr && std::get<ForwardRequest>(req).backward)
    if (auto loss = fr->metrics.find("loss:sum"); loss != fr->metrics.end()) {
      auto& recent = m.info.recent_losses;  // for the control API's state view
      recent.push_back(loss->second);
      if (recent.size() > 16) recent.erase(recent.begin());
      const auto metric = [&](const char* k) { auto it = fr->metrics.find(k); return it == fr->metrics.end() ? 0.0 : it->second; };
      const double tokens = metric("num_loss_tokens:sum") > 0 ? metric("num_loss_tokens:sum") : metric("ntokens:sum");
      m.curve.push_back({m.info.optimizer_step + 1, tokens > 0 ? loss->second / tokens : loss->second, std::nullopt});
      if (m.curve.size() > kCurvePoints) m.curve.pop_front();
    }
  if (const auto* os = std::get_if<OptimStepResult>(&outcome.result); os && !m.curve.empty())
    if (auto norm = os->metrics.find("grad_norm"); norm != os->metrics.end()) m.curve.back().grad_norm = norm->second;
  if (std::holds_alternative<UnloadModelRequest>(req)) {
    m.unloaded = true;
    m.state.reset();
    m.sampler_anchor.reset();  // a full-parameter model's last sampler base: weights-sized
  }
  if (m.state) m.info.optimizer_step = m.state->adam().step;
}

nlohmann::json model_view(const std::string& model_id, const ModelTable::Model& m) {
  nlohmann::json curve = nlohmann::json::array();  // [step, loss per token, grad norm or null]
  for (const auto& p : m.curve)
    curve.push_back({p.step, p.loss, p.grad_norm ? nlohmann::json(*p.grad_norm) : nlohmann::json(nullptr)});
  return {{"model_id", model_id},
          {"tenant", m.tenant},
          {"base_model", m.info.base_model},
          {"lora_rank", m.info.lora.rank},
          {"base_only", m.info.base_only},
          {"optimizer_step", m.info.optimizer_step},
          {"recent_losses", m.info.recent_losses},
          {"curve", curve},
          {"unloaded", m.unloaded},
          {"last_request_time", iso8601(m.info.last_request_time)}};
}

nlohmann::json model_view(const std::string& model_id, const ModelTable::Retired& r) {
  return {{"model_id", model_id},
          {"tenant", r.tenant},
          {"base_model", r.base_model},
          {"lora_rank", r.lora_rank},
          {"base_only", r.base_only},
          {"optimizer_step", r.optimizer_step},
          {"recent_losses", nlohmann::json::array()},
          {"curve", nlohmann::json::array()},
          {"unloaded", true},
          {"retired", true},  // no queue: the fields of SeqQueue::view say so
          {"next_seq_id", nullptr},
          {"queued_seq_ids", nlohmann::json::array()},
          {"running", false},
          {"last_request_time", iso8601(r.last_request_time)}};
}

}  // namespace kiln::service
