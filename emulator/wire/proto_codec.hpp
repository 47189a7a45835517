#pragma once
// The protobuf transport of tinker 0.25 (protocol.md §W8, §W9): forward_backward requests in, and
// ForwardBackwardOutput results out; zstd-compressed bodies are decompressed first.
#include <string>

#include "model/sampler.hpp"
#include "service/requests.hpp"

namespace kiln::wire {

// Decompresses a zstd frame, refusing output beyond max_bytes. Throws train::InvalidRequest.
std::string zstd_decompress(const std::string& frame, size_t max_bytes);

// A serialized tinker_public.ForwardBackwardRequest → model id, seq id and the request.
struct ProtoForwardBackward {
  std::string model_id;
  int64_t seq_id = 0;
  service::ForwardRequest request;
};
ProtoForwardBackward forward_backward_from_proto(const std::string& bytes);

// A forward / forward_backward result as a serialized tinker_public.ForwardBackwardOutput.
// Consecutive datums with the same trailing target shape share one ArrayRecord.
// include_elementwise_loss = false writes logprobs only (the spec's test vector has just those).
std::string forward_result_to_proto(const train::ForwardResult& r, const std::string& output_type = "TorchLossReturn",
                                    bool include_elementwise_loss = true);

}  // namespace kiln::wire

namespace kiln::wire {

// A sample result as a serialized tinker_public.SampleResponse (protocol.md §W8.5).
std::string sample_result_to_proto(const model::SampleOutput& r);

}  // namespace kiln::wire
