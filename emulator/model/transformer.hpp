#pragma once
// A Llama-style decoder on packed variable-length sequences, with exact backward and LoRA.
//   token embedding → n_layers × [RMSNorm → causal MHA with RoPE → residual →
//   RMSNorm → SwiGLU MLP → residual] → RMSNorm → untied LM head → log-softmax over the vocabulary.
// Forward returns the log-probability of every target token; backward takes dLoss/dlogprob of the
// same shape and accumulates into a gradient set shaped like params().
#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "model/config.hpp"
#include "model/layers.hpp"
#include "model/params.hpp"
#include "model/vocab.hpp"

namespace kiln::model {

// One sequence of a batch: position t of `tokens` predicts targets[t, :].
struct SequenceInput {
  std::vector<int64_t> tokens;        // model_input, N >= 1 ids in [0, vocab)
  std::vector<int64_t> targets;       // N·K ids, row-major
  std::vector<int64_t> target_shape;  // {N} or {N, K}
};

// What forward keeps for backward (see transformer.cpp for the meaning of each field).
template <typename T>
struct Activations;
template <typename T>
struct WorkspacePool;

template <typename T>
struct ForwardPass {
  std::vector<std::vector<T>> logprobs;  // per sequence, laid out like its targets
  std::shared_ptr<Activations<T>> acts;  // null when forward ran without keeping activations
};

// Keys (after RoPE) and values of every position of one sequence so far, per layer: what
// incremental decoding needs to extend a sequence by one token without recomputing the prefix.
template <typename T>
struct KvCache {
  std::vector<Mat<T>> k, v;  // per layer [capacity, d]; rows [0, len) are filled
  int64_t len = 0;
  RopeTable<T> rope;  // built for `capacity` positions
  // The batched decode step's copy of the keys, per layer [d, capacity] (row h·hd + i: dimension i
  // of head h at every position), filled for positions [0, kt_len) from k as it decodes (see
  // decode_batch.cpp). Positions are only ever appended, so what it holds stays valid.
  std::vector<Mat<T>> kt;
  int64_t kt_len = 0;
  int64_t capacity() const { return k.empty() ? 0 : k[0].rows(); }
  int64_t bytes() const {  // what its buffers hold
    int64_t n = 0;
    for (const auto* mats : {&k, &v, &kt})
      for (const auto& m : *mats) n += m.size() * static_cast<int64_t>(sizeof(T));
    return n;
  }
  // Empties the cache for another sequence of the same model, keeping its buffers and RoPE table.
  void clear() { len = kt_len = 0; }
  // Grows every layer's buffers to hold `need` positions (doubling, capped by the context), and
  // the RoPE table with them.
  void reserve(const ModelConfig& c, int64_t need) {
    if (k.empty()) {
      k.resize(static_cast<size_t>(c.n_layers));
      v.resize(static_cast<size_t>(c.n_layers));
    }
    if (need <= capacity()) return;
    const int64_t cap = std::min(c.max_context, std::max({need, 2 * capacity(), int64_t{64}}));
    for (size_t l = 0; l < k.size(); ++l) {
      k[l].conservativeResize(cap, c.d_model);
      v[l].conservativeResize(cap, c.d_model);
    }
    rope.build(cap, c.head_dim(), c.rope_theta);
  }
};

template <typename T>
class Transformer {
 public:
  // A trainable model: LoRA adapters when lora.rank > 0 (base shared, frozen), otherwise a private
  // full copy of the base weights, all trainable.
  Transformer(const ModelConfig& config, std::shared_ptr<const ParamSet<T>> base, const LoraConfig& lora);
  // A frozen model with no trainable parameters (Fireworks base_only; the reference model).
  static Transformer frozen(const ModelConfig& config, std::shared_ptr<const ParamSet<T>> base);

  const ModelConfig& config() const { return config_; }
  const LoraConfig& lora() const { return lora_; }
  // Loading a LoRA adapter brings its scale with it (PEFT's lora_alpha): same rank, new alpha.
  void set_lora_alpha(double alpha) { lora_.alpha = alpha; }
  bool is_frozen() const { return frozen_; }
  // The trainable parameters (adapters, or every weight for full-parameter training).
  ParamSet<T>& params() { return params_; }
  const ParamSet<T>& params() const { return params_; }
  const ParamSet<T>& base() const { return *base_; }

  // Throws InputError naming the datum and field for any token id out of range, empty sequence or
  // sequence longer than max_context; std::logic_error for targets that do not fit the input
  // (the loss layer's check, so a caller's bug here).
  void validate(std::span<const SequenceInput> batch) const;
  ForwardPass<T> forward(std::span<const SequenceInput> batch, bool keep_activations = true) const;
  // Accumulates dLoss/dθ into `grads` (shaped like params()). Consumes fp's activations.
  void backward(ForwardPass<T>& fp, const std::vector<std::vector<T>>& dlogprobs, ParamSet<T>& grads) const;

  // Inference with a KV cache (sampling). extend() runs `tokens` at positions cache.len.. and
  // returns their final-norm hidden states [m,d]; the same maths as forward(), so logprobs
  // agree with the trainer's to rounding. vocab_logits() maps hidden states to logits [m,V].
  Mat<T> extend(KvCache<T>& cache, std::span<const int64_t> tokens) const;
  // The head's scores for hidden states [n,d]: logits [n,V], or a factored head's α [n,A], β [n,m].
  HeadScores<T> head_scores(const Mat<T>& hidden) const;

  // Vocabulary rows per (dense) LM-head block; 0 (the default) sizes blocks to about 4 MiB of logits.
  // Results differ only by rounding between block sizes; tests use this to check the blocking.
  void set_vocab_block(int64_t rows) { vocab_block_ = rows; }

 private:
  struct TensorRef {
    int base = -1;   // index in base_
    int train = -1;  // index in params_ (and in a gradient set), -1 when frozen
  };
  struct LinearSpec {
    int64_t out = 0, in = 0;
    TensorRef w;
    int a = -1, b = -1;  // LoRA adapter indices in params_
  };
  struct LayerSpec {
    TensorRef norm1, norm2;
    LinearSpec proj[7];  // indexed by Proj
  };

  Transformer() = default;
  void build_specs();
  const T* ptr(TensorRef r) const;
  T* grad(TensorRef r, ParamSet<T>* grads) const;
  LinearW<T> resolve(const LinearSpec& s, ParamSet<T>* grads) const;
  std::shared_ptr<Activations<T>> take_workspace() const;
  void recycle(std::shared_ptr<Activations<T>> ws) const;

  // Token ids → the residual stream [n,d] (dense or factored embedding).
  void embed(Mat<T>& x, const std::vector<int64_t>& tokens) const;

  ModelConfig config_;
  FactoredVocab fv_;
  LoraConfig lora_;
  bool frozen_ = false;
  std::shared_ptr<const ParamSet<T>> base_;
  ParamSet<T> params_;
  std::vector<LayerSpec> layers_;
  TensorRef embed_, embed_hi_, embed_lo_, final_norm_;
  LinearSpec head_, head_hi_, head_lo_;  // dense: head_; factored: head_hi_ and head_lo_
  int64_t vocab_block_ = 0;
  std::shared_ptr<WorkspacePool<T>> pool_ = std::make_shared<WorkspacePool<T>>();
};

extern template class Transformer<float>;
extern template class Transformer<double>;

}  // namespace kiln::model
