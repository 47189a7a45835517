#include "log.hpp"

#include <atomic>
#include <cmath>
#include <ctime>
#include <cstdio>
#include <mutex>
#include <stdexcept>

namespace kiln::log {

namespace {

std::atomic<Level> g_level{Level::warn};
std::atomic<Format> g_format{Format::text};
std::atomic<double> g_progress_after{2};
std::mutex g_mu;  // one line at a time

const char* level_name(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
    default: return "off";
  }
}

// Now in UTC, ISO 8601 with milliseconds.
std::string iso8601_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

// A field value as text: strings bare unless they hold a space or quote, others as JSON.
std::string text_value(const nlohmann::ordered_json& v) {
  if (!v.is_string()) return v.dump();
  const std::string s = v.get<std::string>();
  return s.empty() || s.find_first_of(" \"=") != std::string::npos ? v.dump() : s;
}

}  // namespace

Level parse_level(const std::string& name) {
  for (Level l : {Level::debug, Level::info, Level::warn, Level::error, Level::off})
    if (name == level_name(l)) return l;
  throw std::invalid_argument("log level must be debug, info, warn, error or off (got '" + name + "')");
}

void configure(Level level, Format format, double progress_after_seconds) {
  g_level = level;
  g_format = format;
  g_progress_after = progress_after_seconds;
}

bool enabled(Level level) { return level != Level::off && level >= g_level.load(); }

void write(Level level, const std::string& event, const nlohmann::ordered_json& fields) {
  if (!enabled(level)) return;
  std::string line;
  if (g_format.load() == Format::json) {
    nlohmann::ordered_json j = {{"time", iso8601_now()}, {"level", level_name(level)}, {"event", event}};
    for (const auto& [k, v] : fields.items()) j[k] = v;
    line = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  } else {
    line = std::string("kiln: ") + level_name(level) + " " + event;
    for (const auto& [k, v] : fields.items()) line += " " + k + "=" + text_value(v);
  }
  std::lock_guard lock(g_mu);
  std::fprintf(stderr, "%s\n", line.c_str());
}

Progress::Progress(std::string event, nlohmann::ordered_json fields)
    : event_(std::move(event)), fields_(std::move(fields)), quiet_(g_progress_after.load()),
      start_(std::chrono::steady_clock::now()), last_(start_) {}

bool Progress::due() const {
  if (!enabled(Level::info)) return false;
  const auto now = std::chrono::steady_clock::now();
  return std::chrono::duration<double>(now - start_).count() >= quiet_ &&
         (!wrote_ || std::chrono::duration<double>(now - last_).count() >= 1);
}

void Progress::update(const nlohmann::ordered_json& fields) {
  if (!due()) return;
  write_line(".progress", fields);
  wrote_ = true;
  last_ = std::chrono::steady_clock::now();
}

void Progress::finish(const nlohmann::ordered_json& fields) {
  if (wrote_) write_line(".done", fields);
}

void Progress::write_line(const char* suffix, const nlohmann::ordered_json& fields) const {
  nlohmann::ordered_json all = fields_;
  all.update(fields);
  all["elapsed_s"] = std::round(std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count() * 10) / 10;
  write(Level::info, event_ + suffix, all);
}

}  // namespace kiln::log
