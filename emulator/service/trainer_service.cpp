#include "service/trainer_service.hpp"
#include "service/trainer_service_internal.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>

#include "model/errors.hpp"
#include "model/init.hpp"
#include "model/rng.hpp"
#include "train/errors.hpp"

namespace kiln::service {

using train::InvalidRequest;
using train::UserError;

const char* category_name(ErrorCategory c) {
  switch (c) {
    case ErrorCategory::user: return "user";
    case ErrorCategory::server: return "server";
    case ErrorCategory::unknown: return "unknown";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// Construction, ids, tenants

TrainerService::TrainerService(ServiceOptions options)
    : opts_(std::move(options)),
      clock_(opts_.clock ? opts_.clock : std::make_shared<RealClock>()),
      registry_(opts_.registry ? opts_.registry : &model::ModelRegistry::builtin()),
      store_(std::make_unique<CheckpointStore>(opts_.data_dir, clock_)) {
  id_seed_ = opts_.seed ? *opts_.seed : std::random_device{}() * 0x9E3779B97F4A7C15ULL ^ std::random_device{}();
  for (int i = 0; i < std::max(1, opts_.workers); ++i) workers_.emplace_back([this] { worker_loop(); });
  ticker_ = std::thread([this] { ticker_loop(); });
}

TrainerService::~TrainerService() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  done_cv_.notify_all();
  tick_cv_.notify_all();
  for (auto& w : workers_) w.join();
  ticker_.join();
}

std::string TrainerService::tenant_key(const std::string& api_key) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "tenant-%016llx", static_cast<unsigned long long>(model::fnv1a64(api_key)));
  return buf;
}

std::string TrainerService::new_id(const char* prefix) {
  model::SplitMix64 rng(id_seed_ ^ (++id_counter_ * 0xD1B54A32D192ED03ULL));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s%012llx", prefix, static_cast<unsigned long long>(rng.next() >> 16));
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Sessions

SessionInfo TrainerService::create_session(const std::string& api_key, std::vector<std::string> tags,
                                           std::map<std::string, std::string> user_metadata, std::string project_id) {
  std::lock_guard lock(mu_);
  auto s = std::make_unique<Session>();
  s->tenant = tenant_key(api_key);
  // Seeded ids repeat after a restart: skip those whose runs already have checkpoints on disk.
  do s->info.session_id = new_id("session-");
  while (sessions_.count(s->info.session_id) || store_->session_used(s->info.session_id));
  s->info.tags = std::move(tags);
  s->info.user_metadata = std::move(user_metadata);
  s->info.project_id = std::move(project_id);
  s->info.created = s->info.last_heartbeat = clock_->now();
  SessionInfo info = s->info;
  sessions_[info.session_id] = std::move(s);
  return info;
}

void TrainerService::heartbeat(const std::string& api_key, const std::string& session_id) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(session_id);
  if (it == sessions_.end() || it->second->tenant != tenant_key(api_key)) throw errors::session_not_found(session_id);
  it->second->info.last_heartbeat = clock_->now();
}

void TrainerService::set_session_project(const std::string& api_key, const std::string& session_id,
                                         std::string project_id) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(session_id);
  if (it == sessions_.end() || it->second->tenant != tenant_key(api_key)) throw errors::session_not_found(session_id);
  it->second->info.project_id = std::move(project_id);
}

SessionInfo TrainerService::get_session(const std::string& api_key, const std::string& session_id) const {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(session_id);
  if (it == sessions_.end() || it->second->tenant != tenant_key(api_key)) throw errors::session_not_found(session_id);
  return it->second->info;
}

