#include "train/loss.hpp"

#include <algorithm>
#include <cmath>

#include "train/errors.hpp"

namespace kiln::train {

namespace {

struct LossInfo {
  const char* name;
  LossKind kind;
  bool rl;                  // needs logprobs and advantages
  const char* keys[2];      // allowed config keys (nullptr when none)
  double defaults[2];
};

// protocol.md §S4.9. dapo and gspo follow the spec's recommended (inferred) definitions.
constexpr LossInfo kLosses[] = {
    {"cross_entropy", LossKind::cross_entropy, false, {nullptr, nullptr}, {0, 0}},
    {"importance_sampling", LossKind::importance_sampling, true, {nullptr, nullptr}, {0, 0}},
    {"ppo", LossKind::ppo, true, {"clip_low_threshold", "clip_high_threshold"}, {0.8, 1.2}},
    {"cispo", LossKind::cispo, true, {"clip_low_threshold", "clip_high_threshold"}, {0.0, 4.0}},
    {"dro", LossKind::dro, true, {"beta", nullptr}, {0.05, 0}},
    {"dapo", LossKind::dapo, true, {"clip_low_threshold", "clip_high_threshold"}, {0.8, 1.28}},
    {"gspo", LossKind::gspo, true, {"clip_low_threshold", "clip_high_threshold"}, {0.9997, 1.0004}},
};

const LossInfo& info(LossKind k) {
  for (const auto& l : kLosses)
    if (l.kind == k) return l;
  throw std::logic_error("unknown loss kind");
}

std::string quoted_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", '" : "'") + items[i] + "'";
  return out + "]";
}

// Keys that Fireworks' embedding and contrastive modes put on cross_entropy (protocol.md §W6.12).
bool is_output_mode_key(const std::string& key) {
  return key == "output" || key == "pooling" || key == "num_queries" || key == "temperature" ||
         key == "num_extra_negatives";
}

}  // namespace

LossSpec LossSpec::parse(const std::string& loss_fn, const std::map<std::string, ConfigValue>& config) {
  const LossInfo* found = nullptr;
  for (const auto& l : kLosses)
    if (loss_fn == l.name) found = &l;
  if (!found) {
    std::string names;
    for (const auto& l : kLosses) names += (names.empty() ? "" : ", ") + std::string(l.name);
    // Fireworks trainers' own built-ins (fireworks-ai 1.2.x) whose definitions are not public:
    // refused by name rather than guessed (protocol.md §W14.3).
    if (loss_fn == "kl_distillation" || loss_fn == "dppo")
      throw InvalidRequest("loss_fn '" + loss_fn + "' is a Fireworks trainer built-in whose definition is not public; "
                           "Kiln does not emulate it. Supported: " + names + ".");
    throw InvalidRequest("Unknown loss_fn '" + loss_fn + "'. Supported: " + names + ".");
  }
  LossSpec spec;
  spec.kind = found->kind;
  spec.name = found->name;
  if (found->keys[0] && std::string(found->keys[0]) == "clip_low_threshold") {
    spec.clip_low = found->defaults[0];
    spec.clip_high = found->defaults[1];
  }
  if (found->kind == LossKind::dro) spec.beta = found->defaults[0];

  std::vector<std::string> received, unknown, allowed;
  for (const char* k : found->keys)
    if (k) allowed.push_back(k);
  std::map<std::string, ConfigValue> numeric;
  for (const auto& [key, value] : config) {
    // `output: "logprobs"` is the ordinary mode; every other output-mode setting is unsupported.
    if (spec.kind == LossKind::cross_entropy && key == "output" &&
        std::holds_alternative<std::string>(value) && std::get<std::string>(value) == "logprobs")
      continue;
    if (spec.kind == LossKind::cross_entropy && is_output_mode_key(key))
      throw InvalidRequest("loss_fn_config output modes are not supported (got key '" + key + "')");
    received.push_back(key);
    numeric[key] = value;
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) unknown.push_back(key);
  }
  if (!received.empty() && allowed.empty())
    throw InvalidRequest("loss_fn='" + spec.name + "' does not accept loss_fn_config keys. Received: " +
                         quoted_list(received) + ".");
  if (!unknown.empty())
    throw InvalidRequest("Invalid loss_fn_config keys for loss_fn='" + spec.name + "': " + quoted_list(unknown) +
                         ". Allowed keys: " + quoted_list(allowed) + ".");
  for (const auto& [key, value] : numeric) {
    if (!std::holds_alternative<double>(value))
      throw InvalidRequest("loss_fn_config['" + key + "'] must be a number, got '" + std::get<std::string>(value) + "'");
    const double v = std::get<double>(value);
    if (!std::isfinite(v)) throw InvalidRequest("loss_fn_config['" + key + "'] must be finite, got " + std::to_string(v));
    if (v < 0) throw InvalidRequest("loss_fn_config['" + key + "'] must be >= 0, got " + std::to_string(v));
    if (key == "clip_low_threshold") spec.clip_low = v;
    if (key == "clip_high_threshold") spec.clip_high = v;
    if (key == "beta") spec.beta = v;
  }
  if (spec.clip_low > spec.clip_high)
    throw InvalidRequest("loss_fn_config: clip_low_threshold (" + std::to_string(spec.clip_low) +
                         ") must not exceed clip_high_threshold (" + std::to_string(spec.clip_high) + ")");
  return spec;
}

