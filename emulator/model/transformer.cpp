#include "model/transformer.hpp"

#include <algorithm>
#include <array>
#include <mutex>
#include <string>

#include "model/errors.hpp"
#include "model/init.hpp"

namespace kiln::model {

template <typename T>
struct LayerActs {
  Mat<T> x_in;           // residual stream entering the layer [T,d]
  Vec<T> rstd1;          // input_layernorm's 1/rms per token
  Mat<T> xn1;            // normalised input [T,d]
  Mat<T> q, k, v;        // projections, q and k after RoPE [T,d]
  Vec<T> probs;          // attention probabilities per (sequence, head)
  Mat<T> att;            // attention output before o_proj [T,d]
  Mat<T> x_mid;          // residual stream after attention [T,d]
  Vec<T> rstd2;
  Mat<T> xn2;            // [T,d]
  Mat<T> gate, up, h;    // [T,d_ff], h = silu(gate)∘up
  std::array<Mat<T>, 7> lora_u;  // LoRA x·Aᵀ per projection [T,r]
  Mat<T>& u(Proj p) { return lora_u[static_cast<size_t>(p)]; }
  const Mat<T>& u(Proj p) const { return lora_u[static_cast<size_t>(p)]; }
};

template <typename T>
struct Activations {
  SeqLayout seq;
  std::vector<int64_t> tokens, pos;  // flat over the batch
  std::vector<int64_t> tgt, toff;    // flat targets; token t owns tgt[toff[t] .. toff[t+1])
  std::vector<int64_t> lp_off;       // [B+1] offsets of each sequence's logprobs in tgt
  RopeTable<T> rope;
  std::vector<LayerActs<T>> layers;
  Mat<T> x_final, xnf;  // before and after the final norm [T,d]
  Vec<T> rstdf;
  int64_t vocab_block = 0;  // vocabulary rows per LM-head block
  Vec<T> lse;               // logsumexp of each token's logits
  Mat<T> alpha, beta, u_lo;  // factored head: α [T,A], β [T,m] (then dα, dβ), LoRA scratch of lm_head_lo
  // Backward scratch, kept with the activations so a recycled workspace reuses it too.
  Mat<T> z, u, dxnf, dx, dh, dgate, dup, dxn, datt, dq, dk, dv;
  std::vector<T> lp, dlp;