std::vector<SessionInfo> TrainerService::list_sessions(const std::string& api_key) const {
  std::lock_guard lock(mu_);
  std::vector<SessionInfo> out;
  for (const auto& [id, s] : sessions_)
    if (s->tenant == tenant_key(api_key)) out.push_back(s->info);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Models

std::string TrainerService::create_model(const std::string& api_key, const CreateModelRequest& req) {
  const std::string tenant = tenant_key(api_key);
  std::lock_guard lock(mu_);
  auto sit = sessions_.find(req.session_id);
  if (sit == sessions_.end() || sit->second->tenant != tenant) throw errors::session_not_found(req.session_id);
  if (req.base_model.empty()) throw InvalidRequest("base_model is required");
  if (req.model_seq_id < 0) throw InvalidRequest("model_seq_id must be >= 0, got " + std::to_string(req.model_seq_id));
  const std::string model_id = req.session_id + ":train:" + std::to_string(req.model_seq_id);
  if (models_.count(model_id)) return model_id;  // a retried create_model (C16)

  const model::BaseModelEntry* entry = registry_->find(req.base_model);
  if (!entry)
    throw InvalidRequest("unknown base model '" + req.base_model + "'; supported: " + registry_->known_names());
  model::LoraConfig lora = req.lora;
  if (!req.base_only) {
    try {
      lora.validate();
    } catch (const model::InputError& e) {
      throw InvalidRequest(e.message());  // the spec's texts name the field themselves
    }
    // Without a seed, a deterministic one chosen here and kept with the model (C3).
    if (!req.lora_seed_given) lora.seed = model::fnv1a64(model_id) ^ id_seed_;
  }
  auto base = model::shared_base_weights<float>(entry->config, registry_->weights_owner(entry->name), 0);
  auto m = std::make_unique<Model>();
  m->tenant = tenant;
  m->created_by = req;
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
  info.created = info.last_request_time = clock_->now();
  sit->second->info.training_run_ids.push_back(model_id);
  models_[model_id] = std::move(m);
  return model_id;
}

std::pair<std::string, std::string> TrainerService::create_model_from_state(const std::string& api_key,
                                                                           CreateModelRequest req,
                                                                           LoadWeightsRequest load) {
  if (load.path.empty()) throw InvalidRequest("path is required");
  const std::string owner = tenant_key(load.access_key.empty() ? api_key : load.access_key);
  // A missing checkpoint is a 404 here (nothing is created); a malformed or wrong-kind one a 400.
  const CheckpointRecord rec = resolve_reference(owner, load.path, CheckpointKind::training, "load_state");
  if (req.base_model.empty()) req.base_model = rec.base_model;
  req.base_only = false;
  req.lora = rec.lora ? *rec.lora : model::LoraConfig{};
  req.lora_seed_given = rec.lora.has_value();
  const std::string model_id = create_model(api_key, req);
  std::lock_guard lock(mu_);
  Model& m = model_for(tenant_key(api_key), model_id);
  if (auto it = m.seen.find(0); it != m.seen.end()) return {model_id, it->second.second};  // a retried create
  if (m.next_seq != 1 || !m.seen.empty()) throw InvalidRequest("model " + model_id + " already exists and has run requests");
  const std::string rid = new_id("req-");
  auto f = std::make_unique<Future>();
  f->tenant = m.tenant;
  f->owner = model_id;
  f->submitted = clock_->now();
  futures_[rid] = std::move(f);
  m.next_seq = 0;  // the load is the model's seq 0; the client's own requests start at 1
  m.seen[0] = {fingerprint(TrainingRequest(load)), rid};
  m.waiting.emplace(0, std::make_pair(TrainingRequest(std::move(load)), rid));
  advance_locked(m);
  return {model_id, rid};
}

std::string TrainerService::submit_create_model(const std::string& api_key, const CreateModelRequest& req) {
  if (auto forced = take_injected_failure()) {  // nothing is created
    std::lock_guard lock(mu_);
    return fail_future(tenant_key(api_key), *forced);
  }
  const std::string id = create_model(api_key, req);
  std::lock_guard lock(mu_);
  return complete_future(tenant_key(api_key), CreateModelResult{id});
}

TrainerService::Model& TrainerService::model_for(const std::string& tenant, const std::string& model_id) {
  auto it = models_.find(model_id);
  if (it == models_.end() || it->second->tenant != tenant || it->second->unloaded)
    throw NotFound("model '" + model_id + "' not found");
  return *it->second;
}

const TrainerService::Model& TrainerService::model_for(const std::string& tenant, const std::string& model_id) const {
  return const_cast<TrainerService*>(this)->model_for(tenant, model_id);
}

ModelInfo TrainerService::get_info(const std::string& api_key, const std::string& model_id) const {
  std::lock_guard lock(mu_);
  return model_for(tenant_key(api_key), model_id).info;
}

// ---------------------------------------------------------------------------------------------
// Submission and ordering

namespace {

bool is_tinker_path(const std::string& s) { return s.rfind("tinker://", 0) == 0; }

struct TinkerPath {
  std::string run_id, kind, name;
};
// tinker://<run>/<weights|sampler_weights>/<name>; throws InvalidRequest when malformed.
TinkerPath parse_tinker_path(const std::string& path) {
  const std::string rest = path.substr(std::strlen("tinker://"));
  const size_t a = rest.find('/'), b = a == std::string::npos ? a : rest.find('/', a + 1);
  TinkerPath p;
  if (a != std::string::npos && b != std::string::npos && rest.find('/', b + 1) == std::string::npos) {
    p = {rest.substr(0, a), rest.substr(a + 1, b - a - 1), rest.substr(b + 1)};
    if (!p.run_id.empty() && p.run_id != "." && p.run_id != ".." && (p.kind == "weights" || p.kind == "sampler_weights")) {
      validate_checkpoint_name(p.name);
      return p;
    }
  }
  throw InvalidRequest("Invalid tinker path: " + path +
                       " (expected tinker://<training_run_id>/weights/<name> or .../sampler_weights/<name>)");
}

void check_ttl(const std::optional<int64_t>& ttl) {
  if (ttl && *ttl <= 0) throw InvalidRequest("ttl_seconds must be positive, got " + std::to_string(*ttl));
}

}  // namespace

void TrainerService::validate_envelope(const Model& m, int64_t seq_id, const TrainingRequest& req) const {
  const bool frozen = m.info.base_only;
  const std::string base_only_msg = "model " + m.info.model_id + " is base-only; only forward is allowed";
  std::visit(
      [&](const auto& r) {
        using R = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<R, ForwardRequest>) {
          train::LossSpec::parse(r.loss_fn, r.loss_fn_config);
          if (r.data.empty()) throw InvalidRequest("data must contain at least one datum");
          if (r.backward && frozen) throw InvalidRequest(base_only_msg);
        } else if constexpr (std::is_same_v<R, OptimStepRequest>) {
          r.adam.validate();
          if (frozen) throw InvalidRequest(base_only_msg);
        } else if constexpr (std::is_same_v<R, SaveWeightsRequest>) {
          validate_checkpoint_name(r.name);
          check_ttl(r.ttl_seconds);
          if (frozen) throw InvalidRequest(base_only_msg);
        } else if constexpr (std::is_same_v<R, LoadWeightsRequest>) {
          if (seq_id != 1) throw InvalidRequest("LoadWeights is not permitted with seq_id " + std::to_string(seq_id));
          if (r.path.empty()) throw InvalidRequest("path is required");
          if (is_tinker_path(r.path)) parse_tinker_path(r.path);
          if (frozen) throw InvalidRequest(base_only_msg);
        } else if constexpr (std::is_same_v<R, SaveSamplerRequest>) {
          if (r.sampling_session_seq_id) {
            if (*r.sampling_session_seq_id < 0) throw InvalidRequest("sampling_session_seq_id must be >= 0");
          } else {
            validate_checkpoint_name(r.name);
          }
          check_ttl(r.ttl_seconds);
          if (!r.checkpoint_type.empty() && r.checkpoint_type != "base" && r.checkpoint_type != "delta" &&
              r.checkpoint_type != "merged_base")
            throw InvalidRequest("checkpoint_type must be one of ('base', 'delta', 'merged_base')");
          if (frozen) throw InvalidRequest(base_only_msg);
        } else if constexpr (std::is_same_v<R, LoadAdapterRequest>) {
          if (seq_id != 1) throw InvalidRequest("LoadAdapter is not permitted with seq_id " + std::to_string(seq_id));
          if (r.adapter_path.find_first_not_of(" \t\n") == std::string::npos)
            throw InvalidRequest("adapter_path must be a non-empty string");
          if (frozen || m.info.lora.full_parameter()) throw InvalidRequest("load_adapter requires a LoRA model");
        }
      },
      req);
}

