#include "service/state_file.hpp"

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "errors.hpp"

namespace kiln::service {

void write_state_file(const std::string& path, const nlohmann::json& doc) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << doc.dump(1) << "\n";
    if (!out) throw InternalError("cannot write " + tmp);
  }
  std::filesystem::rename(tmp, path);
}

nlohmann::json read_state_file(const std::string& path, const std::string& what) {
  if (!std::filesystem::exists(path)) return nlohmann::json::array();
  std::ifstream in(path);
  const nlohmann::json doc = nlohmann::json::parse(in, nullptr, false);
  if (!doc.is_array()) throw std::runtime_error("unreadable " + what + " file " + path + ": expected a JSON array");
  return doc;
}

}  // namespace kiln::service
