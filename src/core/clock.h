// Time as an injected dependency: decision code takes `now` from a Clock, tests use ManualClock.
#pragma once

#include <atomic>
#include <chrono>

namespace sluice::core {

using MonoTime = std::chrono::steady_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual MonoTime now() const = 0;
};

class SteadyClock final : public Clock {
 public:
  MonoTime now() const override { return std::chrono::steady_clock::now(); }
  static const SteadyClock& instance() {
    static const SteadyClock clock;
    return clock;
  }
};

// A clock that moves only when told to; for unit tests.
class ManualClock final : public Clock {
 public:
  MonoTime now() const override { return MonoTime(std::chrono::nanoseconds(ns_.load())); }
  void advance(std::chrono::nanoseconds d) { ns_ += d.count(); }
  void set(std::chrono::nanoseconds since_epoch) { ns_ = since_epoch.count(); }

 private:
  std::atomic<int64_t> ns_{1'000'000'000};
};

}  // namespace sluice::core
