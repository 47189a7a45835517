#pragma once
// Sparse CSR → dense, shared by the JSON and protobuf codecs (the SDK sends 2-D target_tokens or
// weights as CSR whenever that is smaller).
#include <cstdint>
#include <string>
#include <vector>

#include "train/errors.hpp"
#include "train/tensor.hpp"

namespace kiln::wire {

// A dense tensor this large would not fit the body limit as JSON or protobuf anyway.
inline constexpr int64_t kMaxDenseElements = int64_t{1} << 28;

// values: the non-zeros; crow: rows+1 non-decreasing offsets from 0 to nnz; col: one column per
// non-zero. Returns the dense row-major values of `shape` (2-D). Throws InvalidRequest naming field.
inline std::vector<double> dense_from_csr(const std::vector<double>& values, const std::vector<int64_t>& crow,
                                          const std::vector<int64_t>& col, const std::vector<int64_t>& shape,
                                          const std::string& field) {
  const int64_t nnz = static_cast<int64_t>(values.size());
  // Written so that no shape a client sends can overflow (found by fuzz/sparse_csr_fuzz.cpp).
  bool ok = shape.size() == 2 && shape[0] >= 0 && shape[1] >= 0 && !crow.empty() &&
            static_cast<int64_t>(crow.size()) - 1 == shape[0] && static_cast<int64_t>(col.size()) == nnz &&
            crow.front() == 0 && crow.back() == nnz;
  for (size_t r = 0; ok && r + 1 < crow.size(); ++r) ok = crow[r] <= crow[r + 1];
  for (size_t k = 0; ok && k < col.size(); ++k) ok = col[k] >= 0 && col[k] < shape[1];
  if (!ok)
    throw train::InvalidRequest("field '" + field + "' is not a valid sparse CSR tensor for shape " +
                                train::shape_string(shape));
  int64_t elements = 0;
  if (__builtin_mul_overflow(shape[0], shape[1], &elements) || elements > kMaxDenseElements)
    throw train::InvalidRequest("field '" + field + "' expands to shape " + train::shape_string(shape) +
                                ", more than " + std::to_string(kMaxDenseElements) + " elements");
  std::vector<double> dense(static_cast<size_t>(elements), 0.0);
  for (int64_t r = 0; r < shape[0]; ++r)
    for (int64_t k = crow[r]; k < crow[r + 1]; ++k) dense[static_cast<size_t>(r * shape[1] + col[k])] = values[k];
  return dense;
}

}  // namespace kiln::wire
