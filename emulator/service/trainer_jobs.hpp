#pragma once
// Fireworks RLOR trainer jobs (protocol.md §W13.3): create, get, list, resume, delete, with
// the job states a client polls. A job is a namespace of the trainer service (job_scope and
// job_tenant in ids.hpp); this class keeps only what the control plane says of it. One mutex,
// guarded fields; the state is computed from the service clock, so a virtual clock steps the
// state machine:
//
//   create ──► CREATING ──(boot_seconds)──► RUNNING ──(inactivity)──► PAUSED
//                  ▲                                                     │
//                  └──────────────────────── :resume ◄───────────────────┘
//   delete (any state) ──► DELETED: a tombstone; its id cannot be reused.
// (Kiln has no failure to emulate: FAILED, CANCELLED and COMPLETED never occur.)
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/registry.hpp"
#include "service/clock.hpp"

namespace kiln::service {

struct TrainerJob {
  std::string account, id, display_name;
  std::string base_model;  // as the client named it
  int64_t lora_rank = 0;
  double learning_rate = 1e-5;
  std::optional<int64_t> max_context_length;
  std::string training_shape;  // the resolved shape version's name, "" on the manual path
  bool forward_only = false;
  std::optional<double> inactivity_seconds;  // unset: the default (TrainerJobs::Options)
  bool disable_inactivity_cleanup = false;
  std::string hot_load_deployment_id;
  nlohmann::json extra = nlohmann::json::object();  // other create fields, echoed back as sent
  TimePoint created, updated, started;  // started: the last create or resume (the boot counts from it)
  TimePoint last_activity;
  bool deleted = false, paused = false;
  std::string status_message;

  std::string name() const { return "accounts/" + account + "/rlorTrainerJobs/" + id; }
};

class TrainerJobs {
 public:
  struct Options {
    double boot_seconds = 0;            // CREATING lasts this long after a create or resume
    double inactivity_seconds = 3600;   // open-questions H1: 60 min, configurable per job
    std::string file;                   // the jobs survive a restart here when set
  };
  TrainerJobs(std::shared_ptr<const Clock> clock, const model::ModelRegistry& registry, Options options);

  // POST …/rlorTrainerJobs?rlorTrainerJobId=<id>[&trainingShape=<ref>]: validates the body
  // (InvalidRequest naming the field), resolves the shape (NotFound when unknown), and creates
  // the job in CREATING. Conflict (409) when the id exists, tombstones included.
  nlohmann::json create(const std::string& account, const std::string& job_id, const nlohmann::json& body,
                        const std::string& training_shape);
  nlohmann::json get(const std::string& account, const std::string& job_id) const;  // NotFound
  // Newest first; page_token is the previous answer's nextPageToken.
  nlohmann::json list(const std::string& account, int64_t page_size, const std::string& page_token) const;
  // :resume: a paused job boots again; a running or creating one is answered as it is.
  // Conflict for a tombstone.
  nlohmann::json resume(const std::string& account, const std::string& job_id);
  void remove(const std::string& account, const std::string& job_id);  // tombstones; NotFound
  // The job behind a gateway path, when it can take trainer calls now: NotFound (unknown or
  // deleted), Unavailable (503) while CREATING, Conflict when stopped (resume it). Counts as
  // activity (heartbeats keep a job alive).
  TrainerJob admit(const std::string& account, const std::string& job_id);
  std::optional<TrainerJob> find(const std::string& account, const std::string& job_id) const;
  // The JOB_STATE_… a job is in now.
  std::string state_of(const TrainerJob& j) const;
  void reset(const std::string& account = "");  // forgets jobs: of one account, or all
  std::vector<std::string> ids(const std::string& account) const;  // every job id, tombstones too

 private:
  nlohmann::json to_json(const TrainerJob& j) const;  // the job object clients read (protocol.md §W13.3)
  TrainerJob& find_live(const std::string& account, const std::string& job_id);
  void persist() const;  // under mu_
  void restore();

  std::shared_ptr<const Clock> clock_;
  const model::ModelRegistry& registry_;
  Options opts_;
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, TrainerJob> jobs_;  // (account, id)
};

// "JOB_STATE_RUNNING" and the others clients match on.
namespace job_state {
inline constexpr const char* creating = "JOB_STATE_CREATING";
inline constexpr const char* running = "JOB_STATE_RUNNING";
inline constexpr const char* paused = "JOB_STATE_PAUSED";
inline constexpr const char* deleted = "JOB_STATE_DELETED";
}  // namespace job_state

}  // namespace kiln::service
