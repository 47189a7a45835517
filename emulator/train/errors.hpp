#pragma once
// The two ways a training request fails (spec open question A11):
// - InvalidRequest: the envelope is wrong (unknown loss_fn, bad config keys, bad optimizer
//   parameters). The wire layer answers HTTP 400 at submit.
// - UserError: the content is wrong (missing inputs, shapes, token ids, non-finite values). The
//   future fails with category "user".
// Either way nothing changes: no gradient, no optimizer state, no weights.
#include <stdexcept>
#include <string>

namespace kiln::train {

class InvalidRequest : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

class UserError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

}  // namespace kiln::train
