// Replays the exchanges recorded from the real SDKs (fixtures/wire-captures, copied from the
// spec's shared/wire-captures) against a live Kiln server, request by request in arrival order,
// and checks that every answer has the recorded shape. Server-chosen ids (sessions, models,
// request ids) are translated as Kiln hands out its own. Where the spec tells Kiln to answer
// differently from the recording server, the test expects the spec's answer instead; each such
// case is listed in `deviation()` with its reason.
#include "http/server.hpp"
#include "model/registry.hpp"
#include "model/threads.hpp"
#include "service/test_util.hpp"  // Eigen before httplib.h (see http/routes.hpp)

#include <httplib.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tinker_public.pb.h"
#include "wire/proto_codec.hpp"

namespace kiln::http {
namespace {

using nlohmann::json;

std::vector<json> load_capture(const std::string& name) {
  const char* dir = std::getenv("KILN_FIXTURES");
  std::ifstream in(std::string(dir ? dir : "fixtures") + "/wire-captures/" + name);
  EXPECT_TRUE(in) << name;
  std::vector<json> records;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) records.push_back(json::parse(line));
  std::sort(records.begin(), records.end(), [](const json& a, const json& b) { return a["n"] < b["n"]; });
  return records;
}

std::string base64_decode(const std::string& s) {
  static const std::string chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -8;
  for (char c : s) {
    const auto pos = chars.find(c);
    if (pos == std::string::npos) continue;
    val = (val << 6) + static_cast<int>(pos);
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xff));
      bits -= 8;
    }
  }
  return out;
}

template <typename T>
std::string packed(const json& values) {
  std::string out;
  for (const auto& v : values) {
    const T x = v.get<T>();
    out.append(reinterpret_cast<const char*>(&x), sizeof x);
  }
  return out;
}

// The capture's decoded form of a protobuf ForwardBackwardRequest, back to the message.
tinker_public::ForwardBackwardRequest proto_from_capture(const json& b) {
  tinker_public::ForwardBackwardRequest req;
  req.set_model_id(b["model_id"]);
  req.set_seq_id(b["seq_id"]);
  req.set_loss_fn(b["loss_fn"]);
  req.set_forward_only(b.value("forward_only", false));
  const json config = b.value("loss_fn_config", json::object());  // named: items() of a temporary dangles
  for (const auto& [k, v] : config.items()) (*req.mutable_loss_fn_config())[k] = v;
  for (const auto& d : b["data"]) {
    auto* datum = req.add_data();
    for (const auto& c : d["model_input"]["chunks"])
      datum->add_model_input()->mutable_encoded_text()->set_tokens(packed<int32_t>(c["tokens"]));
    for (const auto& [name, t] : d["loss_fn_inputs"].items()) {
      auto& tensor = (*datum->mutable_loss_fn_inputs())[name];
      const bool integer = t["dtype"] == "int64";
      tensor.set_dtype(integer ? tinker_public::DTYPE_INT64 : tinker_public::DTYPE_FLOAT32);
      for (int64_t s : t["shape"]) tensor.add_shape(s);
      const std::string values = integer ? packed<int64_t>(t["data"]) : packed<float>(t["data"]);
      if (t["encoding"] == "sparse_csr") {
        tensor.mutable_sparse_csr()->set_values(values);
        tensor.mutable_sparse_csr()->set_crow_indices(packed<int64_t>(t["sparse_crow_indices"]));
        tensor.mutable_sparse_csr()->set_col_indices(packed<int64_t>(t["sparse_col_indices"]));
      } else {
        tensor.set_dense(values);
      }
    }
  }
  return req;
}

