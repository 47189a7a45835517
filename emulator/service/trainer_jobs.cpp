#include "service/trainer_jobs.hpp"

#include <algorithm>
#include <cmath>
#include <regex>

#include "errors.hpp"
#include "service/state_file.hpp"
#include "service/training_shapes.hpp"

namespace kiln::service {

using nlohmann::json;

namespace {

double seconds_between(TimePoint a, TimePoint b) { return std::chrono::duration<double>(b - a).count(); }

// A protobuf duration as JSON carries it: "1800s", "1.5s".
double parse_duration(const json& v, const char* field) {
  static const std::regex form(R"(([0-9]+(?:\.[0-9]+)?)s)");
  std::smatch m;
  const std::string s = v.is_string() ? v.get<std::string>() : "";
  if (!std::regex_match(s, m, form))
    throw InvalidRequest(std::string(field) + ": expected a duration such as \"1800s\", got " + v.dump());
  return std::stod(m[1].str());
}

int64_t integer_field(const json& o, const char* key, const char* field) {
  const json& v = o.at(key);
  if (!v.is_number_integer()) throw InvalidRequest(std::string(field) + ": expected an integer, got " + v.dump());
  return v.get<int64_t>();
}

int64_t micros(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}
TimePoint from_micros(int64_t us) {
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::microseconds(us)));
}

}  // namespace

TrainerJobs::TrainerJobs(std::shared_ptr<const Clock> clock, const model::ModelRegistry& registry, Options options)
    : clock_(std::move(clock)), registry_(registry), opts_(std::move(options)) {
  restore();
}

std::string TrainerJobs::state_of(const TrainerJob& j) const {
  if (j.deleted) return job_state::deleted;
  if (j.paused) return job_state::paused;
  const TimePoint now = clock_->now();
  if (seconds_between(j.started, now) < opts_.boot_seconds) return job_state::creating;
  const double idle = j.inactivity_seconds.value_or(opts_.inactivity_seconds);
  if (!j.disable_inactivity_cleanup && idle > 0 && seconds_between(j.last_activity, now) >= idle)
    return job_state::paused;
  return job_state::running;
}

json TrainerJobs::to_json(const TrainerJob& j) const {
  json o = j.extra;
  const std::string state = state_of(j);
  std::string message = j.status_message;
  if (state == job_state::paused && message.empty()) {
    const double idle = j.inactivity_seconds.value_or(opts_.inactivity_seconds);
    message = "stopped after " + std::to_string(static_cast<int64_t>(idle)) + " s without activity; resume the job";
  }
  o["name"] = j.name();
  o["state"] = state;
  o["statusMessage"] = message;
  o["status"] = {{"code", state == job_state::running || state == job_state::creating ? "OK" : "CANCELLED"},
                 {"message", message}};
  o["createTime"] = iso8601(j.created);
  o["updateTime"] = iso8601(j.updated);
  json& tc = o["trainingConfig"];
  tc["baseModel"] = j.base_model;
  tc["loraRank"] = j.lora_rank;
  tc["learningRate"] = j.learning_rate;
  if (j.max_context_length) tc["maxContextLength"] = *j.max_context_length;
  if (!j.training_shape.empty()) o["trainingShape"] = j.training_shape;
  if (!j.display_name.empty()) o["displayName"] = j.display_name;
  o["serviceMode"] = true;
  return o;
}

