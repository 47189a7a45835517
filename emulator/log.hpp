#pragma once
// The process's log (stderr): one line per event, as text or as JSON, at or above a level.
// `kiln serve --log-level / --log-format` set it; tests and embedders leave it at its default
// (warn, text), so an in-process emulator says nothing unless something is wrong. Every line
// carries an event name and fields; docs/observability.md lists the events.
#include <chrono>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace kiln::log {

enum class Level { debug, info, warn, error, off };
enum class Format { text, json };

// Throws std::invalid_argument naming the accepted values.
Level parse_level(const std::string& name);
// `progress_after`: how long an operation runs before it logs progress (Progress below).
void configure(Level level, Format format, double progress_after_seconds = 2);
bool enabled(Level level);

// `event` with its fields: text is `kiln: <level> <event> k=v k=v`, JSON one object per line
// with "time", "level" and "event" first. Thread-safe; lines never interleave.
void write(Level level, const std::string& event, const nlohmann::ordered_json& fields = nlohmann::ordered_json::object());

// Progress of one long operation (a large checkpoint save, a long sample): says nothing until it
// has run `progress_after` seconds (configure), then writes an info line `<event>.progress` at
// most once a second when update() is called, and `<event>.done` from finish() only if it wrote
// any. Short operations stay silent.
class Progress {
 public:
  Progress(std::string event, nlohmann::ordered_json fields);
  // Whether update() would write now: callers in hot loops check it before building fields.
  bool due() const;
  void update(const nlohmann::ordered_json& fields);
  void finish(const nlohmann::ordered_json& fields);

 private:
  void write_line(const char* suffix, const nlohmann::ordered_json& fields) const;
  std::string event_;
  nlohmann::ordered_json fields_;
  double quiet_;
  std::chrono::steady_clock::time_point start_, last_;
  bool wrote_ = false;
};

}  // namespace kiln::log
