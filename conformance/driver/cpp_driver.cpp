// The conformance driver for Kiln's C++ client (conformance/DRIVER.md): JSON lines in on stdin,
// one JSON line out per request on stdout.
#include <cmath>
#include <iostream>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "client/errors.hpp"
#include "client/service_client.hpp"
#include "conformance/custom_losses.hpp"
#include "conformance/driver/mutants.hpp"

using nlohmann::json;
using namespace kiln::client;
using kiln::conformance::CustomLossValue;
using kiln::conformance::evaluate_custom_loss;

namespace {

struct BadRequest : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct NotImplemented : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const json& arg(const json& args, const char* key) {
  if (!args.contains(key)) throw BadRequest(std::string("missing args field '") + key + "'");
  return args[key];
}

std::vector<Datum> data_of(const json& args) {
  std::vector<Datum> out;
  for (const auto& d : arg(args, "data")) {
    Datum datum;
    datum.model_input = d.at("model_input").get<std::vector<int64_t>>();
    const json inputs = d.value("loss_fn_inputs", json::object());  // named: items() must not outlive it
    for (const auto& [k, v] : inputs.items()) datum.loss_fn_inputs[k] = v.get<TensorData>();
    out.push_back(std::move(datum));
  }
  return out;
}

json output_json(const ForwardBackwardOutput& o) {
  json outs = json::array();
  for (const auto& fields : o.loss_fn_outputs) {
    json f = json::object();
    for (const auto& [k, v] : fields) f[k] = v;
    outs.push_back(f);
  }
  return {{"loss_fn_output_type", o.loss_fn_output_type}, {"loss_fn_outputs", outs}, {"metrics", o.metrics}};
}

AdamParams adam_of(const json& a) {
  AdamParams p;
  p.learning_rate = a.value("learning_rate", p.learning_rate);
  p.beta1 = a.value("beta1", p.beta1);
  p.beta2 = a.value("beta2", p.beta2);
  p.eps = a.value("eps", p.eps);
  p.weight_decay = a.value("weight_decay", p.weight_decay);
  p.grad_clip_norm = a.value("grad_clip_norm", p.grad_clip_norm);
  return p;
}

// DRIVER.md's sampling_params: stop is a list of token ids or of strings.
SamplingParams sampling_params_of(const json& j) {
  SamplingParams p;
  if (j.contains("max_tokens") && !j["max_tokens"].is_null()) p.max_tokens = j["max_tokens"].get<int64_t>();
  if (j.contains("seed") && !j["seed"].is_null()) p.seed = j["seed"].get<int64_t>();
  p.temperature = j.value("temperature", p.temperature);
  p.top_k = j.value("top_k", p.top_k);
  p.top_p = j.value("top_p", p.top_p);
  for (const auto& s : j.value("stop", json::array())) {
    if (s.is_string()) p.stop_strings.push_back(s);
    else p.stop_tokens.push_back(s.get<int64_t>());
  }
  return p;
}

GradAccNormalization normalization_of(const json& args) {
  const std::string n = args.value("grad_accumulation_normalization", "");
  if (n.empty()) return GradAccNormalization::unset;
  if (n == "num_loss_tokens") return GradAccNormalization::num_loss_tokens;
  if (n == "num_sequences") return GradAccNormalization::num_sequences;
  if (n == "none") return GradAccNormalization::none;
  throw ClientError("Unknown grad_accumulation_normalization '" + n + "'; expected one of: num_loss_tokens, num_sequences, none");
}

// The named custom losses of DRIVER.md. The mutant custom_loss_wrong_sign hands the client the
// negated gradient, so the weights it sends are +dL/dlp.
CustomLoss custom_loss(const std::string& name, bool wrong_sign) {
  if (name != "neg_logprob_sum" && name != "logprob_squared" && name != "dpo_margin")
    throw BadRequest("unknown custom loss '" + name + "'");
  return [name, wrong_sign](const std::vector<Datum>& data, const std::vector<std::vector<double>>& lp) {
    std::vector<std::vector<double>> weights;
    for (const auto& d : data) {
      auto w = d.loss_fn_inputs.find("weights");
      weights.push_back(w == d.loss_fn_inputs.end() ? std::vector<double>{} : w->second.data);
    }
    CustomLossValue v;
    try {
      v = evaluate_custom_loss(name, weights, lp);
    } catch (const std::invalid_argument& e) {
      throw ClientError(e.what());
    }
    CustomLossOutput o;
    o.loss = v.loss;
    o.grads = std::move(v.grads);
    if (wrong_sign)
      for (auto& g : o.grads)
        for (double& x : g) x = -x;
    o.metrics["custom_loss"] = v.loss;
    return o;
  };
}

class Driver {
 public:
  explicit Driver(std::string mutant) : mutant_(std::move(mutant)) {}

