// The checkpoint metadata reader (metadata.json, read at start for every stored checkpoint): an
// unreadable file is skipped with a message (CheckpointStore::scan catches std::exception), so
// here any exception is a clean refusal and only crashes, UB and leaks are findings.
#include <stdexcept>

#include "fuzz/fuzz_util.hpp"
#include "service/checkpoint_store.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    nlohmann::json::parse(data, data + size).get<kiln::service::CheckpointRecord>();
  } catch (const std::exception&) {
  }
  return 0;
}
