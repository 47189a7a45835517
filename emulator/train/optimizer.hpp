#pragma once
// optim_step: gradient normalization, global-norm clipping and AdamW (protocol.md §S6.2–6.5).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/params.hpp"

namespace kiln::train {

enum class GradNormMetrics { off, basic, detailed };
enum class Normalization { none, num_loss_tokens, num_sequences };

// Throws InvalidRequest for anything but absent/"none", "num_loss_tokens", "num_sequences".
Normalization parse_normalization(const std::string& value);
// Accepts false/"off", true/"basic", "detailed" (the wire layer maps booleans to these names).
GradNormMetrics parse_grad_norm_metrics(const std::string& value);

// tinker's AdamParams with its defaults; Fireworks adds emit_grad_norm_metrics.
struct AdamParams {
  double learning_rate = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-12;
  double weight_decay = 0.0;
  double grad_clip_norm = 0.0;  // 0: no clipping
  GradNormMetrics emit_grad_norm_metrics = GradNormMetrics::off;

  void validate() const;  // throws InvalidRequest naming the field and its range
};

// Per-model Adam state: first and second moments shaped like the trainable parameters, and the
// step count (bias correction). Saved and restored whole by training-state checkpoints.
template <typename T>
struct AdamState {
  model::ParamSet<T> m, v;
  int64_t step = 0;
};

// What the accumulated gradient came from, for normalization.
struct Accumulation {
  int64_t calls = 0;       // forward_backward calls since the last step
  int64_t loss_tokens = 0;  // T: entries with a non-zero gradient weight
  int64_t sequences = 0;    // S: datums with at least one such entry
};

// Applies one optimizer step to `params` from the accumulated `grads`, which it leaves zeroed.
// `update_scale` (empty, or one factor per tensor) multiplies each tensor's learning rate, in the
// Adam step and in the decoupled decay alike (the stand-in calibration, calibration.hpp); the
// reported metrics are those of the real gradient and the requested learning rate.
// Returns the metrics that `emit_grad_norm_metrics` asks for (protocol.md rule D7).
template <typename T>
std::map<std::string, double> optimizer_step(model::ParamSet<T>& params, model::ParamSet<T>& grads,
                                             AdamState<T>& state, const Accumulation& acc,
                                             const AdamParams& adam, Normalization norm,
                                             const std::vector<double>& update_scale = {});

}  // namespace kiln::train
