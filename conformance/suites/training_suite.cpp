// The training machine: a rapidcheck stateful test that drives a client through generated
// sequences of forward, forward_backward (blocking and pipelined), custom losses, optim_step,
// save_state and resumes, and checks every answer against the oracle fed the same sequence in
// submission order. The properties of the numbers, ordering, accumulation, custom_loss and
// checkpoints suites are this machine with different sets of commands.
#include <ostream>

#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include "conformance/oracle.hpp"
#include "conformance/property.hpp"

namespace kiln::conformance {
namespace {

// What the sequence has done so far, for generating and shrinking valid sequences.
struct Model {
  size_t pending = 0;  // submitted futures not awaited yet
  size_t saved = 0;    // checkpoints saved
};

// The driver and the oracle, side by side.
struct Sut {
  Case& c;
  ScratchDir oracle_dir{"kiln-oracle"};
  Oracle oracle{oracle_dir.path()};
  std::string service, client;
  int64_t rank;
  int clients = 0;
  struct Pending {
    std::string future, what;
    json expected;
  };
  std::vector<Pending> pending;
  struct Saved {
    std::string driver_path, oracle_path;
  };
  std::vector<Saved> saved;

  Sut(Case& c_, int64_t lora_rank, uint64_t seed) : c(c_), rank(lora_rank) {
    service = c.service();
    client = c.training_client(service, lora_rank, seed);
    oracle.create(client, c.server.model_info(c.model_id(client)).lora);
  }
};

using Command = rc::state::Command<Model, Sut>;

struct Forward : Command {
  std::vector<Example> batch = *gen_batch(3);
  void run(const Model&, Sut& s) const override {
    expect_output_close(s.c.ok("forward", {{"client", s.client}, {"data", to_driver(batch)}, {"loss_fn", "cross_entropy"}}),
                        s.oracle.forward(s.client, batch, false), "forward");
  }
  void show(std::ostream& os) const override { os << "forward(" << describe(batch) << ")"; }
};

struct ForwardBackward : Command {
  std::vector<Example> batch = *gen_batch(3);
  void run(const Model&, Sut& s) const override {
    expect_output_close(
        s.c.ok("forward_backward", {{"client", s.client}, {"data", to_driver(batch)}, {"loss_fn", "cross_entropy"}}),
        s.oracle.forward(s.client, batch, true), "forward_backward");
  }
  void show(std::ostream& os) const override { os << "forward_backward(" << describe(batch) << ")"; }
};

// forward_backward with an RL loss (importance_sampling, ppo, cispo, dro) and its inputs.
struct RlForwardBackward : Command {
  std::vector<Example> batch = *gen_batch(3, true);
  LossChoice loss = *gen_rl_loss();
  void run(const Model&, Sut& s) const override {
    expect_output_close(s.c.ok("forward_backward", {{"client", s.client}, {"data", to_driver(batch)}, {"loss_fn", loss.loss_fn},
                                                    {"loss_fn_config", loss.config}}),
                        s.oracle.forward(s.client, batch, true, loss), "forward_backward(" + loss.loss_fn + ")");
  }
  void show(std::ostream& os) const override {
    os << "forward_backward(";
    showValue(loss, os);
    os << ", " << describe(batch) << ")";
  }
};

struct OptimStep : Command {
  Adam adam = *gen_adam();
  void run(const Model&, Sut& s) const override {
    const json args = optim_args(s.client, adam);
    const json got = s.c.ok("optim_step", args);
    const json want = s.oracle.optim_step(s.client, adam);
    expect_output_close({{"loss_fn_outputs", json::array()}, {"metrics", got.value("metrics", json::object())}},
                        {{"loss_fn_outputs", json::array()}, {"metrics", want.value("metrics", json::object())}}, "optim_step");
  }
  void show(std::ostream& os) const override { os << "optim_step(" << describe(adam) << ")"; }
};

// forward_backward then optim_step: one training step, both answers checked.
struct TrainStep : Command {
  ForwardBackward fb;
  OptimStep step;
  void run(const Model& m, Sut& s) const override {
    fb.run(m, s);
    step.run(m, s);
  }
  void show(std::ostream& os) const override {
    os << "train step: ";
    fb.show(os);
    os << ", ";
    step.show(os);
  }
};

struct SubmitForwardBackward : Command {
  std::vector<Example> batch = *gen_batch(3);
  void apply(Model& m) const override { ++m.pending; }
  void run(const Model&, Sut& s) const override {
    const json f = s.c.ok("submit_forward_backward", {{"client", s.client}, {"data", to_driver(batch)}, {"loss_fn", "cross_entropy"}});
    s.pending.push_back({f.value("future", ""), "submitted forward_backward(" + describe(batch) + ")", s.oracle.forward(s.client, batch, true)});
  }
  void show(std::ostream& os) const override { os << "submit forward_backward(" << describe(batch) << ")"; }
};

struct SubmitOptimStep : Command {
  Adam adam = *gen_adam();
  void apply(Model& m) const override { ++m.pending; }
  void run(const Model&, Sut& s) const override {
    const json args = optim_args(s.client, adam);
    const json f = s.c.ok("submit_optim_step", args);
    const json want = s.oracle.optim_step(s.client, adam);
    s.pending.push_back({f.value("future", ""), "submitted optim_step(" + describe(adam) + ")",
                         {{"loss_fn_outputs", json::array()}, {"metrics", want.value("metrics", json::object())}}});
  }
  void show(std::ostream& os) const override { os << "submit optim_step(" << describe(adam) << ")"; }
};

// Awaits one of the pending futures, in any order.
struct Await : Command {
  size_t index;
  explicit Await(const Model& m) {
    RC_PRE(m.pending > 0);
    index = *gen_count(0, m.pending - 1);
  }
  void checkPreconditions(const Model& m) const override { RC_PRE(index < m.pending); }
  void apply(Model& m) const override { --m.pending; }
  void run(const Model&, Sut& s) const override {
    const auto p = s.pending.at(index);
    s.pending.erase(s.pending.begin() + static_cast<long>(index));
    json got = s.c.ok("await", {{"future", p.future}});
    if (!got.contains("loss_fn_outputs")) got["loss_fn_outputs"] = json::array();
    expect_output_close(got, p.expected, "await of the " + p.what);
  }
  void show(std::ostream& os) const override { os << "await(pending future #" << index << ")"; }
};

struct Custom : Command {
  std::vector<Example> batch = *gen_batch(4);
  std::string loss = *rc::gen::element<std::string>("neg_logprob_sum", "logprob_squared", "dpo_margin");
  Custom() {  // dpo_margin takes (chosen, rejected) pairs: one more datum for an odd batch
    if (loss == "dpo_margin" && batch.size() % 2) batch.push_back(batch.back());
  }
  void run(const Model&, Sut& s) const override {
    expect_output_close(s.c.ok("forward_backward_custom", {{"client", s.client}, {"data", to_driver(batch)}, {"loss", loss}}),
                        s.oracle.forward_backward_custom(s.client, batch, loss), "forward_backward_custom(" + loss + ")");
  }
  void show(std::ostream& os) const override { os << "forward_backward_custom(" << loss << ", " << describe(batch) << ")"; }
};

struct SaveState : Command {
  void apply(Model& m) const override { ++m.saved; }
  void run(const Model& m, Sut& s) const override {
    const std::string name = "ckpt-" + std::to_string(m.saved + 1);
    const json r = s.c.ok("save_state", {{"client", s.client}, {"name", name}});
    s.saved.push_back({r.value("path", ""), s.oracle.save_state(s.client, name)});
  }
  void show(std::ostream& os) const override { os << "save_state"; }
};

// Goes on training from a saved checkpoint in a new training client: created from the state, or
// created fresh (another LoRA seed) and then loaded.
template <bool WithOptimizer>
struct Resume : Command {
  size_t index;
  bool from_state;
  explicit Resume(const Model& m) {
    RC_PRE(m.saved > 0 && m.pending == 0);
    index = *gen_count(0, m.saved - 1);
    from_state = *rc::gen::arbitrary<bool>();
  }
  void checkPreconditions(const Model& m) const override { RC_PRE(index < m.saved && m.pending == 0); }
  void run(const Model&, Sut& s) const override {
    const auto& ckpt = s.saved.at(index);
    const uint64_t seed = 1000 + static_cast<uint64_t>(++s.clients);
    if (from_state) {
      s.client = s.c.ok("create_training_client_from_state",
                        {{"service", s.service}, {"path", ckpt.driver_path}, {"with_optimizer", WithOptimizer}})["client"];
      s.oracle.create_from_state(s.client, ckpt.oracle_path, WithOptimizer);
    } else {
      s.client = s.c.training_client(s.service, s.rank, seed);
      s.oracle.create(s.client, s.c.server.model_info(s.c.model_id(s.client)).lora);
      s.c.ok(WithOptimizer ? "load_state_with_optimizer" : "load_state", {{"client", s.client}, {"path", ckpt.driver_path}});
      s.oracle.load_state(s.client, ckpt.oracle_path, WithOptimizer);
    }
  }
  void show(std::ostream& os) const override {
    os << (from_state ? "create_training_client_from_state" : "new client, then load_state")
       << (WithOptimizer ? " with optimizer" : " (weights only)") << " from saved checkpoint #" << index;
  }
};

template <typename... Commands>
std::function<void(Case&)> machine() {
  return [](Case& c) {
    const int64_t rank = pick("LoRA rank (0: full parameter)", gen_lora_rank({0, 4}));
    const auto seed = pick("LoRA seed", rc::gen::inRange<uint64_t>(1, 1000));
    Sut sut(c, rank, seed);
    rc::state::check(Model{}, sut, rc::state::gen::execOneOfWithArgs<Commands...>());
  };
}

}  // namespace

void add_training_properties(std::vector<Property>& out) {
  out.push_back({"numbers", "numbers.oracle_agreement",
                 "forward and forward_backward (cross_entropy and the RL losses with their inputs and configs) return, for "
                 "every datum, logprobs and metrics within 2e-5·(1+|x|) of Kiln's in-process oracle run on the same inputs, "
                 "across training steps, for LoRA and full-parameter clients",
                 machine<Forward, ForwardBackward, RlForwardBackward, OptimStep>()});
  out.push_back({"ordering", "ordering.pipelined_submission_order",
                 "with several forward_backward and optim_step futures in flight and awaited in any order, each result is "
                 "the one of executing the calls in the order they were submitted",
                 machine<SubmitForwardBackward, SubmitOptimStep, Await, Forward>()});
  out.push_back({"accumulation", "accumulation.until_optim_step",
                 "gradients of forward_backward calls add up until optim_step applies them once, under each "
                 "grad_accumulation_normalization; forward accumulates nothing",
                 machine<ForwardBackward, Forward, OptimStep>()});
  out.push_back({"custom_loss", "custom_loss.linearisation",
                 "forward_backward_custom with the DRIVER.md losses sends a forward, then a cross_entropy "
                 "forward_backward with weights = -dL/dlp (protocol.md §S9.7): results, the custom_loss metric and the "
                 "following training match the oracle",
                 machine<Custom, OptimStep, Forward>()});
  out.push_back({"checkpoints", "checkpoints.resume_with_optimizer",
                 "load_state_with_optimizer (and create_training_client_from_state with the optimizer) from a save_state "
                 "checkpoint reproduces training exactly: the same answers as the oracle that loaded weights and Adam state",
                 machine<TrainStep, TrainStep, Forward, SaveState, Resume<true>>()});
  out.push_back({"checkpoints", "checkpoints.resume_weights_only",
                 "load_state (weights only) from a save_state checkpoint gives the saved weights and a fresh optimizer: "
                 "the same answers as the oracle that did the same",
                 machine<TrainStep, TrainStep, Forward, SaveState, Resume<false>>()});
}

}  // namespace kiln::conformance
