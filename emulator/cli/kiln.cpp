// kiln: the emulator's command line. `kiln serve` runs the HTTP API on loopback.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <malloc.h>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>

#include <nlohmann/json.hpp>

#include "conformance/conform_cli.hpp"
#include "http/server.hpp"
#include "log.hpp"
#include "model/registry.hpp"
#include "model/threads.hpp"
#include "service/data_dir_lock.hpp"

namespace {

const char* kUsage = R"(usage: kiln serve [options]
       kiln conform --driver "CMD ARGS" [options]   (kiln conform --help)
       kiln --version

Runs the Tinker / Fireworks training API emulator.

options (each also read from the environment variable shown):
  --host HOST          address to listen on (KILN_HOST, default 127.0.0.1)
  --port PORT          port, 0 for any free one (KILN_PORT, default 8000)
  --data-dir DIR       checkpoint store (KILN_DATA_DIR, default ./kiln-data)
  --models FILE        base-model registry, the format of fixtures/models.json (KILN_MODELS)
  --threads N          compute threads per training step (KILN_THREADS, default 1)
  --workers N          models that train at the same time (KILN_WORKERS, default 2)
  --seed N             make session and request ids predictable (KILN_SEED)
  --log-level LEVEL    debug, info, warn, error or off (KILN_LOG_LEVEL, default info): info
                       writes one line per API request, debug adds the control API's
  --log-format FORMAT  text or json lines on stderr (KILN_LOG_FORMAT, default text; none = --log-level off)
  --progress-after S   a save or sample running longer than this logs its progress
                       (KILN_PROGRESS_AFTER, default 2; 0 logs every one)
  --poll-hold SECONDS  retrieve_future long-poll hold (KILN_POLL_HOLD, default 25)
  --http-threads N     connections served at once; each long-poll holds one (KILN_HTTP_THREADS, default 128)
  --io-timeout SECONDS a client stalled mid-request or mid-answer is cut off after this
                       (KILN_IO_TIMEOUT, default 30)
  --result-retention S how long a result stays pollable after its first delivery (KILN_RESULT_RETENTION,
                       default 600; the service guarantees at least 300)
  --drain-seconds S    on SIGTERM / SIGINT, how long requests in flight may run to their end
                       while new work gets 503 (KILN_DRAIN_SECONDS, default 30)
  --overwrite-training-state
                       re-saving a training-state name replaces it, as Fireworks trainers do
                       (KILN_OVERWRITE_TRAINING_STATE=1; default: ResourceAlreadyExists)
  --virtual-clock      time moves only by POST /_kiln/clock (KILN_VIRTUAL_CLOCK=1)
  --trainer-boot S     a Fireworks trainer job is JOB_STATE_CREATING this long after a create or
                       resume (KILN_TRAINER_BOOT, default 0)
  --trainer-idle S     a trainer job with no calls this long pauses, unless its create said
                       otherwise (KILN_TRAINER_IDLE, default 3600)
  --hotload-seconds S  a deployment's hot-load is loading (its status and completions answer
                       425) this long (KILN_HOTLOAD_SECONDS, default 0)
  --faults FILE        fault-injection rules to load at start, as POST /_kiln/faults takes (KILN_FAULTS)
  --journal FILE       append every request and response as a JSON line (KILN_JOURNAL)
  --journal-size N     entries GET /_kiln/journal keeps (KILN_JOURNAL_SIZE, default 1000)
  --api-keys FILE      accept only these API keys, one per line, each optionally followed by the
                       email its identity carries; others get 401 (KILN_API_KEYS; default: any key)
  --jwt-auth           client/config turns on the SDKs' JWT exchange (auth/token), the path
                       whoami() reads its identity from (KILN_JWT_AUTH=1)
  --tls-cert FILE      serve HTTPS with this certificate chain (PEM; KILN_TLS_CERT), with
  --tls-key FILE       its private key (PEM; KILN_TLS_KEY); download URLs then use https://
  --sample-poller on|off
                       client/config sample_use_retrieve_futures: tinker 0.26+ collects sample
                       results with one session poller (retrieve_futures) instead of a poll per
                       request (KILN_SAMPLE_POLLER, default off, the SDK's own default)
  --sample-cancel on|off
                       client/dynamic_config sample_cancel_enabled: the SDK cancels samples it
                       abandons (cancel_future) (KILN_SAMPLE_CANCEL, default on)
  --join-sampling-session on|off
                       client/config sample_join_sampling_session: cloned sampling clients join
                       their session (KILN_JOIN_SAMPLING_SESSION, default on)
)";

