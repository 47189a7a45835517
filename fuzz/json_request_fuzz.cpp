// The JSON request decoders (emulator/wire/json_codec): the first byte picks the decoder, the
// rest is the body as a client would send it.
#include "fuzz/fuzz_util.hpp"
#include "wire/json_codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const nlohmann::json body = nlohmann::json::parse(data + 1, data + size, nullptr, false);
  if (body.is_discarded()) return 0;  // not JSON: answered 400 before any decoder runs
  using namespace kiln::wire;
  kiln::fuzz::refuses_cleanly([&] {
    switch (data[0] % 12) {
      case 0: forward_from_json(body, true); break;
      case 1: forward_from_json(body, false); break;
      case 2: optim_step_from_json(body); break;
      case 3: save_weights_from_json(body); break;
      case 4: load_weights_from_json(body); break;
      case 5: save_sampler_from_json(body); break;
      case 6: load_adapter_from_json(body); break;
      case 7: create_model_from_json(body); break;
      case 8: create_sampler_from_json(body); break;
      case 9: sample_from_json(body); break;
      case 10: create_session_from_json(body); break;
      case 11: finish_session_from_json(body); break;
    }
  });
  return 0;
}
