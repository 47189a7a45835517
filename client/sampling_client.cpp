#include "client/sampling_client.hpp"

#include "client/errors.hpp"

namespace kiln::client {

namespace {

json prompt_json(const std::vector<int64_t>& tokens) {
  return {{"chunks", json::array({{{"type", "encoded_text"}, {"tokens", tokens}}})}};
}

}  // namespace

SamplingClient::SamplingClient(std::shared_ptr<Connection> conn, std::string sampling_session_id)
    : conn_(std::move(conn)), id_(std::move(sampling_session_id)) {}

Future<SampleResponse> SamplingClient::sample(const std::vector<int64_t>& prompt, int64_t num_samples,
                                              const SamplingParams& params, bool include_prompt_logprobs,
                                              int64_t topk_prompt_logprobs) {
  if (prompt.empty()) throw ClientError("prompt must hold at least one token");
  if (num_samples < 1) throw ClientError("num_samples must be at least 1, got " + std::to_string(num_samples));
  const json body = {{"num_samples", num_samples},
                     {"prompt", prompt_json(prompt)},
                     {"sampling_params", params},
                     {"sampling_session_id", id_},
                     {"seq_id", seq_->fetch_add(1)},
                     {"prompt_logprobs", include_prompt_logprobs},
                     {"topk_prompt_logprobs", topk_prompt_logprobs},
                     {"type", "sample"}};
  const std::string rid = conn_->call("POST", "/api/v1/asample", body).at("request_id");
  auto conn = conn_;
  return Future<SampleResponse>::start([conn, rid] { return conn->poll(rid, "SampleResponse").get<SampleResponse>(); });
}

Future<std::vector<std::optional<double>>> SamplingClient::compute_logprobs(const std::vector<int64_t>& prompt) {
  SamplingParams p;
  p.max_tokens = 1;
  auto f = sample(prompt, 1, p, true);
  return Future<std::vector<std::optional<double>>>::start([f] { return f.result().prompt_logprobs; });
}

}  // namespace kiln::client
