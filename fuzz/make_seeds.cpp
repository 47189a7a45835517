// Writes the fuzzers' seed corpora (fuzz/README.md): request bodies from the wire captures in
// fixtures/wire-captures, and the files of checkpoints saved by an in-process service.
//   make_seeds <fixtures dir> <corpus root>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include <nlohmann/json.hpp>

#include "service/test_util.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string base64_decode(const std::string& in) {
  std::string out;
  int val = 0, bits = -8;
  for (unsigned char c : in) {
    const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char* p = std::strchr(abc, c);
    if (!p || !c) continue;
    val = (val << 6) + static_cast<int>(p - abc);
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

void write(const fs::path& dir, const std::string& name, const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: make_seeds <fixtures dir> <corpus root>\n";
    return 2;
  }
  const fs::path fixtures = argv[1], root = argv[2];
  // The selector byte of json_request_fuzz for each endpoint.
  const std::map<std::string, int> decoder = {
      {"forward_backward", 0}, {"forward", 1}, {"optim_step", 2}, {"save_weights", 3}, {"load_weights", 4},
      {"save_weights_for_sampler", 5}, {"load_adapter", 6}, {"create_model", 7}, {"create_sampling_session", 8},
      {"asample", 9}, {"create_session", 10}};
  int n = 0;
  for (const auto& f : fs::directory_iterator(fixtures / "wire-captures")) {
    std::ifstream in(f.path());
    for (std::string line; std::getline(in, line);) {
      const json e = json::parse(line, nullptr, false);
      if (!e.is_object() || !e.contains("path")) continue;
      const std::string path = e["path"], endpoint = path.substr(path.rfind('/') + 1);
      if (e.contains("body_b64")) {
        bool zstd = false;
        for (const auto& h : e.value("headers", json::array()))
          if (h[0] == "Content-Encoding" && h[1].get<std::string>().find("zstd") != std::string::npos) zstd = true;
        write(root / "forward_backward_proto", "capture-" + std::to_string(n++),
              std::string(1, zstd ? '\1' : '\0') + base64_decode(e["body_b64"]));
      } else if (decoder.count(endpoint) && e.contains("body") && e["body"].is_object()) {
        write(root / "json_request", "capture-" + std::to_string(n++),
              std::string(1, static_cast<char>(decoder.at(endpoint))) + e["body"].dump());
      }
    }
  }
  // Checkpoints: a LoRA and a full-parameter model of kiln/tiny, saved with optimizer state.
  kiln::service::testing::TempDir dir;
  {
    kiln::service::TrainerService svc(kiln::service::testing::options(dir.path(), std::make_shared<kiln::service::VirtualClock>()));
    const auto session = svc.create_session("tml-seed", {}, {}, "");
    for (int64_t rank : {4, 0}) {
      const std::string model = svc.create_model(
          "tml-seed", {.session_id = session.session_id, .model_seq_id = rank, .base_model = "kiln/tiny", .lora = {.rank = rank}});
      kiln::service::testing::wait_for(svc, "tml-seed", svc.submit("tml-seed", model, 1, kiln::service::SaveWeightsRequest{.name = "seed"}));
    }
  }
  for (const auto& f : fs::recursive_directory_iterator(dir.path())) {
    if (!f.is_regular_file()) continue;
    const std::string name = f.path().filename();
    std::ifstream in(f.path(), std::ios::binary);
    const std::string bytes{std::istreambuf_iterator<char>(in), {}};
    if (name.ends_with(".safetensors")) write(root / "safetensors", "ckpt-" + std::to_string(n++), bytes);
    if (name == "metadata.json") write(root / "checkpoint_metadata", "ckpt-" + std::to_string(n++), bytes);
  }
  std::cout << "make_seeds: " << n << " seeds under " << root << "\n";
  return 0;
}