// SIGINT / SIGTERM: the first drains (README "Guarantees"), a second stops at once. The handler
// only counts and raises the server's draining flag (lock-free atomics, async-signal-safe); the
// waiting runs on an ordinary thread.
std::atomic<int> g_signals{0};
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<bool>::is_always_lock_free);
kiln::http::HttpServer* g_server = nullptr;

void on_signal(int) {
  g_signals.fetch_add(1);
  if (g_server) g_server->begin_drain();
}

// Waits for a signal, then: new work refused (503), requests in flight run to their end for up
// to `drain_seconds` and their results stay pollable for a moment, then the server stops.
void drain_on_signal(kiln::http::HttpServer& server, const kiln::service::TrainerService& service,
                     double drain_seconds, const std::atomic<bool>& stopped) {
  using namespace std::chrono;
  while (g_signals.load() == 0 && !stopped.load()) std::this_thread::sleep_for(milliseconds(20));
  if (stopped.load()) return;
  server.begin_drain();
  std::fprintf(stderr, "kiln: stopping: %zu request(s) in flight, waiting up to %.0f s (signal again to stop now)\n",
               service.pending_requests(), drain_seconds);
  const auto deadline = steady_clock::now() + duration<double>(drain_seconds);
  while (service.pending_requests() > 0 && steady_clock::now() < deadline && g_signals.load() < 2)
    std::this_thread::sleep_for(milliseconds(20));
  // Pollers re-poll at once on a result: a short grace lets them collect the last ones.
  const auto grace = steady_clock::now() + milliseconds(500);
  while (steady_clock::now() < grace && g_signals.load() < 2) std::this_thread::sleep_for(milliseconds(20));
  server.stop();
}

