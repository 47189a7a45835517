// Wire conformance, read from the server's request journal after a generated workload: the
// fields each request carries (protocol.md §W6), seq_id numbering (§W4.1, §W4.2) and resubmission
// (§W4.4). The client's answers are not looked at here; the other suites do that.
#include <map>
#include <set>
#include <sstream>

#include <rapidcheck.h>

#include "conformance/property.hpp"
#include "conformance/wire_schema.hpp"
#include "conformance/workload.hpp"

namespace kiln::conformance {
namespace {

// ---- the workload ----

struct WireOp {
  enum Kind { forward, forward_backward, chunked_forward_backward, custom, optim_step, save_state, save_sampler } kind;
  std::vector<Example> batch;
  Adam adam;
};
void showValue(const WireOp& op, std::ostream& os) {
  static const char* names[] = {"forward", "forward_backward", "forward_backward of 1030 datums (chunked)", "forward_backward_custom",
                                "optim_step", "save_state", "save_weights_for_sampler_ext"};
  os << names[op.kind];
  if (op.kind <= WireOp::custom && op.kind != WireOp::chunked_forward_backward) os << "(" << describe(op.batch) << ")";
}

rc::Gen<WireOp> gen_op() {
  return rc::gen::exec([] {
    WireOp op{*rc::gen::element(WireOp::forward, WireOp::forward_backward, WireOp::forward_backward, WireOp::chunked_forward_backward,
                                WireOp::custom, WireOp::optim_step, WireOp::optim_step, WireOp::save_state, WireOp::save_sampler),
              *gen_batch(3), *gen_adam()};
    if (op.kind == WireOp::chunked_forward_backward) op.batch = many_examples(1030, 7);
    return op;
  });
}

rc::Gen<std::vector<WireOp>> gen_ops(size_t most) {
  return gen_list(gen_op(), most);
}

// One call as the server must see it: a request type and, for forward / forward_backward, the
// datums' tokens in order (the chunks of one call together).
struct ExpectedCall {
  std::string path;
  std::vector<std::vector<int64_t>> tokens;
};

// Runs the ops on one client; returns the calls a client must make, in order. An operation the
// driver does not implement is left out (the wire properties check what the client does send).
std::vector<ExpectedCall> run_workload(Case& c, const std::string& client, const std::vector<WireOp>& ops) {
  std::vector<ExpectedCall> calls;
  int saves = 0;
  auto tokens_of = [](const std::vector<Example>& b) {
    std::vector<std::vector<int64_t>> t;
    for (const auto& e : b) t.push_back(e.tokens);
    return t;
  };
  auto run = [&](const std::string& op, const json& args, std::vector<ExpectedCall> made) {
    if (c.ok_if_implemented(op, args)) calls.insert(calls.end(), made.begin(), made.end());
  };
  for (const auto& op : ops) {
    const json data = to_driver(op.batch);
    switch (op.kind) {
      case WireOp::forward:
        run("forward", {{"client", client}, {"data", data}, {"loss_fn", "cross_entropy"}}, {{"/api/v1/forward", tokens_of(op.batch)}});
        break;
      case WireOp::forward_backward:
      case WireOp::chunked_forward_backward:
        run("forward_backward", {{"client", client}, {"data", data}, {"loss_fn", "cross_entropy"}},
            {{"/api/v1/forward_backward", tokens_of(op.batch)}});
        break;
      case WireOp::custom:
        run("forward_backward_custom", {{"client", client}, {"data", data}, {"loss", "neg_logprob_sum"}},
            {{"/api/v1/forward", tokens_of(op.batch)}, {"/api/v1/forward_backward", tokens_of(op.batch)}});
        break;
      case WireOp::optim_step:
        run("optim_step", optim_args(client, op.adam), {{"/api/v1/optim_step", {}}});
        break;
      case WireOp::save_state:
        run("save_state", {{"client", client}, {"name", "wire-" + std::to_string(++saves)}}, {{"/api/v1/save_weights", {}}});
        break;
      case WireOp::save_sampler:
        run("save_weights_for_sampler_ext", {{"client", client}, {"name", "wire-s" + std::to_string(++saves)}},
            {{"/api/v1/save_weights_for_sampler", {}}});
        break;
    }
  }
  return calls;
}

struct Submit {
  std::string path;
  json body;
  std::vector<std::vector<int64_t>> tokens;  // forward / forward_backward datums
};

std::vector<std::vector<int64_t>> datum_tokens(const json& request) {
  std::vector<std::vector<int64_t>> out;
  const json input = request.contains("forward_input") ? request["forward_input"] : request.value("forward_backward_input", json::object());
  const json data = input.value("data", json::array());
  for (const auto& d : data) {
    std::vector<int64_t> t;
    const json chunks = d.value("model_input", json::object()).value("chunks", json::array());
    for (const auto& ch : chunks) {
      const auto toks = ch.value("tokens", std::vector<int64_t>{});
      t.insert(t.end(), toks.begin(), toks.end());
    }
    out.push_back(std::move(t));
  }
  return out;
}

// The model's submits by seq_id, every attempt of each; throws Failure on a seq_id re-used
// with another body.
std::map<int64_t, Submit> submits_by_seq(const json& journal, const std::string& model_id) {
  std::map<int64_t, Submit> out;
  for (const auto& e : journal) {
    const json& req = e["request"];
    if (!req.is_object() || req.value("model_id", "") != model_id || !req.contains("seq_id") || !req["seq_id"].is_number_integer())
      continue;
    const int64_t seq = req["seq_id"];
    // tinker 0.25 sends forward as a protobuf forward_backward with forward_only.
    const std::string path = req.value("forward_only", false) ? "/api/v1/forward" : e["path"].get<std::string>();
    json body = req;
    body.erase("transport");  // journal annotations of a protobuf body
    body.erase("zstd");
    auto [it, fresh] = out.try_emplace(seq, Submit{path, body, datum_tokens(req)});
    if (fresh) continue;
    if (it->second.path != path || it->second.body != body)
      throw Failure("seq_id " + std::to_string(seq) + " was sent twice with different requests (" + it->second.path + ", then " + path +
                    "); a re-sent submit must repeat its body and seq_id exactly (protocol.md §W4.4)");
  }
  return out;
}

// The seq_ids must be 1..n, and, read in seq_id order, must replay the calls in call order.
void check_seq_order(const std::map<int64_t, Submit>& submits, const std::vector<ExpectedCall>& calls) {
  int64_t expect_seq = 1;
  for (const auto& [seq, s] : submits) {
    if (seq != expect_seq)
      throw Failure("seq_ids of the model go " + std::to_string(expect_seq - 1) + " → " + std::to_string(seq) +
                    "; they must count 1, 2, 3, … with no gap (protocol.md §W4.1)");
    ++expect_seq;
  }
  auto it = submits.begin();
  for (size_t k = 0; k < calls.size(); ++k) {
    const auto& call = calls[k];
    std::vector<std::vector<int64_t>> seen;
    do {
      if (it == submits.end())
        throw Failure("call #" + std::to_string(k + 1) + " (" + call.path + ") has no request of its own in seq_id order");
      if (it->second.path != call.path)
        throw Failure("seq_id " + std::to_string(it->first) + " is a " + it->second.path + " but call #" + std::to_string(k + 1) +
                      " in submission order is a " + call.path + ": seq_ids must follow the order of the calls");
      seen.insert(seen.end(), it->second.tokens.begin(), it->second.tokens.end());
      ++it;
    } while (seen.size() < call.tokens.size());
    if (seen != call.tokens)
      throw Failure("the datums of call #" + std::to_string(k + 1) + " (" + call.path + ", " + std::to_string(call.tokens.size()) +
                    " datums) are not in call order when its requests are read in seq_id order: each chunk's seq_id must "
                    "follow the position of its datums (protocol.md §W4.2)");
  }
  if (it != submits.end())
    throw Failure("seq_id " + std::to_string(it->first) + " (" + it->second.path + ") belongs to no call the harness made: "
                  "an extra submit, or a resubmission under a new seq_id");
}

void request_fields(Case& c) {
  const auto ops = pick("calls", gen_ops(5));
  const std::string service = c.service();
  const std::string client = c.training_client(service, pick("LoRA rank", gen_lora_rank({0, 4})), 1);
  run_workload(c, client, ops);
  c.ok_if_implemented("get_info", {{"client", client}});
  c.ok_if_implemented("list_checkpoints", {{"client", client}});
  std::vector<std::string> problems;
  for (const auto& e : c.server.journal()) {
    const std::string path = e["path"], method = e["method"];
    if (method == "GET") {
      if (!is_get_endpoint(path)) problems.push_back("GET " + path + " is not an endpoint of the API");
      continue;
    }
    const auto found = request_problems(path, e["request"]);
    problems.insert(problems.end(), found.begin(), found.end());
    if (problems.size() > 20) break;
  }
  if (!problems.empty()) {
    std::ostringstream os;
    for (const auto& p : problems) os << p << "\n";
    throw Failure(os.str());
  }
}

// Generated calls with, somewhere among them, one forward_backward big enough to be chunked.
std::vector<WireOp> ops_with_a_chunked_call() {
  auto ops = pick("calls", gen_ops(5));
  const auto at = pick("position of a 1030-datum forward_backward", rc::gen::inRange<size_t>(0, ops.size() + 1));
  ops.insert(ops.begin() + static_cast<long>(at), WireOp{WireOp::chunked_forward_backward, many_examples(1030, 7), Adam{}});
  return ops;
}

void seq_id_order(Case& c) {
  const auto ops = ops_with_a_chunked_call();
  const std::string service = c.service();
  const std::string client = c.training_client(service, 4, 1);
  const auto calls = run_workload(c, client, ops);
  check_seq_order(submits_by_seq(c.server.journal(), c.model_id(client)), calls);
}

void chunk_limits(Case& c) {
  const auto ops = ops_with_a_chunked_call();
  const std::string client = c.training_client(c.service(), 4, 1);
  run_workload(c, client, ops);
  for (const auto& e : c.server.journal()) {
    const json& req = e["request"];
    if (!req.is_object()) continue;
    // A body the journal kept short carries its datum count in its summary.
    size_t n = req.contains("summary") ? req["summary"].value("num_datums", size_t{0}) : 0;
    for (const char* key : {"forward_input", "forward_backward_input"})
      if (req.contains(key) && req[key].is_object()) n = req[key].value("data", json::array()).size();
    if (n > 1024)
      throw Failure(e["path"].get<std::string>() + " carried " + std::to_string(n) +
                    " datums in one request; a client splits calls into chunks of at most 1024 (protocol.md §W4.2)");
  }
}

// A fault on the n-th submit of the workload: refused before the server saw it, or accepted with
// its answer lost on the way back.
struct SubmitFault {
  int skip;
  std::string kind;  // status 503 / 500 / 429 / 408, empty 400, or close
};
void showValue(const SubmitFault& f, std::ostream& os) { os << f.kind << " on submit #" << f.skip + 1; }

json fault_rule(const SubmitFault& f, const std::string& model_id) {
  json action;
  if (f.kind == "close") action = {{"kind", "close"}};
  else if (f.kind == "empty 400") action = {{"kind", "status"}, {"status", 400}, {"body", ""}};
  else action = {{"kind", "status"}, {"status", std::stoi(f.kind)}};
  return {{"model", model_id}, {"skip", f.skip}, {"times", 1}, {"action", action}};
}

void idempotent_resubmission(Case& c) {
  const auto ops = pick("calls", gen_ops(4));
  const auto faults = pick("faults", gen_list(rc::gen::build<SubmitFault>(rc::gen::set(&SubmitFault::skip, rc::gen::inRange(0, 4)),
                                                                  rc::gen::set(&SubmitFault::kind, rc::gen::element<std::string>(
                                                                                                       "close", "close", "503", "500", "429", "408", "empty 400"))), 2));
  const std::string service = c.service();
  const std::string client = c.training_client(service, 4, 1);
  const std::string model = c.model_id(client);
  // Faults on submits only: every training endpoint but retrieve_future.
  json doc = {{"seed", 1}, {"rules", json::array()}};
  for (const auto& f : faults)
    for (const char* ep : {"/api/v1/forward", "/api/v1/forward_backward", "/api/v1/optim_step", "/api/v1/save_weights",
                           "/api/v1/save_weights_for_sampler"}) {
      json r = fault_rule(f, model);
      r["endpoint"] = ep;
      doc["rules"].push_back(r);
    }
  c.server.set_faults(doc);
  const auto calls = run_workload(c, client, ops);
  c.server.clear_faults();
  check_seq_order(submits_by_seq(c.server.journal(), model), calls);
}

}  // namespace

void add_wire_properties(std::vector<Property>& out) {
  out.push_back({"wire", "wire.request_fields",
                 "every request body has the fields protocol.md §W6–7 require, with their JSON types and fixed values, and no "
                 "field the API does not define; every endpoint called exists",
                 request_fields});
  out.push_back({"wire", "wire.seq_id_order",
                 "a training client numbers its submits 1, 2, 3, … in call order; the chunks of one call take consecutive "
                 "seq_ids in the order of their datums, whatever order they are sent in (protocol.md §W4.1–4.2)",
                 seq_id_order});
  out.push_back({"wire", "wire.chunk_limits",
                 "a forward / forward_backward call of more than 1024 datums is split into requests of at most 1024 "
                 "(protocol.md §W4.2; the 5 MB estimate is not reached by these workloads)",
                 chunk_limits});
  out.push_back({"wire", "wire.idempotent_resubmission",
                 "a submit refused (503, 500, 429, 408, empty 400) or whose answer is lost (connection dropped) is re-sent "
                 "with the same body and seq_id, never as a new seq_id (protocol.md §W4.4)",
                 idempotent_resubmission});
}

}  // namespace kiln::conformance
