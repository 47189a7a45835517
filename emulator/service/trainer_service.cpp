#include "service/trainer_service.hpp"

#include <cstdio>

#include "log.hpp"
#include "service/checkpoint_ref.hpp"
#include "service/envelope.hpp"
#include "service/promotion.hpp"

namespace kiln::service {

TrainerService::TrainerService(ServiceOptions options)
    : opts_(std::move(options)),
      clock_(opts_.clock ? opts_.clock : std::make_shared<RealClock>()),
      registry_(opts_.registry ? opts_.registry : &model::ModelRegistry::builtin()),
      store_(std::make_unique<CheckpointStore>(opts_.data_dir, clock_)),
      audit_(opts_.data_dir + "/.audit.jsonl"),
      jobs_(clock_, *registry_, {opts_.trainer_boot_seconds, opts_.trainer_inactivity_seconds, opts_.data_dir + "/.trainer_jobs.json"}),
      deployments_(clock_, *registry_, {opts_.hotload_seconds, opts_.data_dir + "/.deployments.json"}),
      ids_(opts_.seed),
      futures_(ids_, *clock_, opts_.result_retention_seconds, opts_.unpolled_retention_seconds),
      models_(*registry_, ids_.seed()),
      queue_([this] { pool_->notify(); }),
      samplers_(mu_, futures_, sequences_, [this] { pool_->notify(); }),
      checkpoints_(*store_, *registry_, *clock_, mu_, opts_.overwrite_training_state, audit_),
      executor_(checkpoints_, samplers_, sessions_, mu_) {
  std::vector<WorkerPool::Source> sources = {
      {[this] { return queue_.has_ready(); }, [this](auto& lock) { run_training(lock); }},
      {[this] { return samplers_.has_ready(); }, [this](auto& lock) { samplers_.run_turn(lock); }}};
  pool_ = std::make_unique<WorkerPool>(mu_, opts_.workers, std::move(sources), [this] { tick(); });
}

TrainerService::~TrainerService() {
  {
    std::lock_guard lock(mu_);
    futures_.stop();  // answers every waiting poll
  }
  pool_->stop();
}

// Sessions ------------------------------------------------------------------------------------

SessionInfo TrainerService::create_session(const std::string& api_key, std::vector<std::string> tags,
                                           std::map<std::string, std::string> user_metadata, std::string project_id) {
  std::lock_guard lock(mu_);
  SessionInfo info;
  // Seeded ids repeat after a restart: skip those whose runs already have checkpoints on disk.
  do info.session_id = ids_.next("session-");
  while (sessions_.contains(info.session_id) || store_->session_used(info.session_id));
  info.tags = std::move(tags);
  info.user_metadata = std::move(user_metadata);
  info.project_id = std::move(project_id);
  info.created = info.last_heartbeat = clock_->now();
  audit_.record({info.created, tenant_key(api_key), "session_created", "", "", "", {{"session_id", info.session_id}}});
  return sessions_.add(tenant_key(api_key), std::move(info)).info;
}

void TrainerService::heartbeat(const std::string& api_key, const std::string& session_id) {
  std::lock_guard lock(mu_);
  sessions_.find_open(tenant_key(api_key), session_id).info.last_heartbeat = clock_->now();
}

void TrainerService::finish_session(const std::string& api_key, const std::string& session_id, std::string reason,
                                    std::string detail) {
  if (reason != "success" && reason != "errored" && reason != "interrupted")
    throw InvalidRequest("field 'reason.type' must be success, errored or interrupted, got '" + reason + "'");
  std::lock_guard lock(mu_);
  auto& s = sessions_.find_owned(tenant_key(api_key), session_id).info;
  if (s.finish_reason) return;  // finishing again (a retried call) keeps the first reason
  s.finish_reason = std::move(reason);
  s.finish_detail = std::move(detail);
}

void TrainerService::set_session_project(const std::string& api_key, const std::string& session_id,
                                         std::string project_id) {
  std::lock_guard lock(mu_);
  sessions_.find_owned(tenant_key(api_key), session_id).info.project_id = std::move(project_id);
}

SessionInfo TrainerService::get_session(const std::string& api_key, const std::string& session_id) const {
  std::lock_guard lock(mu_);
  return sessions_.find_owned(tenant_key(api_key), session_id).info;
}

std::vector<SessionInfo> TrainerService::list_sessions(const std::string& api_key) const {
  std::lock_guard lock(mu_);
  return sessions_.list(tenant_key(api_key));
}

// Models and training requests ------------------------------------------------------------------

std::string TrainerService::create_model(const std::string& api_key, const CreateModelRequest& req) {
  const std::string tenant = tenant_key(api_key);
  std::lock_guard lock(mu_);
  sessions_.find_open(tenant, req.session_id);
  auto [m, created] = models_.create(tenant, req, clock_->now());
  if (created) {
    sessions_.record_run(req.session_id, m->info.model_id);
    audit_.record({clock_->now(), tenant, "training_run_created", m->info.model_id, "", "",
                   {{"base_model", m->info.base_model}, {"session_id", req.session_id}}});
    queue_.add_lane(m->info.model_id);
  }
  return m->info.model_id;
}

std::pair<std::string, std::string> TrainerService::create_model_from_state(const std::string& api_key,
                                                                           CreateModelRequest req,
                                                                           LoadWeightsRequest load) {
  if (load.path.empty()) throw InvalidRequest("path is required");
  const std::string owner = tenant_key(load.access_key.empty() ? api_key : load.access_key);
  // A missing checkpoint is a 404 here (nothing is created); a malformed or wrong-kind one a 400.
  const CheckpointRecord rec = checkpoints_.resolve(owner, load.path, CheckpointKind::training, "load_state");
  if (req.base_model.empty()) req.base_model = rec.base_model;
  req.base_only = false;
  req.lora = rec.lora ? *rec.lora : model::LoraConfig{};
  req.lora_seed_given = rec.lora.has_value();
  const std::string model_id = create_model(api_key, req);
  std::lock_guard lock(mu_);
  const auto& m = models_.find_owned(tenant_key(api_key), model_id);
  const uint64_t fp = fingerprint(TrainingRequest(load));
  const std::string rid = queue_.push_first(model_id, fp, std::move(load), [&] {
    return futures_.add_pending(m.tenant, model_id);
  });
  return {model_id, rid};
}

std::string TrainerService::submit_create_model(const std::string& api_key, const CreateModelRequest& req) {
  if (auto forced = take_injected_failure()) {  // nothing is created
    std::lock_guard lock(mu_);
    return futures_.add_failed(tenant_key(api_key), *forced);
  }
  const std::string id = create_model(api_key, req);
  std::lock_guard lock(mu_);
  return futures_.add_done(tenant_key(api_key), CreateModelResult{id});
}

ModelInfo TrainerService::get_info(const std::string& api_key, const std::string& model_id) const {
  std::lock_guard lock(mu_);
  return models_.find_owned(tenant_key(api_key), model_id).info;
}

std::string TrainerService::submit(const std::string& api_key, const std::string& model_id, int64_t seq_id,
                                   TrainingRequest req) {
  const std::string tenant = tenant_key(api_key);
  std::lock_guard lock(mu_);
  ModelTable::Model* found = models_.find(model_id);
  if (!found || found->tenant != tenant) throw errors::model_not_found(model_id);
  auto& m = *found;
  const uint64_t fp = fingerprint(req);
  // A retried submit (its answer was lost) gets its future back, even when the request it
  // repeats has since unloaded the model.
  if (auto earlier = queue_.resubmission(model_id, seq_id, fp)) return *earlier;
  if (m.unloaded) throw errors::model_not_found(model_id);
  try {
    accept_envelope(m.info, seq_id, req);
    if (const auto* f = std::get_if<ForwardRequest>(&req)) sequences_.check(tenant, f->data, f->spans);
  } catch (const InvalidRequest&) {
    queue_.reject(model_id, seq_id);  // a refused submit counts as arrived (B1)
    throw;
  }
  const std::string rid = futures_.add_pending(tenant, model_id, take_injected_failure());
  queue_.push(model_id, seq_id, fp, std::move(req), rid);
  m.info.last_request_time = clock_->now();
  return rid;
}

void TrainerService::refuse(const std::string& api_key, const std::string& model_id, int64_t seq_id) {
  std::lock_guard lock(mu_);
  try {
    models_.find_owned(tenant_key(api_key), model_id);
  } catch (const NotFound&) {
    return;  // the caller's error stands as it is
  }
  if (seq_id >= 1) queue_.reject(model_id, seq_id);
}

void TrainerService::run_training(std::unique_lock<std::mutex>& lock) {
  SeqQueue::Next next = queue_.pop();
  ModelTable::Model* m = models_.find(next.lane);
  const auto* future = futures_.find(next.request_id);
  const std::optional<InjectedFailure> forced = future ? future->forced : std::nullopt;
  futures_.start(next.request_id);
  lock.unlock();
  RetrieveResult outcome;
  try {
    if (forced) {
      outcome = RetrieveResult::failure(forced->message, forced->category);
    } else {
      outcome.result = executor_.execute(*m, next.request);
      outcome.status = RetrieveResult::Status::done;
    }
  } catch (const std::exception& e) {
    outcome = RetrieveResult::failure(e);
  }
  lock.lock();
  models_.record_outcome(*m, next.request, outcome);
  queue_.done(next.lane);
  futures_.complete(next.request_id, std::move(outcome));  // last: it wakes pollers and a waiting reset
}

std::string TrainerService::future_owner(const std::string& api_key, const std::string& request_id) const {
  std::lock_guard lock(mu_);
  return futures_.owner(tenant_key(api_key), request_id);
}

size_t TrainerService::pending_requests() const {
  std::lock_guard lock(mu_);
  return futures_.pending();
}

RetrieveResult TrainerService::retrieve(const std::string& api_key, const std::string& request_id,
                                        std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  return futures_.retrieve(lock, tenant_key(api_key), request_id, wait);
}

void TrainerService::tick() {
  futures_.tick();
  queue_.forget_finished([this](const std::string& rid) { return futures_.find(rid) != nullptr; });
  for (const auto& id : models_.retire([this](const std::string& model_id) { return queue_.idle(model_id); }))
    queue_.remove_lane(id);
  const auto grace = std::chrono::duration_cast<TimePoint::duration>(std::chrono::duration<double>(opts_.seq_gap_grace_seconds));
  for (const auto& line : queue_.skip_stalled(clock_->now(), grace)) log::write(log::Level::warn, "seq_gap_skipped", {{"detail", line}});
}

// Sampling ------------------------------------------------------------------------------------

Snapshot TrainerService::sampler_snapshot(const std::vector<std::string>& namespaces, const std::string& identity) const {
  for (const auto& ns : namespaces)
    for (const auto& rec : store_->list(ns))  // newest first
      if (rec.kind == CheckpointKind::sampler && rec.name == identity) {
        Snapshot s{identity, rec.base_model, rec.tinker_path(), false, "", checkpoints_.sampler_weights(rec)};
        s.delta_anchor = checkpoints_.delta_anchor(rec);
        s.delta = !s.delta_anchor.empty();
        return s;
      }
  std::string searched;
  for (const auto& ns : namespaces) {
    const std::string scope = scope_of_tenant(ns);
    searched += (searched.empty() ? "" : ", ") + (scope.empty() ? std::string("the default namespace") : scope);
  }
  throw NotFound("snapshot '" + identity + "' not found: no sampler checkpoint of that name in " + searched);
}

std::string TrainerService::create_sampler(const std::string& api_key, const CreateSamplerRequest& req) {
  const std::string tenant = tenant_key(api_key);
  const std::string id = Samplers::id_for(req.session_id, req.sampling_session_seq_id);
  {
    std::lock_guard lock(mu_);
    sessions_.find_open(tenant, req.session_id);
    if (req.sampling_session_seq_id < 0)
      throw InvalidRequest("sampling_session_seq_id must be >= 0, got " + std::to_string(req.sampling_session_seq_id));
    if (samplers_.exists(tenant, id)) return id;
  }
  // Building the weights reads files and may derive a base model: outside the lock.
  SamplerInfo info{id, req.session_id, "", std::nullopt};
  std::shared_ptr<const model::Transformer<float>> weights;
  if (!req.model_path.empty()) {
    const CheckpointRecord rec = checkpoints_.sampler_source(tenant, req.model_path);
    weights = checkpoints_.sampler_weights(rec);
    info.base_model = rec.base_model;
    info.model_path = req.model_path;
  } else if (const auto promoted = promoted_by_name(tenant, req.base_model)) {
    weights = checkpoints_.sampler_weights(*promoted);  // a promoted model serves as a base
    info.base_model = req.base_model;
  } else if (!req.base_model.empty()) {
    weights = models_.frozen_base(req.base_model, &info.base_model);
  } else {
    throw errors::sampler_source_required();
  }
  std::lock_guard lock(mu_);
  if (samplers_.add(tenant, std::move(info), std::move(weights))) sessions_.record_sampler(req.session_id, id);
  return id;
}

SamplerInfo TrainerService::get_sampler(const std::string& api_key, const std::string& sampler_id) const {
  std::lock_guard lock(mu_);
  return samplers_.info(tenant_key(api_key), sampler_id);
}

int64_t TrainerService::join_sampler(const std::string& api_key, const std::string& sampler_id) {
  std::lock_guard lock(mu_);
  return samplers_.join(tenant_key(api_key), sampler_id);
}

SampleSubmission TrainerService::submit_sample(const std::string& api_key, const std::string& sampler_id,
                                               int64_t seq_id, model::SampleSpec spec) {
  std::lock_guard lock(mu_);
  return samplers_.submit(tenant_key(api_key), sampler_id, seq_id, std::move(spec), take_injected_failure());
}

std::pair<std::vector<FutureTable::Completion>, uint64_t> TrainerService::sampler_completions(
    const std::string& api_key, const std::string& sampler_id, uint64_t cursor, std::chrono::milliseconds wait) {
  const std::string tenant = tenant_key(api_key);
  std::unique_lock lock(mu_);
  samplers_.info(tenant, sampler_id);  // 404 for an unknown sampler
  return futures_.completions_after(lock, tenant, sampler_id, cursor, wait);
}

std::vector<bool> TrainerService::cancel_samples(const std::string& api_key, const std::vector<std::string>& request_ids) {
  std::lock_guard lock(mu_);
  return samplers_.cancel(tenant_key(api_key), request_ids);
}

CheckpointRecord TrainerService::copy_weights(const std::string& api_key, const CopyWeightsRequest& req) {
  const std::string tenant = tenant_key(api_key);
  if (req.model_seq_id < 0) throw InvalidRequest("model_seq_id must be >= 0, got " + std::to_string(req.model_seq_id));
  check_ttl(req.ttl_seconds);
  const CheckpointRef ref = CheckpointRef::parse(req.source_path);
  if (ref.form != CheckpointRef::Form::tinker_path)
    throw InvalidRequest("field 'source_path' must be a tinker:// path of a checkpoint, got '" + req.source_path + "'");
  const std::string run_id = req.session_id + ":train:" + std::to_string(req.model_seq_id);
  {
    std::lock_guard lock(mu_);
    sessions_.find_open(tenant, req.session_id);
    if (models_.used(run_id))
      throw InvalidRequest("model_seq_id " + std::to_string(req.model_seq_id) + " of session '" + req.session_id +
                           "' is model '" + run_id + "'; copy_weights needs a model_seq_id no model has used");
  }
  const std::string owner = req.access_key.empty() ? tenant : tenant_key(req.access_key);
  const CheckpointRecord source = checkpoints_.resolve(owner, req.source_path, *ref.kind, "copy_weights");
  CheckpointRecord target = source;
  target.tenant = tenant;
  target.run_id = run_id;
  target.is_public = false;
  target.created = clock_->now();
  target.expires = req.ttl_seconds ? std::optional(target.created + std::chrono::seconds(*req.ttl_seconds)) : std::nullopt;
  const CheckpointRecord copy = checkpoints_.copy(source, target);
  std::lock_guard lock(mu_);
  sessions_.record_run(req.session_id, run_id);
  return copy;
}

// Promotion -------------------------------------------------------------------------------------

CheckpointRecord TrainerService::promote(const std::string& account, const std::string& job_id,
                                         const std::string& checkpoint_id, const std::string& model_id,
                                         const std::string& base_model) {
  const std::string ns = job_id.empty() ? account : job_tenant(account, job_id);
  std::optional<CheckpointRecord> source;
  for (const bool any_kind : {false, true})  // a sampler save of that name first
    for (const auto& r : store_->list(ns))
      if (!source && r.name == checkpoint_id && (any_kind || r.kind == CheckpointKind::sampler)) source = r;
  const std::string where = job_id.empty() ? "the default namespace" : "trainer job " + job_id;
  if (!source) throw NotFound("checkpoint '" + checkpoint_id + "' not found in " + where);
  const ControlCheckpointType t = control_checkpoint_type(*source);
  if (!t.promotable)
    throw UserError("checkpoint '" + checkpoint_id + "' of " + where + " is " + t.type + ", which is not promotable" +
                    (source->kind == CheckpointKind::training ? " (a training state: save it with save_weights_for_sampler)"
                                                              : " (a full-parameter delta: promote its base save)"));
  if (!base_model.empty() && registry_->weights_owner(base_model) != registry_->weights_owner(source->base_model))
    throw UserError("checkpoint '" + checkpoint_id + "' was trained from " + source->base_model + ", not " + base_model,
                    "base_model");
  if (store_->find(account, kPromotedRun, CheckpointKind::sampler, model_id))
    throw Conflict("model accounts/" + base_tenant(account) + "/models/" + model_id + " already exists");
  CheckpointRecord target = *source;
  target.tenant = account;
  target.run_id = kPromotedRun;
  target.name = model_id;
  target.expires.reset();
  target.is_public = false;
  target.created = clock_->now();
  target.user_metadata["promoted_from"] = source->tinker_path();
  return checkpoints_.copy(*source, target);
}

std::optional<CheckpointRecord> TrainerService::promoted_by_name(const std::string& tenant, const std::string& name) const {
  const std::string account = base_tenant(tenant), prefix = "accounts/" + account + "/models/";
  if (name.rfind(prefix, 0) != 0) return std::nullopt;
  return promoted_model(account, name.substr(prefix.size()));
}

std::vector<CheckpointRecord> TrainerService::promoted_models(const std::string& account) const {
  return store_->list(account, kPromotedRun);
}

std::optional<CheckpointRecord> TrainerService::promoted_model(const std::string& account, const std::string& model_id) const {
  return store_->find(account, kPromotedRun, CheckpointKind::sampler, model_id);
}

// Checkpoint views ------------------------------------------------------------------------------

WeightsInfo TrainerService::weights_info(const std::string& api_key, const std::string& path) const {
  return checkpoints_.weights_info(tenant_key(api_key), path);
}

std::vector<TrainingRunInfo> TrainerService::list_training_runs(const std::string& api_key) const {
  const std::string tenant = tenant_key(api_key);
  std::vector<TrainingRunInfo> live;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, m] : models_.all())
      if (m->tenant == tenant)
        live.push_back({id, m->info.base_model, owner_urn(tenant), !m->info.lora.full_parameter(), m->info.lora.rank,
                        m->info.last_request_time, std::nullopt, std::nullopt, m->info.user_metadata});
    for (const auto& [id, r] : models_.retired())
      if (r.tenant == tenant)
        live.push_back({id, r.base_model, owner_urn(tenant), r.is_lora, r.lora_rank, r.last_request_time, std::nullopt,
                        std::nullopt, r.user_metadata});
  }
  return checkpoints_.training_runs(tenant, std::move(live));
}