std::string TrainerService::submit(const std::string& api_key, const std::string& model_id, int64_t seq_id,
                                   TrainingRequest req) {
  const std::string tenant = tenant_key(api_key);
  std::lock_guard lock(mu_);
  Model& m = model_for(tenant, model_id);
  const uint64_t fp = fingerprint(req);
  if (auto it = m.seen.find(seq_id); it != m.seen.end()) {
    if (it->second.first == fp) return it->second.second;  // a resubmission: the same future
    throw InvalidRequest("Training request sequence number was reused");
  }
  if (seq_id < 1) throw InvalidRequest("seq_id must be >= 1, got " + std::to_string(seq_id));
  if (seq_id < m.next_seq || m.rejected.count(seq_id))
    throw InvalidRequest("Training request sequence number was reused");
  try {
    validate_envelope(m, seq_id, req);
  } catch (const InvalidRequest&) {
    m.rejected.insert(seq_id);  // a refused submit counts as arrived (B1)
    advance_locked(m);
    throw;
  }
  const std::string rid = new_id("req-");
  auto f = std::make_unique<Future>();
  f->tenant = tenant;
  f->owner = model_id;
  f->submitted = clock_->now();
  f->forced = take_injected_failure();
  futures_[rid] = std::move(f);
  m.seen[seq_id] = {fp, rid};
  m.waiting.emplace(seq_id, std::make_pair(std::move(req), rid));
  m.info.last_request_time = clock_->now();
  advance_locked(m);
  return rid;
}

void TrainerService::advance_locked(Model& m) {
  while (m.rejected.count(m.next_seq)) m.rejected.erase(m.next_seq++);
  if (!m.running && !m.queued && m.waiting.count(m.next_seq)) {
    m.queued = true;
    m.gap_since.reset();
    ready_.push_back(&m);
    work_cv_.notify_one();
  }
}

std::string TrainerService::complete_future(const std::string& tenant, TrainingResult result) {
  const std::string rid = new_id("req-");
  auto f = std::make_unique<Future>();
  f->tenant = tenant;
  f->state.status = RetrieveResult::Status::done;
  f->state.result = std::move(result);
  f->submitted = clock_->now();
  f->completed = f->submitted;
  futures_[rid] = std::move(f);
  done_cv_.notify_all();
  return rid;
}

std::string TrainerService::fail_future(const std::string& tenant, const InjectedFailure& failure) {
  const std::string rid = complete_future(tenant, {});
  auto& st = futures_[rid]->state;
  st.status = RetrieveResult::Status::failed;
  st.error = failure.message;
  st.category = failure.category;
  return rid;
}

std::string TrainerService::future_owner(const std::string& api_key, const std::string& request_id) const {
  std::lock_guard lock(mu_);
  auto it = futures_.find(request_id);
  return it != futures_.end() && it->second->tenant == tenant_key(api_key) ? it->second->owner : "";
}

RetrieveResult TrainerService::retrieve(const std::string& api_key, const std::string& request_id,
                                        std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  auto it = futures_.find(request_id);
  if (it == futures_.end() || it->second->tenant != tenant_key(api_key)) throw NotFound("Future not found");
  Future* f = it->second.get();
  ++f->polls;
  using S = RetrieveResult::Status;
  // Wait for the result; a result held back by the progression is answered pending at once when
  // it waits for more polls, and re-checked (the ticker wakes us) when it waits for time.
  done_cv_.wait_for(lock, wait, [&] {
    if (stopping_) return true;
    if (f->state.status == S::pending) return false;
    return !held_locked(*f) || progression_.mode == Progression::Mode::after_polls;
  });
  if (f->state.status != S::pending && !held_locked(*f)) {
    if (!f->first_delivered) f->first_delivered = clock_->now();
    return f->state;
  }
  RetrieveResult pending;
  pending.queue_state = progression_.queue_state;
  pending.queue_state_reason = progression_.reason;
  return pending;
}

bool TrainerService::held_locked(const Future& f) const {
  if (f.first_delivered) return false;  // once delivered, always delivered
  switch (progression_.mode) {
    case Progression::Mode::immediate: return false;
    case Progression::Mode::after_polls: return f.polls <= progression_.polls;
    case Progression::Mode::after_seconds:
      return clock_->now() - f.submitted <
             std::chrono::duration_cast<TimePoint::duration>(std::chrono::duration<double>(progression_.seconds));
  }
  return false;
}

void TrainerService::purge_futures_locked() {
  const TimePoint now = clock_->now();
  const auto secs = [](double s) { return std::chrono::duration_cast<TimePoint::duration>(std::chrono::duration<double>(s)); };
  for (auto it = futures_.begin(); it != futures_.end();) {
    const Future& f = *it->second;
    const bool expired = f.completed && ((f.first_delivered && now - *f.first_delivered > secs(opts_.result_retention_seconds)) ||
                                         (!f.first_delivered && now - *f.completed > secs(opts_.unpolled_retention_seconds)));
    it = expired ? futures_.erase(it) : std::next(it);
  }
}

// ---------------------------------------------------------------------------------------------
// Execution