// Per-datum (elements, trailing shape) of a serialized ForwardBackwardOutput.
std::vector<std::pair<size_t, std::vector<int64_t>>> proto_outputs(const std::string& bytes) {
  tinker_public::ForwardBackwardOutput out;
  EXPECT_TRUE(out.ParseFromString(bytes));
  std::vector<std::pair<size_t, std::vector<int64_t>>> shapes;
  for (const auto& rec : out.loss_fn_outputs()) {
    const auto& lp = rec.fields().at("logprobs");
    std::vector<int64_t> offsets(lp.offsets().size() / 8);
    std::memcpy(offsets.data(), lp.offsets().data(), lp.offsets().size());
    for (size_t i = 0; i + 1 < offsets.size(); ++i)
      shapes.push_back({static_cast<size_t>(offsets[i + 1] - offsets[i]) / 4,
                        std::vector<int64_t>(lp.trailing_shape().begin(), lp.trailing_shape().end())});
  }
  EXPECT_TRUE(out.metrics().count("loss:sum"));
  return shapes;
}

// The recordings elide the middle of large chunks ({"_elided_datums": N}). The recorded datums
// follow one pattern: datum j of a chunk has tokens s0+j ... of length 3 + j mod 4, targets shifted
// by one, weights [0, 1, 1, ...]. Rebuild the elided ones, and check the datum after the gap
// against the same rule, so the reconstruction is verified by the recording itself.
void expand_elided(json& data) {
  for (size_t p = 0; p < data.size(); ++p) {
    if (!data[p].contains("_elided_datums")) continue;
    const int64_t count = data[p]["_elided_datums"];
    const bool proto_form = data[0]["loss_fn_inputs"]["target_tokens"].contains("encoding");
    const int64_t s0 = data[0]["model_input"]["chunks"][0]["tokens"][0];
    auto make = [&](int64_t j) {
      const int64_t n = 3 + j % 4;
      std::vector<int64_t> tokens, targets;
      std::vector<double> weights;
      for (int64_t t = 0; t < n; ++t) {
        tokens.push_back(s0 + j + t);
        targets.push_back(s0 + j + t + 1);
        weights.push_back(t == 0 ? 0.0 : 1.0);
      }
      json tt = {{"data", targets}, {"dtype", "int64"}, {"shape", {n}}};
      json w = {{"data", weights}, {"dtype", "float32"}, {"shape", {n}}};
      if (proto_form) tt["encoding"] = w["encoding"] = "dense";
      return json{{"model_input", {{"chunks", {{{"type", "encoded_text"}, {"tokens", tokens}}}}}},
                  {"loss_fn_inputs", {{"target_tokens", tt}, {"weights", w}}}};
    };
    json rebuilt = json::array();
    for (int64_t j = 0; j < count; ++j) rebuilt.push_back(make(static_cast<int64_t>(p) + j));
    if (p + 1 < data.size()) {
      EXPECT_EQ(data[p + 1]["model_input"]["chunks"][0]["tokens"],
                make(static_cast<int64_t>(p) + count)["model_input"]["chunks"][0]["tokens"])
          << "the elided-datum pattern does not reproduce the recorded datum after the gap";
    }
    data.erase(data.begin() + static_cast<std::ptrdiff_t>(p));
    data.insert(data.begin() + static_cast<std::ptrdiff_t>(p), rebuilt.begin(), rebuilt.end());
    return;
  }
}