json TrainerJobs::create(const std::string& account, const std::string& job_id, const json& body,
                         const std::string& shape_ref) {
  static const std::regex id_form("[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?");
  if (!std::regex_match(job_id, id_form))
    throw InvalidRequest("rlorTrainerJobId: expected 1-63 characters from [a-z0-9-], starting and ending with a "
                         "letter or digit, got '" + job_id + "'");
  if (!body.is_object()) throw InvalidRequest("body: expected a JSON object (the trainer job)");
  const json tc = body.value("trainingConfig", json::object());
  if (!tc.is_object()) throw InvalidRequest("trainingConfig: expected an object");
  TrainerJob j;
  j.account = account;
  j.id = job_id;
  j.extra = body;
  std::optional<TrainingShape> shape;
  if (!shape_ref.empty()) {
    shape = find_training_shape(shape_ref);
    if (!shape) throw NotFound("trainingShape: no training shape '" + shape_ref + "'; Kiln knows the shapes listed in docs/protocol.md §W13.5");
    j.training_shape = shape->version_name();
  }
  if (tc.contains("baseModel") && !tc["baseModel"].is_string())
    throw InvalidRequest("trainingConfig.baseModel: expected a string");
  j.base_model = tc.value("baseModel", shape ? shape->base_model : "");
  if (j.base_model.empty()) throw InvalidRequest("trainingConfig.baseModel: required (the model to train)");
  if (!registry_.find(j.base_model))
    throw InvalidRequest("trainingConfig.baseModel: unknown base model '" + j.base_model + "'; known: " + registry_.known_names());
  if (shape && registry_.weights_owner(j.base_model) != registry_.weights_owner(shape->base_model))
    throw InvalidRequest("trainingConfig.baseModel: '" + j.base_model + "' is not the base model of training shape " +
                         shape->name() + " (" + shape->base_model + ")");
  if (tc.contains("loraRank")) j.lora_rank = integer_field(tc, "loraRank", "trainingConfig.loraRank");
  if (j.lora_rank < 0) throw InvalidRequest("trainingConfig.loraRank: expected 0 (full-parameter) or a positive rank");
  if (shape && (shape->trainer_mode == "LORA_TRAINER") != (j.lora_rank > 0))
    throw InvalidRequest("trainingConfig.loraRank: training shape " + shape->name() + " is " + shape->trainer_mode +
                         (shape->trainer_mode == "LORA_TRAINER" ? ", which needs loraRank > 0" : ", which needs loraRank 0"));
  if (tc.contains("learningRate")) {
    if (!tc["learningRate"].is_number() || !(tc["learningRate"].get<double>() > 0))
      throw InvalidRequest("trainingConfig.learningRate: expected a positive number, got " + tc["learningRate"].dump());
    j.learning_rate = tc["learningRate"];
  }
  if (tc.contains("maxContextLength")) {
    const int64_t n = integer_field(tc, "maxContextLength", "trainingConfig.maxContextLength");
    if (n <= 0 || n % 16 != 0)
      throw InvalidRequest("trainingConfig.maxContextLength: expected a positive multiple of 16, got " + std::to_string(n));
    if (shape && n > shape->max_context_length)
      throw InvalidRequest("trainingConfig.maxContextLength: " + std::to_string(n) + " exceeds training shape " +
                           shape->name() + "'s maxSupportedContextLength " + std::to_string(shape->max_context_length));
    j.max_context_length = n;
  } else if (shape) {
    j.max_context_length = shape->max_context_length;
  }
  j.display_name = body.value("displayName", "");
  if (j.display_name.size() >= 64) throw InvalidRequest("displayName: expected fewer than 64 characters");
  j.forward_only = body.value("forwardOnly", false) || (shape && shape->trainer_mode == "FORWARD_ONLY");
  if (body.contains("inactivityTimeout")) {
    const double s = parse_duration(body["inactivityTimeout"], "inactivityTimeout");
    if (s > 0) j.inactivity_seconds = s;  // 0: the platform default
  }
  j.disable_inactivity_cleanup = body.value("disableInactivityCleanup", false);
  j.hot_load_deployment_id = body.value("hotLoadDeploymentId", "");

  std::lock_guard lock(mu_);
  if (auto it = jobs_.find({account, job_id}); it != jobs_.end())
    throw Conflict("trainer job " + it->second.name() + " already exists" +
                   (it->second.deleted ? " (deleted; a deleted job's id cannot be reused)" : ""));
  j.created = j.updated = j.started = j.last_activity = clock_->now();
  const TrainerJob& stored = jobs_[{account, job_id}] = std::move(j);
  persist();
  json answer = to_json(stored);
  answer["state"] = job_state::creating;  // provisioning, as the service answers a create (RUNNING once booted)
  return answer;
}

std::optional<TrainerJob> TrainerJobs::find(const std::string& account, const std::string& job_id) const {
  std::lock_guard lock(mu_);
  auto it = jobs_.find({account, job_id});
  if (it == jobs_.end()) return std::nullopt;
  return it->second;
}

json TrainerJobs::get(const std::string& account, const std::string& job_id) const {
  std::lock_guard lock(mu_);
  auto it = jobs_.find({account, job_id});
  if (it == jobs_.end()) throw NotFound("trainer job accounts/" + account + "/rlorTrainerJobs/" + job_id + " not found");
  return to_json(it->second);
}

json TrainerJobs::list(const std::string& account, int64_t page_size, const std::string& page_token) const {
  if (page_size <= 0) page_size = 50;
  size_t offset = 0;
  if (!page_token.empty()) try {
      offset = std::stoul(page_token);
    } catch (const std::exception&) {
      throw InvalidRequest("pageToken: not a token this server issued: '" + page_token + "'");
    }
  std::lock_guard lock(mu_);
  std::vector<const TrainerJob*> rows;
  for (const auto& [key, j] : jobs_)
    if (key.first == account) rows.push_back(&j);
  std::sort(rows.begin(), rows.end(), [](auto* a, auto* b) { return a->created > b->created; });
  json out = {{"rlorTrainerJobs", json::array()}, {"totalSize", rows.size()}};
  for (size_t i = offset; i < rows.size() && i < offset + static_cast<size_t>(page_size); ++i)
    out["rlorTrainerJobs"].push_back(to_json(*rows[i]));
  if (offset + page_size < rows.size()) out["nextPageToken"] = std::to_string(offset + page_size);
  return out;
}

