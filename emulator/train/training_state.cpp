#include "train/training_state.hpp"

#include "model/calibration.hpp"

#include <cmath>

#include "model/errors.hpp"
#include "train/errors.hpp"

namespace kiln::train {

template <typename T>
TrainingState<T>::TrainingState(model::Transformer<T> model) : model_(std::move(model)) {
  grads_ = model_.params().zeros_like();
  update_scale_ = model::update_scale(model_.params(), model_.config());  // the stand-in calibration
  reset_optimizer();
}

template <typename T>
void TrainingState<T>::reset_optimizer() {
  adam_.m = model_.params().zeros_like();
  adam_.v = model_.params().zeros_like();
  adam_.step = 0;
}

namespace {
template <typename T>
void check_same_layout(const model::ParamSet<T>& want, const model::ParamSet<T>& got, const char* what) {
  if (want.size() != got.size())
    throw UserError(std::string(what) + " has " + std::to_string(got.size()) + " tensors, the model has " +
                    std::to_string(want.size()));
  for (int i = 0; i < want.size(); ++i)
    if (want[i].name != got[i].name || want[i].shape != got[i].shape)
      throw UserError(std::string(what) + " tensor '" + got[i].name + "' " + shape_string(got[i].shape) +
                      " does not match the model's '" + want[i].name + "' " + shape_string(want[i].shape));
}
}  // namespace

template <typename T>
void TrainingState<T>::restore(const model::ParamSet<T>& params, const AdamState<T>* adam) {
  check_same_layout(model_.params(), params, "checkpoint weights");
  if (adam) {
    check_same_layout(model_.params(), adam->m, "checkpoint optimizer state (exp_avg)");
    check_same_layout(model_.params(), adam->v, "checkpoint optimizer state (exp_avg_sq)");
  }
  model_.params() = params;
  if (adam)
    adam_ = *adam;
  else
    reset_optimizer();
  grads_.set_zero();
  acc_ = {};
}

template <typename T>
ForwardResult TrainingState<T>::forward(const std::vector<Datum>& data, const LossSpec& loss) const {
  return run(data, loss, nullptr, nullptr);
}

template <typename T>
ForwardResult TrainingState<T>::forward_backward(const std::vector<Datum>& data, const LossSpec& loss) {
  if (model_.is_frozen()) throw errors::base_only("");
  return run(data, loss, &grads_, &acc_);
}

template <typename T>
std::map<std::string, double> TrainingState<T>::optim_step(const AdamParams& adam, Normalization norm) {
  if (model_.is_frozen()) throw errors::base_only("");
  auto metrics = optimizer_step(model_.params(), grads_, adam_, acc_, adam, norm, update_scale_);
  acc_ = {};
  return metrics;
}

template <typename T>
void TrainingState<T>::set_update_scale(std::vector<double> scale) {
  if (!scale.empty() && static_cast<int>(scale.size()) != model_.params().size())
    throw std::logic_error("update_scale needs one factor per trainable tensor");
  update_scale_ = std::move(scale);
}

template <typename T>
ForwardResult TrainingState<T>::run(const std::vector<Datum>& data, const LossSpec& loss, model::ParamSet<T>* grads,
                                    Accumulation* acc) const {
  const bool backward = grads != nullptr;
  if (data.empty()) throw errors::empty_data();
  // 1. Validate everything before computing anything: a failed request changes no state.
  std::vector<LossInputs> inputs;
  std::vector<model::SequenceInput> batch;
  for (size_t i = 0; i < data.size(); ++i) {
    inputs.push_back(extract_loss_inputs(loss, data[i], i));
    batch.push_back({data[i].model_input, inputs.back().targets, inputs.back().target_shape});
  }
  model::ForwardPass<T> fp;
  try {
    fp = model_.forward(batch, backward);
  } catch (const model::InputError& e) {
    throw UserError(e.what());
  }

  // 2. Losses per datum.
  ForwardResult out;
  std::vector<std::vector<T>> dlogprobs(data.size());
  double loss_sum = 0;
  int64_t positions = 0, loss_tokens = 0, sequences = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    const std::vector<double> lp(fp.logprobs[i].begin(), fp.logprobs[i].end());
    const DatumLoss dl = compute_loss(loss, inputs[i], lp);
    for (size_t j = 0; j < lp.size(); ++j)
      if (!std::isfinite(dl.elementwise[j]) || !std::isfinite(dl.grad[j]))
        throw UserError("NonFiniteLoss: loss_fn '" + loss.name + "' is not finite at datum " + std::to_string(i) +
                        ", target entry " + std::to_string(j) + " (logprob " + std::to_string(lp[j]) +
                        "); check loss_fn_inputs['logprobs'] against the model's logprobs");
    loss_sum += dl.total;
    positions += inputs[i].n;
    loss_tokens += dl.loss_tokens;
    sequences += dl.loss_tokens > 0;
    dlogprobs[i].assign(dl.grad.begin(), dl.grad.end());
    out.loss_fn_outputs.push_back({TensorData{DType::float32, inputs[i].target_shape, lp},
                                   TensorData{DType::float32, inputs[i].target_shape, dl.elementwise}});
  }
  out.metrics = {{"loss:sum", loss_sum},
                 {"ntokens:sum", static_cast<double>(positions)},
                 {"num_loss_tokens:sum", static_cast<double>(loss_tokens)},
                 {"num_sequences:sum", static_cast<double>(sequences)}};

  // 3. Only now, with nothing left that can fail, touch the accumulator.
  if (backward) {
    model_.backward(fp, dlogprobs, *grads);
    acc->calls += 1;
    acc->loss_tokens += loss_tokens;
    acc->sequences += sequences;
  }
  return out;
}

template class TrainingState<float>;
template class TrainingState<double>;

}  // namespace kiln::train
