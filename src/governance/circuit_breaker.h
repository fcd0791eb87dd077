// Per-service circuit breaker: closed / open / half-open over a sliding time window of call
// outcomes, with exponential backoff of the open period, plus the service's in-flight and pending
// caps. One instance per service per gateway process, shared by every worker thread.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string_view>

#include "config/config.h"
#include "core/clock.h"

namespace sluice::governance {

// Semantics, exactly:
// - Window: 10 buckets of cfg.window/10, aligned to multiples of the bucket width on the
//   monotonic clock. The window at `now` is the bucket holding `now` and the 9 before it, so it
//   spans between 9/10 and 10/10 of cfg.window. Only outcomes of calls admitted while closed
//   (Admit::kAllowed) are counted; a call is slow when latency >= slow_call_duration, whether or
//   not it also failed.
// - Closed -> open: checked at every counted outcome: calls >= min_requests and
//   (failures/calls >= error_ratio or slow/calls >= slow_call_ratio). Open for open_duration.
// - Open -> half-open: at the first admit() at or after the open period's end (lazily; state()
//   reads kOpen until then). While open, admit() rejects without taking a lock.
// - Half-open: exactly half_open_probes calls are admitted as Admit::kProbe (admitted but not yet
//   finished probes count; cancel() gives a slot back). When that many probes have succeeded (not
//   failed and not slow) -> closed with an empty window and the open period back at
//   open_duration. The first failed or slow probe -> open again for twice the previous open
//   period, capped at max_open_duration.
// - Probes still in flight when their round ends are "stale": the next that many probe outcomes
//   (or cancels) are discarded. Outcomes are not tagged with their round, so if a stale probe
//   outlives the next open period, it and a newer probe may swap places; the number of outcomes
//   judged per round stays exact.
// - Outcomes of kAllowed calls that finish while open or half-open are dropped: they describe
//   the service before the trip, and the window is cleared when the breaker closes.
// - cfg.enabled == false: admit() always allows and record() does nothing; the concurrency and
//   pending caps work either way.
class CircuitBreaker {
 public:
  enum class State : uint8_t { kClosed = 0, kOpen = 1, kHalfOpen = 2 };
  enum class Admit : uint8_t { kAllowed, kProbe, kRejected };

  explicit CircuitBreaker(const config::CircuitBreaker& cfg);
  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;

  // Fast path when closed: one atomic load, no lock. Every kAllowed/kProbe must be followed by
  // exactly one record() or cancel() with the same value.
  Admit admit(core::MonoTime now);
  // Outcome of an admitted call (pass what admit returned); kRejected is ignored.
  // failure = 5xx / connect failure / reset / timeout.
  void record(Admit how, bool failure, std::chrono::nanoseconds latency, core::MonoTime now);
  // An admitted call that never reached the service (e.g. the client went away): frees a probe
  // slot, records nothing.
  void cancel(Admit how);

  // The stored state (see "Open -> half-open" above for why it may read kOpen past the period).
  State state() const { return state_.load(std::memory_order_acquire); }

  struct Transition {
    State from, to;
    std::string_view
        reason;  // e.g. "error ratio 0.62 >= 0.50 over 40 calls"; valid during the call
  };
  // Called on every transition, under the breaker's lock: keep it cheap and do not call back into
  // the breaker. Set it before the breaker is shared.
  void set_listener(std::function<void(const Transition&)> fn);

  struct Snapshot {
    State state;
    uint64_t calls, failures, slow;     // in the window at `now` (what tripped it, while open)
    std::chrono::nanoseconds open_for;  // while open: time left until half-open; else 0
    uint64_t opened_total;              // transitions into open since construction
  };
  Snapshot snapshot(core::MonoTime now) const;

  // In-flight cap (max_concurrent; 0 = no cap, still counted). Exact under contention.
  bool try_acquire_concurrent();
  void release_concurrent() { concurrent_.fetch_sub(1, std::memory_order_relaxed); }
  uint32_t concurrent() const { return concurrent_.load(std::memory_order_relaxed); }
  // Pending cap: requests waiting for an upstream connection (max_pending; 0 = no cap).
  bool try_acquire_pending();
  void release_pending() { pending_.fetch_sub(1, std::memory_order_relaxed); }
  uint32_t pending() const { return pending_.load(std::memory_order_relaxed); }

  static constexpr int kBuckets = 10;

 private:
  struct Bucket {
    int64_t epoch = -1;  // absolute bucket number (time / width) the counts belong to
    uint64_t calls = 0, failures = 0, slow = 0;
  };
  struct Totals {
    uint64_t calls = 0, failures = 0, slow = 0;
  };

  int64_t bucket_of(core::MonoTime t) const;
  Totals totals_locked(int64_t current) const;
  void record_closed_locked(bool failure, bool slow, core::MonoTime now);
  void record_probe_locked(bool failure, bool slow, std::chrono::nanoseconds latency,
                           core::MonoTime now);
  void open_locked(State from, core::MonoTime now);
  void notify_locked(State from, State to);  // reason_ holds the reason

  // Config, fixed for the breaker's life.
  const bool enabled_;
  const int64_t bucket_ns_;
  const uint64_t min_requests_;
  const double error_ratio_;
  const std::chrono::nanoseconds slow_call_duration_;
  const double slow_call_ratio_;
  const std::chrono::nanoseconds open_duration_;
  const std::chrono::nanoseconds max_open_duration_;
  const uint32_t half_open_probes_;
  const uint32_t max_concurrent_;
  const uint32_t max_pending_;

  // Hot reads. open_until_ns_ is written before state_ is released as kOpen.
  std::atomic<State> state_{State::kClosed};
  std::atomic<int64_t> open_until_ns_{0};
  std::atomic<uint32_t> concurrent_{0};
  std::atomic<uint32_t> pending_{0};

  // Everything below is guarded by mu_.
  mutable std::mutex mu_;
  std::array<Bucket, kBuckets> buckets_{};
  int64_t newest_bucket_ = 0;
  std::chrono::nanoseconds open_period_;  // length of the current/next open period (backoff)
  uint32_t probes_admitted_ = 0;          // this half-open round, finished or not
  uint32_t probes_succeeded_ = 0;
  uint32_t stale_probes_ = 0;  // probes of ended rounds whose outcome is still to come
  uint64_t opened_total_ = 0;
  std::function<void(const Transition&)> listener_;
  char reason_[128] = {};
};

}  // namespace sluice::governance
