#pragma once
// The entry point, named after the SDKs' ServiceClient / FiretitanServiceClient: one session on
// one server, from which training clients are created.
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <tuple>

#include "client/connection.hpp"
#include "client/sampling_client.hpp"
#include "client/training_client.hpp"

namespace kiln::client {

struct LoraOptions {
  int64_t rank = 32;
  double alpha = 32;
  std::optional<int64_t> seed;
  bool train_mlp = true, train_attn = true, train_unembed = true;
};

class ServiceClient {
 public:
  // Over HTTP to base_url (e.g. "http://127.0.0.1:8000").
  ServiceClient(const std::string& base_url, const std::string& api_key, ClientOptions options = {});
  // Over any transport (in_process_transport() for an embedded server).
  ServiceClient(std::shared_ptr<Transport> transport, const std::string& api_key, ClientOptions options = {});

  // Fireworks form: lora_rank 0 trains every parameter. A second client with the same
  // (base_model, LoRA settings) on this ServiceClient is refused with the SDK's text.
  TrainingClient create_training_client(const std::string& base_model, int64_t lora_rank = 0,
                                        const std::map<std::string, std::string>& user_metadata = {});
  TrainingClient create_lora_training_client(const std::string& base_model, const LoraOptions& lora = {},
                                             const std::map<std::string, std::string>& user_metadata = {});
  // A frozen model (forward only), e.g. the reference model of DPO / GRPO.
  TrainingClient create_base_training_client(const std::string& base_model,
                                             const std::map<std::string, std::string>& user_metadata = {});
  // weights_info, create_model with the checkpoint's LoRA layout, then load_weights (seq_id 1).
  TrainingClient create_training_client_from_state(const std::string& path);
  TrainingClient create_training_client_from_state_with_optimizer(const std::string& path);

  // A sampling session on a sampler checkpoint (`tinker://…/sampler_weights/…`), or on a base
  // model when model_path is empty.
  SamplingClient create_sampling_client(const std::string& model_path, const std::string& base_model = "");
  // The REST client's delete_checkpoint_from_tinker_path: DELETE
  // /api/v1/training_runs/<run>/checkpoints/<kind>/<name>. Throws ClientError for a path that is
  // not tinker://<run>/<kind>/<name> ("Invalid tinker path: <path>", as the SDK), ApiError otherwise.
  void delete_checkpoint(const std::string& tinker_path);
  std::vector<std::string> supported_models();
  const std::string& session_id() const { return conn_->session_id(); }
  Connection& connection() { return *conn_; }

 private:
  TrainingClient create(const std::string& base_model, const json& lora_config, bool base_only,
                        const std::map<std::string, std::string>& user_metadata);
  TrainingClient from_state(const std::string& path, bool optimizer);

  std::shared_ptr<Connection> conn_;
  std::mutex mu_;
  std::set<std::string> created_;  // keys of the training clients made here
};

}  // namespace kiln::client