// Gives freed heap pages back to the system every `every` until `stopped`. glibc keeps what a
// thread frees in that thread's arena, and the HTTP threads and workers free much that others
// allocated: in the soak test the arenas held 194 MB for 147 MB in use. malloc_trim walks every
// arena and returns its whole free pages; on a heap this size it takes milliseconds and holds no
// lock of ours.
void trim_heap_periodically(const std::atomic<bool>& stopped, std::chrono::seconds every) {
  using namespace std::chrono;
  auto next = steady_clock::now() + every;
  while (!stopped.load()) {
    std::this_thread::sleep_for(milliseconds(100));
    if (steady_clock::now() < next) continue;
    ::malloc_trim(0);
    next = steady_clock::now() + every;
  }
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

int fail(const std::string& message) {
  std::cerr << "kiln: " << message << "\n\n" << kUsage;
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "conform") return kiln::conformance::conform_main(argc - 1, argv + 1);
  if (argc >= 2 && std::string(argv[1]) == "--version") {
    std::cout << "kiln " << KILN_VERSION << "\n";
    return 0;
  }
  if (argc < 2 || std::string(argv[1]) != "serve") {
    std::cerr << kUsage;
    return argc >= 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") ? 0 : 2;
  }
  std::string host = env_or("KILN_HOST", "127.0.0.1"), port = env_or("KILN_PORT", "8000"),
              data_dir = env_or("KILN_DATA_DIR", "kiln-data"), models = env_or("KILN_MODELS", ""),
              threads = env_or("KILN_THREADS", "1"), workers = env_or("KILN_WORKERS", "2"),
              seed = env_or("KILN_SEED", ""), log_format = env_or("KILN_LOG_FORMAT", "text"),
              log_level = env_or("KILN_LOG_LEVEL", "info"), progress_after = env_or("KILN_PROGRESS_AFTER", "2"),
              poll_hold = env_or("KILN_POLL_HOLD", "25"), http_threads = env_or("KILN_HTTP_THREADS", "128");
  std::string api_keys = env_or("KILN_API_KEYS", ""), tls_cert = env_or("KILN_TLS_CERT", ""),
              tls_key = env_or("KILN_TLS_KEY", "");
  bool jwt_auth = env_or("KILN_JWT_AUTH", "0") == "1";
  std::string faults = env_or("KILN_FAULTS", ""), journal = env_or("KILN_JOURNAL", ""),
              journal_size = env_or("KILN_JOURNAL_SIZE", "1000");
  std::string drain_seconds = env_or("KILN_DRAIN_SECONDS", "30"), io_timeout = env_or("KILN_IO_TIMEOUT", "30"),
              result_retention = env_or("KILN_RESULT_RETENTION", "600");
  std::string trainer_boot = env_or("KILN_TRAINER_BOOT", "0"), trainer_idle = env_or("KILN_TRAINER_IDLE", "3600"),
              hotload_seconds = env_or("KILN_HOTLOAD_SECONDS", "0");
  bool overwrite_training_state = env_or("KILN_OVERWRITE_TRAINING_STATE", "0") == "1";
  bool virtual_clock = env_or("KILN_VIRTUAL_CLOCK", "0") == "1";
  std::string sample_poller = env_or("KILN_SAMPLE_POLLER", "off"), sample_cancel = env_or("KILN_SAMPLE_CANCEL", "on"),
              join_sampling = env_or("KILN_JOIN_SAMPLING_SESSION", "on");
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (a == "--jwt-auth") {
      jwt_auth = true;
      continue;
    }
    if (a == "--overwrite-training-state" || a == "--virtual-clock") {
      (a == "--virtual-clock" ? virtual_clock : overwrite_training_state) = true;
      continue;
    }
    std::string* target = a == "--host" ? &host : a == "--port" ? &port : a == "--data-dir" ? &data_dir
                        : a == "--models" ? &models : a == "--threads" ? &threads : a == "--workers" ? &workers
                        : a == "--seed" ? &seed : a == "--log-format" ? &log_format : a == "--log-level" ? &log_level : a == "--progress-after" ? &progress_after : a == "--poll-hold" ? &poll_hold
                        : a == "--http-threads" ? &http_threads : a == "--faults" ? &faults
                        : a == "--journal" ? &journal : a == "--journal-size" ? &journal_size
                        : a == "--api-keys" ? &api_keys : a == "--drain-seconds" ? &drain_seconds
                        : a == "--io-timeout" ? &io_timeout : a == "--result-retention" ? &result_retention
                        : a == "--sample-poller" ? &sample_poller : a == "--sample-cancel" ? &sample_cancel
                        : a == "--join-sampling-session" ? &join_sampling : a == "--tls-cert" ? &tls_cert
                        : a == "--tls-key" ? &tls_key : a == "--trainer-boot" ? &trainer_boot
                        : a == "--trainer-idle" ? &trainer_idle : a == "--hotload-seconds" ? &hotload_seconds : nullptr;
    if (!target) return fail("unknown option '" + a + "'");
    if (i + 1 >= argc) return fail("option '" + a + "' needs a value");
    *target = argv[++i];
  }
  try {
    static kiln::model::ModelRegistry custom;
    kiln::service::ServiceOptions so;
    so.data_dir = data_dir;
    so.workers = std::stoi(workers);
    so.result_retention_seconds = std::stod(result_retention);
    if (!(so.result_retention_seconds > 0)) return fail("--result-retention must be a positive number of seconds");
    so.overwrite_training_state = overwrite_training_state;
    so.trainer_boot_seconds = std::stod(trainer_boot);
    so.trainer_inactivity_seconds = std::stod(trainer_idle);
    so.hotload_seconds = std::stod(hotload_seconds);
    if (!(so.trainer_boot_seconds >= 0) || !(so.trainer_inactivity_seconds > 0) || !(so.hotload_seconds >= 0))
      return fail("--trainer-boot and --hotload-seconds must be >= 0 and --trainer-idle > 0 seconds");
    if (virtual_clock) so.clock = std::make_shared<kiln::service::VirtualClock>();
    if (!seed.empty()) so.seed = std::stoull(seed);
    if (!models.empty()) {
      custom = kiln::model::ModelRegistry::from_file(models);
      so.registry = &custom;
    }
    if (log_format != "text" && log_format != "json" && log_format != "none")
      return fail("--log-format must be text, json or none");
    kiln::log::Level level;
    try {
      level = log_format == "none" ? kiln::log::Level::off : kiln::log::parse_level(log_level);
    } catch (const std::invalid_argument& e) {
      return fail(std::string("--log-level: ") + e.what());
    }
    kiln::log::configure(level, log_format == "json" ? kiln::log::Format::json : kiln::log::Format::text,
                         std::stod(progress_after));
    kiln::model::set_num_threads(std::stoi(threads));
    const kiln::service::DataDirLock lock(data_dir);  // before the store cleans up leftovers
    kiln::service::TrainerService service(so);
    kiln::http::ServerOptions ho;
    ho.host = host;
    ho.port = std::stoi(port);
    ho.poll_hold_seconds = std::stod(poll_hold);
    ho.http_threads = std::stoi(http_threads);
    ho.io_timeout_seconds = std::stod(io_timeout);
    ho.journal_file = journal;
    ho.journal_capacity = std::stoul(journal_size);
    ho.jwt_auth = jwt_auth;
    ho.tls_cert_file = tls_cert;
    ho.tls_key_file = tls_key;
    for (auto [option, value, flag] : {std::tuple{"--sample-poller", &sample_poller, &ho.sample_poller},
                                       std::tuple{"--sample-cancel", &sample_cancel, &ho.sample_cancel},
                                       std::tuple{"--join-sampling-session", &join_sampling, &ho.join_sampling_session}}) {
      if (*value != "on" && *value != "off") return fail(std::string(option) + " must be on or off, got '" + *value + "'");
      *flag = *value == "on";
    }
    if (!api_keys.empty()) {
      std::ifstream in(api_keys);
      if (!in) return fail("cannot read the API keys file " + api_keys);
      for (std::string line; std::getline(in, line);) {
        std::istringstream fields(line);
        std::string key, email;
        if (!(fields >> key) || key[0] == '#') continue;
        fields >> email;
        ho.api_keys[key] = email;
      }
      if (ho.api_keys.empty()) return fail("the API keys file " + api_keys + " lists no key");
    }
    ho.api_key_state_file = data_dir + "/.api_keys.json";  // keys `tinker auth` minted or revoked
    kiln::http::HttpServer server(service, ho);
    if (!faults.empty()) {
      std::ifstream in(faults);
      if (!in) return fail("cannot read the faults file " + faults);
      server.faults().set(nlohmann::json::parse(in));
    }
    server.bind();
    g_server = &server;
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGXFSZ, SIG_IGN);  // a file-size limit fails the write (EFBIG), not the process
    std::signal(SIGPIPE, SIG_IGN);
    std::atomic<bool> stopped{false};
    std::thread drainer(drain_on_signal, std::ref(server), std::cref(service), std::stod(drain_seconds),
                        std::cref(stopped));
    std::thread trimmer(trim_heap_periodically, std::cref(stopped), std::chrono::seconds(10));
    if (log_format == "json")
      std::printf("%s\n", nlohmann::json{{"event", "serving"}, {"base_url", server.base_url()}, {"data_dir", data_dir},
                                         {"hint", "export TINKER_BASE_URL=" + server.base_url()}}
                              .dump()
                              .c_str());
    else
      std::printf("kiln: serving on %s (data in %s) — export TINKER_BASE_URL=%s\n", server.base_url().c_str(),
                  data_dir.c_str(), server.base_url().c_str());
    std::fflush(stdout);
    server.run();
    stopped = true;
    drainer.join();
    trimmer.join();
    g_server = nullptr;
    std::printf("kiln: stopped\n");
  } catch (const std::exception& e) {
    std::cerr << "kiln: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
