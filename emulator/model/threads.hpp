#pragma once
// The compute thread count: fixed and process-wide. Results are bitwise identical across runs at
// the same count (every parallel loop writes disjoint outputs; every reduction has a fixed order).
namespace kiln::model {

void set_num_threads(int n);  // n >= 1; also sets Eigen's GEMM thread count
int num_threads();

}  // namespace kiln::model
