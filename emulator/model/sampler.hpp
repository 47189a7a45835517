#pragma once
// Text generation from a model: num_samples continuations of a prompt with temperature, top-k,
// top-p, stop tokens and strings, and prompt logprobs (protocol.md §S8; rules F1–F8
// give the choices where the service's behaviour is undocumented).
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model/transformer.hpp"

namespace kiln::model {

struct DecodeWeights;

struct SamplingParams {
  std::optional<int64_t> max_tokens;  // absent: until a stop or the context is full (F1)
  std::optional<uint64_t> seed;       // absent: random
  std::vector<std::string> stop_strings;
  std::vector<int64_t> stop_tokens;
  bool end_of_sequence = true;  // the model's eos_token_ids end a sequence (tinker: stop=[] turns it off)
  double temperature = 1.0;     // 0 = greedy
  int64_t top_k = -1;        // -1 or 0 = off
  double top_p = 1.0;
};

// Ids to score at prompt positions 1..n-1 (tinker 0.31+ target_prompt_logprobs, rule F9): a
// [n-1, k] matrix, row i for prompt position i+1, -1 where nothing is asked. A sparse request
// keeps its CSR layout (crow, col; empty when dense) so the answer can take the same one.
struct TargetIds {
  int64_t rows = 0, k = 0;
  std::vector<int64_t> ids;         // rows * k, row-major
  std::vector<int64_t> crow, col;   // the request's CSR layout, or empty
};

struct SampleSpec {
  std::vector<int64_t> prompt;
  int64_t num_samples = 1;
  SamplingParams params;
  bool prompt_logprobs = false;
  int64_t topk_prompt_logprobs = 0;
  int64_t topk_sample_logprobs = 0;               // top-k at each sampled token (F9)
  std::optional<TargetIds> target_prompt_logprobs;
  int64_t prompt_alt_tokens_k = 0;                // k draws at each prompt position after the first (F9)
};

using TopK = std::vector<std::pair<int64_t, float>>;  // (token, logprob), most likely first

struct SampledSequence {
  std::vector<int64_t> tokens;  // generated tokens only
  std::vector<float> logprobs;  // of each token, under the tempered distribution (F3)
  bool stopped = false;         // "stop" (stop token/string/end of sequence); else "length"
  std::string sequence_id;      // the service's id, fixed when the request was submitted
  // One per token when topk_sample_logprobs > 0: the distribution it was drawn from (F9).
  std::optional<std::vector<TopK>> topk_logprobs;
};

struct SampleOutput {
  std::vector<SampledSequence> sequences;
  // One entry per prompt token; entry 0 is undefined (NaN). Present only when requested.
  std::optional<std::vector<float>> prompt_logprobs;
  // Per prompt position the top-k (token, logprob), most likely first; position 0 is empty.
  std::optional<std::vector<TopK>> topk_prompt_logprobs;
  // The logprob of each target id, in the request's [rows, k] layout; 0 where it had -1.
  struct TargetLogprobs {
    int64_t rows = 0, k = 0;
    std::vector<float> values;        // rows * k, row-major
    std::vector<int64_t> crow, col;   // the request's CSR layout, or empty (dense)
    // The values of the cells a CSR request listed, in its order (its answer's data).
    std::vector<float> listed() const {
      std::vector<float> out;
      for (int64_t row = 0; row + 1 < static_cast<int64_t>(crow.size()); ++row)
        for (int64_t i = crow[row]; i < crow[row + 1]; ++i) out.push_back(values[row * k + col[i]]);
      return out;
    }
  };
  std::optional<TargetLogprobs> target_prompt_logprobs;
  // prompt_alt_tokens_k draws per prompt position after the first, [n-1, k] row-major.
  struct AltTokens {
    int64_t rows = 0, k = 0;
    std::vector<int64_t> tokens;
    std::vector<float> logprobs;
  };
  std::optional<AltTokens> prompt_alt_tokens;
};

// The most prompt_alt_tokens_k one request may ask for.
inline constexpr int64_t kMaxPromptAltTokens = 1024;

// Limits on what one request may ask for.
inline constexpr int64_t kMaxNumSamples = 1024;

// Throws InputError naming the field (prompt, num_samples, sampling_params.*, ...) for anything
// the model cannot serve, including the spec's context-window text.
void validate_sample(const ModelConfig& config, const SampleSpec& spec);

// Continuous batching over one model's weights: requests join between steps, and every step
// decodes all active sequences of all requests together (decode_batch.hpp), each with its own KV
// cache; a sequence leaves the batch when it stops. Sample i of a request draws from its own
// stream, and a sequence's numbers do not depend on the rest of the batch, so the same spec with
// a seed gives bitwise-equal output alone or batched (F7). The model's eos_token_ids end a
// sequence with stop_reason "stop", like a stop token (F5); reaching max_tokens reads "length"
// even on a stop token. Not thread-safe: one caller drives it.
class BatchSampler {
 public:
  explicit BatchSampler(std::shared_ptr<const Transformer<float>> model);
  ~BatchSampler();
  BatchSampler(const BatchSampler&) = delete;
  BatchSampler& operator=(const BatchSampler&) = delete;

  // Validates (InputError naming the field), prefills the prompt (prompt logprobs, the first
  // token's scores) and puts the request's sequences in the batch. Returns the request's handle.
  int64_t add(const SampleSpec& spec);
  // Drops a request and its sequences from the batch (a cancelled request); the others decode on
  // exactly as they would have. An unknown handle changes nothing.
  void remove(int64_t request);
  bool idle() const { return active_.empty(); }
  size_t active() const { return active_.size(); }
  // Every active sequence draws a token; one batched decode step follows for those that go on.
  // Returns the requests whose last sequence stopped, with their outputs.
  std::vector<std::pair<int64_t, SampleOutput>> step();

 private:
  struct Sequence;
  struct Request;
  std::shared_ptr<const Transformer<float>> model_;
  std::unique_ptr<DecodeWeights> weights_;
  std::map<int64_t, Request> requests_;
  std::vector<std::unique_ptr<Sequence>> active_;
  int64_t next_request_ = 0;
  HeadScores<float> next_scores_;  // a step's scores, the buffers kept between steps
  // Caches of finished sequences, emptied, for the next ones to fill, rather than freed and
  // faulted back in by the next request (measured in sampler.cpp, at kMaxSpareBytes).
  std::vector<KvCache<float>> spare_;
  int64_t spare_bytes_ = 0;
  KvCache<float> spare_cache();
  void keep_spare(KvCache<float> cache);
};

// Generates one request alone (a BatchSampler of its own).
SampleOutput sample(const Transformer<float>& model, const SampleSpec& spec);

// The byte decoding used to match stop strings: ids below 256 are bytes, others contribute
// nothing (Kiln models carry no tokenizer; see DIFFERENCES.md).
std::string decode_bytes(const std::vector<int64_t>& tokens);

}  // namespace kiln::model
