#include "conformance/workload.hpp"

#include <algorithm>
#include <sstream>

#include "conformance/client_traits.hpp"

#include "model/rng.hpp"

namespace kiln::conformance {

using nlohmann::json;

json to_driver(const std::vector<Example>& batch) {
  json out = json::array();
  for (const auto& e : batch) {
    const auto n = static_cast<int64_t>(e.targets.size());
    json inputs = {{"target_tokens", {{"data", e.targets}, {"dtype", "int64"}, {"shape", {n}}}}};
    if (e.weights) inputs["weights"] = {{"data", *e.weights}, {"dtype", "float32"}, {"shape", {n}}};
    if (e.sampling_logprobs) inputs["logprobs"] = {{"data", *e.sampling_logprobs}, {"dtype", "float32"}, {"shape", {n}}};
    if (e.advantages) inputs["advantages"] = {{"data", *e.advantages}, {"dtype", "float32"}, {"shape", {n}}};
    out.push_back({{"model_input", e.tokens}, {"loss_fn_inputs", inputs}});
  }
  return out;
}

std::vector<train::Datum> to_train(const std::vector<Example>& batch) {
  std::vector<train::Datum> out;
  for (const auto& e : batch) {
    train::Datum d;
    d.model_input = e.tokens;
    d.loss_fn_inputs["target_tokens"] = train::TensorData::ints(e.targets);
    if (e.weights) d.loss_fn_inputs["weights"] = train::TensorData::floats(*e.weights);
    if (e.sampling_logprobs) d.loss_fn_inputs["logprobs"] = train::TensorData::floats(*e.sampling_logprobs);
    if (e.advantages) d.loss_fn_inputs["advantages"] = train::TensorData::floats(*e.advantages);
    out.push_back(std::move(d));
  }
  return out;
}

std::string describe(const std::vector<Example>& batch) {
  std::ostringstream os;
  os << batch.size() << (batch.size() == 1 ? " datum, " : " datums, ");
  bool weighted = false;
  for (size_t i = 0; i < batch.size(); ++i) {
    os << (i ? "+" : "") << batch[i].tokens.size();
    weighted |= batch[i].weights.has_value();
  }
  os << " tokens" << (weighted ? ", weighted" : "");
  return os.str();
}

rc::Gen<std::vector<Example>> gen_batch(int max_datums, bool rl) {
  const auto example = rc::gen::exec([rl] {
    const auto text = *rc::gen::container<std::vector<int64_t>>(*gen_count(3, 13), rc::gen::resize(100, rc::gen::inRange<int64_t>(32, 127)));
    Example e;
    e.tokens.assign(text.begin(), text.end() - 1);
    e.targets.assign(text.begin() + 1, text.end());
    // Discrete choices by element, not inRange: inRange leans on 0 at small sizes, and
    // all-zero weights would train nothing.
    if (*rc::gen::element(false, false, true))
      e.weights = *rc::gen::container<std::vector<double>>(e.targets.size(), rc::gen::element(0.0, 0.5, 1.0, 1.0, 2.0));
    if (rl) {  // float32 values, so that both sides read the same numbers
      e.sampling_logprobs = *rc::gen::container<std::vector<double>>(e.targets.size(), rc::gen::element(-6.0, -5.5, -4.0, -1.0, -0.25));
      e.advantages = *rc::gen::container<std::vector<double>>(e.targets.size(), rc::gen::element(-1.0, -0.5, 0.0, 0.5, 1.0));
    }
    return e;
  });
  return gen_list(example, static_cast<size_t>(max_datums));
}

std::vector<Example> many_examples(size_t n, uint64_t seed) {
  model::SplitMix64 rng(seed);
  std::vector<Example> out(n);
  for (auto& e : out) {
    e.tokens = {static_cast<int64_t>(32 + rng.next() % 95), static_cast<int64_t>(32 + rng.next() % 95)};
    e.targets = {e.tokens[1], static_cast<int64_t>(32 + rng.next() % 95)};
  }
  return out;
}

void showValue(const LossChoice& l, std::ostream& os) {
  os << l.loss_fn;
  if (!l.config.empty()) os << " " << l.config.dump();
}

rc::Gen<LossChoice> gen_rl_loss() {
  return rc::gen::element(LossChoice{"importance_sampling"}, LossChoice{"ppo"},
                          LossChoice{"ppo", {{"clip_low_threshold", 0.9}, {"clip_high_threshold", 1.1}}}, LossChoice{"cispo"},
                          LossChoice{"dro", {{"beta", 0.1}}});
}

json to_driver(const Adam& a) {
  json j = {{"adam_params",
             {{"learning_rate", a.learning_rate}, {"beta1", a.beta1}, {"beta2", a.beta2}, {"eps", a.eps},
              {"weight_decay", a.weight_decay}, {"grad_clip_norm", a.grad_clip_norm}}}};
  if (!a.normalization.empty()) j["grad_accumulation_normalization"] = a.normalization;
  return j;
}

json optim_args(const std::string& client, const Adam& a) {
  json j = to_driver(a);
  j["client"] = client;
  return j;
}

std::string describe(const Adam& a) {
  std::ostringstream os;
  os << "lr=" << a.learning_rate;
  if (a.weight_decay) os << " wd=" << a.weight_decay;
  if (a.grad_clip_norm) os << " clip=" << a.grad_clip_norm;
  if (!a.normalization.empty()) os << " norm=" << a.normalization;
  return os.str();
}

rc::Gen<int64_t> gen_lora_rank(std::vector<int64_t> ranks) {
  if (!client_traits().has("full_parameter")) ranks.erase(std::remove(ranks.begin(), ranks.end(), 0), ranks.end());
  return rc::gen::elementOf(ranks);
}

rc::Gen<Adam> gen_adam() {
  return rc::gen::exec([] {
    Adam a;
    a.learning_rate = *rc::gen::element(1e-2, 3e-2);
    a.weight_decay = *rc::gen::element(0.0, 0.0, 0.01);
    a.grad_clip_norm = *rc::gen::element(0.0, 0.0, 1.0);
    if (client_traits().has("grad_accumulation_normalization"))
      a.normalization = *rc::gen::element<std::string>("", "num_loss_tokens", "num_sequences", "none");
    return a;
  });
}

}  // namespace kiln::conformance
