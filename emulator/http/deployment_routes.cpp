// Fireworks deployments (protocol.md §W13.6): CRUD, the hot-load API that loads a trainer's
// sampler snapshots, and the deployment's completions route (§W13.7).
#include <chrono>
#include <random>

#include "http/completions.hpp"
#include "http/completion_ids.hpp"
#include "http/routes.hpp"
#include "http/server.hpp"

namespace kiln::http {

namespace {

constexpr const char* kDeployments = R"(/v1/accounts/([^/:]+)/deployments)";
constexpr const char* kDeployment = R"(/v1/accounts/([^/:]+)/deployments/([^/:]+))";

std::string last_segment(const std::string& name) { return name.substr(name.rfind('/') + 1); }

}  // namespace

// A model a deployment or a completion may name: a registered base model, or a promoted model
// of the caller's account. nullptr when neither.
std::shared_ptr<const model::Transformer<float>> HttpServer::model_weights(const std::string& account, const std::string& name) {
  if (svc_.registry().find(name)) return svc_.base_weights(name);
  if (const auto rec = svc_.promoted_by_name(account, name)) return svc_.checkpoint_weights(*rec);
  return nullptr;
}

model::StandInTokenizer HttpServer::tokenizer_for(const std::string& account, const std::string& model_name) {
  std::string base = model_name;
  if (const auto rec = svc_.promoted_by_name(account, model_name)) base = rec->base_model;
  const auto* entry = svc_.registry().find(base);
  const std::string family = entry ? entry->family : "unregistered";
  if (auto tok = model::StandInTokenizer::for_family(family)) return *tok;
  return model::StandInTokenizer::opaque(family);
}

void HttpServer::register_deployment_routes() {
  route("POST", kDeployments, [this](auto& req, auto& res, auto& key) {
    const std::string account = req.matches[1];
    check_account(key, account);
    if (!req.has_param("deploymentId")) throw InvalidRequest("deploymentId: required (query parameter)");
    const auto job_check = [&](const std::string& job) {
      const auto j = svc_.jobs().find(account, job);
      return service::Deployments::JobCheck{j && !j->deleted, j ? j->hot_load_deployment_id : ""};
    };
    const auto model_known = [&](const std::string& m) {
      return svc_.registry().find(m) != nullptr || svc_.promoted_by_name(account, m).has_value();
    };
    send_json(res, 200, svc_.deployments().create(account, req.get_param_value("deploymentId"), body_json(req), job_check, model_known));
  });
  route("GET", kDeployments, [this](auto& req, auto& res, auto& key) {
    check_account(key, req.matches[1]);
    send_json(res, 200, svc_.deployments().list(req.matches[1]));
  });
  route("GET", kDeployment, [this](auto& req, auto& res, auto& key) {
    check_account(key, req.matches[1]);
    send_json(res, 200, svc_.deployments().get(req.matches[1], req.matches[2]));
  });
  route("PATCH", kDeployment, [this](auto& req, auto& res, auto& key) {
    check_account(key, req.matches[1]);
    send_json(res, 200, svc_.deployments().update(req.matches[1], req.matches[2], body_json(req), req.get_param_value("updateMask")));
  });
  route("DELETE", kDeployment, [this](auto& req, auto& res, auto& key) {
    check_account(key, req.matches[1]);
    svc_.deployments().remove(req.matches[1], req.matches[2]);
    send_json(res, 200, json::object());
  });

  // The hot-load API: the deployment (fireworks-deployment header) loads a snapshot its trainer
  // saved. PER_TRAINER: the hotLoadTrainerJob's namespace; PER_DEPLOYMENT: the jobs created
  // with this deployment's id; then the key's default namespace.
  const auto resolver = [this](const std::string& account) {
    return [this, account](const service::Deployment& d, const std::string& identity) {
      std::vector<std::string> namespaces;
      if (!d.hot_load_trainer_job.empty()) {
        namespaces.push_back(service::job_tenant(account, d.hot_load_trainer_job));
      } else {
        for (const auto& id : svc_.jobs().ids(account))
          if (const auto j = svc_.jobs().find(account, id); j && !j->hot_load_deployment_id.empty() &&
                                                           last_segment(j->hot_load_deployment_id) == d.id)
            namespaces.push_back(service::job_tenant(account, id));
        namespaces.push_back(account);
      }
      return svc_.sampler_snapshot(namespaces, identity);
    };
  };
  route("POST", "/hot_load/v1/models/hot_load", [this, resolver](auto& req, auto& res, auto& key) {
    const std::string account = account_of(key), deployment = req.get_header_value("fireworks-deployment");
    if (deployment.empty()) throw InvalidRequest("fireworks-deployment: header required (accounts/<account>/deployments/<id>)");
    send_json(res, 200, svc_.deployments().hot_load(account, deployment, req.get_header_value("fireworks-model"),
                                                    body_json(req), resolver(account)));
  });
  route("GET", "/hot_load/v1/models/hot_load", [this](auto& req, auto& res, auto& key) {
    const std::string deployment = req.get_header_value("fireworks-deployment");
    if (deployment.empty()) throw InvalidRequest("fireworks-deployment: header required (accounts/<account>/deployments/<id>)");
    send_json(res, 200, svc_.deployments().hot_load_status(account_of(key), deployment));
  });

  // Completions on a deployment (model accounts/<a>/deployments/<d>, or <base>#<that>), on a
  // promoted model, or on a registered base model.
  route("POST", "/inference/v1/completions", [this](auto& req, auto& res, auto& key) {
    const CompletionRequest r = completion_request_from_json(body_json(req));
    std::shared_ptr<const model::Transformer<float>> weights;
    const size_t hash = r.model.find('#');
    const std::string target = hash == std::string::npos ? r.model : r.model.substr(hash + 1);
    std::string base = target;  // whose family's tokenizer gives the text
    if (target.find("/deployments/") != std::string::npos) {
      std::tie(weights, base) = svc_.deployments().serving(account_of(key), target);
      if (!weights) weights = model_weights(account_of(key), base);  // nothing hot-loaded yet: its base model
    } else if (!(weights = model_weights(account_of(key), target))) {
      throw NotFound("model '" + r.model + "' not found: expected accounts/<account>/deployments/<id>, a promoted "
                     "model accounts/<account>/models/<id>, or a base model");
    }
    const auto choices = run_completion(*weights, r);
    const int64_t created = static_cast<int64_t>(service::to_unix_seconds(svc_.clock().now()));
    const model::StandInTokenizer tok = tokenizer_for(account_of(key), base);
    if (!r.stream) {
      send_json(res, 200, completion_to_json(tok, r, choices, completion_id("cmpl-"), created));
      return;
    }
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_content(completion_to_sse(tok, r, choices, completion_id("cmpl-"), created), "text/event-stream");
  });
}

}  // namespace kiln::http
