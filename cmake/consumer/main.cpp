// Trains kiln/tiny for a few LoRA steps through the installed client against a running
// `kiln serve`; exits non-zero unless the loss fell.   consumer BASE_URL
#include <kiln/client/service_client.hpp>

#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  using namespace kiln::client;
  try {
    ServiceClient service(argv[1], "tml-consumer");
    TrainingClient tc = service.create_lora_training_client("kiln/tiny", {.rank = 8, .seed = 1});
    const std::string text = "kiln installed";
    Datum d;
    d.model_input.assign(text.begin(), text.end() - 1);
    d.loss_fn_inputs["target_tokens"] = TensorData::ints({text.begin() + 1, text.end()});
    double first = 0, last = 0;
    for (int step = 0; step < 8; ++step) {
      auto fb = tc.forward_backward({d}, "cross_entropy");
      tc.optim_step({.learning_rate = 1e-2}).result();
      last = fb.result().metrics.at("loss:sum");
      if (step == 0) first = last;
    }
    std::printf("loss:sum %.4f -> %.4f\n", first, last);
    return last < first ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 1;
  }
}
