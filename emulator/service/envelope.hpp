#pragma once
// The checks a training request passes at submit, against the model it is for: anything that
// fails here is answered 400 and the request never runs (rule A11 in docs/protocol.md). What
// only executing can find out fails the future instead.
#include <cstdint>

#include "service/requests.hpp"
#include "service/service_types.hpp"

namespace kiln::service {

// Checks `req` and fills in its parsed parts (a forward's LossSpec). Throws InvalidRequest
// naming the field.
void accept_envelope(const ModelInfo& model, int64_t seq_id, TrainingRequest& req);

}  // namespace kiln::service