  // Empties the per-batch index vectors (capacity stays) before the workspace is reused.
  void reset() {
    seq.off.clear();
    seq.poff.clear();
    tokens.clear();
    pos.clear();
    tgt.clear();
    toff.clear();
    lp_off.clear();
  }
};

// One spare workspace per model: training calls come one after another with similar shapes, and
// reusing the buffers avoids page-faulting fresh memory on every call.
template <typename T>
struct WorkspacePool {
  std::mutex mu;
  std::shared_ptr<Activations<T>> spare;
};

template <typename T>
std::shared_ptr<Activations<T>> Transformer<T>::take_workspace() const {
  std::shared_ptr<Activations<T>> ws;
  {
    std::lock_guard lock(pool_->mu);
    ws = std::move(pool_->spare);
  }
  if (!ws) ws = std::make_shared<Activations<T>>();
  ws->reset();
  return ws;
}

template <typename T>
void Transformer<T>::recycle(std::shared_ptr<Activations<T>> ws) const {
  std::lock_guard lock(pool_->mu);
  pool_->spare = std::move(ws);
}

// ---------------------------------------------------------------------------------------------
// Construction: where each tensor lives (frozen base, or trainable params_).

template <typename T>
Transformer<T>::Transformer(const ModelConfig& config, std::shared_ptr<const ParamSet<T>> base,
                            const LoraConfig& lora)
    : config_(config), fv_(config.vocab_size), lora_(lora), base_(std::move(base)) {
  config_.validate();
  lora_.validate();
  if (lora_.full_parameter())
    params_ = *base_;  // a private copy: full-parameter training owns its weights
  else
    params_ = init_lora_adapters<T>(config_, lora_);
  build_specs();
}

template <typename T>
Transformer<T> Transformer<T>::frozen(const ModelConfig& config, std::shared_ptr<const ParamSet<T>> base) {
  Transformer m;
  m.config_ = config;
  m.config_.validate();
  m.fv_ = FactoredVocab(config.vocab_size);
  m.frozen_ = true;
  m.base_ = std::move(base);
  m.build_specs();
  return m;
}

template <typename T>
void Transformer<T>::build_specs() {
  const bool full = !frozen_ && lora_.full_parameter();
  auto ref = [&](const std::string& name) {
    TensorRef r;
    r.base = base_->find(name);
    if (r.base < 0) throw InputError("weights", "base weights lack tensor '" + name + "'");
    if (full) r.train = params_.find(name);
    return r;
  };
  auto linear = [&](const std::string& module, int64_t out, int64_t in) {
    LinearSpec s;
    s.out = out;
    s.in = in;
    s.w = ref(module + ".weight");
    if (!frozen_ && !full) {
      s.a = params_.find(lora_a_name(module));
      s.b = params_.find(lora_b_name(module));
    }
    return s;
  };
  const int64_t d = config_.d_model, f = config_.d_ff;
  if (config_.factored_head()) {
    embed_hi_ = ref(kEmbedHiName);
    embed_lo_ = ref(kEmbedLoName);
  } else {
    embed_ = ref(kEmbedName);
  }
  layers_.resize(static_cast<size_t>(config_.n_layers));
  for (int l = 0; l < config_.n_layers; ++l) {
    auto& L = layers_[static_cast<size_t>(l)];
    L.norm1 = ref(input_norm_name(l));
    L.norm2 = ref(post_attn_norm_name(l));
    for (Proj p : kAttnProjs) L.proj[static_cast<int>(p)] = linear(proj_name(l, p), d, d);
    L.proj[static_cast<int>(Proj::gate)] = linear(proj_name(l, Proj::gate), f, d);
    L.proj[static_cast<int>(Proj::up)] = linear(proj_name(l, Proj::up), f, d);
    L.proj[static_cast<int>(Proj::down)] = linear(proj_name(l, Proj::down), d, f);
  }
  final_norm_ = ref(kFinalNormName);
  if (config_.factored_head()) {
    head_hi_ = linear(kLmHeadHiModule, fv_.A, d);
    head_lo_ = linear(kLmHeadLoModule, fv_.m, d);
  } else {
    head_ = linear("lm_head", config_.vocab_size, d);
  }
}

template <typename T>
void Transformer<T>::embed(Mat<T>& x, const std::vector<int64_t>& tokens) const {
  if (config_.factored_head())
    factored_embedding_forward(x, tokens, ptr(embed_hi_), ptr(embed_lo_), fv_, config_.d_model);
  else
    embedding_forward(x, tokens, ptr(embed_), config_.d_model);
}

template <typename T>
const T* Transformer<T>::ptr(TensorRef r) const {
  return r.train >= 0 ? params_[r.train].data.data() : (*base_)[r.base].data.data();
}

template <typename T>
T* Transformer<T>::grad(TensorRef r, ParamSet<T>* grads) const {
  return grads && r.train >= 0 ? (*grads)[r.train].data.data() : nullptr;
}

template <typename T>
LinearW<T> Transformer<T>::resolve(const LinearSpec& s, ParamSet<T>* grads) const {
  LinearW<T> L;
  L.out = s.out;
  L.in = s.in;
  L.w = ptr(s.w);
  L.dw = grad(s.w, grads);
  if (s.a >= 0) {
    L.rank = lora_.rank;
    L.scale = static_cast<T>(lora_.scale());
    L.a = params_[s.a].data.data();
    L.b = params_[s.b].data.data();
    if (grads) {
      L.da = (*grads)[s.a].data.data();
      L.db = (*grads)[s.b].data.data();
    }
  }
  return L;
}

// ---------------------------------------------------------------------------------------------
// Validation

template <typename T>
void Transformer<T>::validate(std::span<const SequenceInput> batch) const {
  const int64_t V = config_.vocab_size;
  auto range_error = [&](const std::string& field, int64_t value) {
    throw InputError(field, "token id " + std::to_string(value) + " is out of range [0, " +
                                std::to_string(V) + ")");
  };
  for (size_t i = 0; i < batch.size(); ++i) {
    const auto& s = batch[i];
    const std::string datum = "data[" + std::to_string(i) + "]";
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    if (n == 0) throw InputError(datum + ".model_input", "empty sequence: at least 1 token is required");
    if (n > config_.max_context)
      throw InputError(datum + ".model_input", "sequence length " + std::to_string(n) +
                                                   " exceeds the model's max_context " +
                                                   std::to_string(config_.max_context));
    for (int64_t t = 0; t < n; ++t)
      if (s.tokens[t] < 0 || s.tokens[t] >= V)
        range_error(datum + ".model_input[" + std::to_string(t) + "]", s.tokens[t]);
    // The loss layer (train/loss.cpp) checks target shapes against the input and names the
    // field; here a mismatch is the caller's bug.
    const std::string tf = datum + ".loss_fn_inputs.target_tokens";
    const auto& shp = s.target_shape;
    const int64_t k = shp.size() == 2 ? shp[1] : 1;
    if (shp.empty() || shp.size() > 2 || shp[0] != n || k < 1 || static_cast<int64_t>(s.targets.size()) != n * k)
      throw std::logic_error("Transformer::forward: " + tf + " shape " + shape_string(shp) + " with " +
                             std::to_string(s.targets.size()) + " values does not fit model_input length " +
                             std::to_string(n));
    for (int64_t j = 0; j < n * k; ++j)
      if (s.targets[j] < 0 || s.targets[j] >= V) range_error(tf + "[" + std::to_string(j) + "]", s.targets[j]);
  }
}

// ---------------------------------------------------------------------------------------------
// Forward

template <typename T>
ForwardPass<T> Transformer<T>::forward(std::span<const SequenceInput> batch, bool keep) const {
  validate(batch);
  const int64_t d = config_.d_model, H = config_.n_heads, B = static_cast<int64_t>(batch.size());
  auto acts = take_workspace();
  auto& A = *acts;

  // Pack the batch: token offsets, positions, flat targets.
  A.seq.off = {0};
  A.seq.poff = {0};
  A.toff = {0};
  A.lp_off = {0};
  int64_t max_len = 0;
  for (const auto& s : batch) {
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    const int64_t k = s.target_shape.size() == 2 ? s.target_shape[1] : 1;
    max_len = std::max(max_len, n);
    A.seq.off.push_back(A.seq.off.back() + n);
    A.seq.poff.push_back(A.seq.poff.back() + H * n * n);
    for (int64_t t = 0; t < n; ++t) {
      A.tokens.push_back(s.tokens[t]);
      A.pos.push_back(t);
      A.toff.push_back(A.toff.back() + k);
    }
    A.tgt.insert(A.tgt.end(), s.targets.begin(), s.targets.end());
    A.lp_off.push_back(static_cast<int64_t>(A.tgt.size()));
  }
  const int64_t n_tok = A.seq.off.back();
  A.rope.build(max_len, config_.head_dim(), config_.rope_theta);

  Mat<T> x;
  embed(x, A.tokens);
  A.layers.resize(keep ? layers_.size() : 1);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const LayerSpec& S = layers_[l];
    LayerActs<T>& a = A.layers[keep ? l : 0];
    auto P = [&](Proj p) { return resolve(S.proj[static_cast<int>(p)], nullptr); };
    a.x_in = std::move(x);
    rmsnorm_forward(a.xn1, a.rstd1, a.x_in, ptr(S.norm1), config_.norm_eps);
    a.q.resize(n_tok, d);
    a.k.resize(n_tok, d);
    a.v.resize(n_tok, d);
    linear_forward<T>(a.q, a.u(Proj::q), a.xn1, P(Proj::q));
    linear_forward<T>(a.k, a.u(Proj::k), a.xn1, P(Proj::k));
    linear_forward<T>(a.v, a.u(Proj::v), a.xn1, P(Proj::v));
    rope_forward(a.q, A.pos, A.rope, H);
    rope_forward(a.k, A.pos, A.rope, H);
    attention_forward(a.att, a.probs, a.q, a.k, a.v, A.seq, H);
    a.x_mid.resize(n_tok, d);
    linear_forward<T>(a.x_mid, a.u(Proj::o), a.att, P(Proj::o));
    a.x_mid += a.x_in;
    rmsnorm_forward(a.xn2, a.rstd2, a.x_mid, ptr(S.norm2), config_.norm_eps);
    a.gate.resize(n_tok, config_.d_ff);
    a.up.resize(n_tok, config_.d_ff);
    linear_forward<T>(a.gate, a.u(Proj::gate), a.xn2, P(Proj::gate));
    linear_forward<T>(a.up, a.u(Proj::up), a.xn2, P(Proj::up));
    swiglu_forward(a.h, a.gate, a.up);
    x.resize(n_tok, d);
    linear_forward<T>(x, a.u(Proj::down), a.h, P(Proj::down));
    x += a.x_mid;
  }
  A.x_final = std::move(x);
  rmsnorm_forward(A.xnf, A.rstdf, A.x_final, ptr(final_norm_), config_.norm_eps);

