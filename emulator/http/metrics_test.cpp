// GET /metrics over loopback, read by a strict parser of the Prometheus text exposition format
// (version 0.0.4): a training loop, a sample, a save and an injected fault show up as they should.
#include "http/test_fixture.hpp"  // first: Eigen before httplib.h (see http/routes.hpp)

#include <cmath>
#include <map>
#include <regex>
#include <set>
#include <sstream>

namespace kiln::http {
namespace {

using namespace testing;

// One parsed exposition: families with their type and samples, keyed by series.
struct Exposition {
  struct Family {
    std::string type, help;
  };
  std::map<std::string, Family> families;
  std::map<std::string, double> samples;  // "name{a=\"x\",b=\"y\"}" (labels sorted) → value
  std::vector<std::string> order;         // series in the order they came
  double at(const std::string& series) const {
    auto it = samples.find(series);
    if (it == samples.end()) throw std::out_of_range("no series " + series);
    return it->second;
  }
};

// Parses the text format strictly: every sample belongs to a family declared by exactly one
// TYPE (and HELP) line before it; a family's samples are contiguous; names and label names
// match the format's grammar; label values use only the three escapes; no series repeats;
// counters end in _total and are never negative; a histogram's buckets are cumulative with
// increasing `le`, end with +Inf, and +Inf equals _count. Throws naming the line.
Exposition parse_strict(const std::string& text) {
  static const std::regex name_re("[a-zA-Z_:][a-zA-Z0-9_:]*"), label_re("[a-zA-Z_][a-zA-Z0-9_]*");
  Exposition e;
  std::istringstream in(text);
  std::string line, current;  // the family whose samples are being read
  std::set<std::string> closed;
  std::map<std::string, std::vector<std::pair<double, double>>> buckets;  // histogram series → (le, count)
  int n = 0;
  const auto fail = [&](const std::string& why) { throw std::runtime_error("line " + std::to_string(n) + ": " + why + ": " + line); };
  if (text.empty() || text.back() != '\n') throw std::runtime_error("the exposition must end with a newline");
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) fail("blank line");
    if (line[0] == '#') {
      std::istringstream f(line.substr(1));
      std::string kind, name, rest;
      f >> kind >> name;
      std::getline(f, rest);
      if (kind != "HELP" && kind != "TYPE") continue;  // a comment
      if (!std::regex_match(name, name_re)) fail("bad metric name");
      if (rest.size() < 2 || rest[0] != ' ') fail("missing " + kind + " text");
      rest = rest.substr(1);
      auto& fam = e.families[name];
      if (kind == "TYPE") {
        if (!fam.type.empty()) fail("second TYPE line");
        if (closed.count(name)) fail("TYPE after the family's samples");
        if (rest != "counter" && rest != "gauge" && rest != "histogram" && rest != "summary" && rest != "untyped")
          fail("unknown type");
        fam.type = rest;
        if (!current.empty() && current != name) closed.insert(current);
        current = name;
      } else {
        if (!fam.help.empty()) fail("second HELP line");
        fam.help = rest;
      }
      continue;
    }
    // name{labels} value
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    const std::string name = line.substr(0, i);
    if (!std::regex_match(name, name_re)) fail("bad sample name");
    std::map<std::string, std::string> labels;
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        size_t eq = line.find('=', i);
        if (eq == std::string::npos) fail("label without '='");
        const std::string lname = line.substr(i, eq - i);
        if (!std::regex_match(lname, label_re) || lname.rfind("__", 0) == 0) fail("bad label name '" + lname + "'");
        if (eq + 1 >= line.size() || line[eq + 1] != '"') fail("label value not quoted");
        std::string value;
        size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\') {
            if (++j >= line.size()) fail("dangling escape");
            if (line[j] == 'n') value += '\n';
            else if (line[j] == '\\' || line[j] == '"') value += line[j];
            else fail("unknown escape");
          } else {
            value += line[j];
          }
        }
        if (j >= line.size()) fail("unterminated label value");
        if (!labels.emplace(lname, value).second) fail("repeated label");
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
        else if (i < line.size() && line[i] != '}') fail("expected ',' or '}'");
      }
      if (i >= line.size()) fail("unterminated labels");
      ++i;
    }
    if (i >= line.size() || line[i] != ' ') fail("expected a space before the value");
    const std::string value_text = line.substr(i + 1);
    double value;
    if (value_text == "+Inf") value = INFINITY;
    else if (value_text == "-Inf") value = -INFINITY;
    else if (value_text == "NaN") value = NAN;
    else {
      size_t used = 0;
      try {
        value = std::stod(value_text, &used);
      } catch (const std::exception&) {
        fail("value is not a number");
      }
      if (used != value_text.size()) fail("trailing characters after the value (timestamps are not expected)");
    }
    // The family: the name itself, or a histogram's _bucket/_sum/_count.
    std::string family = name, suffix;
    for (const char* s : {"_bucket", "_sum", "_count"}) {
      const std::string sfx = s;
      if (!e.families.count(name) && name.size() > sfx.size() && name.compare(name.size() - sfx.size(), sfx.size(), sfx) == 0)
        family = name.substr(0, name.size() - sfx.size()), suffix = sfx;
    }
    auto fam = e.families.find(family);
    if (fam == e.families.end() || fam->second.type.empty()) fail("sample before its family's TYPE");
    if (fam->second.help.empty()) fail("family without HELP");
    if (family != current) fail("samples of family " + family + " are not contiguous");
    const std::string& type = fam->second.type;
    if (!suffix.empty() && type != "histogram" && type != "summary") fail("suffix on a " + type);
    if (type == "histogram" && suffix.empty()) fail("histogram sample without _bucket/_sum/_count");
    if (type == "counter" && (name.size() < 6 || name.compare(name.size() - 6, 6, "_total") != 0)) fail("counter not named _total");
    if (type == "gauge" && name.size() >= 6 && name.compare(name.size() - 6, 6, "_total") == 0) fail("gauge named _total");
    if (type == "counter" && !(value >= 0)) fail("negative counter");
    std::string series = name + "{";
    std::string without_le = family + "{";
    for (const auto& [k, v] : labels) {
      series += k + "=\"" + v + "\",";
      if (k != "le") without_le += k + "=\"" + v + "\",";
    }
    series += "}";
    without_le += "}";
    if (!e.samples.emplace(series, value).second) fail("repeated series");
    e.order.push_back(series);
    if (suffix == "_bucket") {
      if (!labels.count("le")) fail("bucket without le");
      const std::string le = labels["le"];
      buckets[without_le].push_back({le == "+Inf" ? INFINITY : std::stod(le), value});
    }
  }
  for (const auto& [series, bs] : buckets) {
    for (size_t k = 1; k < bs.size(); ++k) {
      if (!(bs[k].first > bs[k - 1].first)) throw std::runtime_error(series + ": le not increasing");
      if (bs[k].second < bs[k - 1].second) throw std::runtime_error(series + ": buckets not cumulative");
    }
    if (bs.empty() || !std::isinf(bs.back().first)) throw std::runtime_error(series + ": no +Inf bucket");
    std::string count = series;
    count.insert(count.find('{'), "_count");
    if (e.at(count) != bs.back().second) throw std::runtime_error(series + ": +Inf bucket differs from _count");
  }
  return e;
}