// Checks that `ours` has the shape of `recorded`: every recorded key present with a value of the
// same kind; `type` and `category` literals equal; errors starting with the recorded text;
// shapes equal; per-datum lists of equal length. Values chosen by a server are not compared.
void expect_same_shape(const json& recorded, const json& ours, const std::string& where) {
  if (recorded.is_object()) {
    ASSERT_TRUE(ours.is_object()) << where << ": expected an object, got " << ours.dump().substr(0, 200);
    for (const auto& [k, v] : recorded.items()) {
      if (k.starts_with("_")) continue;  // the recorder's own annotations (_output_count)
      if (where.find(".metrics") != std::string::npos) continue;  // optim_step metric names are free-form
      ASSERT_TRUE(ours.contains(k)) << where << ": missing key '" << k << "' in " << ours.dump().substr(0, 300);
      if (k == "type" || k == "category" || k == "dtype" || k == "shape") {
        EXPECT_EQ(ours[k], v) << where << "." << k;
      } else if (k == "error") {
        EXPECT_EQ(ours[k].get<std::string>().rfind(v.get<std::string>(), 0), 0u) << ours[k];
      } else {
        expect_same_shape(v, ours[k], where + "." + k);
      }
    }
  } else if (recorded.is_array()) {
    ASSERT_TRUE(ours.is_array()) << where;
    // An elided run of outputs: compare the head and the tail, and the total count.
    for (size_t p = 0; p < recorded.size(); ++p)
      if (recorded[p].is_object() && recorded[p].contains("_elided_datums")) {
        const size_t gap = recorded[p]["_elided_datums"];
        ASSERT_EQ(ours.size(), recorded.size() - 1 + gap) << where;
        for (size_t i = 0; i < p; ++i) expect_same_shape(recorded[i], ours[i], where + "[" + std::to_string(i) + "]");
        for (size_t i = p + 1; i < recorded.size(); ++i)
          expect_same_shape(recorded[i], ours[i - 1 + gap], where + "[" + std::to_string(i - 1 + gap) + "]");
        return;
      }
    const bool per_item = where.ends_with("loss_fn_outputs") || where.ends_with(".data") || where.ends_with("checkpoints");
    if (per_item) {
      ASSERT_EQ(ours.size(), recorded.size()) << where;
    }
    for (size_t i = 0; i < std::min(recorded.size(), ours.size()) && (per_item || i < 1); ++i)
      expect_same_shape(recorded[i], ours[i], where + "[" + std::to_string(i) + "]");
  } else if (recorded.is_number()) {
    EXPECT_TRUE(ours.is_number()) << where;
  } else {
    EXPECT_EQ(ours.type(), recorded.type()) << where;
  }
}

// Requests the spec tells Kiln to answer differently from the recording server (which accepted
// everything). Returns the expected (status, detail prefix), or nothing.
std::optional<std::pair<int, std::string>> deviation(const json& rec) {
  const std::string path = rec["path"];
  const json& b = rec.value("body", json::object());
  // The load-as-first-call rule (protocol.md §S7.6, protocol.md rule E6): the recordings load the
  // state of a model that has already trained.
  if (path.ends_with("/load_weights") && b.value("seq_id", 1) != 1)
    return std::pair{400, "LoadWeights is not permitted with seq_id " + std::to_string(b["seq_id"].get<int>())};
  return std::nullopt;
}

// The recorded base models, with a small vocabulary: the replay checks the wire, not the model,
// and the 1024-datum chunks should take milliseconds, not seconds.
const model::ModelRegistry& replay_registry() {
  static const model::ModelRegistry r = [] {
    json models = json::array();
    for (const char* name : {"Qwen/Qwen3-8B", "accounts/fireworks/models/qwen3-8b", "meta-llama/Llama-3.1-8B"})
      models.push_back({{"name", name}, {"vocab_size", 8192}, {"d_model", 16}, {"n_layers", 1}, {"n_heads", 2},
                        {"d_ff", 32}, {"max_context", 4096}, {"rope_theta", 10000.0}, {"norm_eps", 1e-5}});
    return model::ModelRegistry::from_json({{"models", models}});
  }();
  return r;
}

class Replay : public ::testing::TestWithParam<std::string> {};

