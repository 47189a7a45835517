#include "client/chunking.hpp"

#include <algorithm>
#include <cstdint>
#include <string>

#include "client/errors.hpp"

namespace kiln::client {

std::vector<std::pair<size_t, size_t>> plan_chunks(const std::vector<Datum>& data, size_t max_datums, size_t max_bytes) {
  std::vector<std::pair<size_t, size_t>> chunks;
  size_t begin = 0, bytes = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    size_t size = 10 * data[i].model_input.size();
    for (const auto& [name, t] : data[i].loss_fn_inputs) size += 10 * t.numel();
    if (i > begin && (i - begin >= max_datums || bytes + size > max_bytes)) {
      chunks.emplace_back(begin, i);
      begin = i;
      bytes = 0;
    }
    bytes += size;
  }
  if (begin < data.size()) chunks.emplace_back(begin, data.size());
  return chunks;
}

ForwardBackwardOutput merge_chunks(const std::vector<ForwardBackwardOutput>& chunks) {
  ForwardBackwardOutput out;
  if (chunks.empty()) return out;
  out.loss_fn_output_type = chunks[0].loss_fn_output_type;
  for (const auto& c : chunks) out.loss_fn_outputs.insert(out.loss_fn_outputs.end(), c.loss_fn_outputs.begin(), c.loss_fn_outputs.end());
  for (const auto& [key, first] : chunks[0].metrics) {
    const size_t colon = key.find(':');
    if (colon == std::string::npos || key.find(':', colon + 1) != std::string::npos)
      throw ClientError("metric key '" + key + "' must contain exactly one ':' (name:reduction)");
    const std::string suffix = key.substr(colon + 1);
    std::vector<double> values, weights;
    bool everywhere = true;
    for (const auto& c : chunks) {
      auto it = c.metrics.find(key);
      if (it == c.metrics.end()) {
        everywhere = false;
        break;
      }
      values.push_back(it->second);
      weights.push_back(static_cast<double>(c.loss_fn_outputs.size()));
    }
    if (!everywhere) continue;
    double total_w = 0, weighted = 0;
    for (size_t i = 0; i < values.size(); ++i) {
      total_w += weights[i];
      weighted += weights[i] * values[i];
    }
    const double mean = total_w > 0 ? weighted / total_w : values[0];
    if (suffix == "sum") {
      double s = 0;
      for (double v : values) s += v;
      out.metrics[key] = s;
    } else if (suffix == "mean") {
      out.metrics[key] = mean;
    } else if (suffix == "min") {
      out.metrics[key] = *std::min_element(values.begin(), values.end());
    } else if (suffix == "max") {
      out.metrics[key] = *std::max_element(values.begin(), values.end());
    } else if (suffix == "slack") {
      out.metrics[key] = *std::max_element(values.begin(), values.end()) - mean;
    } else if (suffix == "hash_unordered") {
      uint64_t h = 0;
      for (double v : values) h += static_cast<uint64_t>(v);  // order-independent
      out.metrics[key] = static_cast<double>(h);
    } else if (suffix == "unique") {
      out.metrics[key] = values[0];
      for (size_t i = 1; i < values.size(); ++i) out.metrics[key + "_" + std::to_string(i + 1)] = values[i];
    }
  }
  return out;
}

}  // namespace kiln::client