  json handle(const std::string& op, const json& args) {
    if (op == "describe") return {{"name", "kiln-cpp-client"}, {"version", KILN_VERSION}, {"lacks", json::array()}};
    if (op == "create_service") {
      ClientOptions o;
      const json opt = args.value("options", json::object());
      o.wire_format = opt.value("wire_format", o.wire_format);
      o.max_chunk_datums = opt.value("max_chunk_datums", o.max_chunk_datums);
      if (mutant_ == "no_chunking") o.max_chunk_datums = o.max_chunk_bytes = size_t{1} << 40;
      o.retry.initial_delay_seconds = opt.value("retry_initial_delay_seconds", o.retry.initial_delay_seconds);
      o.retry.budget_seconds = opt.value("retry_budget_seconds", o.retry.budget_seconds);
      o.heartbeat_seconds = opt.value("heartbeat_seconds", o.heartbeat_seconds);
      auto transport = kiln::conformance::mutant_transport(mutant_, http_transport(arg(args, "base_url").get<std::string>()));
      auto s = std::make_shared<ServiceClient>(transport, arg(args, "api_key").get<std::string>(), o);
      const std::string h = "s" + std::to_string(services_.size() + 1);
      services_[h] = s;
      return {{"service", h}, {"session_id", s->session_id()}};
    }
    if (op == "create_training_client" || op == "create_base_training_client" || op == "create_training_client_from_state") {
      ServiceClient& s = service(args);
      auto tc = op == "create_base_training_client"
                    ? s.create_base_training_client(arg(args, "base_model"))
                : op == "create_training_client_from_state"
                    ? (args.value("with_optimizer", false) ? s.create_training_client_from_state_with_optimizer(arg(args, "path"))
                                                           : s.create_training_client_from_state(arg(args, "path")))
                    : lora_client(s, args);
      const std::string h = "t" + std::to_string(clients_.size() + 1);
      clients_.emplace(h, tc);
      last_base_model_ = tc.base_model();
      return {{"client", h}, {"model_id", tc.model_id()}};
    }
    if (op == "resolve_checkpoint_path") {
      const std::string name = arg(args, "name"), job = args.value("source_job_id", "");
      if (mutant_ == "resolve_no_strip" && !job.empty() && job.find_first_not_of(' ') != std::string::npos &&
          name.rfind("gs://", 0) != 0 && name.rfind('/', 0) != 0 && name.find_first_not_of(' ') != std::string::npos)
        return {{"path", "cross_job://" + job + "/" + name}};
      return {{"path", TrainingClient::resolve_checkpoint_path(name, job)}};
    }
    if (op == "delete_checkpoint") {
      if (mutant_ == "delete_ignored") return json::object();  // answers as if it deleted
      service(args).delete_checkpoint(arg(args, "path"));
      return json::object();
    }
    if (op == "create_sampling_client") {
      ServiceClient& s = service(args);
      std::string path = args.value("path", ""), base = args.value("base_model", "");
      if (mutant_ == "sampler_on_base_weights" && !path.empty()) path.clear(), base = last_base_model_;
      const std::string h = "p" + std::to_string(samplers_.size() + 1);
      samplers_.emplace(h, s.create_sampling_client(path, base));
      return {{"sampler", h}};
    }
    if (op == "sample") {
      const auto out = sampler(args)
                           .sample(arg(args, "prompt").get<std::vector<int64_t>>(), args.value("num_samples", int64_t{1}),
                                   sampling_params_of(args.value("sampling_params", json::object())))
                           .result();
      json seqs = json::array();
      for (const auto& q : out.sequences)
        seqs.push_back({{"tokens", q.tokens}, {"logprobs", q.logprobs}, {"stop_reason", q.stop_reason}});
      return {{"sequences", seqs}};
    }
    if (op == "compute_logprobs") {
      auto lp = sampler(args).compute_logprobs(arg(args, "prompt").get<std::vector<int64_t>>()).result();
      if (mutant_ == "prompt_logprobs_unshifted" && !lp.empty()) lp.erase(lp.begin()), lp.push_back(std::nullopt);
      json out = json::array();
      for (const auto& x : lp) out.push_back(x ? json(*x) : json());
      return {{"logprobs", out}};
    }
    if (op == "await") {
      auto it = futures_.find(arg(args, "future"));
      if (it == futures_.end()) throw BadRequest("unknown future handle");
      auto f = it->second;
      futures_.erase(it);
      return f();
    }
    if (op == "close") return json::object();
    TrainingClient& tc = client(args);
    const json config = args.value("loss_fn_config", json::object());
    if (op == "forward") return output_json(tc.forward(data_of(args), args.value("loss_fn", "cross_entropy"), config).result());
    if (op == "forward_backward") return output_json(tc.forward_backward(data_of(args), arg(args, "loss_fn"), config).result());
    if (op == "submit_forward_backward") {
      auto f = tc.forward_backward(data_of(args), arg(args, "loss_fn"), config);
      return add_future([f] { return output_json(f.result()); });
    }
    if (op == "forward_backward_custom")
      return output_json(tc.forward_backward_custom(data_of(args), custom_loss(arg(args, "loss"), mutant_ == "custom_loss_wrong_sign")).result());
    if (op == "optim_step" || op == "submit_optim_step") {
      auto f = tc.optim_step(adam_of(args.value("adam_params", json::object())), normalization_of(args));
      auto get = [f] { return json{{"metrics", f.result().metrics}}; };
      return op == "optim_step" ? get() : add_future(get);
    }
    if (op == "save_state") {
      std::optional<int64_t> ttl;
      if (args.contains("ttl_seconds") && !args["ttl_seconds"].is_null()) ttl = args["ttl_seconds"].get<int64_t>();
      return {{"path", tc.save_state(arg(args, "name"), ttl).result().path}};
    }
    if (op == "load_state") return {{"path", tc.load_state(arg(args, "path")).result().path}};
    if (op == "load_state_with_optimizer") return {{"path", tc.load_state_with_optimizer(arg(args, "path")).result().path}};
    if (op == "save_weights_for_sampler") {
      std::optional<int64_t> ttl;
      if (args.contains("ttl_seconds") && !args["ttl_seconds"].is_null()) ttl = args["ttl_seconds"].get<int64_t>();
      return {{"path", tc.save_weights_for_sampler(arg(args, "name"), ttl).result().path}};
    }
    if (op == "save_weights_for_sampler_ext") {
      std::optional<int64_t> ttl;
      if (args.contains("ttl_seconds") && !args["ttl_seconds"].is_null()) ttl = args["ttl_seconds"].get<int64_t>();
      const auto r = tc.save_weights_for_sampler_ext(arg(args, "name"), args.value("checkpoint_type", ""), ttl);
      return {{"path", r.path}, {"snapshot_name", r.snapshot_name}};
    }
    if (op == "list_checkpoints") return {{"checkpoints", tc.list_checkpoints()}};
    if (op == "get_info") {
      const auto i = tc.get_info();
      return {{"model_id", i.model_id}, {"is_lora", i.is_lora}, {"lora_rank", i.lora_rank}};
    }
    throw NotImplemented("operation '" + op + "' is not implemented by this driver");
  }