void TrainerService::worker_loop() {
  std::unique_lock lock(mu_);
  while (true) {
    work_cv_.wait(lock, [&] { return stopping_ || !ready_.empty() || !samplers_ready_.empty(); });
    if (stopping_) return;
    // Sampling and training share the workers; alternate so neither starves the other.
    if (!samplers_ready_.empty() && (ready_.empty() || (sample_turn_ = !sample_turn_))) {
      Sampler* s = samplers_ready_.front();
      samplers_ready_.pop_front();
      s->queued = false;
      s->running = true;
      lock.unlock();
      drive_sampler(*s);
      lock.lock();
      s->running = false;
      if ((!s->pending.empty() || (s->batch && !s->batch->idle())) && !s->queued) {  // more to do: back in line
        s->queued = true;
        samplers_ready_.push_back(s);
        work_cv_.notify_one();
      }
      done_cv_.notify_all();
      continue;
    }
    Model* m = ready_.front();
    ready_.pop_front();
    m->queued = false;
    auto it = m->waiting.find(m->next_seq);
    if (it == m->waiting.end()) continue;
    TrainingRequest req = std::move(it->second.first);
    const std::string rid = it->second.second;
    m->waiting.erase(it);
    m->running = true;
    std::optional<InjectedFailure> forced;
    if (auto f = futures_.find(rid); f != futures_.end()) forced = f->second->forced;
    lock.unlock();

    RetrieveResult outcome;
    try {
      if (forced) {
        outcome = RetrieveResult::failure(forced->message, forced->category);
      } else {
        outcome.result = execute(*m, req);
        outcome.status = RetrieveResult::Status::done;
      }
    } catch (const std::exception& e) {
      outcome = RetrieveResult::failure(e);
    }

    lock.lock();
    if (const auto* fr = std::get_if<train::ForwardResult>(&outcome.result);
        fr && outcome.status == RetrieveResult::Status::done && std::get<ForwardRequest>(req).backward)
      if (auto loss = fr->metrics.find("loss:sum"); loss != fr->metrics.end()) {
        auto& recent = m->info.recent_losses;  // for the control API's state view
        recent.push_back(loss->second);
        if (recent.size() > 16) recent.erase(recent.begin());
      }
    if (auto f = futures_.find(rid); f != futures_.end()) {
      f->second->state = std::move(outcome);
      f->second->completed = clock_->now();
    }
    if (std::holds_alternative<UnloadModelRequest>(req) &&
        futures_.count(rid) && futures_[rid]->state.status == RetrieveResult::Status::done) {
      m->unloaded = true;
      m->state.reset();
    }
    if (m->state) m->info.optimizer_step = m->state->adam().step;

    m->next_seq++;
    m->running = false;
    advance_locked(*m);
    done_cv_.notify_all();
  }
}

void TrainerService::ticker_loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    tick_cv_.wait_for(lock, std::chrono::milliseconds(200));
    if (stopping_) return;
    purge_futures_locked();
    if (progression_.mode == Progression::Mode::after_seconds) done_cv_.notify_all();
    const TimePoint now = clock_->now();
    const auto grace = std::chrono::duration_cast<TimePoint::duration>(std::chrono::duration<double>(opts_.seq_gap_grace_seconds));
    for (auto& [id, m] : models_) {
      if (m->running || m->queued || m->waiting.empty() || m->waiting.count(m->next_seq)) {
        m->gap_since.reset();
        continue;
      }
      if (!m->gap_since) m->gap_since = now;
      if (now - *m->gap_since >= grace) {  // B1: give up on the missing seq_ids and go on in order
        std::fprintf(stderr, "kiln: model %s: seq_id %lld never arrived; skipping to %lld\n", id.c_str(),
                     static_cast<long long>(m->next_seq), static_cast<long long>(m->waiting.begin()->first));
        m->next_seq = m->waiting.begin()->first;
        advance_locked(*m);
      }
    }
  }
}

TrainingResult TrainerService::execute(Model& m, const TrainingRequest& req) {
  return std::visit(
      [&](const auto& r) -> TrainingResult {
        using R = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<R, ForwardRequest>) {
          const auto spec = train::LossSpec::parse(r.loss_fn, r.loss_fn_config);
          return r.backward ? m.state->forward_backward(r.data, spec) : m.state->forward(r.data, spec);
        } else if constexpr (std::is_same_v<R, OptimStepRequest>) {
          return OptimStepResult{m.state->optim_step(r.adam, r.normalization)};
        } else if constexpr (std::is_same_v<R, SaveWeightsRequest>) {
          return do_save_weights(m, r);
        } else if constexpr (std::is_same_v<R, LoadWeightsRequest>) {
          return do_load_weights(m, r);
        } else if constexpr (std::is_same_v<R, SaveSamplerRequest>) {
          return do_save_sampler(m, r);
        } else if constexpr (std::is_same_v<R, LoadAdapterRequest>) {
          return do_load_adapter(m, r);
        } else {
          return UnloadResult{m.info.model_id};
        }
      },
      req);
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

namespace {

nlohmann::json hf_config(const ModelInfo& info) {
  const auto& c = info.config;
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"vocab_size", c.vocab_size},
          {"hidden_size", c.d_model},
          {"num_hidden_layers", c.n_layers},
          {"num_attention_heads", c.n_heads},
          {"num_key_value_heads", c.n_heads},
          {"intermediate_size", c.d_ff},
          {"max_position_embeddings", c.max_context},
          {"rope_theta", c.rope_theta},
          {"rms_norm_eps", c.norm_eps},
          {"hidden_act", "silu"},
          {"tie_word_embeddings", false},
          {"torch_dtype", "float32"},
          {"kiln_head", c.factored_head() ? "factored" : "dense"},
          {"kiln_base_model", info.base_model}};
}

nlohmann::json peft_config(const ModelInfo& info) {
  std::vector<std::string> targets;
  if (info.lora.train_attn) targets.insert(targets.end(), {"q_proj", "k_proj", "v_proj", "o_proj"});
  if (info.lora.train_mlp) targets.insert(targets.end(), {"gate_proj", "up_proj", "down_proj"});
  if (info.lora.train_unembed) {
    if (info.config.factored_head())
      targets.insert(targets.end(), {model::kLmHeadHiModule, model::kLmHeadLoModule});
    else
      targets.push_back("lm_head");
  }
  return {{"peft_type", "LORA"}, {"base_model_name_or_path", info.base_model}, {"r", info.lora.rank},
          {"lora_alpha", info.lora.effective_alpha()}, {"target_modules", targets}, {"bias", "none"},
          {"task_type", "CAUSAL_LM"}};
}

SafetensorsFile weights_file(const model::ParamSet<float>& params, const ModelInfo& info) {
  SafetensorsFile f;
  f.metadata = {{"format", "pt"}, {"kiln_base_model", info.base_model}};
  f.tensors = params;
  return f;
}

// Tensors of `file` in the order and shapes of `like`, looked up by name.
model::ParamSet<float> arrange_like(const model::ParamSet<float>& like, const model::ParamSet<float>& file,
                                    const std::string& suffix, const std::string& what) {
  model::ParamSet<float> out;
  for (const auto& t : like) {
    const int i = file.find(t.name + suffix);
    if (i < 0) throw UserError(what + " lacks tensor '" + t.name + suffix + "'");
    if (file[i].shape != t.shape)
      throw UserError(what + " tensor '" + t.name + suffix + "' has shape " + train::shape_string(file[i].shape) +
                      ", the model needs " + train::shape_string(t.shape));
    out[out.add(t.name, t.shape)].data = file[i].data;
  }
  return out;
}

