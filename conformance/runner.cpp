#include "conformance/runner.hpp"

#include <algorithm>
#include <chrono>
#include <optional>
#include <sstream>
#include <stdexcept>

#include <rapidcheck.h>

#include "conformance/property.hpp"

namespace kiln::conformance {

const char* status_name(PropertyResult::Status s) {
  switch (s) {
    case PropertyResult::Status::pass: return "pass";
    case PropertyResult::Status::fail: return "fail";
    case PropertyResult::Status::skip: return "skip";
  }
  return "?";
}

namespace {

bool selected(const std::vector<std::string>& filter, const std::string& value) {
  return filter.empty() || std::find(filter.begin(), filter.end(), value) != filter.end();
}

class ShrinkCounter : public rc::detail::TestListener {
 public:
  int accepted = 0;
  void onTestCaseFinished(const rc::detail::CaseDescription&) override {}
  void onShrinkTried(const rc::detail::CaseDescription&, bool ok) override { accepted += ok; }
  void onTestFinished(const rc::detail::TestMetadata&, const rc::detail::TestResult&) override {}
};

std::vector<std::string> lines_of(const rc::detail::Example& example) {
  std::vector<std::string> out;
  for (const auto& [type, value] : example) {
    std::istringstream in(value);
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) out.push_back(line);
  }
  return out;
}

PropertyResult run_one(const Property& p, const RunOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  PropertyResult r{p.suite, p.name, p.doc};
  KilnServer server;  // this property's own server
  std::string skipped, failing_stderr, failing_message;
  int completed = 0;  // cases run to the end before any skip
  std::optional<std::chrono::steady_clock::time_point> first_failure;
  const CaseOptions case_options{options.driver_command, options.timeout_seconds, options.client_options};
  auto body = [&] {
    // Past the shrinking budget, every smaller candidate "passes": rapidcheck keeps the smallest
    // failure found so far.
    if (first_failure && std::chrono::steady_clock::now() - *first_failure > std::chrono::duration<double>(options.shrink_seconds))
      return;
    if (!skipped.empty()) return;  // the driver lacks an operation this property needs: no use asking again
    server.reset();
    Case c(server, case_options);
    try {
      p.test_case(c);
      ++completed;
    } catch (const Unsupported& e) {
      skipped = e.what();
    } catch (const std::exception& e) {
      failing_message = e.what();
      failing_stderr = c.driver_stderr();
      if (!first_failure) first_failure = std::chrono::steady_clock::now();
      throw;
    } catch (...) {
      failing_message = "an exception that is not a std::exception";
      failing_stderr = c.driver_stderr();
      if (!first_failure) first_failure = std::chrono::steady_clock::now();
      throw;
    }
  };
  rc::detail::TestMetadata metadata;
  metadata.id = p.name;
  metadata.description = p.doc;
  rc::detail::TestParams params;
  params.seed = options.seed;
  params.maxSuccess = options.cases;
  params.maxSize = options.max_size;
  ShrinkCounter listener;
  const auto result = rc::detail::checkTestable(body, metadata, params, listener, rc::detail::configuration().reproduce);
  r.shrinks = listener.accepted;
  if (result.is<rc::detail::SuccessResult>()) {
    r.cases = result.get<rc::detail::SuccessResult>().numSuccess;
    if (!skipped.empty()) {
      r.cases = completed;
      r.status = PropertyResult::Status::skip;
      r.message = skipped;
    }
  } else if (result.is<rc::detail::FailureResult>()) {
    const auto& f = result.get<rc::detail::FailureResult>();
    r.status = PropertyResult::Status::fail;
    r.cases = f.numSuccess;
    // The last failing evaluation is the minimal case (shrinking only keeps failing candidates);
    // rapidcheck's own description may come from a re-run past the shrinking budget.
    r.message = failing_message.empty() ? f.description : failing_message;
    r.counterexample = lines_of(f.counterExample);
    rc::detail::Configuration config;
    config.testParams.seed = options.seed;
    config.reproduce[p.name] = f.reproduce;
    r.rc_params = rc::detail::configToMinimalString(config);
    r.driver_stderr = failing_stderr;
  } else {
    r.status = PropertyResult::Status::fail;
    r.message = result.is<rc::detail::GaveUpResult>() ? "gave up: " + result.get<rc::detail::GaveUpResult>().description
                                                      : "error: " + result.get<rc::detail::Error>().description;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace

std::vector<PropertyResult> run_properties(const RunOptions& options, const std::function<void(const PropertyResult&)>& on_result) {
  std::vector<const Property*> chosen;
  for (const auto& p : all_properties())
    if (selected(options.suites, p.suite) && selected(options.properties, p.name)) chosen.push_back(&p);
  if (chosen.empty()) throw std::invalid_argument("no property matches the --suite / --property filters (see kiln conform --list)");
  std::vector<PropertyResult> out;
  for (const Property* p : chosen) {
    out.push_back(run_one(*p, options));
    if (on_result) on_result(out.back());
  }
  return out;
}

}  // namespace kiln::conformance
