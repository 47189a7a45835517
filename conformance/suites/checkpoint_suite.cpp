// Checkpoint lifetimes: save_state(ttl_seconds) expires on the server's clock (protocol.md §W10.7).
// The resume properties are in training_suite.cpp.
#include <algorithm>

#include <rapidcheck.h>

#include "conformance/property.hpp"
#include "conformance/workload.hpp"

namespace kiln::conformance {
namespace {

bool listed(Case& c, const std::string& client, const std::string& name) {
  const auto names = c.ok("list_checkpoints", {{"client", client}}).value("checkpoints", std::vector<std::string>{});
  return std::find(names.begin(), names.end(), name) != names.end();
}

void ttl_expiry(Case& c) {
  const auto ttl = pick("ttl_seconds", rc::gen::element<int64_t>(60, 600, 86400));
  const std::string service = c.service();
  const std::string client = c.training_client(service, 4, 1);
  const std::string kept = c.ok("save_state", {{"client", client}, {"name", "kept"}}).value("path", "");
  const std::string expiring = c.ok("save_state", {{"client", client}, {"name", "expiring"}, {"ttl_seconds", ttl}}).value("path", "");
  c.server.advance_clock(static_cast<double>(ttl) - 1);
  if (!listed(c, client, "expiring")) throw Failure("a checkpoint saved with ttl_seconds=" + std::to_string(ttl) + " is gone 1 s before it expires");
  c.server.advance_clock(2);
  if (listed(c, client, "expiring"))
    throw Failure("a checkpoint saved with ttl_seconds=" + std::to_string(ttl) + " is still listed 1 s after it expired");
  if (!listed(c, client, "kept")) throw Failure("a checkpoint saved without ttl_seconds expired");
  // Loading the expired one fails; loading the kept one works.
  const std::string fresh = c.training_client(service, 4, 2);
  c.error("load_state", {{"client", fresh}, {"path", expiring}});
  const std::string other = c.training_client(service, 4, 3);
  c.ok("load_state", {{"client", other}, {"path", kept}});
}

// Deleting a checkpoint through the REST API: gone from the listing and not loadable; the other
// checkpoint stays; deleting it again fails (protocol.md §W10.4, §W10.6).
void delete_checkpoint(Case& c) {
  const std::string service = c.service();
  const int64_t rank = pick("LoRA rank", gen_lora_rank({0, 4}));
  const std::string client = c.training_client(service, rank, 1);
  const bool sampler_first = pick("delete a sampler save too", rc::gen::arbitrary<bool>());
  const std::string doomed = c.ok("save_state", {{"client", client}, {"name", "doomed"}}).value("path", "");
  const std::string kept = c.ok("save_state", {{"client", client}, {"name", "kept"}}).value("path", "");
  if (sampler_first) {  // a sampler checkpoint deletes the same way
    const std::string s = c.ok("save_weights_for_sampler", {{"client", client}, {"name", "snap"}}).value("path", "");
    c.ok("delete_checkpoint", {{"service", service}, {"path", s}});
  }
  c.ok("delete_checkpoint", {{"service", service}, {"path", doomed}});
  if (listed(c, client, "doomed")) throw Failure("'doomed' is still listed after delete_checkpoint(" + doomed + ")");
  if (!listed(c, client, "kept")) throw Failure("deleting 'doomed' also removed 'kept' from the listing");
  c.error("load_state", {{"client", c.training_client(service, rank, 2)}, {"path", doomed}});  // fresh: load comes first
  c.ok("load_state", {{"client", c.training_client(service, rank, 3)}, {"path", kept}});
  c.error("delete_checkpoint", {{"service", service}, {"path", doomed}});
}

}  // namespace

void add_checkpoint_properties(std::vector<Property>& out) {
  out.push_back({"checkpoints", "checkpoints.ttl_expiry",
                 "save_state(name, ttl_seconds) sends ttl_seconds: the checkpoint is listed until ttl_seconds have passed "
                 "on the server's clock and gone after, loading it then fails; one saved without a TTL stays",
                 ttl_expiry});
  out.push_back({"checkpoints", "checkpoints.delete",
                 "delete_checkpoint(tinker path) through the REST API removes that checkpoint (training state or sampler "
                 "save): it is no longer listed or loadable, the others stay, and deleting it again fails",
                 delete_checkpoint});
}

}  // namespace kiln::conformance