// ---------------------------------------------------------------------------------------------

namespace {

std::string field(const std::string& key, size_t index) {
  return "loss_fn_inputs['" + key + "'] of datum " + std::to_string(index);
}

const TensorData* require(const Datum& d, const std::string& key, size_t index) {
  auto it = d.loss_fn_inputs.find(key);
  if (it == d.loss_fn_inputs.end())
    throw UserError("missing required field '" + key + "' (datum " + std::to_string(index) + ")");
  return &it->second;
}

void check_values(const TensorData& t, const std::string& key, size_t index, bool integer) {
  int64_t n = 1;
  for (int64_t s : t.shape) n *= s;
  if (n != static_cast<int64_t>(t.data.size()))
    throw UserError(field(key, index) + " has " + std::to_string(t.data.size()) + " values but shape " +
                    shape_string(t.shape));
  if (integer && !is_integer(t.dtype))
    throw UserError(field(key, index) + " must be int64 or int32, got " + dtype_name(t.dtype));
  if (!integer && is_integer(t.dtype))
    throw UserError(field(key, index) + " must be float32 or float64, got " + dtype_name(t.dtype));
  for (double v : t.data)
    if (!std::isfinite(v))
      throw UserError("NonFiniteInTensor: " + field(key, index) + " contains " + (std::isnan(v) ? "NaN" : "Inf"));
}

void check_shape(const TensorData& t, const std::string& key, size_t index, const std::vector<int64_t>& want,
                 const std::string& why) {
  if (t.shape != want)
    throw UserError(field(key, index) + " has shape " + shape_string(t.shape) + ", expected " +
                    shape_string(want) + " (" + why + ")");
}

}  // namespace

LossInputs extract_loss_inputs(const LossSpec& spec, const Datum& d, size_t index) {
  const bool rl = info(spec.kind).rl;
  const int64_t n = static_cast<int64_t>(d.model_input.size());
  const std::string n_str = std::to_string(n);
  LossInputs in;
  in.n = n;

  const TensorData* tgt = require(d, "target_tokens", index);
  check_values(*tgt, "target_tokens", index, true);
  const bool shape_ok = !tgt->shape.empty() && tgt->shape[0] == n &&
                        (tgt->shape.size() == 1 || (tgt->shape.size() == 2 && tgt->shape[1] >= 1 && !rl));
  if (!shape_ok)
    throw UserError(field("target_tokens", index) + " has shape " + shape_string(tgt->shape) + ", expected [" + n_str +
                    (rl ? "]" : "] or [" + n_str + ", K]") + " (model_input has " + n_str + " tokens" +
                    (rl ? "; loss_fn '" + spec.name + "' takes one target per position)" : ")"));
  in.target_shape = tgt->shape;
  in.k = tgt->shape.size() == 2 ? tgt->shape[1] : 1;
  in.targets.assign(tgt->data.begin(), tgt->data.end());

  if (auto it = d.loss_fn_inputs.find("weights"); it != d.loss_fn_inputs.end()) {
    check_values(it->second, "weights", index, false);
    check_shape(it->second, "weights", index, tgt->shape, "the shape of target_tokens");
    in.weights = it->second.data;
  } else {
    in.weights.assign(tgt->data.size(), 1.0);  // absent → ones (protocol.md rule C8)
  }
  if (rl) {
    for (const char* key : {"logprobs", "advantages"}) {
      const TensorData* t = require(d, key, index);
      check_values(*t, key, index, false);
      check_shape(*t, key, index, {n}, "one value per model_input position");
      (std::string(key) == "logprobs" ? in.logprobs : in.advantages) = t->data;
    }
  }
  return in;
}

