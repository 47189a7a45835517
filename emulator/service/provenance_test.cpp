// Provenance spans against what was sampled (rule C17).
#include "service/provenance.hpp"

#include <gtest/gtest.h>

#include "errors.hpp"

namespace kiln::service {
namespace {

train::Datum datum(std::vector<int64_t> input, std::vector<int64_t> targets) {
  train::Datum d;
  d.model_input = std::move(input);
  d.loss_fn_inputs["target_tokens"] = train::TensorData::ints(std::move(targets));
  return d;
}

std::string refusal(const SampledSequences& seqs, const train::Datum& d, const DatumSpans& spans,
                    const std::string& tenant = "t") {
  try {
    seqs.check(tenant, {d}, {spans});
  } catch (const InvalidRequest& e) {
    return e.what();
  }
  return "accepted";
}

// An RL datum: the prompt then the sample, targets shifted by one, each run naming where it came from.
TEST(ProvenanceTest, RunsThatQuoteTheirSequencesAreAcceptedAndMisquotesRefused) {
  SampledSequences seqs;
  const auto prompt = std::make_shared<const std::vector<int64_t>>(std::vector<int64_t>{10, 11, 12});
  seqs.record("t", "r1:0", prompt, {20, 21});
  const train::Datum d = datum({10, 11, 12, 20}, {11, 12, 20, 21});
  DatumSpans spans;
  spans.model_input = {{false, "r1:0", 0, 3}, {true, "r1:0", 0, 1}};
  spans.loss_fn_inputs = {{false, "r1:0", 1, 2}, {true, "r1:0", 0, 2}};
  EXPECT_EQ(refusal(seqs, d, spans), "accepted");

  DatumSpans wrong = spans;
  wrong.loss_fn_inputs[1].offset = 1;  // claims sampled tokens 1..3: there are 2
  EXPECT_EQ(refusal(seqs, d, wrong),
            "datum 0 loss_fn_input_spans[1]: positions 1..3 are beyond the 2 sampled tokens of sequence 'r1:0'");
  const train::Datum edited = datum({10, 11, 12, 99}, {11, 12, 20, 21});  // the sample was changed
  EXPECT_EQ(refusal(seqs, edited, spans), "datum 0 model_input_spans[1]: position 3 holds token 99, but sequence "
                                          "'r1:0' has 20 at sampled tokens position 0");
  wrong = spans;
  wrong.model_input.pop_back();
  EXPECT_EQ(refusal(seqs, d, wrong), "datum 0 model_input_spans: the runs cover 3 positions, but the field has 4 (runs must tile it)");
  wrong = spans;
  wrong.model_input[0].length = 0;
  EXPECT_EQ(refusal(seqs, d, wrong), "datum 0 model_input_spans[0]: a run needs a sequence_id, offset >= 0 and length >= 1");
  // Another tenant's sequence, or one never sampled, is not known here: only the tiling is checked.
  EXPECT_EQ(refusal(seqs, edited, spans, "other"), "accepted");
  EXPECT_THROW(seqs.check("t", {d, d}, {spans}), InvalidRequest);  // one entry per datum
  train::Datum short_targets = d;  // values fewer than the shape says: tiling only, no read past them
  short_targets.loss_fn_inputs["target_tokens"].data.resize(2);
  EXPECT_EQ(refusal(seqs, short_targets, spans), "accepted");
}

// The oldest sequences are forgotten beyond the token budget; a forgotten one is not checked.
TEST(ProvenanceTest, OnlyTheMostRecentSequencesAreRemembered) {
  SampledSequences seqs(/*token_budget=*/6);
  const auto prompt = std::make_shared<const std::vector<int64_t>>(std::vector<int64_t>{1});
  seqs.record("t", "a", prompt, {5, 5});
  seqs.record("t", "b", prompt, {6, 6});  // 3 + 3 tokens held
  const train::Datum d = datum({7, 7}, {7, 7});
  const DatumSpans on_a{{{true, "a", 0, 2}}, {}}, on_b{{{true, "b", 0, 2}}, {}};
  EXPECT_NE(refusal(seqs, d, on_a), "accepted");
  seqs.record("t", "c", prompt, {8, 8});  // "a" goes
  EXPECT_EQ(refusal(seqs, d, on_a), "accepted");
  EXPECT_NE(refusal(seqs, d, on_b), "accepted");
}

}  // namespace
}  // namespace kiln::service