bool same_lora_layout(const std::optional<model::LoraConfig>& a, const model::LoraConfig& b) {
  if (!a) return b.full_parameter();
  return a->rank == b.rank && a->train_attn == b.train_attn && a->train_mlp == b.train_mlp &&
         a->train_unembed == b.train_unembed;
}

std::string describe(const std::string& base, const std::optional<model::LoraConfig>& lora) {
  return base + (lora && lora->rank > 0 ? ", LoRA rank " + std::to_string(lora->rank) : ", full-parameter");
}

}  // namespace

CheckpointRecord TrainerService::make_record(const Model& m, CheckpointKind kind, const std::string& name,
                                             std::optional<int64_t> ttl, const std::string& type) const {
  CheckpointRecord r;
  r.tenant = m.tenant;
  r.run_id = m.info.model_id;
  r.kind = kind;
  r.name = name;
  r.base_model = m.info.base_model;
  r.config = m.info.config;
  if (!m.info.lora.full_parameter()) r.lora = m.info.lora;
  r.checkpoint_type = type;
  r.created = clock_->now();
  if (ttl) r.expires = r.created + std::chrono::seconds(*ttl);
  return r;
}

TrainingResult TrainerService::do_save_weights(Model& m, const SaveWeightsRequest& r) {
  if (!r.overwrite && !opts_.overwrite_training_state &&
      store_->find(m.tenant, m.info.model_id, CheckpointKind::training, r.name))
    throw UserError("ResourceAlreadyExists: checkpoint 'weights/" + r.name + "' already exists for " +
                    m.info.model_id + "; use a new name or overwrite=true");
  CheckpointStore::Files files;
  files.model = weights_file(m.state->model().params(), m.info);
  SafetensorsFile opt;
  const auto& adam = m.state->adam();
  opt.metadata = {{"format", "pt"}, {"step", std::to_string(adam.step)}};
  for (int i = 0; i < adam.m.size(); ++i) {
    opt.tensors[opt.tensors.add(adam.m[i].name + ".exp_avg", adam.m[i].shape)].data = adam.m[i].data;
    opt.tensors[opt.tensors.add(adam.v[i].name + ".exp_avg_sq", adam.v[i].shape)].data = adam.v[i].data;
  }
  files.optimizer = std::move(opt);
  files.config = hf_config(m.info);
  if (!m.info.lora.full_parameter()) files.adapter_config = peft_config(m.info);
  CheckpointRecord rec = make_record(m, CheckpointKind::training, r.name, r.ttl_seconds, "training");
  rec.has_optimizer = true;
  return SaveResult{store_->save(rec, files).tinker_path(), ""};
}