TEST(PrometheusParser, RefusesWhatTheFormatForbids) {
  const std::string ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n";
  EXPECT_EQ(parse_strict(ok).at("a_total{x=\"1\",}"), 2);
  for (const std::string& bad : std::vector<std::string>{
           "a_total 1\n",                                                           // no TYPE
           "# HELP a A.\n# TYPE a counter\na 1\n",                                              // counter not _total
           "# HELP a A.\n# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",                        // repeated series
           "# HELP a A.\n# TYPE a gauge\na{x=\"\\t\"} 1\n",                                    // bad escape
           "# HELP a A.\n# TYPE a gauge\na{1x=\"1\"} 1\n",                                     // bad label name
           "# HELP a A.\n# TYPE a gauge\na 1 123\n",                                           // timestamp
           "# HELP a A.\n# TYPE a gauge\na 1",                                                 // no final newline
           "# HELP h A.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",  // not cumulative
           "# HELP h A.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",  // +Inf ≠ count
           "# HELP a A.\n# TYPE a gauge\n# HELP b B.\n# TYPE b gauge\nb 1\na 1\n",             // not contiguous
       })
    EXPECT_THROW(parse_strict(bad), std::runtime_error) << bad;
}

TEST(EndpointLabel, IdsBecomeNamedPlaceholders) {
  EXPECT_EQ(endpoint_label("/api/v1/forward_backward"), "/api/v1/forward_backward");
  EXPECT_EQ(endpoint_label(R"(/api/v1/training_runs/([^/]+))"), "/api/v1/training_runs/{training_run_id}");
  EXPECT_EQ(endpoint_label(R"(/api/v1/training_runs/([^/]+)/checkpoints/([^/]+(?:/[^/]+)?)/ttl)"),
            "/api/v1/training_runs/{training_run_id}/checkpoints/{checkpoint_id}/ttl");
  EXPECT_EQ(endpoint_label(R"(/api/v1/sessions/([^/]+)/finish)"), "/api/v1/sessions/{session_id}/finish");
}

