#pragma once
// Shared by the libFuzzer targets (fuzz/README.md): what counts as a clean refusal. A decoder of
// untrusted bytes may refuse them only with the project's errors (kiln::Error, answered 4xx with
// a message naming the field) or nlohmann's parse errors (answered 400 "malformed JSON body");
// anything else escaping (std::out_of_range, std::length_error, a crash, UB, a leak) is a finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "errors.hpp"

namespace kiln::fuzz {

template <typename F>
void refuses_cleanly(F&& decode) {
  try {
    decode();
  } catch (const kiln::Error&) {
  } catch (const nlohmann::json::exception&) {
  }
}

inline std::string bytes(const uint8_t* data, size_t size) { return std::string(reinterpret_cast<const char*>(data), size); }

}  // namespace kiln::fuzz