TrainerJob& TrainerJobs::find_live(const std::string& account, const std::string& job_id) {
  auto it = jobs_.find({account, job_id});
  if (it == jobs_.end()) throw NotFound("trainer job accounts/" + account + "/rlorTrainerJobs/" + job_id + " not found");
  if (it->second.deleted) throw NotFound("trainer job " + it->second.name() + " was deleted");
  return it->second;
}

json TrainerJobs::resume(const std::string& account, const std::string& job_id) {
  std::lock_guard lock(mu_);
  auto it = jobs_.find({account, job_id});
  if (it != jobs_.end() && it->second.deleted)
    throw Conflict("trainer job " + it->second.name() + " was deleted and cannot be resumed; create a new job");
  TrainerJob& j = find_live(account, job_id);
  const std::string state = state_of(j);
  if (state != job_state::running && state != job_state::creating) {
    j.paused = false;
    j.status_message.clear();
    j.started = j.updated = j.last_activity = clock_->now();
    persist();
  }
  return to_json(j);
}

void TrainerJobs::remove(const std::string& account, const std::string& job_id) {
  std::lock_guard lock(mu_);
  TrainerJob& j = find_live(account, job_id);
  j.deleted = true;
  j.updated = clock_->now();
  j.status_message = "deleted; its checkpoints stay listed and promotable";
  persist();
}

TrainerJob TrainerJobs::admit(const std::string& account, const std::string& job_id) {
  std::lock_guard lock(mu_);
  TrainerJob& j = find_live(account, job_id);
  const std::string state = state_of(j);
  if (state == job_state::creating)
    throw Unavailable("trainer job " + j.name() + " is " + state + "; poll the job until JOB_STATE_RUNNING");
  if (state != job_state::running) {
    if (!j.paused) {  // stopped by inactivity just now: it stays stopped until resumed
      j.paused = true;
      j.status_message = to_json(j)["statusMessage"];
      persist();
    }
    throw Conflict("trainer job " + j.name() + " is " + state + " (" + j.status_message +
                   "); resume it with POST /v1/" + j.name() + ":resume");
  }
  j.last_activity = clock_->now();
  return j;
}

std::vector<std::string> TrainerJobs::ids(const std::string& account) const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [key, j] : jobs_)
    if (key.first == account) out.push_back(j.id);
  return out;
}

void TrainerJobs::reset(const std::string& account) {
  std::lock_guard lock(mu_);
  std::erase_if(jobs_, [&](const auto& kv) { return account.empty() || kv.first.first == account; });
  persist();
}

void TrainerJobs::persist() const {
  if (opts_.file.empty()) return;
  json doc = json::array();
  for (const auto& [key, j] : jobs_)
    doc.push_back({{"account", j.account}, {"id", j.id}, {"body", j.extra}, {"base_model", j.base_model},
                   {"lora_rank", j.lora_rank}, {"learning_rate", j.learning_rate},
                   {"max_context_length", j.max_context_length ? json(*j.max_context_length) : json(nullptr)},
                   {"training_shape", j.training_shape}, {"display_name", j.display_name},
                   {"forward_only", j.forward_only},
                   {"inactivity_seconds", j.inactivity_seconds ? json(*j.inactivity_seconds) : json(nullptr)},
                   {"disable_inactivity_cleanup", j.disable_inactivity_cleanup},
                   {"hot_load_deployment_id", j.hot_load_deployment_id}, {"created_us", micros(j.created)},
                   {"updated_us", micros(j.updated)}, {"started_us", micros(j.started)},
                   {"last_activity_us", micros(j.last_activity)}, {"deleted", j.deleted}, {"paused", j.paused},
                   {"status_message", j.status_message}});
  write_state_file(opts_.file, doc);
}

void TrainerJobs::restore() {
  if (opts_.file.empty()) return;
  const json doc = read_state_file(opts_.file, "trainer jobs");
  for (const auto& r : doc) {
    TrainerJob j;
    j.account = r.at("account");
    j.id = r.at("id");
    j.extra = r.at("body");
    j.base_model = r.at("base_model");
    j.lora_rank = r.at("lora_rank");
    j.learning_rate = r.at("learning_rate");
    if (!r.at("max_context_length").is_null()) j.max_context_length = r["max_context_length"].get<int64_t>();
    j.training_shape = r.at("training_shape");
    j.display_name = r.at("display_name");
    j.forward_only = r.at("forward_only");
    if (!r.at("inactivity_seconds").is_null()) j.inactivity_seconds = r["inactivity_seconds"].get<double>();
    j.disable_inactivity_cleanup = r.at("disable_inactivity_cleanup");
    j.hot_load_deployment_id = r.at("hot_load_deployment_id");
    j.created = from_micros(r.at("created_us"));
    j.updated = from_micros(r.at("updated_us"));
    j.started = from_micros(r.at("started_us"));
    j.last_activity = from_micros(r.at("last_activity_us"));
    j.deleted = r.at("deleted");
    j.paused = r.at("paused");
    j.status_message = r.at("status_message");
    jobs_[{j.account, j.id}] = std::move(j);
  }
}

}  // namespace kiln::service