// ---------------------------------------------------------------------------------------------

namespace {

// −min(r·A, clip(r)·A) and its derivative with respect to r, with torch's conventions: clamp passes
// the gradient on [lo, hi] inclusive, and min splits it evenly on a tie.
struct ClippedTerm {
  double loss, dloss_dr;
};
ClippedTerm clipped_surrogate(double r, double a, double lo, double hi) {
  const double unclipped = r * a, clipped = std::clamp(r, lo, hi) * a;
  const double d_clipped = (r >= lo && r <= hi) ? a : 0.0;
  double d;
  if (unclipped < clipped)
    d = a;
  else if (unclipped > clipped)
    d = d_clipped;
  else
    d = 0.5 * (a + d_clipped);
  return {-std::min(unclipped, clipped), -d};
}

}  // namespace

DatumLoss compute_loss(const LossSpec& spec, const LossInputs& in, const std::vector<double>& lp) {
  const size_t m = lp.size();
  DatumLoss out;
  out.elementwise.assign(m, 0.0);
  out.grad.assign(m, 0.0);
  const double lo = spec.clip_low, hi = spec.clip_high;
  switch (spec.kind) {
    case LossKind::cross_entropy:
      for (size_t j = 0; j < m; ++j) {
        out.elementwise[j] = -in.weights[j] * lp[j];
        out.grad[j] = -in.weights[j];
        out.loss_tokens += in.weights[j] != 0.0;
      }
      break;
    case LossKind::importance_sampling:
    case LossKind::ppo:
    case LossKind::dapo:
    case LossKind::cispo:
    case LossKind::dro:
      for (size_t t = 0; t < m; ++t) {
        const double w = in.weights[t], a = in.advantages[t], q = in.logprobs[t];
        const double r = std::exp(lp[t] - q);
        double loss = 0, grad = 0;
        if (spec.kind == LossKind::importance_sampling) {
          loss = -r * a;
          grad = -r * a;
        } else if (spec.kind == LossKind::cispo) {
          const double c = std::clamp(r, lo, hi);  // constant: no gradient through the ratio
          loss = -c * lp[t] * a;
          grad = -c * a;
        } else if (spec.kind == LossKind::dro) {
          loss = -(lp[t] * a - 0.5 * spec.beta * (lp[t] - q) * (lp[t] - q));
          grad = -(a - spec.beta * (lp[t] - q));
        } else {  // ppo, dapo
          const ClippedTerm c = clipped_surrogate(r, a, lo, hi);
          loss = c.loss;
          grad = c.dloss_dr * r;
        }
        out.elementwise[t] = w * loss;
        out.grad[t] = w * grad;
        out.loss_tokens += (a * w) != 0.0;
      }
      break;
    case LossKind::gspo: {
      // Sequence-level ratio s = exp(mean over M of (lp − q)); each token's ratio has value s and
      // gradient through its own logprob only (GSPO-token). M: positions with A ≠ 0 and weight ≠ 0.
      std::vector<size_t> M;
      double mean = 0;
      for (size_t t = 0; t < m; ++t)
        if (in.advantages[t] != 0.0 && in.weights[t] != 0.0) {
          M.push_back(t);
          mean += lp[t] - in.logprobs[t];
        }
      if (M.empty()) break;
      const double inv = 1.0 / static_cast<double>(M.size());
      const double s = std::exp(mean * inv);
      for (size_t t : M) {
        const ClippedTerm c = clipped_surrogate(s, in.advantages[t], lo, hi);
        out.elementwise[t] = inv * c.loss;
        out.grad[t] = inv * c.dloss_dr * s;
      }
      out.loss_tokens = static_cast<int64_t>(M.size());
      break;
    }
  }
  for (double v : out.elementwise) out.total += v;
  return out;
}

}  // namespace kiln::train
