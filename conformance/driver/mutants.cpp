#include "conformance/driver/mutants.hpp"

#include <map>
#include <mutex>
#include <set>
#include <regex>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace kiln::conformance {
namespace {

using client::Headers;
using client::Reply;
using client::Transport;
using nlohmann::json;

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Rewrites requests and answers of one bug; the rest passes through unchanged.
class MutatingTransport : public Transport {
 public:
  MutatingTransport(std::string name, std::shared_ptr<Transport> real) : name_(std::move(name)), real_(std::move(real)) {}

  Reply send(const std::string& method, const std::string& path, const Headers& headers, const std::string& body) override {
    json j = json::parse(body, nullptr, false);
    const bool is_json = j.is_object();
    std::string model;
    int64_t seq = 0;
    if (is_json && j.contains("seq_id") && j.contains("model_id") && j["seq_id"].is_number_integer()) {
      model = j["model_id"].get<std::string>();
      seq = j["seq_id"].get<int64_t>();
    }
    std::string out_path = path;
    if (is_json) {
      if (name_ == "reorder_seq_ids" && !model.empty()) j["seq_id"] = renumber_in_send_order(model, seq);
      if (name_ == "resubmit_new_seq_id" && !model.empty()) j["seq_id"] = renumber_after_drop(model, seq);
      if (name_ == "drop_sampler_suffix" && ends_with(path, "/save_weights_for_sampler") && j.contains("path"))
        j["path"] = std::regex_replace(j["path"].get<std::string>(), std::regex("-[0-9a-f]{8}$"), "");
      if (name_ == "load_drops_optimizer" && ends_with(path, "/load_weights")) j["optimizer"] = false;
      if (name_ == "no_ttl" && ends_with(path, "/save_weights")) j.erase("ttl_seconds");
      if (name_ == "invented_field") j["client_request_tag"] = "mutant";
      if (name_ == "forward_accumulates" && ends_with(path, "/forward") && j.contains("forward_input")) {
        out_path = path.substr(0, path.size() - 8) + "/forward_backward";
        j["forward_backward_input"] = j["forward_input"];
        j.erase("forward_input");
        j.erase("type");
      }
    }
    Reply r = real_->send(method, out_path, headers, is_json ? j.dump() : body);
    if (name_ == "resubmit_new_seq_id" && !model.empty() && r.status == 0) {
      std::lock_guard lock(mu_);
      dropped_[model].insert(seq);
    }
    if (name_ == "ignore_try_again" && ends_with(path, "/retrieve_future")) {
      json a = json::parse(r.body, nullptr, false);
      if (a.is_object() && a.value("type", "") == "try_again") {  // taken for the result
        a.erase("type");
        r.status = 200;
        r.body = a.dump();
      }
    }
    return r;
  }

 private:
  // Numbers requests in the order they reach the wire: chunk 1 of a parallel call goes last.
  int64_t renumber_in_send_order(const std::string& model, int64_t seq) {
    std::lock_guard lock(mu_);
    auto& m = mapped_[model];
    auto it = m.find(seq);
    if (it != m.end()) return it->second;
    return m[seq] = ++counter_[model];
  }
  // A submit re-sent after a dropped connection is taken for a new request: a new seq_id, and
  // every later one moves up.
  int64_t renumber_after_drop(const std::string& model, int64_t seq) {
    std::lock_guard lock(mu_);
    if (dropped_[model].erase(seq)) ++offset_[model];
    return seq + offset_[model];
  }

  std::string name_;
  std::shared_ptr<Transport> real_;
  std::mutex mu_;
  std::map<std::string, std::map<int64_t, int64_t>> mapped_;
  std::map<std::string, int64_t> counter_, offset_;
  std::map<std::string, std::set<int64_t>> dropped_;
};

}  // namespace

const std::vector<Mutant>& mutants() {
  static const std::vector<Mutant> all = {
      {"ignore_try_again", "takes a try_again poll answer for the result", "resilience.retry_branches"},
      {"reorder_seq_ids", "numbers chunks in the order it sends them (chunk 1 last)", "wire.seq_id_order"},
      {"drop_sampler_suffix", "sends the sampler name without the client's -<8hex> suffix", "naming.sampler_suffix"},
      {"custom_loss_wrong_sign", "sends +dL/dlp as the custom loss's weights", "custom_loss.linearisation"},
      {"load_drops_optimizer", "sends optimizer=false for load_state_with_optimizer", "checkpoints.resume_with_optimizer"},
      {"resubmit_new_seq_id", "re-sends a submit whose answer was lost under a new seq_id", "resilience.exactly_once"},
      {"forward_accumulates", "sends forward as forward_backward", "accumulation.until_optim_step"},
      {"invented_field", "adds a field the API does not define to every request", "wire.request_fields"},
      {"no_ttl", "drops ttl_seconds from save_state", "checkpoints.ttl_expiry"},
      {"no_chunking", "sends every forward_backward in one request, however many datums", "wire.chunk_limits"},
      {"resolve_no_strip", "does not strip the job and name in resolve_checkpoint_path", "naming.resolve_checkpoint_path"},
      {"sampler_on_base_weights", "creates a sampling client on the base model, whatever path it is given",
       "behaviour.overfit_and_recite"},
      {"delete_ignored", "answers delete_checkpoint without deleting anything", "checkpoints.delete"},
      {"prompt_logprobs_unshifted", "returns compute_logprobs without the leading null, one position early",
       "behaviour.trainer_sampler_agree"},
  };
  return all;
}

std::shared_ptr<client::Transport> mutant_transport(const std::string& name, std::shared_ptr<client::Transport> real) {
  if (name.empty() || name == "custom_loss_wrong_sign" || name == "no_chunking" || name == "resolve_no_strip" ||
      name == "sampler_on_base_weights" || name == "prompt_logprobs_unshifted" || name == "delete_ignored")
    return real;  // bugs made in the driver itself
  for (const auto& m : mutants())
    if (name == m.name) return std::make_shared<MutatingTransport>(name, std::move(real));
  throw std::invalid_argument("unknown mutant '" + name + "'");
}

}  // namespace kiln::conformance
