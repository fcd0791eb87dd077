// Passive outlier detection for the endpoints of one service (Envoy's consecutive-errors flavour),
// combined with the active health checker's verdict into one "available" bit per endpoint.
// One instance per service per gateway process, shared by every worker thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

#include "config/config.h"
#include "core/clock.h"

namespace sluice::governance {

// Semantics, exactly:
// - Each endpoint counts consecutive errors; a success resets the count. The error that brings
//   it to consecutive_errors ejects the endpoint, unless the ejection cap is reached, in which
//   case every further error (without a success between) tries again.
// - The n-th ejection lasts min(k * base_ejection_time, max_ejection_time), where k is a
//   multiplier raised by one at every ejection and lowered by one for every full
//   base_ejection_time the endpoint spends not ejected (Envoy's decay, applied lazily at the next
//   ejection). k stops growing at ceil(max / base), so that decay works from the cap, not from
//   however many ejections piled up above it.
// - Cap: at most floor(max_ejection_percent * N / 100) endpoints ejected at once, but at least 1
//   when max_ejection_percent > 0 (as Envoy: small services can still lose their one bad
//   endpoint), and never all N (so a one-endpoint service is never ejected: the breaker covers
//   that case). 0% ejects nothing. Only outlier ejections count towards the cap, not endpoints
//   the health checker marked down.
// - Outcomes of calls to an endpoint while it is ejected (requests sent before the ejection) are
//   ignored, so they cannot stack a second ejection onto the end of the first.
// - Ejection ends by time alone; the listener hears of it at the first record() (for any
//   endpoint) at or after the end.
// - Health: every endpoint starts healthy; set_health() is the active checker's verdict.
// - cfg.enabled == false: record() does nothing; health and "down" still work.
// - Down (passive health, always on): mark_down() says that a connection to the endpoint could
//   not be opened (refused, unreachable): nothing serves there, which needs no statistics. The
//   endpoint is out of every worker's choice at once, for base_ejection_time (the section's
//   default when outlier_detection is absent), until the active health check reports it healthy
//   (a transition to healthy ends it early), or until a later call proves it alive
//   (record(i, false) after the mark ends it too: a request that got an answer). Not capped by
//   max_ejection_percent: an endpoint that refuses connections is not serving either way, and
//   locality's panic threshold decides what happens when too few endpoints are left. A mark
//   while down does not extend it, so a flood of refusals costs one atomic load each.
class OutlierDetector {
 public:
  OutlierDetector(const config::OutlierDetection& cfg, size_t endpoints);
  OutlierDetector(const OutlierDetector&) = delete;
  OutlierDetector& operator=(const OutlierDetector&) = delete;

  // Not ejected and health-check healthy; lock-free.
  bool available(size_t i, core::MonoTime now) const {
    return healthy(i) && !ejected(i, now) && !down(i, now);
  }
  bool ejected(size_t i, core::MonoTime now) const;
  bool down(size_t i, core::MonoTime now) const;
  // A connection to endpoint i could not be opened (see "Down" above). Lock-free; the listener
  // is not called. True when this call took it out (false: it was down already).
  bool mark_down(size_t i, core::MonoTime now);
  uint64_t downs_total(size_t i) const;
  std::chrono::nanoseconds down_for() const { return std::chrono::nanoseconds(base_ns_); }
  // Outcome of one call to endpoint i; error = 5xx / connect failure / reset / timeout. A success
  // costs two atomic loads; an error one atomic add, and the lock only when it reaches the
  // threshold.
  void record(size_t i, bool error, core::MonoTime now);
  void set_health(size_t i, bool healthy);
  bool healthy(size_t i) const;
  uint64_t ejections_total(size_t i) const;
  // Called under the detector's lock on every ejection (ejected = true, for its length) and
  // un-ejection (ejected = false, for the length it was ejected). Keep it cheap and do not call
  // back into the detector. Set it before the detector is shared.
  void set_listener(
      std::function<void(size_t endpoint, bool ejected, std::chrono::nanoseconds for_how_long)> fn);
  size_t size() const { return size_; }

  // Endpoints currently ejected (O(N), lock-free); for stats and tests.
  size_t ejected_count(core::MonoTime now) const;

 private:
  // One cache line each: workers recording outcomes of different endpoints do not contend.
  struct alignas(64) Endpoint {
    std::atomic<int64_t> ejected_until{INT64_MIN};  // ns on the monotonic clock
    std::atomic<uint32_t> consecutive{0};
    std::atomic<bool> healthy{true};
    std::atomic<uint64_t> ejections{0};
    std::atomic<int64_t> down_until{INT64_MIN};  // ns on the monotonic clock
    std::atomic<uint64_t> downs{0};
    // Guarded by mu_.
    uint32_t multiplier = 0;
    int64_t decay_from = 0;   // ns: decay counts whole base periods from here
    int64_t ejected_for = 0;  // ns: length of the current/last ejection
    bool reported = false;    // ejected and the un-ejection not yet reported
  };

  void try_eject_locked(size_t i, int64_t now_ns);
  void sweep_locked(int64_t now_ns);
  size_t ejected_count_locked(int64_t now_ns) const;

  const bool enabled_;
  const uint32_t consecutive_errors_;
  const int64_t base_ns_;  // also the length of a "down" mark
  const int64_t max_ns_;
  const uint32_t max_multiplier_;
  const size_t size_;
  const size_t max_ejected_;
  std::unique_ptr<Endpoint[]> endpoints_;
  // Earliest end of a not yet reported ejection; INT64_MAX when none. Lets record() skip the lock.
  std::atomic<int64_t> next_expiry_{INT64_MAX};

  mutable std::mutex mu_;
  std::function<void(size_t, bool, std::chrono::nanoseconds)> listener_;
};

}  // namespace sluice::governance
