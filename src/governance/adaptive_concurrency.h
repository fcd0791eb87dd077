// Overload protection: a per-service concurrency limit that follows measured latency (gradient,
// after Netflix Gradient2 / Envoy adaptive_concurrency, or AIMD), and a gateway-wide in-flight
// gate; both admit priority classes up to a fraction of the limit so the lowest are shed first.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "config/config.h"
#include "core/clock.h"

namespace sluice::governance {

// Semantics, exactly:
// - Admission: try_acquire(f) admits while in_flight < limit * f, i.e. ceil(limit * f) calls at
//   once (at least one for any f > 0). Exact under contention (CAS loop, no overshoot).
// - Sample window: the first measured release() opens a window; the first release() with
//   now >= opened + sample_window is the last sample of that window and recomputes the limit; the
//   next measured release() opens the next window. Per window: the sample latency is the mean
//   latency of its calls (dropped calls included, with their latency), `drops` counts dropped
//   calls, and `peak` is the largest in-flight count seen at a release (that call included).
// - The limit is kept as a real number L and published as floor(L), clamped to
//   [min_limit, max_limit]; it starts at initial_limit.
// - gradient: baseline B = plain mean of the first kWarmupWindows samples, then an EWMA of the
//   samples with alpha = 2 / (kBaselineWindows + 1); when B > 2 x sample (latency back to normal
//   after a long overload inflated B) B shrinks by 5% per window to catch up sooner. Then
//     g = clamp(tolerance * B / sample, 0.5, 1.0)
//     L' = (1 - kSmoothing) * L + kSmoothing * (L * g + sqrt(L))     // sqrt(L): queue allowance
//   except that L' > L is not taken (L stays) when the window had a drop, or when peak < L / 2
//   (the service is not using the limit, so low latency says nothing about a higher one).
//   Under a steady gradient g < 1 the limit settles at L = 1 / (1 - g)^2, where the allowance
//   sqrt(L) balances the cut L (1 - g): latency 2.5x tolerance x B (g = 0.6) drives it to ~6, a
//   mild rise to 1.07x (g = 0.94) only stops it growing past 256.
// - aimd: a window with a drop or a sample latency > latency_threshold sets L = L * backoff;
//   otherwise, when peak >= L / 2, L = L + 1; otherwise L stays.
// - cfg.mode is the caller's business: in shadow mode call force_acquire() when try_acquire()
//   fails, so that in_flight (and thus the limit's inputs) stay true.
class AdaptiveConcurrency {
 public:
  static constexpr double kSmoothing = 0.2;
  static constexpr uint32_t kWarmupWindows = 10;
  static constexpr uint32_t kBaselineWindows = 600;

  explicit AdaptiveConcurrency(const config::AdaptiveConcurrency& cfg);
  AdaptiveConcurrency(const AdaptiveConcurrency&) = delete;
  AdaptiveConcurrency& operator=(const AdaptiveConcurrency&) = delete;

  // Admits while in_flight < limit * fraction (fraction in (0,1], from priority classes);
  // increments in_flight on success.
  bool try_acquire(double fraction = 1.0);
  // Counts a call in flight without asking (shadow mode).
  void force_acquire() { in_flight_.fetch_add(1, std::memory_order_relaxed); }
  // End of an admitted call with its latency; dropped = timeout / reset / 503 from upstream.
  void release(std::chrono::nanoseconds latency, bool dropped, core::MonoTime now);
  // The call was not measured (e.g. the client went away).
  void release_without_sample() { in_flight_.fetch_sub(1, std::memory_order_relaxed); }

  uint32_t limit() const { return limit_.load(std::memory_order_relaxed); }
  uint32_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }
  // Gradient baseline latency (0 before the first window and under aimd); for stats.
  std::chrono::nanoseconds baseline() const {
    return std::chrono::nanoseconds(baseline_ns_.load(std::memory_order_relaxed));
  }

 private:
  void recompute_locked();
  void publish_locked();

  const config::AdaptiveConcurrency cfg_;
  std::atomic<uint32_t> limit_;
  std::atomic<uint32_t> in_flight_{0};
  std::atomic<int64_t> baseline_ns_{0};

  // Guarded by mu_.
  std::mutex mu_;
  double estimate_;      // L
  double baseline_ = 0;  // B, ns
  uint64_t windows_ = 0;
  core::MonoTime window_start_{};
  uint64_t samples_ = 0;
  double latency_sum_ = 0;  // ns
  uint64_t drops_ = 0;
  uint32_t peak_ = 0;
};

// Fraction of a limit a priority class may use: rank 0 (highest) of `classes` gets 1.0, the
// lowest gets 1 - reserve, linear between. One class (or none) gets 1.0; a rank past the lowest
// is treated as the lowest.
double priority_fraction(size_t rank, size_t classes, double reserve);

// A gateway-wide in-flight gate with the same fractions (Overload.max_in_flight): admits while
// in_flight < limit * fraction. Limit 0 = no cap (always admits, still counts).
class InFlightGate {
 public:
  explicit InFlightGate(uint32_t limit) : limit_(limit) {}
  bool try_acquire(double fraction);
  void force_acquire() { in_flight_.fetch_add(1, std::memory_order_relaxed); }  // shadow mode
  void release() { in_flight_.fetch_sub(1, std::memory_order_relaxed); }
  uint32_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }
  uint32_t limit() const { return limit_; }

 private:
  const uint32_t limit_;
  std::atomic<uint32_t> in_flight_{0};
};

}  // namespace sluice::governance