 private:
  TrainingClient lora_client(ServiceClient& s, const json& args) {
    const json l = args.value("lora", json::object());
    LoraOptions o;
    o.rank = arg(args, "lora_rank").get<int64_t>();
    o.alpha = l.value("alpha", o.alpha);
    if (l.contains("seed")) o.seed = l["seed"].get<int64_t>();
    o.train_mlp = l.value("train_mlp", true);
    o.train_attn = l.value("train_attn", true);
    o.train_unembed = l.value("train_unembed", true);
    return s.create_lora_training_client(arg(args, "base_model"), o,
                                         args.value("user_metadata", std::map<std::string, std::string>{}));
  }
  ServiceClient& service(const json& args) {
    auto it = services_.find(arg(args, "service"));
    if (it == services_.end()) throw BadRequest("unknown service handle");
    return *it->second;
  }
  SamplingClient& sampler(const json& args) {
    auto it = samplers_.find(arg(args, "sampler"));
    if (it == samplers_.end()) throw BadRequest("unknown sampler handle");
    return it->second;
  }
  TrainingClient& client(const json& args) {
    auto it = clients_.find(arg(args, "client"));
    if (it == clients_.end()) throw BadRequest("unknown client handle");
    return it->second;
  }
  json add_future(std::function<json()> f) {
    const std::string h = "f" + std::to_string(++future_count_);
    futures_[h] = std::move(f);
    return {{"future", h}};
  }

