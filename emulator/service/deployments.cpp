#include "service/deployments.hpp"

#include <regex>

#include "errors.hpp"
#include "service/state_file.hpp"

namespace kiln::service {

using nlohmann::json;

namespace {

int64_t int_field(const json& body, const char* key, int64_t fallback) {
  if (!body.contains(key)) return fallback;
  const json& v = body[key];
  if (!v.is_number_integer() || v.get<int64_t>() < 0)
    throw InvalidRequest(std::string(key) + ": expected a non-negative integer, got " + v.dump());
  return v;
}

// "accounts/<a>/rlorTrainerJobs/<job>" → the job id, when the account is the caller's.
std::string job_of(const std::string& account, const json& v) {
  static const std::regex form(R"(accounts/([^/]+)/rlorTrainerJobs/([^/]+))");
  std::smatch m;
  const std::string s = v.is_string() ? v.get<std::string>() : "";
  if (!std::regex_match(s, m, form))
    throw InvalidRequest("hotLoadTrainerJob: expected accounts/<account>/rlorTrainerJobs/<job>, got " + v.dump());
  if (m[1] != account) throw InvalidRequest("hotLoadTrainerJob: job " + s + " is not of account " + account);
  return m[2];
}

}  // namespace

Deployments::Deployments(std::shared_ptr<const Clock> clock, const model::ModelRegistry& registry, Options options)
    : clock_(std::move(clock)), registry_(registry), opts_(std::move(options)) {
  restore();
}

json Deployments::replica_json(const Deployment& d) const {
  const bool loading = !d.loading_identity.empty() && clock_->now() < d.ready_at;
  const bool ready = d.weights && !loading;  // a refused hot-load leaves the last snapshot serving
  json state = {{"stage", "pending"}};
  if (!d.error.empty())
    state = {{"stage", "error"}, {"target_snapshot_identity", d.error_target}, {"message", d.error}};
  else if (loading)
    state = {{"stage", "loading"}, {"target_snapshot_identity", d.loading_identity}};
  else if (ready)
    state = {{"stage", "loaded"}, {"target_snapshot_identity", d.current_identity}};
  return {{"current_snapshot_identity", ready ? json(d.current_identity) : json(nullptr)},
          {"base_snapshot_identity", d.base_identity.empty() ? json(nullptr) : json(d.base_identity)},
          {"readiness", ready},
          {"loading_state", state}};
}

json Deployments::to_json(const Deployment& d) const {
  json o = d.body;
  o["name"] = d.name();
  o["baseModel"] = d.base_model;
  o["state"] = "READY";  // in process: scaling is instant
  o["createTime"] = iso8601(d.created);
  o["updateTime"] = iso8601(d.updated);
  o["enableHotLoad"] = d.enable_hot_load;
  o["minReplicaCount"] = d.min_replicas;
  o["maxReplicaCount"] = d.max_replicas;
  o["replicaCount"] = std::max<int64_t>(1, d.min_replicas);
  if (!d.hot_load_trainer_job.empty())
    o["hotLoadTrainerJob"] = "accounts/" + d.account + "/rlorTrainerJobs/" + d.hot_load_trainer_job;
  return o;
}

json Deployments::create(const std::string& account, const std::string& id, const json& body,
                         const std::function<JobCheck(const std::string&)>& job_check,
                         const std::function<bool(const std::string&)>& model_known) {
  static const std::regex id_form("[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?");
  if (!std::regex_match(id, id_form))
    throw InvalidRequest("deploymentId: expected 1-63 characters from [a-z0-9-], starting and ending with a letter or digit, got '" + id + "'");
  if (!body.is_object()) throw InvalidRequest("body: expected a JSON object (the deployment)");
  Deployment d;
  d.account = account;
  d.id = id;
  d.body = body;
  if (!body.contains("baseModel") || !body["baseModel"].is_string() || body["baseModel"].get<std::string>().empty())
    throw InvalidRequest("baseModel: required (the model the deployment serves)");
  d.base_model = body["baseModel"];
  if (!model_known(d.base_model))
    throw InvalidRequest("baseModel: unknown model '" + d.base_model + "'; known: " + registry_.known_names() +
                         ", and the account's promoted models");
  d.min_replicas = int_field(body, "minReplicaCount", 0);
  d.max_replicas = int_field(body, "maxReplicaCount", 1);
  if (d.max_replicas < d.min_replicas) throw InvalidRequest("maxReplicaCount: below minReplicaCount");
  if (body.contains("enableHotLoad") && !body["enableHotLoad"].is_boolean())
    throw InvalidRequest("enableHotLoad: expected a boolean");
  d.enable_hot_load = body.value("enableHotLoad", false);
  if (body.contains("hotLoadTrainerJob")) {
    d.hot_load_trainer_job = job_of(account, body["hotLoadTrainerJob"]);
    const JobCheck job = job_check(d.hot_load_trainer_job);
    if (!job.exists) throw InvalidRequest("hotLoadTrainerJob: no trainer job " + body["hotLoadTrainerJob"].get<std::string>());
    if (!job.hot_load_deployment_id.empty())
      throw InvalidRequest("hotLoadTrainerJob: trainer job " + d.hot_load_trainer_job + " was created PER_DEPLOYMENT "
                           "(hotLoadDeploymentId " + job.hot_load_deployment_id + "); a deployment cannot also point at it "
                           "PER_TRAINER: use one weight-sync scope");
  }
  std::lock_guard lock(mu_);
  if (deployments_.count({account, id})) throw Conflict("deployment " + d.name() + " already exists");
  d.created = d.updated = clock_->now();
  const Deployment& stored = deployments_[{account, id}] = std::move(d);
  persist();
  return to_json(stored);
}

const Deployment& Deployments::find(const std::string& account, const std::string& id) const {
  auto it = deployments_.find({account, id});
  if (it == deployments_.end()) throw NotFound("deployment accounts/" + account + "/deployments/" + id + " not found");
  return it->second;
}

Deployment& Deployments::find(const std::string& account, const std::string& id) {
  return const_cast<Deployment&>(std::as_const(*this).find(account, id));
}

Deployment& Deployments::by_name(const std::string& account, const std::string& name) {
  const std::string prefix = "accounts/" + account + "/deployments/";
  if (name.rfind(prefix, 0) != 0)
    throw NotFound("deployment '" + name + "' not found; this key's deployments are " + prefix + "<id>");
  return find(account, name.substr(prefix.size()));
}

json Deployments::get(const std::string& account, const std::string& id) const {
  std::lock_guard lock(mu_);
  return to_json(find(account, id));
}

json Deployments::list(const std::string& account) const {
  std::lock_guard lock(mu_);
  json rows = json::array();
  for (const auto& [key, d] : deployments_)
    if (key.first == account) rows.push_back(to_json(d));
  return {{"deployments", rows}, {"totalSize", rows.size()}};
}

json Deployments::update(const std::string& account, const std::string& id, const json& body, const std::string& mask) {
  if (!body.is_object()) throw InvalidRequest("body: expected a JSON object");
  std::lock_guard lock(mu_);
  Deployment& d = find(account, id);
  std::vector<std::string> keys;
  if (mask.empty()) {
    for (const auto& [k, v] : body.items()) keys.push_back(k);
  } else {
    for (size_t at = 0; at <= mask.size();) {
      const size_t comma = std::min(mask.find(',', at), mask.size());
      std::string k = mask.substr(at, comma - at);
      // snake_case masks (hot_load_trainer_job) name the camelCase body keys
      for (size_t u; (u = k.find('_')) != std::string::npos && u + 1 < k.size();) k = k.substr(0, u) + char(std::toupper(k[u + 1])) + k.substr(u + 2);
      if (!k.empty()) keys.push_back(k);
      at = comma + 1;
    }
  }
  Deployment next = d;
  for (const auto& k : keys) {
    if (k == "baseModel") throw InvalidRequest("baseModel: a deployment's base model cannot change; create another deployment");
    if (!body.contains(k)) throw InvalidRequest("updateMask: names '" + k + "', which the body does not carry");
    next.body[k] = body[k];
    if (k == "minReplicaCount") next.min_replicas = int_field(body, "minReplicaCount", 0);
    if (k == "maxReplicaCount") next.max_replicas = int_field(body, "maxReplicaCount", 1);
    if (k == "hotLoadTrainerJob") next.hot_load_trainer_job = body[k].is_null() ? "" : job_of(account, body[k]);
    if (k == "enableHotLoad") next.enable_hot_load = body[k].is_boolean() && body[k].get<bool>();
  }
  if (next.max_replicas < next.min_replicas) throw InvalidRequest("maxReplicaCount: below minReplicaCount");
  next.updated = clock_->now();
  d = std::move(next);
  persist();
  return to_json(d);
}

void Deployments::remove(const std::string& account, const std::string& id) {
  std::lock_guard lock(mu_);
  find(account, id);
  deployments_.erase({account, id});
  persist();
}

json Deployments::hot_load(const std::string& account, const std::string& deployment, const std::string& model,
                           const json& body, const std::function<Snapshot(const Deployment&, const std::string&)>& resolve) {
  if (!body.is_object() || !body.contains("identity") || !body["identity"].is_string() || body["identity"].get<std::string>().empty())
    throw InvalidRequest("identity: required (the snapshot name save_weights_for_sampler returned)");
  const std::string identity = body["identity"];
  Deployment copy;
  {
    std::lock_guard lock(mu_);
    copy = by_name(account, deployment);
  }
  if (!copy.enable_hot_load) throw InvalidRequest("deployment " + copy.name() + " was not created with enableHotLoad: true");
  if (!model.empty() && registry_.weights_owner(model) != registry_.weights_owner(copy.base_model))
    throw InvalidRequest("fireworks-model: '" + model + "' is not deployment " + copy.name() + "'s base model '" +
                         copy.base_model + "'");
  const Snapshot snap = resolve(copy, identity);  // reads files: outside the lock
  if (registry_.weights_owner(snap.base_model) != registry_.weights_owner(copy.base_model))
    throw InvalidRequest("identity: snapshot '" + identity + "' was trained from " + snap.base_model + "; deployment " +
                         copy.name() + " serves " + copy.base_model);
  const json meta = body.value("incremental_snapshot_metadata", json());
  std::lock_guard lock(mu_);
  Deployment& d = by_name(account, deployment);
  const auto refuse = [&](const std::string& why) {
    d.error = why;
    d.error_target = identity;
    throw InvalidRequest(why);
  };
  if (!meta.is_null()) {
    if (!meta.is_object() || !meta.contains("previous_snapshot_identity") || !meta["previous_snapshot_identity"].is_string())
      throw InvalidRequest("incremental_snapshot_metadata.previous_snapshot_identity: required for a delta hot-load");
    if (meta.contains("compression_format") && meta["compression_format"] != "arc_v2")
      throw InvalidRequest("incremental_snapshot_metadata.compression_format: Kiln reads arc_v2 deltas, got " +
                           meta["compression_format"].dump());
    const std::string previous = meta["previous_snapshot_identity"];
    if (!snap.delta)
      refuse("incremental hot-load of '" + identity + "': the snapshot is not a delta (a base save); load it without "
             "incremental_snapshot_metadata");
    if (previous != d.current_identity)
      refuse("incremental hot-load of '" + identity + "' expects the deployment to hold '" + previous + "', but it holds " +
             (d.current_identity.empty() ? std::string("no snapshot") : "'" + d.current_identity + "'") +
             "; hot-load a base snapshot first");
    if (snap.delta_anchor != d.base_identity)
      refuse("delta snapshot '" + identity + "' applies to base '" + snap.delta_anchor + "', but the deployment's base is " +
             (d.base_identity.empty() ? std::string("none") : "'" + d.base_identity + "'") + "; hot-load that base first");
  }
  d.error.clear();
  d.error_target.clear();
  d.weights = snap.weights;
  d.current_identity = identity;
  if (!snap.delta) d.base_identity = identity;
  d.loading_identity = identity;
  d.ready_at = clock_->now() + std::chrono::duration_cast<TimePoint::duration>(std::chrono::duration<double>(opts_.hotload_seconds));
  return {{"identity", identity}, {"replicas", {replica_json(d)}}};
}

json Deployments::hot_load_status(const std::string& account, const std::string& deployment) const {
  std::lock_guard lock(mu_);
  const Deployment& d = const_cast<Deployments*>(this)->by_name(account, deployment);
  const json r = replica_json(d);
  if (r["loading_state"]["stage"] == "loading")
    throw TooEarly("deployment " + d.name() + " is still hot-loading '" + d.loading_identity + "'");
  return {{"replicas", {r}}};
}

std::pair<std::shared_ptr<const model::Transformer<float>>, std::string> Deployments::serving(const std::string& account,
                                                                                              const std::string& deployment) const {
  std::lock_guard lock(mu_);
  const Deployment& d = const_cast<Deployments*>(this)->by_name(account, deployment);
  if (d.weights && clock_->now() < d.ready_at)
    throw TooEarly("deployment " + d.name() + " is still hot-loading '" + d.loading_identity + "'; retry");
  return {d.weights, d.base_model};  // no snapshot yet: the base model
}

std::vector<std::string> Deployments::ids(const std::string& account) const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [key, d] : deployments_)
    if (key.first == account) out.push_back(d.id);
  return out;
}

