#include "service/checkpoint_ref.hpp"

#include <cstring>

#include "errors.hpp"

namespace kiln::service {

namespace {
std::optional<CheckpointKind> kind_named(const std::string& dir) { return kind_of_dir(dir); }

CheckpointRef parse_tinker_path(const std::string& path) {
  const std::string rest = path.substr(std::strlen("tinker://"));
  const size_t a = rest.find('/'), b = a == std::string::npos ? a : rest.find('/', a + 1);
  if (a != std::string::npos && b != std::string::npos && rest.find('/', b + 1) == std::string::npos) {
    CheckpointRef r{CheckpointRef::Form::tinker_path, rest.substr(0, a), kind_named(rest.substr(a + 1, b - a - 1)),
                    rest.substr(b + 1)};
    if (!r.run_id.empty() && r.run_id != "." && r.run_id != ".." && r.kind) {
      validate_checkpoint_name(r.name);
      return r;
    }
  }
  throw errors::invalid_tinker_path(path);
}
}  // namespace

CheckpointRef CheckpointRef::parse(const std::string& ref) {
  if (is_tinker_path(ref)) return parse_tinker_path(ref);
  if (ref.rfind("cross_job://", 0) == 0) {
    const std::string rest = ref.substr(std::strlen("cross_job://"));
    const size_t slash = rest.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == rest.size())
      throw UserError("invalid cross-job reference '" + ref + "': expected cross_job://<job_id>/<name>");
    return {Form::cross_job, rest.substr(0, slash), std::nullopt, rest.substr(slash + 1)};
  }
  if (ref.rfind("gs://", 0) == 0) throw UserError("gs:// references are not available offline: '" + ref + "'");
  if (!ref.empty() && ref[0] == '/')
    throw UserError("absolute checkpoint paths are not available offline: '" + ref +
                    "'; use tinker://<run>/<kind>/<name> or a checkpoint name");
  return {Form::bare_name, "", std::nullopt, ref};
}

CheckpointRef CheckpointRef::parse_id(const std::string& run_id, const std::string& checkpoint_id) {
  const size_t slash = checkpoint_id.find('/');
  const auto kind = slash == std::string::npos ? std::nullopt : kind_named(checkpoint_id.substr(0, slash));
  const std::string name = slash == std::string::npos ? "" : checkpoint_id.substr(slash + 1);
  if (!kind || name.empty() || name.find('/') != std::string::npos) throw errors::invalid_checkpoint_id();
  return {Form::tinker_path, run_id, kind, name};
}

}  // namespace kiln::service
