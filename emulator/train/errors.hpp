#pragma once
// The two ways a training request fails (protocol.md rule A11; the types live in errors.hpp):
// - InvalidRequest: the envelope is wrong (unknown loss_fn, bad config keys, bad optimizer
//   parameters). The wire layer answers HTTP 400 at submit.
// - UserError: the content is wrong (missing inputs, shapes, token ids, non-finite values). Found
//   while executing, it fails the future with category "user"; found at submit, it is a 400.
// Either way nothing changes: no gradient, no optimizer state, no weights.
#include "../errors.hpp"  // the project-wide error types, not this file

namespace kiln::train {
using kiln::InvalidRequest;
using kiln::UserError;
}  // namespace kiln::train
