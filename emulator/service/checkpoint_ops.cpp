#include "service/checkpoint_ops.hpp"

#include <cstring>
#include <map>

#include "model/init.hpp"
#include "service/checkpoint_files.hpp"
#include "service/checkpoint_ref.hpp"
#include "service/ids.hpp"

namespace kiln::service {

namespace {

bool same_lora_layout(const std::optional<model::LoraConfig>& a, const model::LoraConfig& b) {
  if (!a) return b.full_parameter();
  return a->rank == b.rank && a->train_attn == b.train_attn && a->train_mlp == b.train_mlp &&
         a->train_unembed == b.train_unembed;
}

std::string describe(const std::string& base, const std::optional<model::LoraConfig>& lora) {
  return base + (lora && lora->rank > 0 ? ", LoRA rank " + std::to_string(lora->rank) : ", full-parameter");
}

std::optional<model::LoraConfig> lora_of(const ModelInfo& info) {
  return info.lora.full_parameter() ? std::nullopt : std::optional(info.lora);
}

// W ← W + scale·B·A for every adapted module of the model; everything else as the base has it.
model::ParamSet<float> merged_weights(const model::Transformer<float>& t, const model::LoraConfig& lora) {
  const auto& params = t.params();
  model::ParamSet<float> merged = t.base();
  const float scale = static_cast<float>(lora.scale());
  for (auto& w : merged) {
    const std::string module = w.name.substr(0, w.name.size() - std::strlen(".weight"));
    const int a = params.find(model::lora_a_name(module)), b = params.find(model::lora_b_name(module));
    if (a < 0 || b < 0) continue;
    const int64_t out = w.shape[0], in = w.shape[1];
    Eigen::Map<model::Mat<float>> W(w.data.data(), out, in);
    W.noalias() += scale * (Eigen::Map<const model::Mat<float>>(params[b].data.data(), out, lora.rank) *
                            Eigen::Map<const model::Mat<float>>(params[a].data.data(), lora.rank, in));
  }
  return merged;
}

}  // namespace

void check_ttl(const std::optional<int64_t>& ttl) {
  if (ttl && *ttl <= 0) throw errors::ttl_not_positive(*ttl);
}

CheckpointRecord CheckpointOps::make_record(const ModelTable::Model& m, CheckpointKind kind, const std::string& name,
                                            std::optional<int64_t> ttl, const std::string& type,
                                            std::map<std::string, std::string> user_metadata) const {
  CheckpointRecord r;
  r.tenant = m.tenant;
  r.run_id = m.info.model_id;
  r.kind = kind;
  r.name = name;
  r.base_model = m.info.base_model;
  r.config = m.info.config;
  r.lora = lora_of(m.info);
  r.checkpoint_type = type;
  r.created = clock_.now();
  if (ttl) r.expires = r.created + std::chrono::seconds(*ttl);
  r.user_metadata = std::move(user_metadata);
  return r;
}

SaveResult CheckpointOps::save_state(ModelTable::Model& m, const SaveWeightsRequest& r) {
  if (!r.overwrite && !overwrite_training_state_ &&
      store_.find(m.tenant, m.info.model_id, CheckpointKind::training, r.name))
    throw UserError("ResourceAlreadyExists: checkpoint 'weights/" + r.name + "' already exists for " +
                    m.info.model_id + "; use a new name or overwrite=true");
  CheckpointStore::Files files;
  files.model = weights_file(m.state->model().params(), m.info);
  files.optimizer = optimizer_file(m.state->adam());
  files.config = hf_config(m.info);
  if (!m.info.lora.full_parameter()) files.adapter_config = peft_config(m.info);
  CheckpointRecord rec = make_record(m, CheckpointKind::training, r.name, r.ttl_seconds, "training", r.user_metadata);
  rec.has_optimizer = true;
  rec = store_.save(rec, files);
  audit("checkpoint_created", rec);
  return {rec.tinker_path(), ""};
}

CheckpointRecord CheckpointOps::resolve(const std::string& tenant, const std::string& ref, CheckpointKind want,
                                        const std::string& purpose) const {
  const CheckpointRef p = CheckpointRef::parse(ref);
  if (scope_of_tenant(tenant) == kServerlessScope && p.form != CheckpointRef::Form::bare_name && purpose == "load_state")
    throw UserError("serverless trainers load checkpoints by bare name only; '" + ref +
                    "' is a " + (p.form == CheckpointRef::Form::tinker_path ? "tinker://" : "cross_job://") +
                    " reference (gs://, tinker://, cross_job:// and absolute paths are refused on /training/v1/serverless)",
                    "path");
  // The newest of a namespace's checkpoints with this name: of the wanted kind, then any (E4).
  const auto newest_named = [&](const std::string& ns) -> std::optional<CheckpointRecord> {
    const auto all = store_.list(ns);
    for (const bool any_kind : {false, true})
      for (const auto& r : all)
        if (r.name == p.name && (any_kind || r.kind == want)) return r;
    return std::nullopt;
  };
  std::optional<CheckpointRecord> found;
  if (p.form == CheckpointRef::Form::tinker_path) {
    found = store_.find(tenant, p.run_id, *p.kind, p.name);
  } else if (p.form == CheckpointRef::Form::cross_job) {
    // The named trainer job's namespace (A6, E5); failing that, a run of the caller's own
    // namespace by its model id (a server without jobs names runs).
    found = newest_named(job_tenant(tenant, p.run_id));
    if (!found) found = store_.find(tenant, p.run_id, want, p.name);
    if (!found)
      throw NotFound(errors::checkpoint_not_found(ref).message() + ": trainer job '" + p.run_id +
                     "' of this account has no checkpoint named '" + p.name + "'");
  } else {
    found = newest_named(tenant);  // a bare name: this namespace's (the trainer job's) checkpoints
  }
  if (!found) throw errors::checkpoint_not_found(ref);
  if (found->kind != want)
    throw UserError(want == CheckpointKind::training
                        ? "checkpoint '" + ref + "' is a sampler checkpoint; " + purpose +
                              " needs a training-state checkpoint saved with save_state"
                        : "checkpoint '" + ref + "' is a training-state checkpoint; " + purpose +
                              " needs a sampler checkpoint saved with save_weights_for_sampler");
  return *found;
}

// A loaded adapter computes W + (alpha/r)·B·A with the alpha it was trained with, whatever alpha
// the model was created with (a client creating from state cannot know it: weights_info has none).
void CheckpointOps::adopt_alpha(ModelTable::Model& m, const CheckpointRecord& rec) {
  if (!rec.lora || m.info.lora.full_parameter()) return;
  m.state->model().set_lora_alpha(rec.lora->alpha);
  std::lock_guard lock(mu_);
  m.info.lora.alpha = rec.lora->alpha;
}

LoadResult CheckpointOps::load_state(ModelTable::Model& m, const LoadWeightsRequest& r) {
  const std::string owner = r.access_key.empty() ? m.tenant : tenant_key(r.access_key);
  const CheckpointRecord rec = resolve(owner, r.path, CheckpointKind::training, "load_state");
  if (rec.base_model != m.info.base_model || !same_lora_layout(rec.lora, m.info.lora))
    throw UserError("checkpoint '" + r.path + "' (" + describe(rec.base_model, rec.lora) +
                    ") cannot be loaded into model " + m.info.model_id + " (" +
                    describe(m.info.base_model, lora_of(m.info)) + ")");
  const auto& like = m.state->model().params();
  const auto params = arrange_like(like, store_.read_model(rec).tensors, "", "checkpoint '" + r.path + "'");
  adopt_alpha(m, rec);
  if (!r.optimizer) {
    m.state->restore(params, nullptr);
  } else {
    const auto opt = store_.read_optimizer(rec);
    if (!opt) throw UserError("checkpoint '" + r.path + "' has no optimizer state");
    const auto adam = read_adam(like, *opt, "optimizer state of '" + r.path + "'");
    m.state->restore(params, &adam);
  }
  return {rec.tinker_path(), m.info.model_id};
}

// The weights as a sampler's base save stores them (with the adapter's config for LoRA), for a
// user to download: nothing to sample from, so no delta form and no anchor.
SaveResult CheckpointOps::save_external(ModelTable::Model& m, const SaveExternalRequest& r) {
  CheckpointStore::Files files;
  files.config = hf_config(m.info);
  files.model = weights_file(m.state->model().params(), m.info);
  if (!m.info.lora.full_parameter()) files.adapter_config = peft_config(m.info);
  const CheckpointRecord rec =
      store_.save(make_record(m, CheckpointKind::external, r.name, r.ttl_seconds, "external", {}), files);
  audit("checkpoint_created", rec);
  return {rec.tinker_path(), "", rec.size_bytes};
}

SaveResult CheckpointOps::save_sampler(ModelTable::Model& m, const SaveSamplerRequest& r) {
  const std::string type = r.checkpoint_type.empty() ? "base" : r.checkpoint_type;
  const bool lora = !m.info.lora.full_parameter();
  const auto& params = m.state->model().params();
  CheckpointStore::Files files;
  files.config = hf_config(m.info);
  if (type == "merged_base") {
    if (!lora) throw UserError("merged_base requires a LoRA model");
    files.model = weights_file(merged_weights(m.state->model(), m.info.lora), m.info);
  } else if (lora) {  // base and delta alike: LoRA always stores the full adapter
    files.model = weights_file(params, m.info);
    files.adapter_config = peft_config(m.info);
  } else if (type == "base") {
    files.model = weights_file(params, m.info);
  } else {  // a full-parameter delta against the last base save (rule E14)
    if (!m.sampler_anchor)
      throw UserError("checkpoint_type 'delta' needs an earlier 'base' sampler save from this training client");
    files.model = xor_delta(params, *m.sampler_anchor, m.sampler_anchor_name, m.info.base_model);
  }
  const CheckpointRecord rec = store_.save(make_record(m, CheckpointKind::sampler, r.name, r.ttl_seconds, type, r.user_metadata), files);
  audit("checkpoint_created", rec);
  if (!lora && type == "base") {
    m.sampler_anchor = params;
    m.sampler_anchor_name = r.name;
  }
  return {rec.tinker_path(), ""};
}

LoadAdapterResult CheckpointOps::load_adapter(ModelTable::Model& m, const LoadAdapterRequest& r) {
  const CheckpointRecord rec = resolve(m.tenant, r.adapter_path, CheckpointKind::sampler, "load_adapter");
  if (rec.checkpoint_type == "merged_base" || !rec.lora)
    throw UserError("checkpoint '" + r.adapter_path + "' holds full weights, not a LoRA adapter");
  if (rec.base_model != m.info.base_model || !same_lora_layout(rec.lora, m.info.lora))
    throw UserError("adapter '" + r.adapter_path + "' (" + describe(rec.base_model, rec.lora) +
                    ") does not fit model " + m.info.model_id);
  m.state->restore(arrange_like(m.state->model().params(), store_.read_model(rec).tensors, "",
                                "adapter '" + r.adapter_path + "'"),
                   nullptr);
  adopt_alpha(m, rec);
  return {m.info.model_id, r.adapter_path};
}

CheckpointRecord CheckpointOps::sampler_source(const std::string& tenant, const std::string& model_path) const {
  if (!CheckpointRef::is_tinker_path(model_path)) throw errors::model_path_not_tinker();
  const CheckpointRef p = CheckpointRef::parse(model_path);
  if (p.kind != CheckpointKind::sampler)
    throw InvalidRequest(
        "model_path must name a sampler_weights checkpoint (tinker://<run>/sampler_weights/<name>), got '" +
        model_path + "'");
  const auto rec = store_.find(tenant, p.run_id, CheckpointKind::sampler, p.name);
  if (!rec) throw errors::checkpoint_not_found(model_path);
  return *rec;
}

std::shared_ptr<const model::Transformer<float>> CheckpointOps::sampler_weights(const CheckpointRecord& rec) const {
  model::ModelConfig config = rec.config;
  if (const auto* e = registry_.find(rec.base_model); e && e->config.vocab_size == config.vocab_size)
    config.eos_token_ids = e->config.eos_token_ids;
  const std::string what = "checkpoint '" + rec.tinker_path() + "'";
  const SafetensorsFile file = store_.read_model(rec);
  const auto base = model::shared_base_weights<float>(config, registry_.weights_owner(rec.base_model), 0);
  if (rec.lora && rec.checkpoint_type != "merged_base") {
    model::Transformer<float> t(config, base, *rec.lora);
    t.params() = arrange_like(t.params(), file.tensors, "", what);
    return std::make_shared<const model::Transformer<float>>(std::move(t));
  }
  model::ParamSet<float> full;
  if (is_xor_delta(file)) {
    const std::string anchor_name = xor_delta_anchor(file);
    const auto anchor = store_.find(rec.tenant, rec.run_id, CheckpointKind::sampler, anchor_name);
    if (!anchor) throw NotFound(what + " is a delta of 'sampler_weights/" + anchor_name + "', which no longer exists");
    full = arrange_like(*base, store_.read_model(*anchor).tensors, "", "checkpoint 'sampler_weights/" + anchor_name + "'");
    xor_apply(full, file, what);
  } else {
    full = arrange_like(*base, file.tensors, "", what);
  }
  return std::make_shared<const model::Transformer<float>>(
      model::Transformer<float>::frozen(config, std::make_shared<const model::ParamSet<float>>(std::move(full))));
}

std::string CheckpointOps::delta_anchor(const CheckpointRecord& rec) const {
  if (rec.kind != CheckpointKind::sampler || rec.lora || rec.checkpoint_type != "delta") return "";
  const SafetensorsFile file = store_.read_model(rec);
  return is_xor_delta(file) ? xor_delta_anchor(file) : "";
}

WeightsInfo CheckpointOps::weights_info(const std::string& tenant, const std::string& path) const {
  if (CheckpointRef::is_tinker_path(path) && CheckpointRef::parse(path).kind != CheckpointKind::training)
    throw InvalidRequest("weights_info needs a training-state path (tinker://<run>/weights/<name>), got '" + path + "'");
  const CheckpointRecord rec = resolve(tenant, path, CheckpointKind::training, "weights_info");
  WeightsInfo info{rec.base_model, rec.lora.has_value(), rec.lora ? rec.lora->rank : 0};
  if (rec.lora) {
    info.train_attn = rec.lora->train_attn;
    info.train_mlp = rec.lora->train_mlp;
    info.train_unembed = rec.lora->train_unembed;
  }
  return info;
}

CheckpointRecord CheckpointOps::find(const std::string& tenant, const std::string& run_id,
                                     const std::string& checkpoint_id) const {
  const CheckpointRef p = CheckpointRef::parse_id(run_id, checkpoint_id);
  auto rec = store_.find(tenant, run_id, *p.kind, p.name);
  if (!rec) throw NotFound("checkpoint '" + checkpoint_id + "' of training run '" + run_id + "' not found");
  return *rec;
}

std::vector<TrainingRunInfo> CheckpointOps::training_runs(const std::string& tenant,
                                                          std::vector<TrainingRunInfo> live) const {
  std::map<std::string, TrainingRunInfo> runs;
  for (auto& run : live) runs[run.training_run_id] = std::move(run);
  for (const auto& c : store_.list(tenant)) {  // newest first
    auto [it, inserted] = runs.try_emplace(c.run_id);
    auto& run = it->second;
    if (inserted)
      run = {c.run_id, c.base_model, owner_urn(tenant), c.lora.has_value(), c.lora ? c.lora->rank : 0, c.created,
             std::nullopt, std::nullopt, {}};
    if (c.kind == CheckpointKind::external) continue;  // a run lists its last training and sampler saves
    auto& slot = c.kind == CheckpointKind::training ? run.last_checkpoint : run.last_sampler_checkpoint;
    if (!slot) slot = c;
  }
  std::vector<TrainingRunInfo> out;
  for (auto& [id, run] : runs) out.push_back(std::move(run));
  return out;
}

void CheckpointOps::set_published(const CheckpointRecord& rec, bool published) {
  if (rec.is_public == published) throw Conflict(std::string("checkpoint is already ") + (published ? "public" : "private"));
  CheckpointRecord updated = rec;
  updated.is_public = published;
  store_.update(updated);
  audit(published ? "checkpoint_published" : "checkpoint_unpublished", rec);
}

void CheckpointOps::set_ttl(CheckpointRecord rec, std::optional<int64_t> ttl_seconds) {
  rec.expires = ttl_seconds ? std::optional(clock_.now() + std::chrono::seconds(*ttl_seconds)) : std::nullopt;
  store_.update(rec);
  audit("checkpoint_ttl_changed", rec, {{"ttl_seconds", ttl_seconds ? std::to_string(*ttl_seconds) : "none"}});
}

CheckpointRecord CheckpointOps::copy(const CheckpointRecord& source, CheckpointRecord target) {
  if (source.checkpoint_type == "delta")  // its weights are a difference from another save of its run
    throw UserError("checkpoint '" + source.tinker_path() + "' is a delta sampler save, which needs the base save of its "
                    "own run; copy a base or merged_base save instead");
  if (store_.find(target.tenant, target.run_id, target.kind, target.name))
    throw UserError("ResourceAlreadyExists: checkpoint '" + target.checkpoint_id() + "' already exists for " + target.run_id);
  const CheckpointRecord saved = store_.save(std::move(target), store_.read_files(source));
  audit("checkpoint_created", saved, {{"copied_from", source.tinker_path()}});
  return saved;
}

void CheckpointOps::remove(const CheckpointRecord& rec) {
  store_.remove(rec);
  audit("checkpoint_deleted", rec);
}

void CheckpointOps::audit(const std::string& event, const CheckpointRecord& r, std::map<std::string, std::string> details) {
  audit_.record({clock_.now(), r.tenant, event, r.run_id, r.tinker_path(),
                 kind_name(r.kind), std::move(details)});
}

}  // namespace kiln::service
