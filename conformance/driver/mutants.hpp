#pragma once
// Deliberately broken clients, to prove the harness fails them (issue: "proof that the harness
// can fail"). Most bugs are made on the wire, by a transport that rewrites what Kiln's correct
// client sends or receives; `custom_loss_wrong_sign`, `no_chunking`, `resolve_no_strip`,
// `sampler_on_base_weights`, `prompt_logprobs_unshifted` and `delete_ignored` are made in the
// driver (cpp_driver.cpp).
#include <memory>
#include <string>
#include <vector>

#include "client/transport.hpp"

namespace kiln::conformance {

struct Mutant {
  const char* name;
  const char* bug;       // what the broken client does
  const char* property;  // the property that must catch it
};
const std::vector<Mutant>& mutants();

// The transport the mutant `name` talks through ("" or a driver-level mutant: `real` itself).
// Throws std::invalid_argument for an unknown name.
std::shared_ptr<client::Transport> mutant_transport(const std::string& name, std::shared_ptr<client::Transport> real);

}  // namespace kiln::conformance
