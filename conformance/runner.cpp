#include "conformance/runner.hpp"

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

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

void to_json(nlohmann::json& j, const PropertyResult& r) {
  j = {{"suite", r.suite}, {"name", r.name}, {"doc", r.doc}, {"status", status_name(r.status)}, {"cases", r.cases},
       {"seconds", r.seconds}};
  if (r.status != PropertyResult::Status::pass) j["message"] = r.message;
  if (r.status == PropertyResult::Status::fail) {
    j["minimal_failing_case"] = r.counterexample;
    j["shrinks"] = r.shrinks;
    j["rc_params"] = r.rc_params;
    if (!r.driver_stderr.empty()) j["driver_stderr"] = r.driver_stderr;
  }
}

void from_json(const nlohmann::json& j, PropertyResult& r) {
  r.suite = j.at("suite");
  r.name = j.at("name");
  r.doc = j.at("doc");
  const std::string status = j.at("status");
  r.status = status == "fail" ? PropertyResult::Status::fail : status == "skip" ? PropertyResult::Status::skip : PropertyResult::Status::pass;
  r.cases = j.at("cases");
  r.seconds = j.at("seconds");
  r.message = j.value("message", "");
  r.counterexample = j.value("minimal_failing_case", std::vector<std::string>{});
  r.shrinks = j.value("shrinks", 0);
  r.rc_params = j.value("rc_params", "");
  r.driver_stderr = j.value("driver_stderr", "");
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

// Worker k runs properties k, k + jobs, …, writing each result as a JSON line to its pipe.
std::vector<PropertyResult> run_in_workers(const std::vector<const Property*>& chosen, const RunOptions& options,
                                           const std::function<void(const PropertyResult&)>& on_result) {
  const size_t jobs = std::min(chosen.size(), static_cast<size_t>(options.jobs));
  std::vector<pid_t> pids;
  std::vector<int> fds;
  for (size_t k = 0; k < jobs; ++k) {
    int fd[2];
    if (pipe(fd) != 0) throw std::runtime_error("pipe() failed");
    const pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork() failed");
    if (pid == 0) {
      close(fd[0]);
      for (size_t i = k; i < chosen.size(); i += jobs) {
        nlohmann::json line = run_one(*chosen[i], options);
        line["index"] = i;
        const std::string text = line.dump() + "\n";
        if (write(fd[1], text.data(), text.size()) != static_cast<ssize_t>(text.size())) _exit(1);
      }
      _exit(0);
    }
    close(fd[1]);
    pids.push_back(pid);
    fds.push_back(fd[0]);
  }
  std::vector<std::optional<PropertyResult>> results(chosen.size());
  std::vector<std::string> pending(jobs);
  for (size_t open = jobs; open > 0;) {
    std::vector<pollfd> watch;
    for (int fd : fds) watch.push_back({fd, POLLIN, 0});
    ::poll(watch.data(), watch.size(), -1);
    for (size_t k = 0; k < jobs; ++k) {
      if (fds[k] < 0 || !(watch[k].revents & (POLLIN | POLLHUP))) continue;
      char buf[65536];
      const ssize_t n = read(fds[k], buf, sizeof buf);
      if (n <= 0) {
        close(fds[k]);
        fds[k] = -1;
        --open;
        continue;
      }
      pending[k].append(buf, static_cast<size_t>(n));
      for (size_t eol; (eol = pending[k].find('\n')) != std::string::npos; pending[k].erase(0, eol + 1)) {
        const auto line = nlohmann::json::parse(pending[k].substr(0, eol));
        auto& slot = results.at(line.at("index").get<size_t>());
        slot = line.get<PropertyResult>();
        if (on_result) on_result(*slot);
      }
    }
  }
  for (pid_t pid : pids) waitpid(pid, nullptr, 0);
  std::vector<PropertyResult> out;
  for (size_t i = 0; i < chosen.size(); ++i) {
    if (results[i]) {
      out.push_back(*results[i]);
    } else {  // the worker died before reporting it
      PropertyResult r{chosen[i]->suite, chosen[i]->name, chosen[i]->doc};
      r.status = PropertyResult::Status::fail;
      r.message = "the harness worker running this property exited without a result";
      out.push_back(r);
    }
  }
  return out;
}

}  // namespace

std::vector<PropertyResult> run_properties(const RunOptions& options, const std::function<void(const PropertyResult&)>& on_result) {
  if (options.client) {
    set_client_traits(*options.client);
  } else {
    try {
      set_client_traits(describe_client(options.driver_command, options.timeout_seconds));
    } catch (const DriverBroken&) {
      set_client_traits({});  // the properties will meet the same breakage and report it with its stderr
    }
  }
  std::vector<const Property*> chosen;
  for (const auto& p : all_properties())
    if (selected(options.suites, p.suite) && selected(options.properties, p.name)) chosen.push_back(&p);
  if (chosen.empty()) throw std::invalid_argument("no property matches the --suite / --property filters (see kiln conform --list)");
  if (options.jobs <= 1 || chosen.size() < 2) {
    std::vector<PropertyResult> out;
    for (const Property* p : chosen) {
      out.push_back(run_one(*p, options));
      if (on_result) on_result(out.back());
    }
    return out;
  }
  return run_in_workers(chosen, options, on_result);
}

}  // namespace kiln::conformance
