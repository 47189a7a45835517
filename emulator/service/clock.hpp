#pragma once
// Time for TTLs and result retention: the real clock, or a virtual one that tests advance.
#include <atomic>
#include <chrono>
#include <memory>
#include <string>

namespace kiln::service {

using TimePoint = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
};

class RealClock : public Clock {
 public:
  TimePoint now() const override { return std::chrono::system_clock::now(); }
};

// Starts at the real time of its creation and moves only when advanced.
class VirtualClock : public Clock {
 public:
  VirtualClock() : ns_(std::chrono::system_clock::now().time_since_epoch().count()) {}
  TimePoint now() const override { return TimePoint(TimePoint::duration(ns_.load())); }
  void advance(std::chrono::nanoseconds d) { ns_ += std::chrono::duration_cast<TimePoint::duration>(d).count(); }
  void advance_seconds(double s) { advance(std::chrono::nanoseconds(static_cast<int64_t>(s * 1e9))); }

 private:
  std::atomic<TimePoint::duration::rep> ns_;
};

// ISO-8601 UTC with microseconds, e.g. "2026-11-28T14:03:05.123456Z".
std::string iso8601(TimePoint t);
double to_unix_seconds(TimePoint t);

}  // namespace kiln::service
