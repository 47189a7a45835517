#include "service/samplers.hpp"

#include <algorithm>

#include "errors.hpp"
#include "model/errors.hpp"

namespace kiln::service {

std::string Samplers::id_for(const std::string& session_id, int64_t seq) {
  return session_id + ":sample:" + std::to_string(seq);
}

bool Samplers::exists(const std::string& tenant, const std::string& sampler_id) const {
  auto it = samplers_.find(sampler_id);
  return it != samplers_.end() && it->second->tenant == tenant;
}

bool Samplers::add(const std::string& tenant, SamplerInfo info, std::shared_ptr<const model::Transformer<float>> weights) {
  const std::string id = info.sampler_id;
  if (exists(tenant, id)) return false;
  auto s = std::make_unique<Sampler>();
  s->tenant = tenant;
  s->info = std::move(info);
  s->weights = std::move(weights);
  samplers_[id] = std::move(s);
  return true;
}

Samplers::Sampler& Samplers::find_owned(const std::string& tenant, const std::string& sampler_id) {
  auto it = samplers_.find(sampler_id);
  if (it == samplers_.end() || it->second->tenant != tenant) throw errors::sampler_not_found(sampler_id);
  return *it->second;
}

int64_t Samplers::join(const std::string& tenant, const std::string& sampler_id) {
  return ++find_owned(tenant, sampler_id).joined_clients;
}

const SamplerInfo& Samplers::info(const std::string& tenant, const std::string& sampler_id) const {
  return const_cast<Samplers*>(this)->find_owned(tenant, sampler_id).info;
}

SampleSubmission Samplers::submit(const std::string& tenant, const std::string& sampler_id, int64_t seq_id,
                                  model::SampleSpec spec, std::optional<InjectedFailure> forced) {
  Sampler& s = find_owned(tenant, sampler_id);
  try {
    model::validate_sample(s.weights->config(), spec);
  } catch (const model::InputError& e) {
    throw InvalidRequest(e.message());
  }
  const uint64_t fp = fingerprint(spec);
  if (auto seen = s.seen.find(seq_id); seen != s.seen.end() && seen->second.first == fp)
    // The SDK re-submits with the same seq_id after a 429: the same submission, the same ids.
    if (auto* f = futures_.find(seen->second.second)) return {seen->second.second, f->sequence_ids};
  std::string rid;
  if (forced) {
    rid = futures_.add_failed(tenant, *forced, sampler_id);
  } else {
    rid = futures_.add_pending(tenant, sampler_id);
    s.seen[seq_id] = {fp, rid};
  }
  // One id per sequence, derived from the request id, so every submission has fresh ones.
  auto& ids = futures_.find(rid)->sequence_ids;
  for (int64_t i = 0; i < spec.num_samples; ++i) ids.push_back(rid + ":" + std::to_string(i));
  if (!forced) {
    s.pending.push_back({rid, std::move(spec), ids});
    enqueue(s);
  }
  return {rid, ids};
}

void Samplers::enqueue(Sampler& s) {
  if (s.queued || s.running) return;
  s.queued = true;
  ready_.push_back(&s);
  on_ready_();
}

std::vector<bool> Samplers::cancel(const std::string& tenant, const std::vector<std::string>& request_ids) {
  std::vector<Sampler*> owners;  // of the pending ones; null for those complete already
  for (const auto& rid : request_ids) {
    FutureTable::Future* f = futures_.find(rid);
    if (!f || f->tenant != tenant) throw errors::future_not_found();
    auto it = samplers_.find(f->owner);
    if (it == samplers_.end())
      throw Conflict("request '" + rid + "' is not a sample: cancel_future cancels sample requests only "
                     "(training requests run in seq_id order and cannot be withdrawn)");
    owners.push_back(f->state.status == RetrieveResult::Status::pending ? it->second.get() : nullptr);
  }
  std::vector<bool> cancelled;
  for (size_t i = 0; i < request_ids.size(); ++i) {
    const std::string& rid = request_ids[i];
    cancelled.push_back(owners[i] && futures_.find(rid)->state.status == RetrieveResult::Status::pending);
    if (!cancelled.back()) continue;  // complete already (or listed twice)
    Sampler& s = *owners[i];
    if (std::erase_if(s.pending, [&](const Job& j) { return j.request_id == rid; }) == 0)
      s.cancelled.insert(rid);  // joining or in the batch: the driving worker drops it
    futures_.complete(rid, RetrieveResult::failure("sample request " + rid + " was cancelled by the client (cancel_future)",
                                                   ErrorCategory::user));
  }
  return cancelled;
}

void Samplers::run_turn(std::unique_lock<std::mutex>& lock) {
  Sampler* s = ready_.front();
  ready_.pop_front();
  s->queued = false;
  s->running = true;
  lock.unlock();
  drive(*s);
  lock.lock();
  s->running = false;
  if (!s->pending.empty() || (s->batch && !s->batch->idle())) enqueue(*s);  // more to do: back in line
  futures_.notify();  // a reset may be waiting for the sampler to stop running
}

void Samplers::drive(Sampler& s) {
  constexpr int kStepsPerTurn = 16;
  if (!s.batch) s.batch = std::make_unique<model::BatchSampler>(s.weights);
  for (int step = 0; step < kStepsPerTurn; ++step) {
    std::deque<Job> arrived;
    {
      std::lock_guard lock(mu_);
      arrived.swap(s.pending);
      for (const auto& job : arrived) futures_.start(job.request_id);
    }
    for (auto& job : arrived) {  // join the batch between steps (prefill happens here)
      try {
        const int64_t handle = s.batch->add(job.spec);
        job.progress = std::make_shared<log::Progress>(
            "sample", nlohmann::ordered_json{{"sampler", s.info.sampler_id}, {"request_id", job.request_id},
                                     {"num_samples", job.spec.num_samples},
                                     {"max_tokens", job.spec.params.max_tokens ? nlohmann::ordered_json(*job.spec.params.max_tokens) : nlohmann::ordered_json(nullptr)}});
        s.in_batch.emplace(handle, std::move(job));
      } catch (const std::exception& e) {
        finish(s, job, RetrieveResult::failure(e));
      }
    }
    {
      std::lock_guard lock(mu_);
      // Cancelled requests leave the batch (their futures failed already).
      for (auto it = s.in_batch.begin(); it != s.in_batch.end() && !s.cancelled.empty();) {
        if (!s.cancelled.erase(it->second.request_id)) {
          ++it;
          continue;
        }
        s.batch->remove(it->first);
        it->second.progress->finish({{"decode_steps", it->second.steps}, {"cancelled", true}});
        it = s.in_batch.erase(it);
      }
      if (s.batch->idle()) return;
      const auto n = static_cast<int64_t>(s.batch->active());
      ++s.decode_steps;
      s.sampled_tokens += n;
      tokens_sampled_ += n;
      s.largest_batch = std::max(s.largest_batch, n);
    }
    try {
      auto finished = s.batch->step();
      for (auto& [handle, job] : s.in_batch)
        if (++job.steps; job.progress->due()) job.progress->update({{"decode_steps", job.steps}});
      for (auto& [handle, out] : finished) {
        Job job = std::move(s.in_batch.at(handle));
        job.progress->finish({{"decode_steps", job.steps}});
        s.in_batch.erase(handle);
        const auto prompt = std::make_shared<const std::vector<int64_t>>(job.spec.prompt);
        for (size_t i = 0; i < out.sequences.size(); ++i) {
          out.sequences[i].sequence_id = job.sequence_ids.at(i);
          sequences_.record(s.tenant, job.sequence_ids.at(i), prompt, out.sequences[i].tokens);
        }
        {
          nlohmann::json sequences = nlohmann::json::array();
          for (const auto& seq : out.sequences)
            sequences.push_back({{"tokens", seq.tokens}, {"logprobs", seq.logprobs}, {"stopped", seq.stopped}});
          std::lock_guard lock(mu_);
          s.recent.push_back({{"request_id", job.request_id}, {"prompt", job.spec.prompt}, {"sequences", sequences}});
          if (s.recent.size() > kRecentSamples) s.recent.pop_front();
        }
        RetrieveResult done;
        done.status = RetrieveResult::Status::done;
        done.result = std::move(out);
        finish(s, job, std::move(done));
      }
    } catch (const std::exception& e) {  // the batch is lost: fail everything in it, start afresh
      for (auto& [handle, job] : s.in_batch) finish(s, job, RetrieveResult::failure(e));
      s.in_batch.clear();
      s.batch = std::make_unique<model::BatchSampler>(s.weights);
    }
  }
}

void Samplers::finish(Sampler& s, const Job& job, RetrieveResult outcome) {
  std::lock_guard lock(mu_);
  s.cancelled.erase(job.request_id);  // cancelled during its last step: its future failed already and stays so
  futures_.complete(job.request_id, std::move(outcome));
}

bool Samplers::any_running(const std::string& tenant) const {
  return std::any_of(samplers_.begin(), samplers_.end(),
                     [&](const auto& s) { return (tenant.empty() || s.second->tenant == tenant) && s.second->running; });
}

void Samplers::forget(const std::string& tenant) {
  const auto mine = [&](const std::string& t) { return tenant.empty() || t == tenant; };
  std::erase_if(ready_, [&](Sampler* s) { return mine(s->tenant); });
  std::erase_if(samplers_, [&](const auto& s) { return mine(s.second->tenant); });
}

nlohmann::json Samplers::view() const {
  using nlohmann::json;
  json out = json::array();
  for (const auto& [id, s] : samplers_)
    out.push_back({{"sampler_id", id}, {"tenant", s->tenant}, {"base_model", s->info.base_model},
                   {"model_path", s->info.model_path ? json(*s->info.model_path) : json(nullptr)},
                   {"pending_requests", s->pending.size()}, {"decode_steps", s->decode_steps},
                   {"sampled_tokens", s->sampled_tokens}, {"largest_batch", s->largest_batch},
                   {"recent_samples", s->recent}});
  return out;
}

}  // namespace kiln::service
