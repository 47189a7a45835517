#pragma once
// A sampling client for one sampling session, named after the tinker SDK's SamplingClient: it
// samples from a base model or from a sampler checkpoint (`tinker://…/sampler_weights/…`).
// Requests carry their own seq_id with no ordering requirement (protocol.md §S8, W6.18).
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "client/connection.hpp"
#include "client/future.hpp"
#include "client/types.hpp"

namespace kiln::client {

class SamplingClient {
 public:
  SamplingClient(std::shared_ptr<Connection> conn, std::string sampling_session_id);
  const std::string& sampling_session_id() const { return id_; }

  // num_samples continuations of `prompt` (token ids). With include_prompt_logprobs the answer
  // carries one entry per prompt token (entry 0 null); topk_prompt_logprobs k adds the k most
  // likely tokens per position.
  Future<SampleResponse> sample(const std::vector<int64_t>& prompt, int64_t num_samples, const SamplingParams& params,
                                bool include_prompt_logprobs = false, int64_t topk_prompt_logprobs = 0);
  // The logprob of each prompt token given the ones before it (entry 0 null): an asample with
  // max_tokens 1 and prompt logprobs, as the SDK does it.
  Future<std::vector<std::optional<double>>> compute_logprobs(const std::vector<int64_t>& prompt);

 private:
  std::shared_ptr<Connection> conn_;
  std::string id_;
  std::shared_ptr<std::atomic<int64_t>> seq_ = std::make_shared<std::atomic<int64_t>>(0);
};

}  // namespace kiln::client