CheckpointRecord TrainerService::resolve_reference(const std::string& tenant, const std::string& ref,
                                                   CheckpointKind want, const std::string& purpose) const {
  std::optional<CheckpointRecord> found;
  if (is_tinker_path(ref)) {
    const TinkerPath p = parse_tinker_path(ref);
    found = store_->find(tenant, p.run_id, p.kind == "weights" ? CheckpointKind::training : CheckpointKind::sampler,
                         p.name);
  } else if (ref.rfind("cross_job://", 0) == 0) {
    const std::string rest = ref.substr(std::strlen("cross_job://"));
    const size_t slash = rest.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == rest.size())
      throw UserError("invalid cross-job reference '" + ref + "': expected cross_job://<job_id>/<name>");
    found = store_->find(tenant, rest.substr(0, slash), want, rest.substr(slash + 1));
  } else if (ref.rfind("gs://", 0) == 0) {
    throw UserError("gs:// references are not available offline: '" + ref + "'");
  } else if (!ref.empty() && ref[0] == '/') {
    throw UserError("absolute checkpoint paths are not available offline: '" + ref +
                    "'; use tinker://<run>/<kind>/<name> or a checkpoint name");
  } else {
    // A bare name: this tenant's checkpoints of the wanted kind, newest first (E4).
    for (const auto& r : store_->list(tenant))
      if (r.name == ref && r.kind == want) {
        found = r;
        break;
      }
    if (!found)
      for (const auto& r : store_->list(tenant))
        if (r.name == ref) {
          found = r;
          break;
        }
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
void TrainerService::adopt_alpha(Model& m, const CheckpointRecord& rec) {
  if (!rec.lora || m.info.lora.full_parameter()) return;
  m.state->model().set_lora_alpha(rec.lora->alpha);
  std::lock_guard lock(mu_);
  m.info.lora.alpha = rec.lora->alpha;
}

TrainingResult TrainerService::do_load_weights(Model& m, const LoadWeightsRequest& r) {
  const std::string owner = r.access_key.empty() ? m.tenant : tenant_key(r.access_key);
  const CheckpointRecord rec = resolve_reference(owner, r.path, CheckpointKind::training, "load_state");
  if (rec.base_model != m.info.base_model || !same_lora_layout(rec.lora, m.info.lora))
    throw UserError("checkpoint '" + r.path + "' (" + describe(rec.base_model, rec.lora) +
                    ") cannot be loaded into model " + m.info.model_id + " (" +
                    describe(m.info.base_model, m.info.lora.full_parameter() ? std::nullopt
                                                                            : std::optional(m.info.lora)) +
                    ")");
  const auto& like = m.state->model().params();
  const auto params = arrange_like(like, store_->read_model(rec).tensors, "", "checkpoint '" + r.path + "'");
  adopt_alpha(m, rec);
  if (!r.optimizer) {
    m.state->restore(params, nullptr);
  } else {
    const auto opt = store_->read_optimizer(rec);
    if (!opt) throw UserError("checkpoint '" + r.path + "' has no optimizer state");
    train::AdamState<float> adam;
    adam.m = arrange_like(like, opt->tensors, ".exp_avg", "optimizer state of '" + r.path + "'");
    adam.v = arrange_like(like, opt->tensors, ".exp_avg_sq", "optimizer state of '" + r.path + "'");
    adam.step = std::stoll(opt->metadata.count("step") ? opt->metadata.at("step") : "0");
    m.state->restore(params, &adam);
  }
  return LoadResult{rec.tinker_path(), m.info.model_id};
}

TrainingResult TrainerService::do_save_sampler(Model& m, const SaveSamplerRequest& r) {
  if (r.sampling_session_seq_id) {  // ephemeral: a snapshot in memory, no file, never listed (E21)
    auto weights = std::make_shared<const model::Transformer<float>>(m.state->model());
    std::lock_guard lock(mu_);
    return SaveResult{"", add_sampler_locked(m.tenant, m.info.session_id, *r.sampling_session_seq_id,
                                             std::move(weights), m.info.base_model, std::nullopt)};
  }
  const std::string type = r.checkpoint_type.empty() ? "base" : r.checkpoint_type;
  const bool lora = !m.info.lora.full_parameter();
  const auto& params = m.state->model().params();
  CheckpointStore::Files files;
  files.config = hf_config(m.info);
  if (type == "merged_base") {
    if (!lora) throw UserError("merged_base requires a LoRA model");
    // W ← W + scale·B·A for every adapted module; everything else is the base as it is.
    model::ParamSet<float> merged = m.state->model().base();
    const float scale = static_cast<float>(m.info.lora.scale());
    for (auto& t : merged) {
      const std::string module = t.name.substr(0, t.name.size() - std::strlen(".weight"));
      const int a = params.find(model::lora_a_name(module)), b = params.find(model::lora_b_name(module));
      if (a < 0 || b < 0) continue;
      const int64_t out = t.shape[0], in = t.shape[1], rank = m.info.lora.rank;
      Eigen::Map<model::Mat<float>> W(t.data.data(), out, in);
      W.noalias() += scale * (Eigen::Map<const model::Mat<float>>(params[b].data.data(), out, rank) *
                              Eigen::Map<const model::Mat<float>>(params[a].data.data(), rank, in));
    }
    files.model = weights_file(merged, m.info);
  } else if (lora) {  // base and delta alike: LoRA always stores the full adapter
    files.model = weights_file(params, m.info);
    files.adapter_config = peft_config(m.info);
  } else if (type == "base") {
    files.model = weights_file(params, m.info);
  } else {  // a full-parameter delta: XOR of the float bits against the last base save
    if (!m.sampler_anchor)
      throw UserError("checkpoint_type 'delta' needs an earlier 'base' sampler save from this training client");
    files.model.metadata = {{"format", "kiln-xor-delta"}, {"base_checkpoint", m.sampler_anchor_name},
                            {"kiln_base_model", m.info.base_model}};
    for (int i = 0; i < params.size(); ++i) {
      auto& w = files.model.words[files.model.words.add(params[i].name, params[i].shape)].data;
      for (size_t j = 0; j < w.size(); ++j) {
        uint32_t now_bits, base_bits;
        std::memcpy(&now_bits, &params[i].data[j], 4);
        std::memcpy(&base_bits, &(*m.sampler_anchor)[i].data[j], 4);
        w[j] = now_bits ^ base_bits;
      }
    }
  }
  const CheckpointRecord rec = store_->save(make_record(m, CheckpointKind::sampler, r.name, r.ttl_seconds, type), files);
  if (!lora && type == "base") {
    m.sampler_anchor = params;
    m.sampler_anchor_name = r.name;
  }
  return SaveResult{rec.tinker_path(), ""};
}

TrainingResult TrainerService::do_load_adapter(Model& m, const LoadAdapterRequest& r) {
  const CheckpointRecord rec = resolve_reference(m.tenant, r.adapter_path, CheckpointKind::sampler, "load_adapter");
  if (rec.checkpoint_type == "merged_base" || !rec.lora)
    throw UserError("checkpoint '" + r.adapter_path + "' holds full weights, not a LoRA adapter");
  if (rec.base_model != m.info.base_model || !same_lora_layout(rec.lora, m.info.lora))
    throw UserError("adapter '" + r.adapter_path + "' (" + describe(rec.base_model, rec.lora) +
                    ") does not fit model " + m.info.model_id);
  m.state->restore(arrange_like(m.state->model().params(), store_->read_model(rec).tensors, "",
                                "adapter '" + r.adapter_path + "'"),
                   nullptr);
  adopt_alpha(m, rec);
  return LoadAdapterResult{m.info.model_id, r.adapter_path};
}

// ---------------------------------------------------------------------------------------------
// Sampling

std::string TrainerService::add_sampler_locked(const std::string& tenant, const std::string& session_id, int64_t seq,
                                               std::shared_ptr<const model::Transformer<float>> weights,
                                               const std::string& base_model, std::optional<std::string> model_path) {
  const std::string id = session_id + ":sample:" + std::to_string(seq);
  auto& slot = samplers_[id];
  if (slot && slot->tenant == tenant) return id;  // a retried request: the first snapshot stands
  slot = std::make_unique<Sampler>();
  slot->tenant = tenant;
  slot->info = {id, session_id, base_model, std::move(model_path)};
  slot->weights = std::move(weights);
  if (auto s = sessions_.find(session_id); s != sessions_.end()) s->second->info.sampler_ids.push_back(id);
  return id;
}

// The model a sampler checkpoint describes, rebuilt from its files: LoRA adapters over the shared
// base, or full weights (a full-parameter "delta" is XORed onto the "base" save it names).
std::shared_ptr<const model::Transformer<float>> TrainerService::sampler_weights(const CheckpointRecord& rec) const {
  model::ModelConfig config = rec.config;
  if (const auto* e = registry_->find(rec.base_model); e && e->config.vocab_size == config.vocab_size)
    config.eos_token_ids = e->config.eos_token_ids;
  const std::string what = "checkpoint '" + rec.tinker_path() + "'";
  const SafetensorsFile file = store_->read_model(rec);
  const auto base = model::shared_base_weights<float>(config, registry_->weights_owner(rec.base_model), 0);
  if (rec.lora && rec.checkpoint_type != "merged_base") {
    model::Transformer<float> t(config, base, *rec.lora);
    t.params() = arrange_like(t.params(), file.tensors, "", what);
    return std::make_shared<const model::Transformer<float>>(std::move(t));
  }
  model::ParamSet<float> full;
  if (auto f = file.metadata.find("format"); f != file.metadata.end() && f->second == "kiln-xor-delta") {
    const std::string anchor_name = file.metadata.count("base_checkpoint") ? file.metadata.at("base_checkpoint") : "";
    const auto anchor = store_->find(rec.tenant, rec.run_id, CheckpointKind::sampler, anchor_name);
    if (!anchor) throw NotFound(what + " is a delta of 'sampler_weights/" + anchor_name + "', which no longer exists");
    full = arrange_like(*base, store_->read_model(*anchor).tensors, "", "checkpoint 'sampler_weights/" + anchor_name + "'");
    for (auto& t : full) {
      const int i = file.words.find(t.name);
      if (i < 0 || file.words[i].data.size() != t.data.size()) throw UserError(what + " lacks delta tensor '" + t.name + "'");
      for (size_t j = 0; j < t.data.size(); ++j) {
        uint32_t bits;
        std::memcpy(&bits, &t.data[j], 4);
        bits ^= file.words[i].data[j];
        std::memcpy(&t.data[j], &bits, 4);
      }
    }
  } else {
    full = arrange_like(*base, file.tensors, "", what);
  }
  return std::make_shared<const model::Transformer<float>>(
      model::Transformer<float>::frozen(config, std::make_shared<const model::ParamSet<float>>(std::move(full))));
}

std::string TrainerService::create_sampler(const std::string& api_key, const CreateSamplerRequest& req) {
  const std::string tenant = tenant_key(api_key);
  {
    std::lock_guard lock(mu_);
    auto sit = sessions_.find(req.session_id);
    if (sit == sessions_.end() || sit->second->tenant != tenant) throw errors::session_not_found(req.session_id);
    if (req.sampling_session_seq_id < 0)
      throw InvalidRequest("sampling_session_seq_id must be >= 0, got " + std::to_string(req.sampling_session_seq_id));
    const std::string id = req.session_id + ":sample:" + std::to_string(req.sampling_session_seq_id);
    if (auto it = samplers_.find(id); it != samplers_.end() && it->second->tenant == tenant) return id;
  }
  std::shared_ptr<const model::Transformer<float>> weights;
  std::string base_model;
  std::optional<std::string> model_path;
  if (!req.model_path.empty()) {
    if (!is_tinker_path(req.model_path)) throw InvalidRequest("model_path must start with 'tinker://'");
    const TinkerPath p = parse_tinker_path(req.model_path);
    if (p.kind != "sampler_weights")
      throw InvalidRequest("model_path must name a sampler_weights checkpoint (tinker://<run>/sampler_weights/<name>), got '" +
                           req.model_path + "'");
    const auto rec = store_->find(tenant, p.run_id, CheckpointKind::sampler, p.name);
    if (!rec) throw NotFound("checkpoint '" + req.model_path + "' not found");
    weights = sampler_weights(*rec);
    base_model = rec->base_model;
    model_path = req.model_path;
  } else if (!req.base_model.empty()) {
    const model::BaseModelEntry* entry = registry_->find(req.base_model);
    if (!entry)
      throw InvalidRequest("unknown base model '" + req.base_model + "'; supported: " + registry_->known_names());
    weights = std::make_shared<const model::Transformer<float>>(model::Transformer<float>::frozen(
        entry->config, model::shared_base_weights<float>(entry->config, registry_->weights_owner(entry->name), 0)));
    base_model = entry->name;
  } else {
    throw InvalidRequest("Either model_path or base_model must be provided");
  }
  std::lock_guard lock(mu_);
  return add_sampler_locked(tenant, req.session_id, req.sampling_session_seq_id, std::move(weights), base_model,
                            std::move(model_path));
}

SamplerInfo TrainerService::get_sampler(const std::string& api_key, const std::string& sampler_id) const {
  std::lock_guard lock(mu_);
  auto it = samplers_.find(sampler_id);
  if (it == samplers_.end() || it->second->tenant != tenant_key(api_key))
    throw NotFound("sampler '" + sampler_id + "' not found");
  return it->second->info;
}

SampleSubmission TrainerService::submit_sample(const std::string& api_key, const std::string& sampler_id,
                                               int64_t seq_id, model::SampleSpec spec) {
  const std::string tenant = tenant_key(api_key);
  std::lock_guard lock(mu_);
  auto it = samplers_.find(sampler_id);
  if (it == samplers_.end() || it->second->tenant != tenant)
    throw NotFound("sampling session '" + sampler_id + "' not found");
  Sampler& sampler = *it->second;
  try {
    model::validate_sample(sampler.weights->config(), spec);
  } catch (const model::InputError& e) {
    throw InvalidRequest(e.message());
  }
  const uint64_t fp = fingerprint(spec);
  if (auto seen = sampler.seen.find(seq_id); seen != sampler.seen.end() && seen->second.first == fp) {
    // The SDK re-submits with the same seq_id after a 429: the same submission, the same ids.
    if (auto f = futures_.find(seen->second.second); f != futures_.end())
      return {f->first, f->second->sequence_ids};
  }
  std::string rid;
  if (auto forced = take_injected_failure()) {
    rid = fail_future(tenant, *forced);
  } else {
    rid = new_id("req-");
    auto f = std::make_unique<Future>();
    f->tenant = tenant;
    f->owner = sampler_id;
    f->submitted = clock_->now();
    futures_[rid] = std::move(f);
    sampler.seen[seq_id] = {fp, rid};
  }
  // One id per sequence, derived from the request id, so every submission has fresh ones.
  auto& ids = futures_[rid]->sequence_ids;
  for (int64_t i = 0; i < spec.num_samples; ++i) ids.push_back(rid + ":" + std::to_string(i));
  if (futures_[rid]->state.status == RetrieveResult::Status::pending) {
    sampler.pending.push_back({rid, std::move(spec), ids});
    if (!sampler.queued && !sampler.running) {
      sampler.queued = true;
      samplers_ready_.push_back(&sampler);
      work_cv_.notify_one();
    }
  }
  return {rid, ids};
}

void TrainerService::drive_sampler(Sampler& s) {
  // A turn: at most this many decode steps, then the sampler goes back in line behind other work.
  constexpr int kStepsPerTurn = 16;
  if (!s.batch) s.batch = std::make_unique<model::BatchSampler>(s.weights);
  for (int step = 0; step < kStepsPerTurn; ++step) {
    std::deque<SampleJob> arrived;
    {
      std::lock_guard lock(mu_);
      arrived.swap(s.pending);
    }
    for (auto& job : arrived) {  // join the batch between steps (prefill happens here)
      try {
        const int64_t handle = s.batch->add(job.spec);
        s.in_batch.emplace(handle, std::move(job));
      } catch (const std::exception& e) {
        finish_sample(job, RetrieveResult::failure(e));
      }
    }
    if (s.batch->idle()) return;
    {
      std::lock_guard lock(mu_);
      const auto n = static_cast<int64_t>(s.batch->active());
      ++s.decode_steps;
      s.sampled_tokens += n;
      s.largest_batch = std::max(s.largest_batch, n);
    }
    try {
      for (auto& [handle, out] : s.batch->step()) {
        SampleJob job = std::move(s.in_batch.at(handle));
        s.in_batch.erase(handle);
        for (size_t i = 0; i < out.sequences.size(); ++i) out.sequences[i].sequence_id = job.sequence_ids.at(i);
        RetrieveResult done;
        done.status = RetrieveResult::Status::done;
        done.result = std::move(out);
        finish_sample(job, std::move(done));
      }
    } catch (const std::exception& e) {  // the batch is lost: fail everything in it, start afresh
      for (auto& [handle, job] : s.in_batch) finish_sample(job, RetrieveResult::failure(e));
      s.in_batch.clear();
      s.batch = std::make_unique<model::BatchSampler>(s.weights);
    }
  }
}

void TrainerService::finish_sample(const SampleJob& job, RetrieveResult outcome) {
  std::lock_guard lock(mu_);
  if (auto f = futures_.find(job.request_id); f != futures_.end()) {
    f->second->state = std::move(outcome);
    f->second->completed = clock_->now();
  }
  done_cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------
// Checkpoint views

WeightsInfo TrainerService::weights_info(const std::string& api_key, const std::string& path) const {
  const std::string tenant = tenant_key(api_key);
  if (is_tinker_path(path) && parse_tinker_path(path).kind != "weights")
    throw InvalidRequest("weights_info needs a training-state path (tinker://<run>/weights/<name>), got '" + path + "'");
  const CheckpointRecord rec = resolve_reference(tenant, path, CheckpointKind::training, "weights_info");
  WeightsInfo info{rec.base_model, rec.lora.has_value(), rec.lora ? rec.lora->rank : 0};
  if (rec.lora) {
    info.train_attn = rec.lora->train_attn;
    info.train_mlp = rec.lora->train_mlp;
    info.train_unembed = rec.lora->train_unembed;
  }
  return info;
}

std::vector<TrainingRunInfo> TrainerService::list_training_runs(const std::string& api_key) const {
  const std::string tenant = tenant_key(api_key);
  std::map<std::string, TrainingRunInfo> runs;
  const auto checkpoints = store_->list(tenant);  // newest first
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, m] : models_) {
      if (m->tenant != tenant) continue;
      auto& run = runs[id];
      run = {id, m->info.base_model, "kiln:" + tenant, !m->info.lora.full_parameter(), m->info.lora.rank,
             m->info.last_request_time, std::nullopt, std::nullopt, m->info.user_metadata};
    }
  }
  for (const auto& c : checkpoints) {
    auto [it, inserted] = runs.try_emplace(c.run_id);
    auto& run = it->second;
    if (inserted)
      run = {c.run_id, c.base_model, "kiln:" + tenant, c.lora.has_value(), c.lora ? c.lora->rank : 0, c.created,
             std::nullopt, std::nullopt, {}};
    auto& slot = c.kind == CheckpointKind::training ? run.last_checkpoint : run.last_sampler_checkpoint;
    if (!slot) slot = c;
  }
  std::vector<TrainingRunInfo> out;
  for (auto& [id, run] : runs) out.push_back(std::move(run));
  return out;
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

