#pragma once
// Provenance spans (tinker 0.26+, protocol.md §W12, rule C17): a datum may say which of its
// positions reproduce a sequence Kiln sampled (its prompt or its sampled tokens), by the
// sequence_id the asample promise carried. Runs tile the field they annotate; Kiln checks the
// tiling, and checks each run against the sequence it names while it still remembers it (the
// most recent sequences, up to a token budget), so a datum that misquotes a sample is refused.
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "train/tensor.hpp"

namespace kiln::service {

struct ProvenanceSpan {
  bool sampled = true;  // sampled_tokens; false: prompt_tokens
  std::string sequence_id;
  int64_t offset = 0, length = 0;
  bool operator==(const ProvenanceSpan&) const = default;
};

// The spans of one datum: over its model input's positions, and over its loss_fn_inputs'
// positions (their first dimension). Either may be empty (not annotated).
struct DatumSpans {
  std::vector<ProvenanceSpan> model_input, loss_fn_inputs;
  bool operator==(const DatumSpans&) const = default;
};

class SampledSequences {
 public:
  explicit SampledSequences(int64_t token_budget = int64_t{1} << 24) : budget_(token_budget) {}

  // A sequence `tenant` sampled: its request's prompt and its own tokens.
  void record(const std::string& tenant, const std::string& sequence_id,
              std::shared_ptr<const std::vector<int64_t>> prompt, std::vector<int64_t> sampled);
  // InvalidRequest naming the datum, the field and the run when a datum's spans do not tile
  // what they annotate, or a run contradicts the sequence it names. `spans` is empty or one per datum.
  void check(const std::string& tenant, const std::vector<train::Datum>& data, const std::vector<DatumSpans>& spans) const;

 private:
  struct Entry {
    std::shared_ptr<const std::vector<int64_t>> prompt;
    std::vector<int64_t> sampled;
  };
  mutable std::mutex mu_;
  const int64_t budget_;
  int64_t tokens_ = 0;  // sampled tokens held (prompts are shared by a request's sequences)
  std::map<std::pair<std::string, std::string>, Entry> by_id_;  // (tenant, sequence id)
  std::deque<std::pair<std::string, std::string>> order_;       // oldest first
};

}  // namespace kiln::service
