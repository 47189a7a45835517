#pragma once
// Named parameter tensors with Llama / PEFT names: the unit that models, gradients, optimizer
// state and (later) safetensors checkpoints share.
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

namespace kiln::model {

// 64-byte aligned storage. Eigen's reductions peel unaligned leading elements, so the order of a
// sum depends on the address; a fixed alignment keeps results bitwise reproducible run to run.
template <typename T>
struct AlignedAllocator {
  using value_type = T;
  static constexpr size_t kAlign = 64;
  AlignedAllocator() = default;
  template <typename U>
  AlignedAllocator(const AlignedAllocator<U>&) {}
  T* allocate(size_t n) {
    const size_t bytes = (n * sizeof(T) + kAlign - 1) / kAlign * kAlign;
    if (void* p = std::aligned_alloc(kAlign, bytes ? bytes : kAlign)) return static_cast<T*>(p);
    throw std::bad_alloc();
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <typename U>
  bool operator==(const AlignedAllocator<U>&) const { return true; }
};
template <typename T>
using AlignedVector = std::vector<T, AlignedAllocator<T>>;

template <typename T>
struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  AlignedVector<T> data;

  int64_t numel() const { return static_cast<int64_t>(data.size()); }
};

template <typename T>
class ParamSet {
 public:
  // Appends a zero-filled tensor and returns its index.
  int add(std::string name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    tensors_.push_back({std::move(name), std::move(shape), AlignedVector<T>(static_cast<size_t>(n))});
    return static_cast<int>(tensors_.size()) - 1;
  }
  int size() const { return static_cast<int>(tensors_.size()); }
  Tensor<T>& operator[](int i) { return tensors_[static_cast<size_t>(i)]; }
  const Tensor<T>& operator[](int i) const { return tensors_[static_cast<size_t>(i)]; }
  // Index of the tensor called `name`, or -1.
  int find(const std::string& name) const {
    for (int i = 0; i < size(); ++i)
      if (tensors_[static_cast<size_t>(i)].name == name) return i;
    return -1;
  }
  int64_t numel() const {
    int64_t n = 0;
    for (const auto& t : tensors_) n += t.numel();
    return n;
  }
  // Same names and shapes, all zeros (a gradient accumulator, Adam moments).
  ParamSet zeros_like() const {
    ParamSet out;
    for (const auto& t : tensors_) out.add(t.name, t.shape);
    return out;
  }
  void set_zero() {
    for (auto& t : tensors_) std::fill(t.data.begin(), t.data.end(), T(0));
  }
  template <typename U>
  ParamSet<U> cast() const {
    ParamSet<U> out;
    for (const auto& t : tensors_) {
      auto& dst = out[out.add(t.name, t.shape)].data;
      for (size_t i = 0; i < t.data.size(); ++i) dst[i] = static_cast<U>(t.data[i]);
    }
    return out;
  }
  auto begin() { return tensors_.begin(); }
  auto end() { return tensors_.end(); }
  auto begin() const { return tensors_.begin(); }
  auto end() const { return tensors_.end(); }

 private:
  std::vector<Tensor<T>> tensors_;
};

}  // namespace kiln::model
