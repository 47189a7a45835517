#include "client/training_client.hpp"

#include <algorithm>
#include <random>

#include "client/chunking.hpp"
#include "client/errors.hpp"
#include "client/proto_codec.hpp"

namespace kiln::client {

namespace {

std::string random_hex8() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lock(mu);
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", static_cast<unsigned>(rng() & 0xffffffffu));
  return buf;
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\n\r"), b = s.find_last_not_of(" \t\n\r");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

}  // namespace

TrainingClient::TrainingClient(std::shared_ptr<Connection> conn, std::string model_id, std::string base_model)
    : conn_(std::move(conn)), model_id_(std::move(model_id)), base_model_(std::move(base_model)), suffix_(random_hex8()) {}

std::string TrainingClient::submit(const std::string& path, json body) {
  std::lock_guard turn(turns_->mu);
  body["model_id"] = model_id_;
  body["seq_id"] = ++turns_->seq;
  return conn_->call("POST", path, body).at("request_id");
}

Future<ForwardBackwardOutput> TrainingClient::run_chunks(const std::string& path, const std::vector<Datum>& data,
                                                         const std::string& loss_fn, const json& config,
                                                         bool forward_only) {
  if (data.empty()) throw ClientError("No data provided");
  const auto& o = conn_->options();
  const auto plan = plan_chunks(data, o.max_chunk_datums, o.max_chunk_bytes);
  const bool proto = o.wire_format == "protobuf";
  std::vector<std::string> ids(plan.size());
  {
    std::lock_guard turn(turns_->mu);  // every chunk of the call takes consecutive seq_ids
    const int64_t first_seq = turns_->seq + 1;
    turns_->seq += static_cast<int64_t>(plan.size());
    auto send = [&](size_t c) {
      const int64_t seq = first_seq + static_cast<int64_t>(c);
      if (proto) {  // tinker 0.25: forward is forward_backward with forward_only
        const std::vector<Datum> part(data.begin() + static_cast<long>(plan[c].first), data.begin() + static_cast<long>(plan[c].second));
        std::string body = forward_request_to_proto(model_id_, seq, part, loss_fn, config, forward_only);
        Headers h = {{"Content-Type", "application/x-protobuf"}};
        if (o.zstd) {
          body = zstd_compress(body);
          h.emplace_back("Content-Encoding", "zstd");
        }
        ids[c] = conn_->call_raw("POST", "/api/v1/forward_backward", body, h).at("request_id");
        return;
      }
      json items = json::array();
      for (size_t i = plan[c].first; i < plan[c].second; ++i) items.push_back(data[i]);
      json body = {{forward_only ? "forward_input" : "forward_backward_input",
                    {{"data", items}, {"loss_fn", loss_fn}, {"loss_fn_config", config}}},
                   {"model_id", model_id_}, {"seq_id", seq}};  // no "type" key here (protocol.md §W6.12)
      ids[c] = conn_->call("POST", path, body).at("request_id");
    };
    if (o.parallel_chunks && plan.size() > 1) {  // chunks 2..n at once, then chunk 1
      std::vector<std::future<void>> rest;
      for (size_t c = 1; c < plan.size(); ++c) rest.push_back(std::async(std::launch::async, send, c));
      for (auto& f : rest) f.get();
      send(0);
    } else {
      for (size_t c = 0; c < plan.size(); ++c) send(c);
    }
  }
  auto conn = conn_;
  return Future<ForwardBackwardOutput>::start([conn, ids, proto] {
    std::vector<ForwardBackwardOutput> outs;
    for (const auto& id : ids)
      outs.push_back(proto ? forward_output_from_proto(conn->poll_protobuf(id, "ForwardBackwardOutput"))
                           : conn->poll(id, "ForwardBackwardOutput").get<ForwardBackwardOutput>());
    return merge_chunks(outs);
  });
}

Future<ForwardBackwardOutput> TrainingClient::forward(const std::vector<Datum>& data, const std::string& loss_fn,
                                                      const json& loss_fn_config) {
  return run_chunks("/api/v1/forward", data, loss_fn, loss_fn_config, true);
}

Future<ForwardBackwardOutput> TrainingClient::forward_backward(const std::vector<Datum>& data, const std::string& loss_fn,
                                                               const json& loss_fn_config) {
  auto f = run_chunks("/api/v1/forward_backward", data, loss_fn, loss_fn_config, false);
  if (loss_fn != "cross_entropy") return f;
  // response_tokens: non-zero weights per datum, or the number of targets without weights.
  double tokens = 0;
  for (const auto& d : data) {
    if (auto w = d.loss_fn_inputs.find("weights"); w != d.loss_fn_inputs.end())
      tokens += static_cast<double>(std::count_if(w->second.data.begin(), w->second.data.end(), [](double x) { return x != 0; }));
    else if (auto t = d.loss_fn_inputs.find("target_tokens"); t != d.loss_fn_inputs.end())
      tokens += static_cast<double>(t->second.numel());
  }
  return Future<ForwardBackwardOutput>::start([f, tokens] {
    auto out = f.result();
    out.metrics.try_emplace("response_tokens", tokens);
    return out;
  });
}

Future<ForwardBackwardOutput> TrainingClient::forward_backward_custom(const std::vector<Datum>& data, const CustomLoss& loss) {
  std::vector<Datum> prepared = data;
  for (auto& d : prepared) {
    auto t = d.loss_fn_inputs.find("target_tokens");
    if (t == d.loss_fn_inputs.end()) throw ClientError("target_tokens must be provided when using cross_entropy");
    std::vector<std::string> unexpected;
    for (const auto& [k, v] : d.loss_fn_inputs)
      if (k != "target_tokens" && k != "weights") unexpected.push_back("'" + k + "'");
    if (!unexpected.empty()) {
      std::string list;
      for (const auto& u : unexpected) list += (list.empty() ? "" : ", ") + u;
      throw ClientError("forward_backward_custom only supports loss_fn_inputs keys {'target_tokens', 'weights'}; found "
                        "unexpected keys: [" + list + "]");
    }
    if (!d.loss_fn_inputs.count("weights")) {
      TensorData w = TensorData::floats(std::vector<double>(t->second.numel(), 0.0));
      w.shape = t->second.shape;
      d.loss_fn_inputs["weights"] = w;
    }
  }
  const auto fwd = forward(prepared, "cross_entropy").result();  // the linearisation point
  std::vector<std::vector<double>> logprobs;
  for (const auto& o : fwd.loss_fn_outputs) logprobs.push_back(o.at("logprobs").data);
  const CustomLossOutput user = loss(data, logprobs);
  if (user.grads.size() != prepared.size()) throw ClientError("No gradient computed for logprob tensor");
  for (size_t i = 0; i < prepared.size(); ++i) {
    auto& w = prepared[i].loss_fn_inputs["weights"];
    if (user.grads[i].size() != w.data.size()) throw ClientError("No gradient computed for logprob tensor");
    for (size_t j = 0; j < w.data.size(); ++j) w.data[j] = -user.grads[i][j];
  }
  auto f = run_chunks("/api/v1/forward_backward", prepared, "cross_entropy", json::object(), false);
  return Future<ForwardBackwardOutput>::start([f, metrics = user.metrics] {
    auto out = f.result();
    for (const auto& [k, v] : metrics) out.metrics[k] = v;  // the user's keys win
    return out;
  });
}

Future<OptimStepResponse> TrainingClient::optim_step(const AdamParams& adam, GradAccNormalization normalization) {
  json body = {{"adam_params", adam}, {"type", "optim_step"}};
  if (normalization != GradAccNormalization::unset) body["grad_accumulation_normalization"] = normalization_name(normalization);
  const std::string rid = submit("/api/v1/optim_step", body);
  auto conn = conn_;
  return Future<OptimStepResponse>::start([conn, rid] {
    OptimStepResponse r;
    const json metrics = conn->poll(rid, "OptimStepResponse").value("metrics", json::object());
    for (const auto& [k, v] : metrics.items())
      if (v.is_number()) r.metrics[k] = v.get<double>();
    return r;
  });
}

Future<SaveResponse> TrainingClient::save_state(const std::string& name, std::optional<int64_t> ttl_seconds) {
  json body = {{"path", name}, {"overwrite", false}, {"type", "save_weights"}};  // overwrite: always sent (protocol.md §W6.14)
  if (ttl_seconds) body["ttl_seconds"] = *ttl_seconds;
  const std::string rid = submit("/api/v1/save_weights", body);
  auto conn = conn_;
  return Future<SaveResponse>::start([conn, rid] { return SaveResponse{conn->poll(rid, "SaveWeightsResponse").value("path", "")}; });
}

Future<LoadResponse> TrainingClient::load(const std::string& path, bool optimizer) {
  const std::string rid = submit("/api/v1/load_weights", {{"path", path}, {"optimizer", optimizer}, {"type", "load_weights"}});
  auto conn = conn_;
  return Future<LoadResponse>::start([conn, rid] { return LoadResponse{conn->poll(rid, "LoadWeightsResponse").value("path", "")}; });
}

Future<LoadResponse> TrainingClient::load_state(const std::string& path) { return load(path, false); }

Future<UnloadResponse> TrainingClient::unload() {
  const std::string rid = submit("/api/v1/unload_model", {{"type", "unload_model"}});
  auto conn = conn_;
  return Future<UnloadResponse>::start([conn, rid] { return UnloadResponse{conn->poll(rid, "UnloadModelResponse").value("model_id", "")}; });
}

Future<LoadResponse> TrainingClient::load_state_with_optimizer(const std::string& path) { return load(path, true); }

SaveSamplerResult TrainingClient::save_weights_for_sampler_ext(const std::string& name, const std::string& checkpoint_type,
                                                               std::optional<int64_t> ttl_seconds) {
  if (!checkpoint_type.empty() && checkpoint_type != "base" && checkpoint_type != "delta" && checkpoint_type != "merged_base")
    throw ClientError("checkpoint_type must be one of ('base', 'delta', 'merged_base')");
  const std::string snapshot = name + "-" + suffix_;
  json body = {{"path", snapshot}, {"type", "save_weights_for_sampler"}};
  if (!checkpoint_type.empty()) body["checkpoint_type"] = checkpoint_type;
  if (ttl_seconds) body["ttl_seconds"] = *ttl_seconds;
  const std::string rid = submit("/api/v1/save_weights_for_sampler", body);
  const json r = conn_->poll(rid, "SaveWeightsForSamplerResponse");
  if (!r.contains("path") || !r["path"].is_string()) throw ApiError(200, r.dump(), "save_weights_for_sampler returned no path");
  return {r["path"], snapshot};
}

Future<SaveSamplerResult> TrainingClient::save_weights_for_sampler(const std::string& name, std::optional<int64_t> ttl_seconds,
                                                                   const std::string& checkpoint_type) {
  return Future<SaveSamplerResult>::resolved(save_weights_for_sampler_ext(name, checkpoint_type, ttl_seconds));
}

std::vector<std::string> TrainingClient::list_checkpoints() {
  try {
    return conn_->call("GET", "/api/v1/list_checkpoints").value("checkpoints", std::vector<std::string>{});
  } catch (const std::exception&) {
    return {};  // as the Fireworks SDK: a failed listing means "start from scratch"
  }
}

std::string TrainingClient::resolve_checkpoint_path(const std::string& checkpoint_name, const std::string& source_job_id) {
  if (checkpoint_name.rfind("gs://", 0) == 0 || checkpoint_name.rfind('/', 0) == 0) return checkpoint_name;  // job or not
  if (source_job_id.empty()) return checkpoint_name;
  const std::string job = trim(source_job_id), name = trim(checkpoint_name);
  if (job.empty()) throw ClientError("source_job_id cannot be empty");
  if (name.empty()) throw ClientError("checkpoint_name cannot be empty");
  if (name.rfind("gs://", 0) == 0 || name.rfind('/', 0) == 0)  // " gs://…": a full path once stripped
    throw ClientError("checkpoint_name must be a logical checkpoint name, not a full path");
  return "cross_job://" + job + "/" + name;
}

ModelInfo TrainingClient::get_info() {
  const json j = conn_->call("POST", "/api/v1/get_info", {{"model_id", model_id_}, {"type", "get_info"}});
  ModelInfo info;
  info.model_id = j.value("model_id", model_id_);
  info.model_name = j.value("model_name", "");
  info.is_lora = j.value("is_lora", false);
  if (j.contains("lora_rank") && j["lora_rank"].is_number()) info.lora_rank = j["lora_rank"];
  return info;
}

}  // namespace kiln::client
