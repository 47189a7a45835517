#pragma once
// How clients name a checkpoint (protocol.md §S7.5, rules E4, E5), parsed in one place:
//   tinker://<run>/weights/<name>             a training-state checkpoint of a run
//   tinker://<run>/sampler_weights/<name>     a sampler checkpoint of a run
//   tinker://<run>/external_weights/<name>    weights saved for download (save_weights_external)
//   cross_job://<job>/<name>                  another Fireworks job's checkpoint (job = run here)
//   <name>                                    a bare name: the newest of the tenant's checkpoints
// and the REST views' checkpoint id, "weights/<name>", "sampler_weights/<name>" or
// "external_weights/<name>".
// gs:// and absolute paths are storage locations that do not exist offline: a user error.
#include <optional>
#include <string>

#include "service/checkpoint_store.hpp"

namespace kiln::service {

struct CheckpointRef {
  enum class Form { tinker_path, cross_job, bare_name };
  Form form = Form::bare_name;
  std::string run_id;                  // tinker paths and cross-job references
  std::optional<CheckpointKind> kind;  // tinker paths only
  std::string name;

  // errors::invalid_tinker_path (400) for a malformed tinker path; UserError for a malformed
  // cross-job reference, a gs:// URI or an absolute path.
  static CheckpointRef parse(const std::string& ref);
  // The REST form; errors::invalid_checkpoint_id (400) when malformed.
  static CheckpointRef parse_id(const std::string& run_id, const std::string& checkpoint_id);
  static bool is_tinker_path(const std::string& ref) { return ref.rfind("tinker://", 0) == 0; }
};

}  // namespace kiln::service