std::vector<std::string> TrainerService::list_checkpoint_names(const std::string& api_key) const {
  std::set<std::string> names;
  for (const auto& r : store_->list(tenant_key(api_key)))
    if (r.kind == CheckpointKind::training) names.insert(r.name);
  return {names.begin(), names.end()};
}

CheckpointRecord TrainerService::find_checkpoint(const std::string& tenant, const std::string& run_id,
                                                 const std::string& checkpoint_id) const {
  const size_t slash = checkpoint_id.find('/');
  const std::string kind = slash == std::string::npos ? "" : checkpoint_id.substr(0, slash);
  const std::string name = slash == std::string::npos ? "" : checkpoint_id.substr(slash + 1);
  if ((kind != "weights" && kind != "sampler_weights") || name.empty() || name.find('/') != std::string::npos)
    throw InvalidRequest(
        "Invalid checkpoint identifier. Expected format 'weights/<name>' (training weights) or "
        "'sampler_weights/<name>' (sampler weights), where <name> is a single path segment.");
  auto rec = store_->find(tenant, run_id, kind == "weights" ? CheckpointKind::training : CheckpointKind::sampler, name);
  if (!rec) throw NotFound("checkpoint '" + checkpoint_id + "' of training run '" + run_id + "' not found");
  return *rec;
}

