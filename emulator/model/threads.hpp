#pragma once
// The compute thread count: fixed and process-wide. Results are bitwise identical across runs at
// the same count (every parallel loop writes disjoint outputs; every reduction has a fixed order).
#include <cstdint>

namespace kiln::model {

void set_num_threads(int n);  // n >= 1; also sets Eigen's GEMM thread count
int num_threads();

// The threads for a parallel loop over `rows` independent rows: all of them, or one when the
// rows are too few to pay for waking the others (a short prompt's prefill, a one-token step).
// Rows are independent, so the count never changes a result.
inline constexpr int64_t kMinParallelRows = 32;
inline int threads_for(int64_t rows) { return rows >= kMinParallelRows ? num_threads() : 1; }

}  // namespace kiln::model
