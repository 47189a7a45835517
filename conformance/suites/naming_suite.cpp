// Names a client makes up or checks itself: sampler snapshot names, resolve_checkpoint_path and
// the duplicate-training-client error (protocol.md §S7.4, §S9.8, §S9.10).
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include <rapidcheck.h>

#include "conformance/client_traits.hpp"
#include "conformance/property.hpp"
#include "conformance/workload.hpp"

namespace kiln::conformance {
namespace {

// A sampler name a user might pick: letters, digits, '-', '_' and '.'.
rc::Gen<std::string> gen_name() {
  return rc::gen::nonEmpty(rc::gen::container<std::string>(rc::gen::element('a', 'k', 'z', '0', '7', '-', '_', '.')));
}

void sampler_suffix(Case& c) {
  const std::string service = c.service();
  const std::string first = c.training_client(service, 4, 1), second = c.training_client(service, 4, 2);
  const auto saves = pick("saves (on the second client?, name)",
                          gen_list(rc::gen::pair(rc::gen::arbitrary<bool>(), gen_name()), 4));
  std::map<std::string, std::string> suffix_of;  // client → its suffix
  std::set<std::string> snapshots;
  for (const auto& [on_second, name] : saves) {
    const std::string client = on_second ? second : first;
    const json r = c.ok("save_weights_for_sampler_ext", {{"client", client}, {"name", name}});
    const std::string snapshot = r.value("snapshot_name", ""), path = r.value("path", "");
    std::smatch m;
    if (!std::regex_match(snapshot, m, std::regex("^(.*)-([0-9a-f]{8})$")) || m[1] != name)
      throw Failure("snapshot_name for '" + name + "' is '" + snapshot + "'; expected '" + name + "-<8 lower-case hex>'");
    if (!suffix_of.count(client)) {
      for (const auto& [other, suffix] : suffix_of)
        if (suffix == m[2]) throw Failure("two training clients share the sampler suffix " + suffix + "; it must be unique per client");
      suffix_of[client] = m[2];
    } else if (suffix_of[client] != m[2]) {
      throw Failure("one training client used the suffixes " + suffix_of[client] + " and " + m[2].str() + "; it must keep one");
    }
    if (path.size() < snapshot.size() || path.compare(path.size() - snapshot.size(), snapshot.size(), snapshot) != 0)
      throw Failure("path '" + path + "' does not end with the snapshot name '" + snapshot + "' the client reported");
    snapshots.insert(snapshot);
  }
  // On the wire: each save_weights_for_sampler carried the snapshot name as its path.
  for (const auto& e : c.server.journal()) {
    if (e["path"] != "/api/v1/save_weights_for_sampler" || !e["request"].is_object()) continue;
    const std::string sent = e["request"].value("path", "");
    if (!snapshots.count(sent)) throw Failure("save_weights_for_sampler was sent path '" + sent + "', not a '<name>-<8hex>' snapshot name");
  }
}

struct ResolveCase {
  std::string name;
  std::optional<std::string> job;
};
void showValue(const ResolveCase& r, std::ostream& os) {
  os << "resolve_checkpoint_path(\"" << r.name << "\"" << (r.job ? ", \"" + *r.job + "\"" : std::string()) << ")";
}

// Expected per protocol.md §S9.8: a full path (gs://, /) is returned as it is, job or not; with a
// job (both stripped) → cross_job://job/name, where a name that is a full path only once stripped
// (" gs://…") is an error; else the name. (The real Fireworks SDK 1.2.3 checks in this order.)
std::pair<bool, std::string> expected_resolution(const ResolveCase& r) {
  auto strip = [](std::string s) {
    const auto a = s.find_first_not_of(" \t\n"), b = s.find_last_not_of(" \t\n");
    return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
  };
  const bool full = r.name.rfind("gs://", 0) == 0 || r.name.rfind('/', 0) == 0;
  const bool job_given = r.job && !r.job->empty();
  if (full || !job_given) return {true, r.name};
  const std::string job = strip(*r.job), name = strip(r.name);
  if (job.empty()) return {false, "source_job_id cannot be empty"};
  if (name.empty()) return {false, "checkpoint_name cannot be empty"};
  if (name.rfind("gs://", 0) == 0 || name.rfind('/', 0) == 0)
    return {false, "checkpoint_name must be a logical checkpoint name, not a full path"};
  return {true, "cross_job://" + job + "/" + name};
}

void resolve_checkpoint_path(Case& c) {
  const auto cases = pick("calls", gen_list(
      rc::gen::build<ResolveCase>(
          rc::gen::set(&ResolveCase::name, rc::gen::element<std::string>("step-2", " step-4 ", "", "  ", "gs://bucket/run/step-2",
                                                                         " gs://bucket/run/step-2", "/mnt/ckpt/step-2", "run-1/step-9", "cross_job://j/x")),
          rc::gen::set(&ResolveCase::job, rc::gen::element<std::optional<std::string>>(std::nullopt, std::string(""), std::string("job-7"),
                                                                                       std::string(" job-7 "), std::string("   ")))), 5));
  for (const auto& r : cases) {
    json args = {{"name", r.name}};
    if (r.job) args["source_job_id"] = *r.job;
    const auto [succeeds, want] = expected_resolution(r);
    std::ostringstream what;
    showValue(r, what);
    if (succeeds) {
      const std::string got = c.ok("resolve_checkpoint_path", args).value("path", "");
      if (got != want) throw Failure(what.str() + " returned '" + got + "'; expected '" + want + "'");
    } else {
      const json e = c.error("resolve_checkpoint_path", args);
      if (e.value("kind", "") != "invalid_argument" || e.value("message", "") != want)
        throw Failure(what.str() + " failed with " + e.dump() + "; expected invalid_argument \"" + want + "\"");
    }
  }
}

void duplicate_client(Case& c) {
  if (!client_traits().has("duplicate_client_rule"))
    throw Unsupported("the client does not refuse duplicate training clients (its describe lists duplicate_client_rule as lacking)");
  const std::string service = c.service();
  const int64_t rank = pick("LoRA rank", gen_lora_rank({0, 4, 8}));
  const auto seed = pick("LoRA seed", rc::gen::inRange<uint64_t>(1, 100));
  c.training_client(service, rank, seed);
  const json args = {{"service", service}, {"base_model", "kiln/tiny"}, {"lora_rank", rank}, {"lora", {{"seed", seed}}}};
  const json e = c.error("create_training_client", args);
  const std::string want = "A training client for 'kiln/tiny' (lora_rank=" + std::to_string(rank) +
                           ") already exists on this service. Create a new FiretitanServiceClient for a separate trainer.";
  if (e.value("kind", "") != "invalid_argument" || e.value("message", "") != want)
    throw Failure("a second identical create_training_client failed with " + e.dump() + "; expected invalid_argument \"" + want + "\"");
  // Another seed is another key; another service has its own clients.
  c.training_client(service, rank, seed + 1);
  c.training_client(c.service(), rank, seed);
  // Nothing reached the server for the refused one: one create_model per successful client.
  int creates = 0;
  for (const auto& e2 : c.server.journal()) creates += e2["path"] == "/api/v1/create_model";
  if (creates != 3) throw Failure(std::to_string(creates) + " create_model requests reached the server; expected 3 (the duplicate must be refused client-side)");
}

}  // namespace

void add_naming_properties(std::vector<Property>& out) {
  out.push_back({"naming", "naming.sampler_suffix",
                 "save_weights_for_sampler_ext(name) sends and returns '<name>-<8 lower-case hex>': one suffix per training "
                 "client, different between clients, and the returned path ends with that snapshot name (protocol.md §S7.4)",
                 sampler_suffix});
  out.push_back({"naming", "naming.resolve_checkpoint_path",
                 "resolve_checkpoint_path follows protocol.md §S9.8: full paths (gs://, /) unchanged and refused with a job, "
                 "cross_job://<job>/<name> with both stripped, and the exact ValueError texts",
                 resolve_checkpoint_path});
  out.push_back({"naming", "naming.duplicate_client",
                 "a second create_training_client with the same key (base model, rank, seed, targets, alpha) on one service "
                 "is refused client-side with the exact text of protocol.md §S9.10; another seed or service is fine",
                 duplicate_client});
}

}  // namespace kiln::conformance