TrainingRunInfo TrainerService::get_training_run(const std::string& api_key, const std::string& run_id) const {
  for (auto& run : list_training_runs(api_key))
    if (run.training_run_id == run_id) return run;
  throw NotFound("training run '" + run_id + "' not found");
}

std::vector<CheckpointRecord> TrainerService::list_run_checkpoints(const std::string& api_key,
                                                                   const std::string& run_id) const {
  get_training_run(api_key, run_id);  // 404 for an unknown run
  return store_->list(tenant_key(api_key), run_id);
}

std::vector<CheckpointRecord> TrainerService::list_user_checkpoints(const std::string& api_key) const {
  return store_->list(tenant_key(api_key));
}

std::vector<TrainerService::CheckpointStorage> TrainerService::checkpoint_storage(
    const std::string& api_key, const std::optional<std::string>& project) const {
  std::map<std::string, std::string> project_of;  // session id → project id
  for (const auto& s : list_sessions(api_key))
    if (!s.project_id.empty()) project_of[s.session_id] = s.project_id;
  std::map<std::optional<std::string>, CheckpointStorage> groups;
  for (const auto& r : store_->list(tenant_key(api_key))) {
    const auto p = project_of.find(r.run_id.substr(0, r.run_id.find(':')));
    const std::optional<std::string> id = p == project_of.end() ? std::nullopt : std::optional(p->second);
    if (project && id != project) continue;
    auto& g = groups[id];
    g.project_id = id;
    ++g.count;
    g.size_bytes += r.size_bytes;
  }
  std::vector<CheckpointStorage> out;
  for (auto& [id, g] : groups) out.push_back(std::move(g));
  return out;
}

