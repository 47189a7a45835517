#pragma once
// The safetensors file format: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then the raw bytes.
// Kiln writes float32 tensors (and uint32 for XOR deltas) and reads them back bit for bit.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/params.hpp"

namespace kiln::service {

struct SafetensorsFile {
  std::map<std::string, std::string> metadata;
  model::ParamSet<float> tensors;     // F32 tensors, in file order
  model::ParamSet<uint32_t> words;    // U32 tensors (XOR deltas)
};

// Serialises to bytes (tensors in the order given; names must be unique).
std::string encode_safetensors(const SafetensorsFile& file);
// Parses bytes; throws std::runtime_error naming the problem for a malformed file.
SafetensorsFile decode_safetensors(const std::string& bytes);

}  // namespace kiln::service
