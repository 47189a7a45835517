// The safetensors reader (checkpoint files, and the SDKs' external weights): a malformed file is
// refused with a std::runtime_error naming what is wrong, never read out of bounds.
#include <stdexcept>

#include "fuzz/fuzz_util.hpp"
#include "service/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    kiln::service::decode_safetensors(kiln::fuzz::bytes(data, size));
  } catch (const std::runtime_error&) {  // the reader's documented refusal
  }
  return 0;
}