std::vector<std::string> TrainerService::list_checkpoint_names(const std::string& api_key) const {
  std::set<std::string> names;
  for (const auto& r : store_->list(tenant_key(api_key)))
    if (r.kind == CheckpointKind::training) names.insert(r.name);
  return {names.begin(), names.end()};
}

void TrainerService::delete_checkpoint(const std::string& api_key, const std::string& run_id,
                                       const std::string& checkpoint_id) {
  checkpoints_.remove(checkpoints_.find(tenant_key(api_key), run_id, checkpoint_id));
}

void TrainerService::delete_checkpoint_of_tenant(const std::string& tenant, const std::string& tinker_path) {
  if (!CheckpointRef::is_tinker_path(tinker_path))
    throw InvalidRequest("field 'tinker_path' must be tinker://<run_id>/<weights|sampler_weights>/<name>, got '" +
                         tinker_path + "'");
  const CheckpointRef ref = CheckpointRef::parse(tinker_path);  // 400 for a malformed path
  const std::string checkpoint_id = tinker_path.substr(std::string("tinker://").size() + ref.run_id.size() + 1);
  checkpoints_.remove(checkpoints_.find(tenant, ref.run_id, checkpoint_id));
}

std::vector<AuditEntry> TrainerService::audit(const std::string& api_key) const { return audit_.list(tenant_key(api_key)); }


void TrainerService::set_published(const std::string& api_key, const std::string& run_id,
                                   const std::string& checkpoint_id, bool published) {
  checkpoints_.set_published(checkpoints_.find(tenant_key(api_key), run_id, checkpoint_id), published);
}

void TrainerService::set_ttl(const std::string& api_key, const std::string& run_id, const std::string& checkpoint_id,
                             std::optional<int64_t> ttl_seconds) {
  check_ttl(ttl_seconds);
  checkpoints_.set_ttl(checkpoints_.find(tenant_key(api_key), run_id, checkpoint_id), ttl_seconds);
}

std::vector<std::pair<std::string, std::string>> TrainerService::checkpoint_files(const std::string& api_key,
                                                                                  const std::string& run_id,
                                                                                  const std::string& checkpoint_id) {
  return store_->files(checkpoints_.find(tenant_key(api_key), run_id, checkpoint_id));
}

std::string TrainerService::archive_checkpoint(const std::string& api_key, const std::string& run_id,
                                               const std::string& checkpoint_id) {
  return store_->archive(checkpoints_.find(tenant_key(api_key), run_id, checkpoint_id));
}

}  // namespace kiln::service