void TrainerService::delete_checkpoint(const std::string& api_key, const std::string& run_id,
                                       const std::string& checkpoint_id) {
  store_->remove(find_checkpoint(tenant_key(api_key), run_id, checkpoint_id));
}

void TrainerService::set_published(const std::string& api_key, const std::string& run_id,
                                   const std::string& checkpoint_id, bool published) {
  CheckpointRecord rec = find_checkpoint(tenant_key(api_key), run_id, checkpoint_id);
  if (rec.is_public == published)
    throw Conflict(std::string("checkpoint is already ") + (published ? "public" : "private"));
  rec.is_public = published;
  store_->update(rec);
}

void TrainerService::set_ttl(const std::string& api_key, const std::string& run_id, const std::string& checkpoint_id,
                             std::optional<int64_t> ttl_seconds) {
  check_ttl(ttl_seconds);
  CheckpointRecord rec = find_checkpoint(tenant_key(api_key), run_id, checkpoint_id);
  rec.expires = ttl_seconds ? std::optional(clock_->now() + std::chrono::seconds(*ttl_seconds)) : std::nullopt;
  store_->update(rec);
}

std::string TrainerService::archive_checkpoint(const std::string& api_key, const std::string& run_id,
                                               const std::string& checkpoint_id) {
  return store_->archive(find_checkpoint(tenant_key(api_key), run_id, checkpoint_id));
}

}  // namespace kiln::service
