#include "service/safetensors.hpp"

#include <cstring>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace kiln::service {

namespace {

template <typename T>
void add_entries(nlohmann::ordered_json& header, const model::ParamSet<T>& set, const char* dtype, uint64_t& offset) {
  for (const auto& t : set) {
    const uint64_t bytes = t.data.size() * sizeof(T);
    header[t.name] = {{"dtype", dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
}

template <typename T>
void append_data(std::string& out, const model::ParamSet<T>& set) {
  for (const auto& t : set) out.append(reinterpret_cast<const char*>(t.data.data()), t.data.size() * sizeof(T));
}

}  // namespace

std::string encode_safetensors(const SafetensorsFile& file) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  uint64_t offset = 0;
  add_entries(header, file.tensors, "F32", offset);
  add_entries(header, file.words, "U32", offset);
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // pad so the data starts 8-byte aligned
  std::string out(8, '\0');
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += json;
  out.reserve(out.size() + offset);
  append_data(out, file.tensors);
  append_data(out, file.words);
  return out;
}

SafetensorsFile decode_safetensors(const std::string& bytes) {
  if (bytes.size() < 8) throw std::runtime_error("safetensors: file shorter than its 8-byte header length");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[static_cast<size_t>(i)])) << (8 * i);
  if (n > bytes.size() - 8) throw std::runtime_error("safetensors: header length exceeds the file");
  nlohmann::ordered_json header;
  try {
    header = nlohmann::ordered_json::parse(bytes.substr(8, n));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(std::string("safetensors: header is not JSON: ") + e.what());
  }
  const size_t base = 8 + n;
  const size_t data_bytes = bytes.size() - base;
  if (!header.is_object()) throw std::runtime_error("safetensors: header is not a JSON object");
  SafetensorsFile file;
  for (auto item = header.begin(); item != header.end(); ++item) {
    const std::string& name = item.key();
    const auto& entry = item.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) throw std::runtime_error("safetensors: __metadata__ is not an object");
      for (auto kv = entry.begin(); kv != entry.end(); ++kv) {
        if (!kv.value().is_string()) throw std::runtime_error("safetensors: metadata '" + kv.key() + "' is not a string");
        file.metadata[kv.key()] = kv.value().get<std::string>();
      }
      continue;
    }
    const auto bad = [&](const std::string& what) { return std::runtime_error("safetensors: tensor '" + name + "' " + what); };
    if (!entry.is_object() || !entry.contains("dtype") || !entry["dtype"].is_string() || !entry.contains("shape") ||
        !entry["shape"].is_array() || !entry.contains("data_offsets") || !entry["data_offsets"].is_array())
      throw bad("needs a string dtype, a shape array and a data_offsets array");
    const std::string dtype = entry["dtype"];
    std::vector<int64_t> shape;
    uint64_t elements = 1;
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_unsigned()) throw bad("has a shape entry that is not a non-negative integer");
      const uint64_t dim = d.get<uint64_t>();
      if (dim > data_bytes || (dim > 0 && elements > data_bytes / dim)) throw bad("has a shape larger than the file");
      elements *= dim;
      shape.push_back(static_cast<int64_t>(dim));
    }
    std::vector<uint64_t> off;
    for (const auto& o : entry["data_offsets"]) {
      if (!o.is_number_unsigned()) throw bad("has a data offset that is not a non-negative integer");
      off.push_back(o.get<uint64_t>());
    }
    if (off.size() != 2 || off[0] > off[1] || off[1] > data_bytes) throw bad("has data offsets outside the file");
    const auto copy = [&](auto& set) {
      auto& t = set[set.add(name, shape)];
      const size_t want = t.data.size() * sizeof(t.data[0]);
      if (want != off[1] - off[0]) throw bad("size does not match its shape");
      if (want > 0) std::memcpy(t.data.data(), bytes.data() + base + off[0], want);
    };
    if (dtype == "F32")
      copy(file.tensors);
    else if (dtype == "U32")
      copy(file.words);
    else
      throw bad("has unsupported dtype " + dtype);
  }
  return file;
}

}  // namespace kiln::service