class MetricsTest : public HttpTest {
 protected:
  Exposition scrape() {
    auto r = cli->Get("/metrics");
    EXPECT_TRUE(r);
    if (!r) return {};
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    try {
      return parse_strict(r->body);
    } catch (const std::exception& e) {
      ADD_FAILURE() << e.what() << "\n" << r->body;
      return {};
    }
  }
};

TEST_F(MetricsTest, ATrainingLoopASampleASaveAndAFaultAreCounted) {
  const Exposition before = scrape();
  EXPECT_EQ(before.at("kiln_optimizer_steps_total{}"), 0);
  EXPECT_EQ(before.at("kiln_build_info{version=\"" KILN_VERSION "\",}"), 1);

  const std::string m = model();
  const json d = datum({72, 105, 32, 75, 105, 108, 110});  // 6 input tokens
  for (int64_t step = 0; step < 3; ++step) {
    result(post("/api/v1/forward_backward", {{"forward_backward_input", {{"data", {d, d}}, {"loss_fn", "cross_entropy"}}},
                                             {"model_id", m}, {"seq_id", 2 * step + 1}, {"type", "forward_backward"}})
               .second["request_id"]);
    result(post("/api/v1/optim_step", {{"adam_params", {{"learning_rate", 0.01}}}, {"model_id", m},
                                       {"seq_id", 2 * step + 2}, {"type", "optim_step"}})
               .second["request_id"]);
  }
  result(post("/api/v1/save_weights", {{"model_id", m}, {"path", "s"}, {"seq_id", 7}}).second["request_id"]);
  auto [ss, sampler] = post("/api/v1/save_weights_for_sampler",
                            {{"model_id", m}, {"seq_id", 8}, {"sampling_session_seq_id", 1}, {"type", "save_weights_for_sampler"}});
  ASSERT_EQ(ss, 200) << sampler;
  const std::string sampler_id = result(sampler["request_id"])["sampling_session_id"];
  const json prompt = {{"chunks", {{{"tokens", {72, 105}}, {"type", "encoded_text"}}}}};
  result(post("/api/v1/asample", {{"num_samples", 2}, {"prompt", prompt}, {"sampling_session_id", sampler_id}, {"seq_id", 0},
                                  {"sampling_params", {{"max_tokens", 5}, {"seed", 3}, {"stop", json::array()}}},
                                  {"type", "sample"}})
             .second["request_id"]);
  ASSERT_EQ(post("/_kiln/faults", {{"rules", {{{"endpoint", "/api/v1/get_info"}, {"times", 1},
                                               {"action", {{"kind", "status"}, {"status", 503}}}}}}}).first, 200);
  EXPECT_EQ(post("/api/v1/get_info", {{"model_id", m}}).first, 503);
  EXPECT_EQ(post("/api/v1/get_info", {{"model_id", m}}).first, 200);
  EXPECT_EQ(cli->Get("/api/v1/no_such_route")->status, 404);

  const Exposition e = scrape();
  EXPECT_EQ(e.at("kiln_optimizer_steps_total{}"), 3);
  EXPECT_EQ(e.at("kiln_tokens_trained_total{}"), 3 * 2 * 6);
  EXPECT_EQ(e.at("kiln_tokens_forward_total{}"), 0);
  EXPECT_EQ(e.at("kiln_tokens_sampled_total{}"), 2 * 5);
  EXPECT_EQ(e.at("kiln_checkpoints_written_total{}"), 1);  // the sampler snapshot writes no file
  EXPECT_GT(e.at("kiln_checkpoint_written_bytes_total{}"), 1000);
  EXPECT_EQ(e.at("kiln_checkpoints{}"), 1);
  EXPECT_EQ(e.at("kiln_models{}"), 1);
  EXPECT_EQ(e.at("kiln_samplers{}"), 1);
  EXPECT_EQ(e.at("kiln_futures{state=\"pending\",}"), 0);
  EXPECT_EQ(e.at("kiln_futures{state=\"running\",}"), 0);
  EXPECT_EQ(e.at("kiln_futures{state=\"failed\",}"), 0);
  EXPECT_EQ(e.at("kiln_futures{state=\"done\",}"), 1 + 6 + 2 + 1);  // create, 3 × (fb, step), save ×2, sample
  EXPECT_EQ(e.at("kiln_queue_depth{model_id=\"" + m + "\",}"), 0);
  EXPECT_EQ(e.at("kiln_faults_fired_total{kind=\"status\",}"), 1);
  const std::string fb = "endpoint=\"/api/v1/forward_backward\",method=\"POST\",";
  EXPECT_EQ(e.at("kiln_http_requests_total{" + fb + "status=\"200\",}"), 3);
  EXPECT_EQ(e.at("kiln_http_request_duration_seconds_count{" + fb + "}"), 3);
  EXPECT_GT(e.at("kiln_http_request_duration_seconds_sum{" + fb + "}"), 0);
  EXPECT_EQ(e.at("kiln_http_request_duration_seconds_bucket{endpoint=\"/api/v1/forward_backward\",le=\"+Inf\",method=\"POST\",}"), 3);
  EXPECT_NO_THROW(e.at("kiln_http_request_duration_seconds_bucket{endpoint=\"/api/v1/forward_backward\",le=\"0.0025\",method=\"POST\",}"));
  EXPECT_EQ(e.at("kiln_http_requests_total{endpoint=\"/api/v1/get_info\",method=\"POST\",status=\"503\",}"), 1);
  EXPECT_EQ(e.at("kiln_http_requests_total{endpoint=\"(unrouted)\",method=\"GET\",status=\"404\",}"), 1);
  // Counters never go down, even across a reset (Prometheus reads a drop as a process restart).
  ASSERT_EQ(post("/_kiln/reset", json::object()).first, 200);
  const Exposition after = scrape();
  EXPECT_EQ(after.at("kiln_optimizer_steps_total{}"), 3);
  EXPECT_EQ(after.at("kiln_models{}"), 0);
  EXPECT_EQ(after.at("kiln_futures{state=\"done\",}"), 0);
}

}  // namespace
}  // namespace kiln::http