  std::string mutant_;  // "" for the correct client
  std::map<std::string, std::shared_ptr<ServiceClient>> services_;
  std::map<std::string, TrainingClient> clients_;
  std::map<std::string, SamplingClient> samplers_;
  std::string last_base_model_;  // of the newest training client (the mutant sampler_on_base_weights samples it)
  std::map<std::string, std::function<json()>> futures_;
  int future_count_ = 0;
};

json error(const std::string& kind, const std::string& message) { return {{"kind", kind}, {"message", message}}; }

}  // namespace

// kiln_cpp_driver [--mutant NAME]: with a mutant, the client has that bug (driver/mutants.hpp).
int main(int argc, char** argv) {
  std::string mutant;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--mutant" && i + 1 < argc) {
      mutant = argv[++i];
    } else {
      std::cerr << "usage: kiln_cpp_driver [--mutant NAME]\n";
      return 2;
    }
  }
  try {
    kiln::conformance::mutant_transport(mutant, nullptr);
  } catch (const std::invalid_argument& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
  Driver driver(mutant);
  for (std::string line; std::getline(std::cin, line);) {
    if (line.empty()) continue;
    json response = {{"id", nullptr}};
    bool closing = false;
    try {
      const json req = json::parse(line);
      response["id"] = req.value("id", json());
      const std::string op = req.at("op");
      closing = op == "close";
      response["result"] = driver.handle(op, req.value("args", json::object()));
      response["ok"] = true;
    } catch (const RequestFailedError& e) {
      response["ok"] = false;
      response["error"] = error("request_failed", e.what());
      response["error"]["category"] = e.category();
    } catch (const ApiError& e) {
      response["ok"] = false;
      response["error"] = error("api_error", e.what());
      response["error"]["status"] = e.status();
    } catch (const PromiseExpiredError& e) {
      response["ok"] = false;
      response["error"] = error("promise_expired", e.what());
    } catch (const ClientError& e) {
      response["ok"] = false;
      response["error"] = error("invalid_argument", e.what());
    } catch (const NotImplemented& e) {
      response["ok"] = false;
      response["error"] = error("not_implemented", e.what());
    } catch (const BadRequest& e) {
      response["ok"] = false;
      response["error"] = error("bad_request", e.what());
    } catch (const json::exception& e) {
      response["ok"] = false;
      response["error"] = error("bad_request", e.what());
    } catch (const std::exception& e) {
      response["ok"] = false;
      response["error"] = error("internal", e.what());
    }
    std::cout << response.dump() << std::endl;
    if (closing) return 0;
  }
  return 0;
}
