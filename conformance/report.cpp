#include "conformance/report.hpp"

#include <cstdio>
#include <map>
#include <sstream>

namespace kiln::conformance {

namespace {

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20 && ch != '\n' && ch != '\t') out += ' ';
        else out += ch;
    }
  }
  return out;
}

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", s);
  return buf;
}

std::string sequence_text(const PropertyResult& r) {
  std::string out;
  for (const auto& line : r.counterexample) out += "  " + line + "\n";
  return out;
}

}  // namespace

void print_table(std::ostream& os, const std::vector<PropertyResult>& results, const std::string& reproduce_command) {
  size_t width = 8;
  for (const auto& r : results) width = std::max(width, r.name.size());
  os << "STATUS  " << std::string("PROPERTY").append(width - 8, ' ') << "  CASES  SECONDS\n";
  std::map<PropertyResult::Status, int> count;
  for (const auto& r : results) {
    ++count[r.status];
    std::string status = status_name(r.status);
    status.resize(8, ' ');
    std::string name = r.name;
    name.resize(width, ' ');
    std::string cases = std::to_string(r.cases);
    cases.insert(0, cases.size() < 5 ? 5 - cases.size() : 0, ' ');
    os << status << name << "  " << cases << "  " << seconds(r.seconds) << "\n";
  }
  for (const auto& r : results) {
    if (r.status == PropertyResult::Status::pass) continue;
    os << "\n" << status_name(r.status) << ": " << r.name << "\n  " << r.doc << "\n";
    std::istringstream message(r.message);
    for (std::string line; std::getline(message, line);) os << "  | " << line << "\n";
    if (r.status != PropertyResult::Status::fail) continue;
    if (!r.counterexample.empty()) os << "  minimal failing case (after " << r.shrinks << " shrinks):\n" << sequence_text(r);
    if (!r.driver_stderr.empty()) os << "  driver stderr (end):\n    " << r.driver_stderr << "\n";
    if (!r.rc_params.empty())
      os << "  reproduce: RC_PARAMS=\"" << r.rc_params << "\" " << reproduce_command << " --property " << r.name << "\n";
  }
  os << "\n" << results.size() << " properties: " << count[PropertyResult::Status::pass] << " passed, "
     << count[PropertyResult::Status::fail] << " failed, " << count[PropertyResult::Status::skip] << " skipped\n";
}

std::string junit_xml(const std::vector<PropertyResult>& results) {
  std::map<std::string, std::vector<const PropertyResult*>> suites;
  for (const auto& r : results) suites[r.suite].push_back(&r);
  std::ostringstream os;
  os << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"kiln conform\">\n";
  for (const auto& [suite, rs] : suites) {
    int failures = 0, skipped = 0;
    double total = 0;
    for (const auto* r : rs) {
      failures += r->status == PropertyResult::Status::fail;
      skipped += r->status == PropertyResult::Status::skip;
      total += r->seconds;
    }
    os << "  <testsuite name=\"" << xml_escape(suite) << "\" tests=\"" << rs.size() << "\" failures=\"" << failures
       << "\" skipped=\"" << skipped << "\" time=\"" << seconds(total) << "\">\n";
    for (const auto* r : rs) {
      os << "    <testcase classname=\"" << xml_escape(suite) << "\" name=\"" << xml_escape(r->name) << "\" time=\""
         << seconds(r->seconds) << "\">\n";
      if (r->status == PropertyResult::Status::fail) {
        os << "      <failure message=\"" << xml_escape(r->message.substr(0, r->message.find('\n'))) << "\">"
           << xml_escape(r->message + "\nminimal failing case:\n" + sequence_text(*r) + "RC_PARAMS=\"" + r->rc_params + "\"\n")
           << "</failure>\n";
      } else if (r->status == PropertyResult::Status::skip) {
        os << "      <skipped message=\"" << xml_escape(r->message) << "\"/>\n";
      }
      os << "      <system-out>" << xml_escape(r->doc) << "</system-out>\n    </testcase>\n";
    }
    os << "  </testsuite>\n";
  }
  os << "</testsuites>\n";
  return os.str();
}

std::string headline(const ClientTraits& client, uint64_t seed) {
  std::string lacks;
  for (const auto& f : client.lacks) lacks += (lacks.empty() ? "" : ", ") + f;
  return "kiln conform: " + client.label() + (lacks.empty() ? "" : " (lacks " + lacks + ")") + " against Kiln " KILN_VERSION
         ", seed " + std::to_string(seed);
}

nlohmann::json json_report(const std::vector<PropertyResult>& results, const std::string& driver_command,
                           const ClientTraits& client, uint64_t seed) {
  nlohmann::json props = nlohmann::json::array();
  int failed = 0, passed = 0, skipped = 0;
  for (const auto& r : results) {
    failed += r.status == PropertyResult::Status::fail;
    passed += r.status == PropertyResult::Status::pass;
    skipped += r.status == PropertyResult::Status::skip;
    props.push_back(r);  // to_json (runner.cpp)
  }
  return {{"driver", driver_command},
          {"client", {{"name", client.name}, {"version", client.version}, {"lacks", client.lacks}}},
          {"kiln_version", KILN_VERSION},
          {"seed", seed},
          {"summary", {{"properties", results.size()}, {"passed", passed}, {"failed", failed}, {"skipped", skipped}}},
          {"properties", props}};
}

}  // namespace kiln::conformance
