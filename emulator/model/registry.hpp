#pragma once
// The base-model registry: public base-model names → tiny architectures.
// The data lives in fixtures/models.json, which the build compiles in as the default.
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model/config.hpp"

namespace kiln::model {

struct BaseModelEntry {
  std::string name;
  std::string description;
  ModelConfig config;
  std::string alias_of;  // another entry's name when this one is an alias of it (e.g. a Fireworks id)
  std::string family;    // the document's family ("qwen3", "llama3", ...); "" for Kiln's own models
};

class ModelRegistry {
 public:
  // The registry compiled in from fixtures/models.json.
  static const ModelRegistry& builtin();
  // Parses a registry document (same format as fixtures/models.json). Throws InputError.
  static ModelRegistry from_json(const nlohmann::json& doc);
  static ModelRegistry from_file(const std::string& path);

  // Throws InputError("base_model", ...) listing the known names when `name` is unknown.
  const BaseModelEntry& get(const std::string& name) const;
  const BaseModelEntry* find(const std::string& name) const;
  const std::vector<BaseModelEntry>& entries() const { return entries_; }
  std::string known_names() const;  // "a, b, c"
  // The name base weights are derived from: an alias shares its entry's weights; an unknown name
  // (a checkpoint of a model no longer registered) is its own.
  const std::string& weights_owner(const std::string& name) const;

 private:
  std::vector<BaseModelEntry> entries_;
};

}  // namespace kiln::model
