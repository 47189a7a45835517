#include "service/provenance.hpp"

#include "errors.hpp"

namespace kiln::service {

void SampledSequences::record(const std::string& tenant, const std::string& sequence_id,
                              std::shared_ptr<const std::vector<int64_t>> prompt, std::vector<int64_t> sampled) {
  std::lock_guard lock(mu_);
  auto key = std::make_pair(tenant, sequence_id);
  tokens_ += static_cast<int64_t>(sampled.size()) + 1;
  by_id_[key] = {std::move(prompt), std::move(sampled)};
  order_.push_back(std::move(key));
  while (tokens_ > budget_ && !order_.empty()) {  // forget the oldest
    auto it = by_id_.find(order_.front());
    if (it != by_id_.end()) {
      tokens_ -= static_cast<int64_t>(it->second.sampled.size()) + 1;
      by_id_.erase(it);
    }
    order_.pop_front();
  }
}

namespace {

// The datum's values a span field annotates: its model input, or its target tokens (1-D ids;
// empty when the loss inputs carry none, then only the tiling is checked).
std::vector<int64_t> loss_positions(const train::Datum& d, int64_t& count) {
  count = static_cast<int64_t>(d.model_input.size());
  auto t = d.loss_fn_inputs.find("target_tokens");
  if (t == d.loss_fn_inputs.end() || t->second.shape.empty()) return {};
  count = t->second.shape[0];
  // Only 1-D ids whose values match their shape are compared (the content checks report the rest).
  if (t->second.shape.size() != 1 || static_cast<int64_t>(t->second.data.size()) != count) return {};
  return {t->second.data.begin(), t->second.data.end()};
}

}  // namespace

void SampledSequences::check(const std::string& tenant, const std::vector<train::Datum>& data,
                             const std::vector<DatumSpans>& spans) const {
  if (spans.empty()) return;
  if (spans.size() != data.size())
    throw InvalidRequest("provenance spans are given for " + std::to_string(spans.size()) + " datums of " +
                         std::to_string(data.size()));
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < data.size(); ++i) {
    const auto check_field = [&](const std::vector<ProvenanceSpan>& runs, const char* field,
                                 const std::vector<int64_t>& values, int64_t positions) {
      if (runs.empty()) return;
      const std::string where = "datum " + std::to_string(i) + " " + field;
      int64_t at = 0;
      for (size_t r = 0; r < runs.size(); ++r) {
        const ProvenanceSpan& s = runs[r];
        const std::string run = where + "[" + std::to_string(r) + "]";
        if (s.sequence_id.empty() || s.offset < 0 || s.length < 1)
          throw InvalidRequest(run + ": a run needs a sequence_id, offset >= 0 and length >= 1");
        if (at + s.length > positions) break;  // reported below as a tiling error
        if (auto e = by_id_.find({tenant, s.sequence_id}); e != by_id_.end()) {
          const std::vector<int64_t>& source = s.sampled ? e->second.sampled : *e->second.prompt;
          const char* what = s.sampled ? "sampled tokens" : "prompt";
          if (s.offset + s.length > static_cast<int64_t>(source.size()))
            throw InvalidRequest(run + ": positions " + std::to_string(s.offset) + ".." + std::to_string(s.offset + s.length) +
                                 " are beyond the " + std::to_string(source.size()) + " " + what + " of sequence '" +
                                 s.sequence_id + "'");
          for (int64_t j = 0; j < s.length && !values.empty(); ++j)
            if (values[at + j] != source[s.offset + j])
              throw InvalidRequest(run + ": position " + std::to_string(at + j) + " holds token " +
                                   std::to_string(values[at + j]) + ", but sequence '" + s.sequence_id + "' has " +
                                   std::to_string(source[s.offset + j]) + " at " + what + " position " +
                                   std::to_string(s.offset + j));
        }
        at += s.length;
      }
      int64_t total = 0;
      for (const auto& s : runs) total += s.length;
      if (total != positions)
        throw InvalidRequest(where + ": the runs cover " + std::to_string(total) + " positions, but the field has " +
                             std::to_string(positions) + " (runs must tile it)");
    };
    check_field(spans[i].model_input, "model_input_spans", data[i].model_input,
                static_cast<int64_t>(data[i].model_input.size()));
    int64_t positions = 0;
    const std::vector<int64_t> targets = loss_positions(data[i], positions);
    check_field(spans[i].loss_fn_inputs, "loss_fn_input_spans", targets, positions);
  }
}

}  // namespace kiln::service
