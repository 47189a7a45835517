#include "model/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "model/errors.hpp"
#include "model/decode_batch.hpp"
#include "model/rng.hpp"
#include "model/threads.hpp"

namespace kiln::model {

namespace {

std::string str(int64_t v) { return std::to_string(v); }

// One draw from a position's scores under the sampling parameters. Returns the token and its
// log-probability under the tempered, untruncated distribution (protocol.md rule F3).
std::pair<int64_t, float> draw(const TokenScores& z, const SamplingParams& p, SplitMix64& rng) {
  if (p.temperature == 0.0) {  // greedy; ties → the lowest id (F4); logprob at temperature 1
    const int64_t tok = z.argmax();
    return {tok, static_cast<float>(z.logprob(tok))};
  }
  const double tau = p.temperature;
  const int64_t V = z.vocab();
  const bool top_k = p.top_k > 0 && p.top_k < V;
  if (!top_k && p.top_p >= 1.0) {  // nothing cut: the inverse-CDF draw over all ids in id order
    const auto [tok, lse] = z.draw(rng.uniform(), tau);
    return {tok, static_cast<float>(z.logit(tok) / tau - lse)};
  }
  const double lse = z.lse(tau);
  // The candidates after top-k and top-p truncation, most likely first: top-k's k best, then
  // the smallest most-likely prefix whose mass reaches top_p.
  std::vector<std::pair<int64_t, double>> keep;
  const int64_t k = top_k ? p.top_k : V;
  double mass = 0;
  z.descending([&](int64_t id, double logit) {
    keep.emplace_back(id, logit);
    mass += std::exp(logit / tau - lse);
    return static_cast<int64_t>(keep.size()) < k && (p.top_p >= 1.0 || mass < p.top_p);
  });
  // Inverse-CDF draw over the kept candidates in that order.
  double total = 0;
  for (const auto& [id, logit] : keep) total += std::exp(logit / tau - lse);
  double u = rng.uniform() * total;
  int64_t tok = keep.back().first;
  for (const auto& [id, logit] : keep) {
    u -= std::exp(logit / tau - lse);
    if (u < 0) {
      tok = id;
      break;
    }
  }
  return {tok, static_cast<float>(z.logit(tok) / tau - lse)};
}

// The k most likely tokens under the distribution draw() samples from: tempered, or at
// temperature 1 when greedy (F3, F9).
TopK top_tempered(const TokenScores& z, int64_t k, double temperature) {
  const double tau = temperature == 0.0 ? 1.0 : temperature;
  const double lse = z.lse(tau);
  TopK out;
  for (const auto& [tok, logit] : z.top(k)) out.emplace_back(tok, static_cast<float>(logit / tau - lse));
  return out;
}

bool wants_prompt_scores(const SampleSpec& s) {
  return s.prompt_logprobs || s.topk_prompt_logprobs > 0 || s.target_prompt_logprobs || s.prompt_alt_tokens_k > 0;
}

// What the prefill's hidden states answer about the prompt itself: prompt logprobs and top-k,
// target logprobs (at temperature 1, as prompt logprobs) and the alternative draws (F9), a
// block of positions at a time so a dense head's [n,V] logits never exist at once.
void prompt_scores(const DecodeWeights& w, const Mat<float>& hidden, const SampleSpec& spec, uint64_t seed,
                   SampleOutput& out) {
  const int64_t n = static_cast<int64_t>(spec.prompt.size());
  const int64_t k = spec.topk_prompt_logprobs, alt_k = spec.prompt_alt_tokens_k, width = w.head_width();
  if (spec.prompt_logprobs) out.prompt_logprobs.emplace(n, std::numeric_limits<float>::quiet_NaN());
  if (k > 0) out.topk_prompt_logprobs.emplace(static_cast<size_t>(n));
  const TargetIds* target = spec.target_prompt_logprobs ? &*spec.target_prompt_logprobs : nullptr;
  if (target)
    out.target_prompt_logprobs = SampleOutput::TargetLogprobs{target->rows, target->k,
                                                              std::vector<float>(target->ids.size(), 0.0f), target->crow, target->col};
  // The draws use a stream of their own: asking for them changes none of the samples.
  SplitMix64 alt_rng(fnv1a64("kiln-prompt-alt") ^ seed);
  SamplingParams alt_params;  // the request's temperature, nothing truncated
  alt_params.temperature = spec.params.temperature;
  if (alt_k > 0) out.prompt_alt_tokens = SampleOutput::AltTokens{n - 1, alt_k, {}, {}};
  const int64_t block = std::max<int64_t>(1, (int64_t{4} << 20) / width);
  for (int64_t t0 = 0; t0 + 1 < n; t0 += block) {
    const int64_t rows = std::min(block, n - 1 - t0);  // position t predicts prompt[t+1]
    const HeadScores<float> scores = head_scores(w, hidden.middleRows(t0, rows));
    for (int64_t r = 0; r < rows; ++r) {
      const TokenScores z = TokenScores::of(scores, r);
      const double lse = z.lse();
      const int64_t t = t0 + r;
      if (out.prompt_logprobs) (*out.prompt_logprobs)[t + 1] = static_cast<float>(z.logit(spec.prompt[t + 1]) - lse);
      if (k > 0)
        for (const auto& [tok, logit] : z.top(k))
          (*out.topk_prompt_logprobs)[t + 1].emplace_back(tok, static_cast<float>(logit - lse));
      if (target)
        for (int64_t j = 0; j < target->k; ++j)
          if (const int64_t id = target->ids[t * target->k + j]; id >= 0)
            out.target_prompt_logprobs->values[t * target->k + j] = static_cast<float>(z.logit(id) - lse);
      for (int64_t j = 0; j < alt_k; ++j) {
        const auto [tok, lp] = draw(z, alt_params, alt_rng);
        out.prompt_alt_tokens->tokens.push_back(tok);
        out.prompt_alt_tokens->logprobs.push_back(lp);
      }
    }
  }
}

}  // namespace

std::string decode_bytes(const std::vector<int64_t>& tokens) {
  std::string s;
  for (int64_t t : tokens)
    if (t >= 0 && t < 256) s.push_back(static_cast<char>(t));
  return s;
}

void validate_sample(const ModelConfig& c, const SampleSpec& spec) {
  const int64_t V = c.vocab_size, n = static_cast<int64_t>(spec.prompt.size());
  if (n == 0) throw InputError("prompt", "prompt must contain at least one token");
  for (int64_t t = 0; t < n; ++t)
    if (spec.prompt[t] < 0 || spec.prompt[t] >= V)
      throw InputError("prompt", "prompt token " + str(t) + " has id " + str(spec.prompt[t]) +
                                     ", out of range [0, " + str(V) + ")");
  if (spec.num_samples < 1 || spec.num_samples > kMaxNumSamples)
    throw InputError("num_samples", "num_samples must be between 1 and " + str(kMaxNumSamples) + ", got " +
                                        str(spec.num_samples));
  const auto& p = spec.params;
  if (p.max_tokens && *p.max_tokens <= 0)
    throw InputError("sampling_params.max_tokens", "max_tokens must be a positive number");
  const int64_t m = p.max_tokens.value_or(1);
  if (n + m > c.max_context)
    throw InputError("prompt", "Prompt length plus max_tokens exceeds the model's context window: " + str(n) + " + " +
                                   str(m) + " > " + str(c.max_context));
  if (!std::isfinite(p.temperature) || p.temperature < 0)
    throw InputError("sampling_params.temperature", "sampling_params.temperature must be a finite number >= 0");
  if (p.top_k < -1)
    throw InputError("sampling_params.top_k", "sampling_params.top_k must be -1 (off) or a positive number, got " +
                                                  str(p.top_k));
  if (!(p.top_p > 0.0 && p.top_p <= 1.0))
    throw InputError("sampling_params.top_p", "sampling_params.top_p must be in (0, 1]");
  for (size_t i = 0; i < p.stop_tokens.size(); ++i)
    if (p.stop_tokens[i] < 0 || p.stop_tokens[i] >= V)
      throw InputError("sampling_params.stop", "sampling_params.stop[" + str(static_cast<int64_t>(i)) +
                                                   "] is token id " + str(p.stop_tokens[i]) + ", out of range [0, " +
                                                   str(V) + ")");
  for (const auto& s : p.stop_strings)
    if (s.empty()) throw InputError("sampling_params.stop", "sampling_params.stop strings must not be empty");
  if (spec.topk_prompt_logprobs < 0 || spec.topk_prompt_logprobs > V)
    throw InputError("topk_prompt_logprobs", "topk_prompt_logprobs must be between 0 and the vocabulary size " +
                                                 str(V) + ", got " + str(spec.topk_prompt_logprobs));
  if (spec.topk_sample_logprobs < 0 || spec.topk_sample_logprobs > V)
    throw InputError("topk_sample_logprobs", "topk_sample_logprobs must be between 0 and the vocabulary size " +
                                                 str(V) + ", got " + str(spec.topk_sample_logprobs));
  if (spec.prompt_alt_tokens_k < 0 || spec.prompt_alt_tokens_k > kMaxPromptAltTokens)
    throw InputError("prompt_alt_tokens_k", "prompt_alt_tokens_k must be between 0 and " + str(kMaxPromptAltTokens) +
                                                ", got " + str(spec.prompt_alt_tokens_k));
  if (const auto& t = spec.target_prompt_logprobs) {
    if (t->rows != n - 1)
      throw InputError("target_prompt_logprobs", "target_prompt_logprobs must have len(prompt) - 1 = " + str(n - 1) +
                                                     " rows, got " + str(t->rows));
    for (size_t i = 0; i < t->ids.size(); ++i)
      if (t->ids[i] < -1 || t->ids[i] >= V)
        throw InputError("target_prompt_logprobs", "target_prompt_logprobs[" + str(static_cast<int64_t>(i) / std::max<int64_t>(1, t->k)) +
                                                       "][" + str(static_cast<int64_t>(i) % std::max<int64_t>(1, t->k)) + "] is token id " +
                                                       str(t->ids[i]) + ", out of range [0, " + str(V) + ") (-1: none)");
  }
}

// ---------------------------------------------------------------------------------------------
// BatchSampler

// A draw costs about 1.3 µs on the Qwen3-8B stand-in (its 780 exponentials and the inverse-CDF
// walk); from this many sequences on, sharing them between threads pays for waking them (~1 µs).
constexpr int64_t kMinParallelDraws = 8;

struct BatchSampler::Sequence {
  int64_t request = 0;
  size_t index = 0;  // in the request's output
  KvCache<float> cache;
  SplitMix64 rng{0};
  HeadScores<float> scores;  // of the next token (one row)
  SampledSequence out;
};

struct BatchSampler::Request {
  SampleSpec spec;
  SampleOutput out;
  int64_t limit = 0;      // tokens a sequence may generate
  int64_t remaining = 0;  // sequences still generating
};

BatchSampler::BatchSampler(std::shared_ptr<const Transformer<float>> model)
    : model_(std::move(model)), weights_(std::make_unique<DecodeWeights>(*model_)) {}

BatchSampler::~BatchSampler() = default;

// Measured on the Qwen3-8B stand-in, 4 requests × 8 sequences of 32 tokens at 2 threads: 7.8 µs
// per token when every request allocated its caches and every step its scores afresh (glibc
// handed the freed memory back to the system, and the next request or step faulted it in again,
// with TLB shootdowns across the threads), 4.4–4.7 µs with both kept (next_scores_ and these).
// A sampler keeps at most this much: the caches of 32 sequences of up to 128 positions on the
// stand-in (6.3 MB), little for a server that keeps many samplers, each holding its spares.
constexpr int64_t kMaxSpareBytes = int64_t{8} << 20;

KvCache<float> BatchSampler::spare_cache() {
  if (spare_.empty()) return {};
  KvCache<float> c = std::move(spare_.back());
  spare_.pop_back();
  spare_bytes_ -= c.bytes();
  return c;
}

void BatchSampler::keep_spare(KvCache<float> cache) {
  if (spare_bytes_ + cache.bytes() > kMaxSpareBytes) return;
  cache.clear();
  spare_bytes_ += cache.bytes();
  spare_.push_back(std::move(cache));
}

void BatchSampler::remove(int64_t request) {
  for (auto& seq : active_)
    if (seq->request == request) keep_spare(std::move(seq->cache));
  std::erase_if(active_, [&](const auto& seq) { return seq->request == request; });
  requests_.erase(request);
}

int64_t BatchSampler::add(const SampleSpec& spec) {
  const ModelConfig& c = model_->config();
  validate_sample(c, spec);
  const int64_t id = next_request_++;
  Request& r = requests_[id];
  r.spec = spec;
  const int64_t n = static_cast<int64_t>(spec.prompt.size());
  r.limit = std::min(spec.params.max_tokens.value_or(c.max_context - n), c.max_context - n);
  r.remaining = spec.num_samples;
  r.out.sequences.resize(static_cast<size_t>(spec.num_samples));
  // Prefill once per request (with the decode step's kernels: the numbers of decoding the prompt
  // token by token), then one sequence per sample, each with its own copy of the prompt's cache
  // and its own random stream (F7).
  KvCache<float> prefix = spare_cache();
  const Mat<float> hidden = prefill(*weights_, prefix, spec.prompt);
  const auto& p = spec.params;
  const uint64_t seed = p.seed ? *p.seed : (uint64_t{std::random_device{}()} << 32 | std::random_device{}());
  if (wants_prompt_scores(spec)) prompt_scores(*weights_, hidden, spec, seed, r.out);
  const HeadScores<float> first = head_scores(*weights_, hidden.bottomRows(1));
  for (int64_t i = 0; i < spec.num_samples; ++i) {
    auto seq = std::make_unique<Sequence>();
    seq->request = id;
    seq->index = static_cast<size_t>(i);
    if (i + 1 < spec.num_samples) {
      seq->cache = spare_cache();
      seq->cache = prefix;  // into the spare's buffers when their shapes match
    } else {
      seq->cache = std::move(prefix);  // the last one takes it
    }
    seq->rng = SplitMix64(fnv1a64("kiln-sample") ^ seed ^ (static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ULL));
    seq->scores = first;
    active_.push_back(std::move(seq));
  }
  return id;
}

std::vector<std::pair<int64_t, SampleOutput>> BatchSampler::step() {
  const auto& eos = model_->config().eos_token_ids;
  std::vector<std::pair<int64_t, SampleOutput>> finished;
  // 1. Every active sequence draws its next token, from its own scores with its own stream (so
  //    in parallel when there are enough of them: the split changes no draw).
  const int64_t n = static_cast<int64_t>(active_.size());
  std::vector<const Request*> of(static_cast<size_t>(n));  // looked up here: nothing may throw below
  for (int64_t i = 0; i < n; ++i) of[i] = &requests_.at(active_[i]->request);
#pragma omp parallel for num_threads(n >= kMinParallelDraws ? num_threads() : 1) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    Sequence& seq = *active_[static_cast<size_t>(i)];
    const Request& r = *of[i];
    const auto& p = r.spec.params;
    const TokenScores z = TokenScores::of(seq.scores, 0);
    const auto drawn = draw(z, p, seq.rng);
    seq.out.tokens.push_back(drawn.first);
    seq.out.logprobs.push_back(drawn.second);
    if (r.spec.topk_sample_logprobs > 0) {
      if (!seq.out.topk_logprobs) seq.out.topk_logprobs.emplace();
      seq.out.topk_logprobs->push_back(top_tempered(z, r.spec.topk_sample_logprobs, p.temperature));
    }
  }
  // 2. Those that stop leave the batch.
  std::vector<std::unique_ptr<Sequence>> going;
  std::vector<DecodeSlot> slots;
  for (auto& seq : active_) {
    Request& r = requests_.at(seq->request);
    const auto& p = r.spec.params;
    const int64_t tok = seq->out.tokens.back();
    const auto is = [&](const std::vector<int64_t>& ids) { return std::find(ids.begin(), ids.end(), tok) != ids.end(); };
    // Reaching max_tokens reads "length" even on a stop token (the vendor's e2e suite requires it).
    bool done = static_cast<int64_t>(seq->out.tokens.size()) >= r.limit;
    if (!done && (is(p.stop_tokens) || (p.end_of_sequence && is(eos)))) {
      seq->out.stopped = done = true;
    } else if (!done && !p.stop_strings.empty()) {
      const std::string text = decode_bytes(seq->out.tokens);
      seq->out.stopped = done = std::any_of(p.stop_strings.begin(), p.stop_strings.end(),
                                            [&](const std::string& s) { return text.find(s) != std::string::npos; });
    }
    if (done) {
      keep_spare(std::move(seq->cache));
      r.out.sequences[seq->index] = std::move(seq->out);
      if (--r.remaining == 0) {
        finished.emplace_back(seq->request, std::move(r.out));
        requests_.erase(seq->request);
      }
      continue;
    }
    slots.push_back({&seq->cache, tok});
    going.push_back(std::move(seq));
  }
  active_ = std::move(going);
  // 3. One batched forward for everyone still generating: the scores of each one's next token.
  if (!active_.empty()) {
    HeadScores<float>& next = next_scores_;
    decode_step(*weights_, slots, next);
    for (size_t i = 0; i < active_.size(); ++i) {
      HeadScores<float>& s = active_[i]->scores;
      if (next.factored) {
        s.hi = next.hi.row(static_cast<int64_t>(i));
        s.lo = next.lo.row(static_cast<int64_t>(i));
      } else {
        s.logits = next.logits.row(static_cast<int64_t>(i));
      }
    }
  }
  return finished;
}

SampleOutput sample(const Transformer<float>& model, const SampleSpec& spec) {
  // A lone request: a batch of its own samples. The model is borrowed, not owned.
  BatchSampler batch(std::shared_ptr<const Transformer<float>>(&model, [](const Transformer<float>*) {}));
  batch.add(spec);
  while (true)
    for (auto& [id, out] : batch.step()) return std::move(out);
}

}  // namespace kiln::model
