// A rapidcheck stateful test of the service: commands (forward_backward, optim_step, save,
// load ± optimizer into a fresh model, advance the clock past TTLs, restart from the data
// directory, list) run against the real service and against a small model of what must be true.
#include <map>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <rapidcheck/state.h>

#include "service/test_util.hpp"

namespace kiln::service {
namespace {

using namespace testing;
using Status = RetrieveResult::Status;
const std::string kKey = "tml-stateful";
const std::string kText = "stateful sequences";

// What must be true.
struct Model {
  struct Save {
    std::string name;
    int run = 0;                       // which model saved it (a new one after each load or restart)
    std::optional<double> expires_at;  // virtual seconds since the start
    int64_t optimizer_step = 0;
  };
  double now = 0;
  int run = 0;
  int64_t optimizer_step = 0;  // of the current model
  bool has_gradient = false;
  std::vector<Save> saves;  // successful training-state saves, in order

  bool live(const Save& s) const { return !s.expires_at || now < *s.expires_at; }
  // The save a bare name resolves to: the newest live one (protocol.md rule E4), or -1.
  int resolve(const std::string& name) const {
    for (int i = static_cast<int>(saves.size()) - 1; i >= 0; --i)
      if (saves[i].name == name && live(saves[i])) return i;
    return -1;
  }
  bool collides(const std::string& name) const {  // a live save of this name by this run
    for (const auto& s : saves)
      if (s.name == name && s.run == run && live(s)) return true;
    return false;
  }
};

// The system under test: a service on a virtual clock, one current model, and the loss the model
// had at each successful save (indexed like Model::saves).
struct Sut {
  TempDir dir;
  std::shared_ptr<VirtualClock> clock = std::make_shared<VirtualClock>();
  std::unique_ptr<TrainerService> svc;
  std::string model;
  int64_t seq = 1;
  std::vector<double> saved_loss;

  Sut() { restart(); }
  void restart() {
    svc.reset();
    svc = std::make_unique<TrainerService>(options(dir.path(), clock));
    fresh_model();
  }
  void fresh_model() {
    const auto s = svc->create_session(kKey, {}, {}, "").session_id;
    model = svc->create_model(kKey, {.session_id = s, .base_model = "kiln/tiny", .lora = {.rank = 2}});
    seq = 1;
  }
  RetrieveResult run(TrainingRequest req) { return wait_for(*svc, kKey, svc->submit(kKey, model, seq++, std::move(req))); }
  double forward_loss() { return loss_of(run(fb(kText, false))); }
};

using Command = rc::state::Command<Model, Sut>;

struct ForwardBackward : Command {
  void apply(Model& m) const override { m.has_gradient = true; }
  void run(const Model&, Sut& s) const override { RC_ASSERT(s.run(fb(kText)).status == Status::done); }
  void show(std::ostream& os) const override { os << "forward_backward"; }
};

struct OptimStep : Command {
  void apply(Model& m) const override {
    if (m.has_gradient) m.optimizer_step++;  // nothing accumulated: nothing moves (D6)
    m.has_gradient = false;
  }
  void run(const Model& m, Sut& s) const override {
    RC_ASSERT(s.run(step()).status == Status::done);
    RC_ASSERT(s.svc->get_info(kKey, s.model).optimizer_step == m.optimizer_step + (m.has_gradient ? 1 : 0));
  }
  void show(std::ostream& os) const override { os << "optim_step"; }
};

struct Save : Command {
  std::string name = *rc::gen::element<std::string>("a", "b", "c");
  std::optional<int64_t> ttl = *rc::gen::element<std::optional<int64_t>>(std::nullopt, 30, 120);
  void apply(Model& m) const override {
    if (m.collides(name)) return;  // ResourceAlreadyExists: nothing changes
    m.saves.push_back({name, m.run, ttl ? std::optional(m.now + static_cast<double>(*ttl)) : std::nullopt,
                       m.optimizer_step});
  }
  void run(const Model& m, Sut& s) const override {
    const auto r = s.run(SaveWeightsRequest{name, ttl, false});
    if (m.collides(name)) {
      RC_ASSERT(r.status == Status::failed);
      RC_ASSERT(r.error.find("ResourceAlreadyExists") != std::string::npos);
    } else {
      RC_ASSERT(r.status == Status::done);
      s.saved_loss.push_back(s.forward_loss());
    }
  }
  void show(std::ostream& os) const override {
    os << "save_state(" << name << ", ttl=" << (ttl ? std::to_string(*ttl) : "none") << ")";
  }
};

// A new model whose first request loads `name` by bare name (the load-first rule).
struct Load : Command {
  std::string name = *rc::gen::element<std::string>("a", "b", "c");
  bool optimizer = *rc::gen::arbitrary<bool>();
  void apply(Model& m) const override {
    const int i = m.resolve(name);
    m.optimizer_step = i >= 0 && optimizer ? m.saves[static_cast<size_t>(i)].optimizer_step : 0;
    m.has_gradient = false;
    m.run++;
  }
  void run(const Model& m, Sut& s) const override {
    s.fresh_model();
    const auto r = s.run(LoadWeightsRequest{name, optimizer, ""});
    const int i = m.resolve(name);
    if (i < 0) {
      RC_ASSERT(r.status == Status::failed);
      RC_ASSERT(r.error == "checkpoint '" + name + "' not found");
      return;
    }
    RC_ASSERT(r.status == Status::done);
    RC_ASSERT(s.forward_loss() == s.saved_loss.at(static_cast<size_t>(i)));  // bitwise the saved model
    const int64_t want = optimizer ? m.saves[static_cast<size_t>(i)].optimizer_step : 0;
    RC_ASSERT(s.svc->get_info(kKey, s.model).optimizer_step == want);
  }
  void show(std::ostream& os) const override {
    os << (optimizer ? "load_state_with_optimizer(" : "load_state(") << name << ")";
  }
};

struct AdvanceClock : Command {
  int seconds = *rc::gen::element(10, 40, 100);
  void apply(Model& m) const override { m.now += seconds; }
  void run(const Model&, Sut& s) const override { s.clock->advance_seconds(seconds); }
  void show(std::ostream& os) const override { os << "advance_clock(" << seconds << ")"; }
};

// A new service on the same data directory; the current model is gone, its checkpoints stay.
struct Restart : Command {
  void apply(Model& m) const override {
    m.optimizer_step = 0;
    m.has_gradient = false;
    m.run++;
  }
  void run(const Model&, Sut& s) const override { s.restart(); }
  void show(std::ostream& os) const override { os << "restart"; }
};

struct ListCheckpoints : Command {
  void run(const Model& m, Sut& s) const override {
    std::set<std::string> want;
    for (const auto& save : m.saves)
      if (m.live(save)) want.insert(save.name);
    RC_ASSERT(s.svc->list_checkpoint_names(kKey) == std::vector<std::string>(want.begin(), want.end()));
  }
  void show(std::ostream& os) const override { os << "list_checkpoints"; }
};

RC_GTEST_PROP(ServiceStateful, MatchesTheModelOfExpectedState, ()) {
  Sut sut;
  rc::state::check(Model{}, sut,
                   rc::state::gen::execOneOfWithArgs<ForwardBackward, OptimStep, Save, Load, AdvanceClock, Restart,
                                                     ListCheckpoints>());
}

}  // namespace
}  // namespace kiln::service
