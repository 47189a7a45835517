#pragma once
// Sampling sessions: each holds a snapshot of weights from its creation on (later training, or a
// deleted or expired checkpoint, does not change it: rule E13) and decodes its requests with
// continuous batching. A request waits in `pending` until the worker driving the sampler admits
// it into the batch between decode steps; a worker drives one sampler for a turn of decode
// steps, then it goes back in line behind other work.
// Everything but a turn's decoding runs under the service's lock; a turn takes it briefly.
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "log.hpp"
#include "model/sampler.hpp"
#include "service/future_table.hpp"
#include "service/provenance.hpp"
#include "service/service_types.hpp"

namespace kiln::service {

class Samplers {
 public:
  // `on_ready` is called (under the lock) when a sampler has work for a worker.
  Samplers(std::mutex& mu, FutureTable& futures, SampledSequences& sequences, std::function<void()> on_ready)
      : mu_(mu), futures_(futures), sequences_(sequences), on_ready_(std::move(on_ready)) {}

  // The id of the sampler a creation request makes: "<session_id>:sample:<seq>" (rule F6).
  static std::string id_for(const std::string& session_id, int64_t seq);
  bool exists(const std::string& tenant, const std::string& sampler_id) const;
  // Adds the sampler `info` names, unless `tenant` made it already: a retried creation keeps the
  // first snapshot. Returns whether it was added.
  bool add(const std::string& tenant, SamplerInfo info, std::shared_ptr<const model::Transformer<float>> weights);
  // errors::sampler_not_found for an unknown (or another tenant's) id.
  const SamplerInfo& info(const std::string& tenant, const std::string& sampler_id) const;
  // join_sampling_session (tinker 0.32, a cloned sampling client): the number of the client that
  // joined, 1 for the first; errors::sampler_not_found for an unknown id.
  int64_t join(const std::string& tenant, const std::string& sampler_id);

  // Queues num_samples continuations (protocol.md §W6.18). The same seq_id and spec again is the
  // same submission (a retry after 429). `forced` fails it at once (fault injection).
  SampleSubmission submit(const std::string& tenant, const std::string& sampler_id, int64_t seq_id,
                          model::SampleSpec spec, std::optional<InjectedFailure> forced);

  // cancel_future (tinker 0.26+, for samples the caller abandoned): a sample still waiting leaves
  // the queue, one decoding leaves the batch at its next step; its future fails at once with a
  // user error saying so. For each id, whether it was cancelled (false: complete already, left as
  // it is). errors::future_not_found for an unknown (or another tenant's) id, Conflict for a
  // future that is not a sample's (training requests keep their place in seq_id order); either
  // refuses the whole list and cancels nothing.
  std::vector<bool> cancel(const std::string& tenant, const std::vector<std::string>& request_ids);

  bool has_ready() const { return !ready_.empty(); }
  // A worker's unit of sampling work: one turn of the first sampler in line. Called with `lock`
  // held; releases it while decoding.
  void run_turn(std::unique_lock<std::mutex>& lock);
  // Whether a worker is driving one of `tenant`'s samplers (any tenant's when empty).
  bool any_running(const std::string& tenant) const;
  // Forgets the samplers of `tenant` (every tenant's when empty). None may be running.
  void forget(const std::string& tenant);
  // Each sampler with its decode statistics (the control API's state view).
  nlohmann::json view() const;
  // Tokens decoded by every sampler since the process started, forgotten ones included (GET /metrics).
  int64_t tokens_sampled() const { return tokens_sampled_; }
  size_t count() const { return samplers_.size(); }

 private:
  struct Job {
    std::string request_id;
    model::SampleSpec spec;
    std::vector<std::string> sequence_ids;
    int64_t steps = 0;  // decode steps since it joined the batch (tokens per sequence, at most)
    std::shared_ptr<log::Progress> progress;  // created when it joins the batch
  };
  struct Sampler {
    std::string tenant;
    SamplerInfo info;
    std::shared_ptr<const model::Transformer<float>> weights;
    std::map<int64_t, std::pair<uint64_t, std::string>> seen;  // seq → (fingerprint, request id)
    std::deque<Job> pending;  // waiting to join the batch
    bool queued = false, running = false;
    std::unique_ptr<model::BatchSampler> batch;  // the running worker's
    std::map<int64_t, Job> in_batch;             // BatchSampler handle → its request (the worker's)
    std::set<std::string> cancelled;             // request ids to drop from the batch (under the lock)
    int64_t decode_steps = 0, sampled_tokens = 0, largest_batch = 0;  // statistics
    int64_t joined_clients = 0;
    std::deque<nlohmann::json> recent;  // the last kRecentSamples results (dashboard), oldest first
  };
  static constexpr size_t kRecentSamples = 8;
  Sampler& find_owned(const std::string& tenant, const std::string& sampler_id);
  void enqueue(Sampler& s);
  void drive(Sampler& s);  // a turn; called without the lock
  void finish(Sampler& s, const Job& job, RetrieveResult outcome);

  std::mutex& mu_;
  FutureTable& futures_;
  SampledSequences& sequences_;  // every finished sequence is recorded there (provenance spans)
  std::function<void()> on_ready_;
  std::map<std::string, std::unique_ptr<Sampler>> samplers_;  // by sampler id
  int64_t tokens_sampled_ = 0;
  std::deque<Sampler*> ready_;  // samplers with pending requests or a batch in flight
};

}  // namespace kiln::service
