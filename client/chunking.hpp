#pragma once
// Splitting forward / forward_backward data into chunks, and merging the chunks' results
// (protocol.md §S9.3–9.4, protocol.md §W3.6).
#include <vector>

#include "client/types.hpp"

namespace kiln::client {

// Consecutive datum ranges [begin, end): a new chunk starts when the next datum would pass
// max_bytes (estimated the tinker 0.23 way: 10 bytes per token and per tensor element) or the
// chunk already holds max_datums.
std::vector<std::pair<size_t, size_t>> plan_chunks(const std::vector<Datum>& data, size_t max_datums, size_t max_bytes);

// Outputs concatenated in order; metrics merged by the suffix after their single ':' (sum, mean
// weighted by outputs, min, max, slack, hash_unordered, unique). Throws ClientError for a key
// without exactly one ':'. Keys absent from any chunk or with an unknown suffix are dropped.
ForwardBackwardOutput merge_chunks(const std::vector<ForwardBackwardOutput>& chunks);

}  // namespace kiln::client