  // LM head and log-softmax over the whole vocabulary.
  A.lp.resize(A.tgt.size());
  if (config_.factored_head()) {
    factored_head_forward(A.lp.data(), A.lse, A.alpha, A.beta, A.u, A.u_lo, A.xnf, resolve(head_hi_, nullptr),
                          resolve(head_lo_, nullptr), fv_, A.tgt, A.toff);
  } else {
    A.vocab_block = vocab_block_ > 0 ? std::min(vocab_block_, config_.vocab_size)
                                     : vocab_block_rows<T>(n_tok, config_.vocab_size);
    lm_head_forward(A.lp.data(), A.lse, A.z, A.u, A.xnf, resolve(head_, nullptr), A.vocab_block, A.tgt, A.toff);
  }

  ForwardPass<T> fp;
  fp.logprobs.resize(static_cast<size_t>(B));
  for (int64_t s = 0; s < B; ++s)
    fp.logprobs[s].assign(A.lp.begin() + A.lp_off[s], A.lp.begin() + A.lp_off[s + 1]);
  if (keep)
    fp.acts = std::move(acts);
  else
    recycle(std::move(acts));
  return fp;
}

// ---------------------------------------------------------------------------------------------
// Backward

template <typename T>
void Transformer<T>::backward(ForwardPass<T>& fp, const std::vector<std::vector<T>>& dlogprobs,
                              ParamSet<T>& grads) const {
  if (!fp.acts) throw std::logic_error("backward needs a forward pass that kept its activations");
  if (frozen_) throw InputError("model", "a frozen (base-only) model has no trainable parameters");
  if (grads.size() != params_.size())
    throw std::logic_error("gradient set does not match the model's trainable parameters");
  Activations<T>& A = *fp.acts;
  const int64_t B = A.seq.batch(), n_tok = A.seq.off.back(), d = config_.d_model, H = config_.n_heads;
  if (static_cast<int64_t>(dlogprobs.size()) != B)
    throw InputError("dlogprobs", "has " + std::to_string(dlogprobs.size()) + " sequences, expected " +
                                      std::to_string(B));
  std::vector<T>& dlp = A.dlp;
  dlp.clear();
  for (int64_t s = 0; s < B; ++s) {
    const int64_t want = A.lp_off[s + 1] - A.lp_off[s];
    if (static_cast<int64_t>(dlogprobs[s].size()) != want)
      throw InputError("dlogprobs[" + std::to_string(s) + "]",
                       "has " + std::to_string(dlogprobs[s].size()) + " values, expected " + std::to_string(want));
    dlp.insert(dlp.end(), dlogprobs[s].begin(), dlogprobs[s].end());
  }

  // LM head: dz = onehot(targets)·dlp − (Σ dlp)·softmax, then through the projection(s).
  if (config_.factored_head())
    factored_head_backward(A.dxnf, A.alpha, A.beta, A.u, A.u_lo, A.xnf, resolve(head_hi_, &grads),
                           resolve(head_lo_, &grads), fv_, dlp.data(), A.tgt, A.toff);
  else
    lm_head_backward(A.dxnf, A.z, A.u, A.xnf, A.lse, resolve(head_, &grads), A.vocab_block, dlp.data(), A.tgt,
                     A.toff);

  Mat<T>& dx = A.dx;
  dx.setZero(n_tok, d);
  rmsnorm_backward(dx, grad(final_norm_, &grads), A.dxnf, A.x_final, A.rstdf, ptr(final_norm_));

  Mat<T>&dh = A.dh, &dgate = A.dgate, &dup = A.dup, &dxn = A.dxn, &datt = A.datt, &dq = A.dq, &dk = A.dk,
         &dv = A.dv;
  dh.resize(n_tok, config_.d_ff);
  dxn.resize(n_tok, d);
  datt.resize(n_tok, d);
  for (size_t l = layers_.size(); l-- > 0;) {
    const LayerSpec& S = layers_[l];
    const LayerActs<T>& a = A.layers[l];
    auto P = [&](Proj p) { return resolve(S.proj[static_cast<int>(p)], &grads); };
    // MLP branch: dx is the gradient of the layer's output (and of the down projection's output).
    linear_backward<T>(dh, false, dx, a.h, a.u(Proj::down), P(Proj::down));
    swiglu_backward(dgate, dup, dh, a.gate, a.up);
    linear_backward<T>(dxn, false, dgate, a.xn2, a.u(Proj::gate), P(Proj::gate));
    linear_backward<T>(dxn, true, dup, a.xn2, a.u(Proj::up), P(Proj::up));
    rmsnorm_backward(dx, grad(S.norm2, &grads), dxn, a.x_mid, a.rstd2, ptr(S.norm2));
    // Attention branch: dx is now the gradient of x_mid.
    linear_backward<T>(datt, false, dx, a.att, a.u(Proj::o), P(Proj::o));
    attention_backward(dq, dk, dv, datt, a.probs, a.q, a.k, a.v, A.seq, H);
    rope_backward(dq, A.pos, A.rope, H);
    rope_backward(dk, A.pos, A.rope, H);
    linear_backward<T>(dxn, false, dq, a.xn1, a.u(Proj::q), P(Proj::q));
    linear_backward<T>(dxn, true, dk, a.xn1, a.u(Proj::k), P(Proj::k));
    linear_backward<T>(dxn, true, dv, a.xn1, a.u(Proj::v), P(Proj::v));
    rmsnorm_backward(dx, grad(S.norm1, &grads), dxn, a.x_in, a.rstd1, ptr(S.norm1));
  }
  if (config_.factored_head())
    factored_embedding_backward(grad(embed_hi_, &grads), grad(embed_lo_, &grads), dx, A.tokens, fv_);
  else if (T* de = grad(embed_, &grads))
    embedding_backward(de, dx, A.tokens);
  recycle(std::move(fp.acts));
}

template class Transformer<float>;
template class Transformer<double>;

}  // namespace kiln::model
