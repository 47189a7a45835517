#pragma once
// The built-in losses of protocol.md §S4: per-token loss ℓ and its gradient dℓ/dlogprob, for one
// datum. A request's loss is Σ over datums and tokens (no mean).
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "train/tensor.hpp"

namespace kiln::train {

enum class LossKind { cross_entropy, importance_sampling, ppo, cispo, dro, dapo, gspo };

using ConfigValue = std::variant<double, std::string>;

// A validated loss_fn with its loss_fn_config (defaults filled in).
struct LossSpec {
  LossKind kind = LossKind::cross_entropy;
  std::string name = "cross_entropy";
  double clip_low = 0.0, clip_high = 0.0;  // ppo, cispo, dapo, gspo
  double beta = 0.0;                        // dro

  // Throws InvalidRequest with the spec's texts for an unknown name, unknown or misplaced keys,
  // non-finite values, lo > hi, and the (unimplemented) Fireworks output modes.
  static LossSpec parse(const std::string& loss_fn, const std::map<std::string, ConfigValue>& config);
};

// A datum's inputs, validated and laid out for the loss: everything indexed like target_tokens.
struct LossInputs {
  int64_t n = 0, k = 1;            // target_tokens is (n) or (n, k)
  std::vector<int64_t> target_shape;
  std::vector<int64_t> targets;    // n·k ids
  std::vector<double> weights;     // n·k (ones when absent)
  std::vector<double> logprobs;    // n, RL losses only (the sampling policy's q)
  std::vector<double> advantages;  // n, RL losses only
};

// Checks datum `index` against the spec's rules (required fields, dtypes, shapes, finiteness) and
// extracts its inputs. Throws UserError ("missing required field 'target_tokens'",
// "NonFiniteInTensor: loss_fn_inputs['advantages'] of datum 3 contains NaN", ...).
LossInputs extract_loss_inputs(const LossSpec& spec, const Datum& datum, size_t index);

// One datum's loss from its target logprobs lp (n·k values).
struct DatumLoss {
  std::vector<double> elementwise;  // ℓ, n·k values
  std::vector<double> grad;         // dL/dlp, n·k values
  double total = 0;                 // Σ ℓ
  int64_t loss_tokens = 0;          // entries with a non-zero gradient weight (protocol.md §S6.2)
};
DatumLoss compute_loss(const LossSpec& spec, const LossInputs& in, const std::vector<double>& lp);

}  // namespace kiln::train
