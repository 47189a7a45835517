#include "train/optimizer.hpp"

#include <cmath>
#include <stdexcept>

#include <Eigen/Core>

#include "model/threads.hpp"
#include "train/errors.hpp"

namespace kiln::train {

Normalization parse_normalization(const std::string& v) {
  if (v.empty() || v == "none") return Normalization::none;
  if (v == "num_loss_tokens") return Normalization::num_loss_tokens;
  if (v == "num_sequences") return Normalization::num_sequences;
  throw InvalidRequest("grad_accumulation_normalization must be one of none, num_loss_tokens, num_sequences; got '" +
                       v + "'");
}

GradNormMetrics parse_grad_norm_metrics(const std::string& v) {
  if (v.empty() || v == "off" || v == "false") return GradNormMetrics::off;
  if (v == "basic" || v == "true") return GradNormMetrics::basic;
  if (v == "detailed") return GradNormMetrics::detailed;
  throw InvalidRequest("adam_params.emit_grad_norm_metrics must be one of false, true, off, basic, detailed; got '" +
                       v + "'");
}

namespace {
void check(bool ok, const char* name, double v, const char* range) {
  if (!ok) throw InvalidRequest(std::string("adam_params.") + name + " must be " + range + ", got " + std::to_string(v));
}
}  // namespace

void AdamParams::validate() const {
  check(std::isfinite(learning_rate) && learning_rate >= 0, "learning_rate", learning_rate, "a finite number >= 0");
  check(beta1 >= 0 && beta1 < 1, "beta1", beta1, "in [0, 1)");
  check(beta2 >= 0 && beta2 < 1, "beta2", beta2, "in [0, 1)");
  check(std::isfinite(eps) && eps > 0, "eps", eps, "a finite number > 0");
  check(std::isfinite(weight_decay) && weight_decay >= 0, "weight_decay", weight_decay, "a finite number >= 0");
  check(std::isfinite(grad_clip_norm) && grad_clip_norm >= 0, "grad_clip_norm", grad_clip_norm,
        "a finite number >= 0 (0 disables clipping)");
}

namespace {

// Coarse parameter groups for the "detailed" grad-norm metrics.
const char* bucket_of(const std::string& name) {
  if (name.find("embed_tokens") != std::string::npos) return "embed";
  if (name.find("lm_head") != std::string::npos) return "unembed";
  if (name.find("self_attn") != std::string::npos) return "attn";
  if (name.find("mlp") != std::string::npos) return "mlp";
  return "norm";
}

// Σ x² in double with eight running sums in a fixed order: vectorises (one chain would wait on
// each add's latency) and gives the same bits for the same input.
template <typename T>
double sum_of_squares(const T* x, size_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (size_t j = 0; j < 8; ++j) acc[j] += static_cast<double>(x[i + j]) * static_cast<double>(x[i + j]);
  for (size_t j = 0; i < n; ++i, ++j) acc[j] += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

}  // namespace

template <typename T>
std::map<std::string, double> optimizer_step(model::ParamSet<T>& params, model::ParamSet<T>& grads,
                                             AdamState<T>& state, const Accumulation& acc,
                                             const AdamParams& adam, Normalization norm,
                                             const std::vector<double>& update_scale) {
  adam.validate();
  if (!update_scale.empty() && static_cast<int>(update_scale.size()) != params.size())
    throw std::logic_error("update_scale must have one factor per trainable tensor");
  std::map<std::string, double> metrics;
  const bool emit = adam.emit_grad_norm_metrics != GradNormMetrics::off;
  if (acc.calls == 0) {  // nothing accumulated: nothing moves, the step count included (D6)
    if (emit) metrics = {{"grad_norm", 0.0}, {"grad_norm_post_clip", 0.0}, {"grad_norm_rms", 0.0},
                         {"lr", adam.learning_rate}};
    return metrics;
  }
  if (state.m.size() != params.size()) {
    state.m = params.zeros_like();
    state.v = params.zeros_like();
  }

  // 1. Normalization: divide by the accumulated token or sequence count (never by 0).
  double divisor = 1.0;
  if (norm == Normalization::num_loss_tokens && acc.loss_tokens > 0) divisor = static_cast<double>(acc.loss_tokens);
  if (norm == Normalization::num_sequences && acc.sequences > 0) divisor = static_cast<double>(acc.sequences);
  std::map<std::string, double> bucket_sq;
  double sq = 0;
  for (auto& g : grads) {
    Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> gv(g.data.data(), g.numel());
    if (divisor != 1.0) gv = (gv.template cast<double>() / divisor).template cast<T>();
    const double tensor_sq = sum_of_squares(g.data.data(), g.data.size());
    sq += tensor_sq;
    bucket_sq[bucket_of(g.name)] += tensor_sq;
  }

  // 2. Global-norm clipping as torch.nn.utils.clip_grad_norm_: scale by min(1, c/(‖g‖ + 1e-6)).
  const double grad_norm = std::sqrt(sq);
  double coef = 1.0;
  if (adam.grad_clip_norm > 0) coef = std::min(1.0, adam.grad_clip_norm / (grad_norm + 1e-6));

  // 3. AdamW as torch.optim.AdamW: decoupled decay, bias-corrected moments.
  const int64_t t = ++state.step;
  const double lr = adam.learning_rate, b1 = adam.beta1, b2 = adam.beta2;
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(t));
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(b2, static_cast<double>(t)));
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  const T c = static_cast<T>(coef), b1t = static_cast<T>(b1), b2t = static_cast<T>(b2), one_b1 = static_cast<T>(1 - b1),
          one_b2 = static_cast<T>(1 - b2), bc2 = static_cast<T>(bc2_sqrt), eps = static_cast<T>(adam.eps);
  for (int i = 0; i < params.size(); ++i) {
    const double lr_i = update_scale.empty() ? lr : lr * update_scale[static_cast<size_t>(i)];
    const T step_size = static_cast<T>(lr_i / bc1), decay = static_cast<T>(1.0 - lr_i * adam.weight_decay);
    const int64_t n = params[i].numel();
    T *p = params[i].data.data(), *g = grads[i].data.data(), *m = state.m[i].data.data(), *v = state.v[i].data.data();
    // Elementwise, vectorised, in the parameters' precision (as torch's float32 AdamW), chunk by
    // L1-sized chunk: p, g, m and v of a large model do not fit in cache, and a pass over the whole
    // tensor per statement streamed them five times.
    constexpr int64_t kChunk = 512;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for num_threads(chunks >= 64 ? model::num_threads() : 1) schedule(static)
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const int64_t at = ch * kChunk, len = std::min(kChunk, n - at);
      Eigen::Map<Arr> pc(p + at, len), gc(g + at, len), mc(m + at, len), vc(v + at, len);
      gc *= c;
      mc = b1t * mc + one_b1 * gc;
      vc = b2t * vc + one_b2 * gc.square();
      pc = pc * decay - step_size * mc / (vc.sqrt() / bc2 + eps);
      gc.setZero();
    }
  }

  if (emit) {
    metrics["grad_norm"] = grad_norm;
    metrics["grad_norm_post_clip"] = grad_norm * coef;
    const double n = static_cast<double>(params.numel());
    metrics["grad_norm_rms"] = n > 0 ? grad_norm / std::sqrt(n) : 0.0;
    metrics["lr"] = lr;
    if (adam.emit_grad_norm_metrics == GradNormMetrics::detailed)
      for (const auto& [bucket, s] : bucket_sq) metrics[std::string("grad_norm/") + bucket] = std::sqrt(s);
  }
  return metrics;
}

template std::map<std::string, double> optimizer_step<float>(model::ParamSet<float>&, model::ParamSet<float>&,
                                                             AdamState<float>&, const Accumulation&,
                                                             const AdamParams&, Normalization,
                                                             const std::vector<double>&);
template std::map<std::string, double> optimizer_step<double>(model::ParamSet<double>&, model::ParamSet<double>&,
                                                              AdamState<double>&, const Accumulation&,
                                                              const AdamParams&, Normalization,
                                                              const std::vector<double>&);

}  // namespace kiln::train
