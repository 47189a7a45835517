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

namespace {

// An entry's fields over its family's over the stand-in shape (registry format: fixtures/models.json).
nlohmann::json merged_entry(const nlohmann::json& doc, const nlohmann::json& m, const std::string& field) {
  if (!m.contains("family")) return m;
  const std::string family = m["family"].is_string() ? m["family"].get<std::string>() : "";
  const auto families = doc.value("families", nlohmann::json::object());
  if (!families.contains(family))
    throw InputError(field + ".family", "unknown family '" + family + "'; the document's \"families\" must define it");
  nlohmann::json out = doc.value("standin", nlohmann::json::object());
  for (const auto& [k, v] : families[family].items()) out[k] = v;
  for (const auto& [k, v] : m.items()) out[k] = v;
  return out;
}

}  // namespace

ModelRegistry ModelRegistry::from_json(const nlohmann::json& doc) {
  if (!doc.is_object() || !doc.contains("models") || !doc["models"].is_array())
    throw InputError("models", "a registry document needs a \"models\" array");
  ModelRegistry registry;
  std::set<std::string> seen;
  for (size_t i = 0; i < doc["models"].size(); ++i) {
    const std::string field = "models[" + std::to_string(i) + "]";
    BaseModelEntry entry;
    std::vector<std::string> aliases;
    try {
      const nlohmann::json m = merged_entry(doc, doc["models"][i], field);
      entry.name = m.at("name").get<std::string>();
      entry.description = m.value("description", "");
      entry.family = m.value("family", "");
      entry.config = m.get<ModelConfig>();
      aliases = m.value("aliases", std::vector<std::string>{});
    } catch (const nlohmann::json::exception& e) {
      throw InputError(field, std::string("malformed entry: ") + e.what());
    }
    try {
      entry.config.validate();
    } catch (const InputError& e) {
      throw InputError(field + "." + e.field(), e.message());
    }
    std::vector<BaseModelEntry> names{entry};
    for (const auto& alias : aliases) {
      BaseModelEntry a = entry;
      a.name = alias;
      a.alias_of = entry.name;
      names.push_back(std::move(a));
    }
    for (auto& e : names) {
      if (!seen.insert(e.name).second)
        throw InputError(field + ".name", "duplicate base model name '" + e.name + "'");
      registry.entries_.push_back(std::move(e));
    }
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

const std::string& ModelRegistry::weights_owner(const std::string& name) const {
  const BaseModelEntry* e = find(name);
  return e && !e->alias_of.empty() ? e->alias_of : name;
}

std::string ModelRegistry::known_names() const {
  std::string out;
  for (const auto& e : entries_) out += (out.empty() ? "" : ", ") + e.name;
  return out;
}

}  // namespace kiln::model
