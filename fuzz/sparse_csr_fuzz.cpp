// Sparse CSR → dense expansion: shape, row offsets, columns and values as a client could send them.
#include <fuzzer/FuzzedDataProvider.h>

#include "fuzz/fuzz_util.hpp"
#include "wire/sparse_csr.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  std::vector<int64_t> shape, crow, col;
  std::vector<double> values;
  const int dims = in.ConsumeIntegralInRange<int>(0, 3);
  for (int i = 0; i < dims; ++i)  // mostly small, sometimes anything
    shape.push_back(in.ConsumeBool() ? in.ConsumeIntegralInRange<int64_t>(-2, 64) : in.ConsumeIntegral<int64_t>());
  const size_t rows = in.ConsumeIntegralInRange<size_t>(0, 66), nnz = in.ConsumeIntegralInRange<size_t>(0, 256);
  for (size_t i = 0; i < rows; ++i) crow.push_back(in.ConsumeIntegralInRange<int64_t>(-1, 300));
  for (size_t i = 0; i < nnz; ++i) col.push_back(in.ConsumeIntegralInRange<int64_t>(-1, 70));
  for (size_t i = 0; i < nnz; ++i) values.push_back(in.ConsumeFloatingPoint<double>());
  kiln::fuzz::refuses_cleanly([&] { kiln::wire::dense_from_csr(values, crow, col, shape, "target_tokens"); });
  return 0;
}
