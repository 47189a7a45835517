#pragma once
// A trainable model's whole state — weights, accumulated gradient, Adam state — and the three
// training calls: forward, forward_backward, optim_step (protocol.md §S4–6).
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "model/transformer.hpp"
#include "train/loss.hpp"
#include "train/optimizer.hpp"
#include "train/tensor.hpp"

namespace kiln::train {

struct LossFnOutput {
  TensorData logprobs;          // float32, shaped like target_tokens
  TensorData elementwise_loss;  // float32, shaped like target_tokens
};

struct ForwardResult {
  std::vector<LossFnOutput> loss_fn_outputs;  // one per datum, in request order
  std::map<std::string, double> metrics;      // "name:reduction" keys: loss:sum, ntokens:sum, ...
};

template <typename T>
class TrainingState {
 public:
  explicit TrainingState(model::Transformer<T> model);

  // Loss and outputs without touching gradients or optimizer state. Allowed on base-only models.
  ForwardResult forward(const std::vector<Datum>& data, const LossSpec& loss) const;
  // The same, and the gradient of the summed loss is added to the accumulator.
  ForwardResult forward_backward(const std::vector<Datum>& data, const LossSpec& loss);
  // Normalize, clip, AdamW; then the accumulator and its counters reset.
  std::map<std::string, double> optim_step(const AdamParams& adam, Normalization norm);

  model::Transformer<T>& model() { return model_; }
  const model::Transformer<T>& model() const { return model_; }
  AdamState<T>& adam() { return adam_; }
  const AdamState<T>& adam() const { return adam_; }
  const model::ParamSet<T>& gradients() const { return grads_; }
  const Accumulation& accumulation() const { return acc_; }
  // Per-tensor learning-rate factors applied by optim_step (one per trainable tensor, or empty
  // for textbook AdamW): the stand-in calibration of the model's config (model/calibration.hpp),
  // set at construction; tests may replace it.
  void set_update_scale(std::vector<double> scale);
  const std::vector<double>& update_scale() const { return update_scale_; }
  // Loading weights without the optimizer: m, v and the step count start again from zero (D8).
  void reset_optimizer();
  // Replaces the trainable weights, and the Adam state when given (otherwise it is reset); the
  // accumulated gradient is cleared. Throws UserError when names or shapes differ from the model's.
  void restore(const model::ParamSet<T>& params, const AdamState<T>* adam);

 private:
  // Forward, and backward into `grads` / `acc` when they are given.
  ForwardResult run(const std::vector<Datum>& data, const LossSpec& loss, model::ParamSet<T>* grads,
                    Accumulation* acc) const;

  model::Transformer<T> model_;
  model::ParamSet<T> grads_;
  AdamState<T> adam_;
  Accumulation acc_;
  std::vector<double> update_scale_;
};

extern template class TrainingState<float>;
extern template class TrainingState<double>;

}  // namespace kiln::train
