#pragma once
// Deterministic random streams for weight initialisation.
// SplitMix64 is tiny, has no hidden state beyond one word, and is trivial to reproduce in the
// PyTorch reference script (fixtures/golden/gen_model_golden.py), which rebuilds the same weights.
#include <cmath>
#include <cstdint>
#include <string_view>

namespace kiln::model {

// FNV-1a, 64 bit, continuing from `h`: turns names into stream seeds (and, fed piece by piece,
// fingerprints requests).
inline uint64_t fnv1a64(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ULL) {
  const auto* c = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= c[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}
inline uint64_t fnv1a64(std::string_view s) { return fnv1a64(s.data(), s.size()); }

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Standard normal by Box-Muller (one value per two uniforms, the cosine branch).
  double normal() {
    const double u1 = uniform();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(2.0 * M_PI * u2);
  }

 private:
  uint64_t state_;
};

// The stream for one tensor: depends on the owner (base model name, or "lora"), the tensor name
// and the seed, so every tensor is independent of the others and of their order.
inline SplitMix64 tensor_stream(std::string_view owner, std::string_view tensor, uint64_t seed) {
  const uint64_t h = fnv1a64(owner) ^ (fnv1a64(tensor) * 0x9E3779B97F4A7C15ULL);
  return SplitMix64(h ^ (seed * 0xD1B54A32D192ED03ULL));
}

}  // namespace kiln::model
