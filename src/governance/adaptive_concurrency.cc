#include "governance/adaptive_concurrency.h"

#include <algorithm>
#include <cmath>

namespace sluice::governance {

namespace {

// CAS loop rather than fetch_add-then-undo: an undone overshoot would make concurrent callers
// see a full limit that is not, and shed more than the limit says. The epsilon absorbs rounding
// in limit x fraction (100 x 0.7 must admit 70, not 71 should the product come out at 70.0000001).
bool acquire_below(std::atomic<uint32_t>& in_flight, double allowed) {
  uint32_t cur = in_flight.load(std::memory_order_relaxed);
  do {
    if (static_cast<double>(cur) + 1e-9 >= allowed) return false;
  } while (!in_flight.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed));
  return true;
}

}  // namespace

AdaptiveConcurrency::AdaptiveConcurrency(const config::AdaptiveConcurrency& cfg)
    : cfg_(cfg),
      limit_(std::clamp(cfg.initial_limit, cfg.min_limit, std::max(cfg.min_limit, cfg.max_limit))),
      estimate_(static_cast<double>(limit_.load())) {}

bool AdaptiveConcurrency::try_acquire(double fraction) {
  return acquire_below(in_flight_, static_cast<double>(limit()) * fraction);
}

void AdaptiveConcurrency::release(std::chrono::nanoseconds latency, bool dropped,
                                  core::MonoTime now) {
  const uint32_t before = in_flight_.fetch_sub(1, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  if (samples_ == 0) window_start_ = now;
  ++samples_;
  latency_sum_ += static_cast<double>(latency.count());
  drops_ += dropped;
  peak_ = std::max(peak_, before);
  if (now - window_start_ < cfg_.sample_window) return;
  recompute_locked();
  samples_ = 0;
  latency_sum_ = 0;
  drops_ = 0;
  peak_ = 0;
}

void AdaptiveConcurrency::recompute_locked() {
  const double sample = std::max(1.0, latency_sum_ / static_cast<double>(samples_));
  const double limit = estimate_;
  const bool used = 2.0 * peak_ >= limit;
  double next = limit;
  if (cfg_.algorithm == config::AdaptiveConcurrency::Algorithm::kAimd) {
    const double threshold = static_cast<double>(cfg_.latency_threshold.count());
    if (drops_ > 0 || sample > threshold) {
      next = limit * cfg_.backoff;
    } else if (used) {
      next = limit + 1;
    }
  } else {
    ++windows_;
    if (windows_ <= kWarmupWindows) {
      baseline_ += (sample - baseline_) / static_cast<double>(windows_);
    } else {
      constexpr double kAlpha = 2.0 / (kBaselineWindows + 1);
      baseline_ += kAlpha * (sample - baseline_);
    }
    if (baseline_ > 2 * sample) baseline_ *= 0.95;
    const double gradient = std::clamp(cfg_.tolerance * baseline_ / sample, 0.5, 1.0);
    next = (1 - kSmoothing) * limit + kSmoothing * (limit * gradient + std::sqrt(limit));
    if (next > limit && (drops_ > 0 || !used)) next = limit;
    baseline_ns_.store(static_cast<int64_t>(baseline_), std::memory_order_relaxed);
  }
  estimate_ = std::clamp(next, static_cast<double>(cfg_.min_limit),
                         static_cast<double>(std::max(cfg_.min_limit, cfg_.max_limit)));
  publish_locked();
}

void AdaptiveConcurrency::publish_locked() {
  // The epsilon keeps 10 x 0.9 from publishing 8 should the product land a hair below 9.
  limit_.store(static_cast<uint32_t>(std::floor(estimate_ + 1e-9)), std::memory_order_relaxed);
}

double priority_fraction(size_t rank, size_t classes, double reserve) {
  if (classes <= 1) return 1.0;
  rank = std::min(rank, classes - 1);
  return 1.0 - reserve * static_cast<double>(rank) / static_cast<double>(classes - 1);
}

bool InFlightGate::try_acquire(double fraction) {
  if (limit_ == 0) {
    in_flight_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  return acquire_below(in_flight_, static_cast<double>(limit_) * fraction);
}

}  // namespace sluice::governance
