// The protobuf forward_backward decoder (tinker 0.25), behind the zstd decompression when the
// first byte is odd (Content-Encoding: zstd), as the HTTP layer runs them.
#include "fuzz/fuzz_util.hpp"
#include "wire/proto_codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool zstd = data[0] & 1;
  const std::string body = kiln::fuzz::bytes(data + 1, size - 1);
  kiln::fuzz::refuses_cleanly([&] {
    kiln::wire::forward_backward_from_proto(zstd ? kiln::wire::zstd_decompress(body, 1u << 22) : body);
  });
  return 0;
}
