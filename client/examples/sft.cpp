// Supervised fine-tuning of kiln/tiny with the C++ client: a small question-answer dataset as
// byte tokens, the loss printed per step, a checkpoint saved, training resumed from it with the
// optimizer state, and sampler weights exported. Exits non-zero unless the loss fell.
//
//   sft_example --in-process            an emulator embedded in this process (no socket)
//   sft_example --base-url URL          any server speaking the API (e.g. `kiln serve`)
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "client/in_process_transport.hpp"
#include "client/service_client.hpp"
#include "http/server.hpp"

using namespace kiln::client;

namespace {

// Each line: predict every byte from the ones before it, all weighted 1.
std::vector<Datum> load_dataset(const std::string& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read " + file);
  std::vector<Datum> data;
  for (std::string line; std::getline(in, line);) {
    if (line.size() < 2) continue;
    std::vector<int64_t> bytes(line.begin(), line.end());
    Datum d;
    d.model_input.assign(bytes.begin(), bytes.end() - 1);
    d.loss_fn_inputs["target_tokens"] = TensorData::ints({bytes.begin() + 1, bytes.end()});
    d.loss_fn_inputs["weights"] = TensorData::floats(std::vector<double>(bytes.size() - 1, 1.0));
    data.push_back(std::move(d));
  }
  return data;
}

// One step: forward_backward on the whole set, then AdamW. Returns the loss per token.
double train_step(TrainingClient& tc, const std::vector<Datum>& data, double lr) {
  auto fb = tc.forward_backward(data, "cross_entropy");
  auto step = tc.optim_step({.learning_rate = lr}, GradAccNormalization::num_loss_tokens);
  const auto out = fb.result();
  step.result();
  return out.metrics.at("loss:sum") / out.metrics.at("response_tokens");
}

int run(ServiceClient& service, const std::vector<Datum>& data) {
  TrainingClient tc = service.create_lora_training_client("kiln/tiny", {.rank = 16, .alpha = 32, .seed = 1});
  const double lr = 2e-2;
  double first = 0, last = 0;
  for (int step = 1; step <= 12; ++step) {
    last = train_step(tc, data, lr);
    if (step == 1) first = last;
    std::printf("step %2d  loss/token %.4f\n", step, last);
  }
  const std::string checkpoint = tc.save_state("sft-step-12").result().path;
  std::printf("saved %s\n", checkpoint.c_str());

  // Resume in a new training client, with the Adam moments, and train on.
  TrainingClient resumed = service.create_training_client_from_state_with_optimizer(checkpoint);
  for (int step = 13; step <= 20; ++step) {
    last = train_step(resumed, data, lr);
    std::printf("step %2d  loss/token %.4f  (resumed)\n", step, last);
  }
  const auto sampler = resumed.save_weights_for_sampler_ext("sft-final");
  std::printf("sampler weights: %s (snapshot %s)\n", sampler.path.c_str(), sampler.snapshot_name.c_str());
  std::printf("loss/token %.4f -> %.4f\n", first, last);
  if (!(last < 0.7 * first)) {
    std::fprintf(stderr, "the loss did not fall enough: %.4f -> %.4f\n", first, last);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string base_url, dataset = std::string(KILN_FIXTURES_DIR) + "/datasets/tiny_sft.txt";
  bool in_process = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--in-process") in_process = true;
    else if (a == "--base-url" && i + 1 < argc) base_url = argv[++i];
    else if (a == "--data" && i + 1 < argc) dataset = argv[++i];
    else {
      std::cerr << "usage: sft_example (--in-process | --base-url URL) [--data FILE]\n";
      return 2;
    }
  }
  if (!in_process && base_url.empty()) in_process = true;
  try {
    const auto data = load_dataset(dataset);
    ClientOptions options;
    options.heartbeat_seconds = 10;
    if (!in_process) {
      ServiceClient service(base_url, "tml-sft-example", options);
      return run(service, data);
    }
    const auto dir = std::filesystem::temp_directory_path() / ("kiln-sft-" + std::to_string(::getpid()));
    int rc;
    {
      kiln::service::TrainerService svc({.data_dir = dir.string(), .seed = 1});
      kiln::http::HttpServer server(svc, {});
      ServiceClient service(in_process_transport(server), "tml-sft-example", options);
      rc = run(service, data);
    }
    std::filesystem::remove_all(dir);
    return rc;
  } catch (const std::exception& e) {
    std::cerr << "sft_example: " << e.what() << "\n";
    return 1;
  }
}
