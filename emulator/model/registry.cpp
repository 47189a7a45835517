#include "model/registry.hpp"

#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "model/errors.hpp"

namespace kiln::model {

extern const char* const kBuiltinRegistryJson;  // generated from fixtures/models.json

const ModelRegistry& ModelRegistry::builtin() {
  static const ModelRegistry registry = from_json(nlohmann::json::parse(kBuiltinRegistryJson));
  return registry;
}

ModelRegistry ModelRegistry::from_json(const nlohmann::json& doc) {
  if (!doc.is_object() || !doc.contains("models") || !doc["models"].is_array())
    throw InputError("models", "a registry document needs a \"models\" array");
  ModelRegistry registry;
  std::set<std::string> seen;
  for (size_t i = 0; i < doc["models"].size(); ++i) {
    const auto& m = doc["models"][i];
    const std::string field = "models[" + std::to_string(i) + "]";
    BaseModelEntry entry;
    try {
      entry.name = m.at("name").get<std::string>();
      entry.description = m.value("description", "");
      entry.config = m.get<ModelConfig>();
    } catch (const nlohmann::json::exception& e) {
      throw InputError(field, std::string("malformed entry: ") + e.what());
    }
    try {
      entry.config.validate();
    } catch (const InputError& e) {
      throw InputError(field + "." + e.field(), e.message());
    }
    if (!seen.insert(entry.name).second)
      throw InputError(field + ".name", "duplicate base model name '" + entry.name + "'");
    registry.entries_.push_back(std::move(entry));
  }
  return registry;
}

ModelRegistry ModelRegistry::from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError("models", "cannot open registry file '" + path + "'");
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError("models", "registry file '" + path + "' is not valid JSON: " + e.what());
  }
  return from_json(doc);
}

const BaseModelEntry* ModelRegistry::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

const BaseModelEntry& ModelRegistry::get(const std::string& name) const {
  if (const auto* e = find(name)) return *e;
  throw InputError("base_model",
                   "unknown base model '" + name + "'; known base models: " + known_names());
}

std::string ModelRegistry::known_names() const {
  std::string out;
  for (const auto& e : entries_) out += (out.empty() ? "" : ", ") + e.name;
  return out;
}

}  // namespace kiln::model
