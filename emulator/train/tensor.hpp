#pragma once
// Backend form of the wire's TensorData and Datum: what the loss functions read.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/errors.hpp"

namespace kiln::train {

enum class DType { int64, int32, float32, float64 };

inline bool is_integer(DType d) { return d == DType::int64 || d == DType::int32; }
inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::int64: return "int64";
    case DType::int32: return "int32";
    case DType::float32: return "float32";
    case DType::float64: return "float64";
  }
  return "?";
}

// A dense tensor; values are kept as double (exact for token ids and for float32 data).
struct TensorData {
  DType dtype = DType::float32;
  std::vector<int64_t> shape;
  std::vector<double> data;

  static TensorData ints(std::vector<int64_t> values, std::vector<int64_t> shape = {}) {
    TensorData t{DType::int64, shape.empty() ? std::vector<int64_t>{static_cast<int64_t>(values.size())} : shape, {}};
    t.data.assign(values.begin(), values.end());
    return t;
  }
  static TensorData floats(std::vector<double> values, std::vector<int64_t> shape = {}) {
    TensorData t{DType::float32, shape.empty() ? std::vector<int64_t>{static_cast<int64_t>(values.size())} : shape,
                 std::move(values)};
    return t;
  }
};

using model::shape_string;  // "[3, 2]"

// One sequence: model_input tokens (the concatenated text chunks) and the loss inputs.
struct Datum {
  std::vector<int64_t> model_input;
  std::map<std::string, TensorData> loss_fn_inputs;
};

}  // namespace kiln::train