TEST_P(Replay, EveryRecordedRequestGetsTheRecordedShape) {
  model::set_num_threads(2);
  service::testing::TempDir dir;
  auto so = service::testing::options(dir.path(), std::make_shared<service::VirtualClock>());
  so.registry = &replay_registry();
  service::TrainerService svc(so);
  ServerOptions o;
  o.port = 0;
  o.poll_hold_seconds = 0.05;
  HttpServer server(svc, o);
  const int port = server.bind();
  struct Running {  // stops and joins on every exit, early assertion failures included
    HttpServer& server;
    std::thread thread;
    ~Running() {
      server.stop();
      thread.join();
      model::set_num_threads(1);
    }
  } running{server, std::thread([&] { server.run(); })};

  std::vector<std::pair<std::string, std::string>> ids;  // recorded → ours, longest first when used
  auto translate = [&](std::string s) {
    for (const auto& [from, to] : ids)
      for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
    return s;
  };
  auto learn = [&](const json& recorded, const json& ours) {
    for (const char* key : {"session_id", "request_id", "model_id"})
      if (recorded.is_object() && ours.is_object() && recorded.contains(key) && ours.contains(key) &&
          recorded[key].is_string() && recorded[key] != ours[key]) {
        ids.emplace_back(recorded[key], ours[key]);
        std::sort(ids.begin(), ids.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
      }
  };
  std::set<std::string> refused;  // recorded request ids whose submit the spec refuses
  // Which (recorded) model and seq_id each recorded future belongs to, and the seq_ids sent so
  // far: a future is blocked while a lower seq_id of its model has not been sent.
  std::map<std::string, std::pair<std::string, int64_t>> future_of;
  std::map<std::string, std::set<int64_t>> sent;
  auto blocked = [&](const std::string& rid) {
    auto it = future_of.find(rid);
    if (it == future_of.end()) return false;
    const auto& [model, seq] = it->second;
    for (int64_t s = 1; s < seq; ++s)
      if (!sent[model].count(s)) return true;
    return false;
  };
  struct Deferred {
    std::string where;
    std::function<httplib::Result()> poll;
    json rec;
  };
  std::vector<Deferred> deferred;
  auto check_answer = [&](const json& rec, const httplib::Result& res) {
    EXPECT_EQ(res->status, rec["status"].get<int>()) << res->body.substr(0, 300);
    if (rec.contains("response_proto_b64")) {
      ASSERT_EQ(res->get_header_value("Content-Type"), "application/x-protobuf") << res->body.substr(0, 300);
      if (rec["response_proto_b64"].is_string())
        EXPECT_EQ(proto_outputs(res->body), proto_outputs(base64_decode(rec["response_proto_b64"])));
      else  // large answers were recorded by length only
        EXPECT_FALSE(proto_outputs(res->body).empty());
      return;
    }
    if (!rec.contains("response")) return;
    const json ours = res->body.empty() ? json() : json::parse(res->body);
    expect_same_shape(rec["response"], ours, "response");
    learn(rec["response"], ours);
  };
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(std::chrono::seconds(60));

  for (const json& rec : load_capture(GetParam())) {
    const std::string where = GetParam() + " #" + std::to_string(rec["n"].get<int>()) + " " + rec["path"].get<std::string>();
    SCOPED_TRACE(where);
    try {
    httplib::Headers headers;
    std::string content_type = "application/json";
    for (const auto& h : rec["headers"]) {
      const std::string k = h[0], v = h[1];
      if (k == "X-API-Key" || k == "Authorization" || k == "Accept" || k == "Content-Encoding") headers.emplace(k, v);
      if (k == "Content-Type") content_type = v;
    }
    std::string body;
    if (rec.contains("body_b64")) {  // the recorded bytes; only the model id is rewritten
      tinker_public::ForwardBackwardRequest msg;
      std::string raw = base64_decode(rec["body_b64"]);
      if (headers.count("Content-Encoding")) raw = wire::zstd_decompress(raw, 64u << 20);
      ASSERT_TRUE(msg.ParseFromString(raw));
      msg.set_model_id(translate(msg.model_id()));
      body = msg.SerializeAsString();
      headers.erase("Content-Encoding");
    } else if (rec.contains("body_proto")) {  // large bodies were recorded decoded and elided
      json bp = rec["body_proto"];
      bp["model_id"] = translate(bp["model_id"]);
      expand_elided(bp["data"]);
      body = proto_from_capture(bp).SerializeAsString();
      headers.erase("Content-Encoding");
    } else if (rec.contains("body") && !rec["body"].is_null()) {
      json b = rec["body"];
      for (const char* key : {"forward_input", "forward_backward_input"})
        if (b.contains(key)) expand_elided(b[key]["data"]);
      body = translate(b.dump());
    }
    const std::string path = rec["path"];
    const bool poll = path.ends_with("/retrieve_future");
    // The recorded model and seq_id of a training submit (JSON or protobuf body).
    std::optional<std::pair<std::string, int64_t>> submitted;
    if (rec.contains("body_proto"))
      submitted = {rec["body_proto"]["model_id"].get<std::string>(), rec["body_proto"]["seq_id"].get<int64_t>()};
    else if (rec.contains("body") && rec["body"].is_object() && rec["body"].contains("seq_id") &&
             rec["body"].contains("model_id"))
      submitted = {rec["body"]["model_id"].get<std::string>(), rec["body"]["seq_id"].get<int64_t>()};
    if (submitted) {
      sent[submitted->first].insert(submitted->second);
      if (rec.contains("response") && rec["response"].contains("request_id"))
        future_of[rec["response"]["request_id"]] = *submitted;
    }
    if (poll && refused.count(rec["body"]["request_id"])) continue;

    const std::string target =
        translate(path) + (rec.value("query", "").empty() ? "" : "?" + rec["query"].get<std::string>());
    const bool is_get = rec["method"] == "GET";
    // By value: a deferred poll runs after this iteration's locals are gone.
    std::function<httplib::Result()> send = [&cli, target, is_get, headers, body, content_type] {
      if (is_get) return cli.Get(target.c_str(), headers);
      return cli.Post(target.c_str(), headers, body, content_type.c_str());
    };
    auto res = send();
    ASSERT_TRUE(res);
    // A poll is answered try_again until the result is there; the recording server answered
    // try_again on purpose (once, or with a 408). Either is fine here; a final recorded answer
    // must be matched by our final answer.
    const bool recorded_try_again = rec.contains("response") && rec["response"].is_object() &&
                                    rec["response"].value("type", "") == "try_again";
    if (poll && !recorded_try_again) {
      // Blocked: a lower seq_id has not been sent yet (the SDK polls chunk 2 before it sends
      // chunk 1; the recording server answered out of order, Kiln executes in seq order). Check
      // this answer once everything is submitted; otherwise wait for it, as the SDK would.
      const bool is_blocked = blocked(rec["body"]["request_id"]);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(is_blocked ? 0 : 300);
      while (res && res->status == 408 && std::chrono::steady_clock::now() < deadline) res = send();
      if (res && res->status == 408) {
        deferred.push_back({where, send, rec});
        continue;
      }
    }
    ASSERT_TRUE(res);

    if (auto dev = deviation(rec)) {
      EXPECT_EQ(res->status, dev->first) << res->body;
      EXPECT_EQ(json::parse(res->body)["detail"].get<std::string>().rfind(dev->second, 0), 0u) << res->body;
      if (rec.contains("response") && rec["response"].contains("request_id")) refused.insert(rec["response"]["request_id"]);
      continue;
    }
    if (poll && recorded_try_again) {
      EXPECT_TRUE(res->status == 408 || res->status == 200) << res->status;
      if (res->status == 408) {
        EXPECT_EQ(json::parse(res->body)["type"], "try_again");
      }
      continue;
    }
    check_answer(rec, res);
    } catch (const std::exception& e) {
      ADD_FAILURE() << where << ": " << e.what() << " in " << rec.dump().substr(0, 400);
    }
  }
  for (auto& d : deferred) {  // everything is submitted now: each of these must complete
    SCOPED_TRACE(d.where + " (deferred)");
    auto res = d.poll();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
    while (res && res->status == 408 && std::chrono::steady_clock::now() < deadline) res = d.poll();
    ASSERT_TRUE(res);
    check_answer(d.rec, res);
  }
}

INSTANTIATE_TEST_SUITE_P(Captures, Replay,
                         ::testing::Values("tinker-0.23.0.jsonl", "tinker-0.25.0.jsonl", "fireworks-fwkey.jsonl",
                                           "fireworks-tmlkey.jsonl"),
                         [](const auto& info) {
                           std::string name = info.param.substr(0, info.param.find(".jsonl"));
                           std::replace(name.begin(), name.end(), '-', '_');
                           std::replace(name.begin(), name.end(), '.', '_');
                           return name;
                         });

}  // namespace
}  // namespace kiln::http
