#pragma once
// A training client for one model, named after the Fireworks / tinker SDKs' TrainingClient.
// Calls take turns: each request takes the next seq_id (from 1), and a call's requests are all
// submitted before the next call's (protocol.md §S9.2); the chunks of one forward_backward go
// 2..n at once, then 1, in parallel mode (§W4.2). Results are polled concurrently and come back
// as Futures.
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "client/connection.hpp"
#include "client/future.hpp"
#include "client/types.hpp"

namespace kiln::client {

// What a forward_backward_custom callback returns: the loss, dloss/dlogprob per datum (shaped
// like the datum's logprobs) and metrics (any key format).
struct CustomLossOutput {
  double loss = 0;
  std::vector<std::vector<double>> grads;
  std::map<std::string, double> metrics;
};
using CustomLoss = std::function<CustomLossOutput(const std::vector<Datum>& data,
                                                  const std::vector<std::vector<double>>& logprobs)>;

class TrainingClient {
 public:
  TrainingClient(std::shared_ptr<Connection> conn, std::string model_id, std::string base_model);

  const std::string& model_id() const { return model_id_; }
  const std::string& base_model() const { return base_model_; }
  // The 8-hex suffix that makes this client's sampler names unique (protocol.md §S7.4).
  const std::string& sampler_suffix() const { return suffix_; }

  Future<ForwardBackwardOutput> forward(const std::vector<Datum>& data, const std::string& loss_fn = "cross_entropy",
                                        const json& loss_fn_config = json::object());
  // For cross_entropy, metrics["response_tokens"] is added after the merge (protocol.md §S9.6).
  Future<ForwardBackwardOutput> forward_backward(const std::vector<Datum>& data, const std::string& loss_fn,
                                                 const json& loss_fn_config = json::object());
  // Linearised custom loss: a forward, the callback, then cross_entropy with weights = -grad.
  Future<ForwardBackwardOutput> forward_backward_custom(const std::vector<Datum>& data, const CustomLoss& loss);
  Future<OptimStepResponse> optim_step(const AdamParams& adam,
                                       GradAccNormalization normalization = GradAccNormalization::unset);
  Future<SaveResponse> save_state(const std::string& name, std::optional<int64_t> ttl_seconds = std::nullopt);
  Future<LoadResponse> load_state(const std::string& path);
  Future<LoadResponse> load_state_with_optimizer(const std::string& path);
  // unload_model: the server frees the model; later requests on it fail.
  Future<UnloadResponse> unload();
  // Blocks; sends "<name>-<suffix>" and returns {path, snapshot_name}.
  SaveSamplerResult save_weights_for_sampler_ext(const std::string& name, const std::string& checkpoint_type = "",
                                                 std::optional<int64_t> ttl_seconds = std::nullopt);
  // The same, as an already-resolved future.
  Future<SaveSamplerResult> save_weights_for_sampler(const std::string& name,
                                                     std::optional<int64_t> ttl_seconds = std::nullopt,
                                                     const std::string& checkpoint_type = "");
  // The names of the training-state checkpoints this trainer can load; [] on any error.
  std::vector<std::string> list_checkpoints();
  static std::string resolve_checkpoint_path(const std::string& checkpoint_name, const std::string& source_job_id = "");
  ModelInfo get_info();

 private:
  // Submits one request under the next seq_id and returns its request id.
  std::string submit(const std::string& path, json body);
  Future<LoadResponse> load(const std::string& path, bool optimizer);
  Future<ForwardBackwardOutput> run_chunks(const std::string& path, const std::vector<Datum>& data,
                                           const std::string& loss_fn, const json& config, bool forward_only);

  std::shared_ptr<Connection> conn_;
  std::string model_id_, base_model_, suffix_;
  // The seq_id counter; its mutex is held while submitting, so request c goes out after c-1's
  // submit returned. Shared by copies: a copy is the same training client.
  struct Turns {
    std::mutex mu;
    int64_t seq = 0;
  };
  std::shared_ptr<Turns> turns_ = std::make_shared<Turns>();
};

}  // namespace kiln::client
