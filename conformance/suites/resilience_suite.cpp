// Resilience: with faults injected on the server, a client survives every retry branch of
// protocol.md §W1.7 / §W3.3 (protocol.md §S9.5) and its calls take effect exactly once.
#include <rapidcheck.h>

#include "conformance/oracle.hpp"
#include "conformance/property.hpp"

namespace kiln::conformance {
namespace {

struct Fault {
  std::string where;  // submit or poll
  std::string kind;   // one of kSubmitFaults / kPollFaults; arm() turns it into a rule
};
void showValue(const Fault& f, std::ostream& os) { os << f.kind << " on the next " << f.where; }

const std::vector<std::string> kSubmitFaults = {"503", "500", "429", "408", "409", "empty 400", "close"};
const std::vector<std::string> kPollFaults = {"try_again 408", "try_again 200", "429", "500", "503", "400", "close", "held 3 polls"};

rc::Gen<Fault> gen_fault(bool lost_answers_only) {
  if (lost_answers_only)
    return rc::gen::build<Fault>(rc::gen::set(&Fault::where, rc::gen::element<std::string>("submit", "poll")),
                                 rc::gen::set(&Fault::kind, rc::gen::just<std::string>("close")));
  return rc::gen::oneOf(
      rc::gen::build<Fault>(rc::gen::set(&Fault::where, rc::gen::just<std::string>("submit")),
                            rc::gen::set(&Fault::kind, rc::gen::elementOf(kSubmitFaults))),
      rc::gen::build<Fault>(rc::gen::set(&Fault::where, rc::gen::just<std::string>("poll")),
                            rc::gen::set(&Fault::kind, rc::gen::elementOf(kPollFaults))));
}

// Arms one fault for the next request of its kind to this model.
void arm(KilnServer& server, const Fault& f, const std::string& model_id) {
  if (f.kind == "held 3 polls") {  // the result waits 3 polls, queue paused for capacity
    service::Progression p;
    p.mode = service::Progression::Mode::after_polls;
    p.polls = 3;
    p.queue_state = "paused_capacity";
    p.reason = "conformance: held";
    server.set_progression(p);
    return;
  }
  json action;
  if (f.kind == "close") action = {{"kind", "close"}};
  else if (f.kind == "empty 400") action = {{"kind", "status"}, {"status", 400}, {"body", ""}};
  else if (f.kind == "try_again 408") action = {{"kind", "try_again"}};
  else if (f.kind == "try_again 200")
    action = {{"kind", "try_again"}, {"status", 200}};
  else action = {{"kind", "status"}, {"status", std::stoi(f.kind)}};
  json rules = json::array();
  if (f.where == "poll") {
    rules.push_back({{"endpoint", "/api/v1/retrieve_future"}, {"model", model_id}, {"times", 1}, {"action", action}});
  } else {
    for (const char* ep : {"/api/v1/forward", "/api/v1/forward_backward", "/api/v1/optim_step"})
      rules.push_back({{"endpoint", ep}, {"model", model_id}, {"times", 1}, {"action", action}});
  }
  server.set_faults({{"seed", 1}, {"rules", rules}});
}

void disarm(KilnServer& server) {
  server.clear_faults();
  server.set_progression(service::Progression{});
}

struct Step {
  enum Kind { forward, forward_backward, optim_step } kind;
  std::vector<Example> batch;
  Adam adam;
  Fault fault;
};
void showValue(const Step& s, std::ostream& os) {
  static const char* names[] = {"forward", "forward_backward", "optim_step"};
  os << names[s.kind] << (s.kind == Step::optim_step ? "(" + describe(s.adam) + ")" : "(" + describe(s.batch) + ")") << " with ";
  showValue(s.fault, os);
}

// Runs the steps, each under its fault, against the driver and the oracle; every answer must
// match, and the server must have run as many forward_backward requests and optimizer steps as the oracle
// that ran each call once.
void faulty_training(Case& c, bool lost_answers_only) {
  const auto steps = pick("steps", gen_list(
      rc::gen::build<Step>(rc::gen::set(&Step::kind, rc::gen::element(Step::forward, Step::forward_backward, Step::optim_step)),
                           rc::gen::set(&Step::batch, gen_batch(2)), rc::gen::set(&Step::adam, gen_adam()),
                           rc::gen::set(&Step::fault, gen_fault(lost_answers_only))), 5));
  ScratchDir dir("kiln-oracle");
  Oracle oracle(dir.path());
  const std::string service = c.service();
  const std::string client = c.training_client(service, 4, 1);
  const std::string model = c.model_id(client);
  oracle.create(client, c.server.model_info(model).lora);
  for (const auto& s : steps) {
    std::ostringstream what;
    showValue(s, what);
    arm(c.server, s.fault, model);
    json got, want;
    if (s.kind == Step::optim_step) {
      const json args = optim_args(client, s.adam);
      got = {{"loss_fn_outputs", json::array()}, {"metrics", c.ok("optim_step", args).value("metrics", json::object())}};
      want = {{"loss_fn_outputs", json::array()}, {"metrics", oracle.optim_step(client, s.adam).value("metrics", json::object())}};
    } else {
      const bool backward = s.kind == Step::forward_backward;
      got = c.ok(backward ? "forward_backward" : "forward", {{"client", client}, {"data", to_driver(s.batch)}, {"loss_fn", "cross_entropy"}});
      want = oracle.forward(client, s.batch, backward);
    }
    const bool fired = s.fault.kind == "held 3 polls" || c.server.faults_fired() > 0;
    disarm(c.server);
    if (!fired) throw Failure("the fault of " + what.str() + " never fired: the client sent no such request");
    expect_output_close(got, want, what.str());
    // Exactly once: as many optimizer steps, and forward_backward calls, as the oracle ran (the
    // trainer keeps the last 16 losses; a case has at most 5 steps).
    const auto server = c.server.model_info(model), once = oracle.model_info(client);
    if (server.optimizer_step != once.optimizer_step)
      throw Failure("after " + what.str() + " the model has taken " + std::to_string(server.optimizer_step) +
                    " optimizer steps; running each call once takes " + std::to_string(once.optimizer_step));
    if (server.recent_losses.size() != once.recent_losses.size())
      throw Failure("after " + what.str() + " the server has run " + std::to_string(server.recent_losses.size()) +
                    " forward_backward requests; running each call once runs " + std::to_string(once.recent_losses.size()));
  }
  // A last forward sees every effect.
  const auto probe = std::vector<Example>{Example{{72, 105, 33}, {105, 33, 10}, std::nullopt}};
  expect_output_close(c.ok("forward", {{"client", client}, {"data", to_driver(probe)}, {"loss_fn", "cross_entropy"}}),
                      oracle.forward(client, probe, false), "the final forward");
}

// HTTP 410 on a training future's poll: the client surfaces it (promise_expired) and does not
// re-run the call, which the server has already executed (protocol.md §S9.5).
void expired_promise(Case& c) {
  const auto batch = pick("forward_backward batch", gen_batch(2));
  const auto adam = pick("then optim_step", gen_adam());
  ScratchDir dir("kiln-oracle");
  Oracle oracle(dir.path());
  const std::string client = c.training_client(c.service(), 4, 1);
  const std::string model = c.model_id(client);
  oracle.create(client, c.server.model_info(model).lora);
  c.server.set_faults({{"rules", {{{"endpoint", "/api/v1/retrieve_future"}, {"model", model}, {"times", 1},
                                    {"action", {{"kind", "status"}, {"status", 410}, {"body", {{"detail", "Promise expired"}}}}}}}}});
  const json e = c.error("forward_backward", {{"client", client}, {"data", to_driver(batch)}, {"loss_fn", "cross_entropy"}});
  c.server.clear_faults();
  if (e.value("kind", "") != "promise_expired")
    throw Failure("a 410 on the poll of a forward_backward came back as " + e.dump() + "; expected kind promise_expired");
  oracle.forward(client, batch, true);  // the server did run it
  c.server.wait_idle(model);            // the 410 may come back before it finished
  if (c.server.model_info(model).recent_losses.size() != oracle.model_info(client).recent_losses.size())
    throw Failure("after the 410 the server has run " + std::to_string(c.server.model_info(model).recent_losses.size()) +
                  " forward_backward requests; the call was executed once and must not be re-run");
  // Training goes on from there.
  expect_output_close({{"loss_fn_outputs", json::array()}, {"metrics", c.ok("optim_step", optim_args(client, adam)).value("metrics", json::object())}},
                      {{"loss_fn_outputs", json::array()}, {"metrics", oracle.optim_step(client, adam).value("metrics", json::object())}},
                      "the optim_step after the 410");
  expect_output_close(c.ok("forward", {{"client", client}, {"data", to_driver(batch)}, {"loss_fn", "cross_entropy"}}),
                      oracle.forward(client, batch, false), "the forward after the 410");
}

}  // namespace

void add_resilience_properties(std::vector<Property>& out) {
  out.push_back({"resilience", "resilience.retry_branches",
                 "forward, forward_backward and optim_step succeed with the oracle's answers when their submit meets 503, "
                 "500, 429, 408, 409, an empty 400 or a dropped connection, or their polls meet try_again (408 and 200), "
                 "429, 500, 503, one 400, a dropped connection or a paused queue (protocol.md §W1.7, §W3.3)",
                 [](Case& c) { faulty_training(c, false); }});
  out.push_back({"resilience", "resilience.exactly_once",
                 "when the answer to a submit or a poll is lost after the server acted (dropped connection), the client's "
                 "retries change nothing more: one optimizer step per optim_step call, gradients counted once",
                 [](Case& c) { faulty_training(c, true); }});
  out.push_back({"resilience", "resilience.expired_promise",
                 "HTTP 410 on the poll of a training future surfaces as promise_expired, without re-running the call the "
                 "server already executed; training goes on from the server's state (protocol.md §S9.5)",
                 expired_promise});
}

}  // namespace kiln::conformance