void Deployments::reset(const std::string& account) {
  std::lock_guard lock(mu_);
  std::erase_if(deployments_, [&](const auto& kv) { return account.empty() || kv.first.first == account; });
  persist();
}

void Deployments::persist() const {
  if (opts_.file.empty()) return;
  json doc = json::array();
  for (const auto& [key, d] : deployments_)
    doc.push_back({{"account", d.account}, {"id", d.id}, {"body", d.body}, {"base_model", d.base_model},
                   {"hot_load_trainer_job", d.hot_load_trainer_job}, {"enable_hot_load", d.enable_hot_load},
                   {"min_replicas", d.min_replicas}, {"max_replicas", d.max_replicas},
                   {"created_s", to_unix_seconds(d.created)},
                   {"updated_s", to_unix_seconds(d.updated)}});
  write_state_file(opts_.file, doc);
}

void Deployments::restore() {
  if (opts_.file.empty()) return;
  const json doc = read_state_file(opts_.file, "deployments");
  const auto at = [](double s) {
    return TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::duration<double>(s)));
  };
  for (const auto& r : doc) {
    Deployment d;
    d.account = r.at("account");
    d.id = r.at("id");
    d.body = r.at("body");
    d.base_model = r.at("base_model");
    d.hot_load_trainer_job = r.at("hot_load_trainer_job");
    d.enable_hot_load = r.at("enable_hot_load");
    d.min_replicas = r.at("min_replicas");
    d.max_replicas = r.at("max_replicas");
    d.created = at(r.at("created_s"));
    d.updated = at(r.at("updated_s"));
    deployments_[{d.account, d.id}] = std::move(d);
  }
}

}  // namespace kiln::service
