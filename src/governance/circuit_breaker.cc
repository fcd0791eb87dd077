#include "governance/circuit_breaker.h"

#include <algorithm>
#include <cstdio>

namespace sluice::governance {

namespace {

int64_t ns_of(core::MonoTime t) {
  return t.time_since_epoch().count();
}

double ms_of(std::chrono::nanoseconds d) {
  return static_cast<double>(d.count()) / 1e6;
}

// A CAS loop rather than fetch_add-then-undo: an overshoot that is undone would make concurrent
// callers see a full cap that is not, and reject more than the cap says.
bool acquire_capped(std::atomic<uint32_t>& counter, uint32_t cap) {
  if (cap == 0) {
    counter.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  uint32_t cur = counter.load(std::memory_order_relaxed);
  do {
    if (cur >= cap) return false;
  } while (!counter.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed));
  return true;
}

}  // namespace

CircuitBreaker::CircuitBreaker(const config::CircuitBreaker& cfg)
    : enabled_(cfg.enabled),
      bucket_ns_(std::max<int64_t>(1, cfg.window.count() / kBuckets)),
      min_requests_(cfg.min_requests),
      error_ratio_(cfg.error_ratio),
      slow_call_duration_(cfg.slow_call_duration),
      slow_call_ratio_(cfg.slow_call_ratio),
      open_duration_(cfg.open_duration),
      max_open_duration_(std::max(cfg.max_open_duration, cfg.open_duration)),
      half_open_probes_(std::max<uint32_t>(1, cfg.half_open_probes)),
      max_concurrent_(cfg.max_concurrent),
      max_pending_(cfg.max_pending),
      open_period_(cfg.open_duration) {}

int64_t CircuitBreaker::bucket_of(core::MonoTime t) const {
  const int64_t ns = ns_of(t);
  // Floor division, so that a clock before its epoch still maps to distinct buckets.
  return ns >= 0 ? ns / bucket_ns_ : -((-ns + bucket_ns_ - 1) / bucket_ns_);
}

CircuitBreaker::Admit CircuitBreaker::admit(core::MonoTime now) {
  State s = state_.load(std::memory_order_acquire);
  if (s == State::kClosed) return Admit::kAllowed;
  if (s == State::kOpen && ns_of(now) < open_until_ns_.load(std::memory_order_relaxed)) {
    return Admit::kRejected;
  }
  std::lock_guard lock(mu_);
  s = state_.load(std::memory_order_relaxed);
  if (s == State::kClosed) return Admit::kAllowed;
  if (s == State::kOpen) {
    if (ns_of(now) < open_until_ns_.load(std::memory_order_relaxed)) return Admit::kRejected;
    probes_admitted_ = 0;
    probes_succeeded_ = 0;
    state_.store(State::kHalfOpen, std::memory_order_release);
    std::snprintf(reason_, sizeof reason_, "open period of %.0fms elapsed", ms_of(open_period_));
    notify_locked(State::kOpen, State::kHalfOpen);
  }
  if (probes_admitted_ >= half_open_probes_) return Admit::kRejected;
  ++probes_admitted_;
  return Admit::kProbe;
}

void CircuitBreaker::record(Admit how, bool failure, std::chrono::nanoseconds latency,
                            core::MonoTime now) {
  if (!enabled_ || how == Admit::kRejected) return;
  const bool slow = latency >= slow_call_duration_;
  std::lock_guard lock(mu_);
  if (how == Admit::kAllowed) {
    if (state_.load(std::memory_order_relaxed) == State::kClosed) {
      record_closed_locked(failure, slow, now);
    }
    return;
  }
  if (stale_probes_ > 0) {
    --stale_probes_;
    return;
  }
  if (state_.load(std::memory_order_relaxed) == State::kHalfOpen) {
    record_probe_locked(failure, slow, latency, now);
  }
}

void CircuitBreaker::cancel(Admit how) {
  if (!enabled_ || how != Admit::kProbe) return;
  std::lock_guard lock(mu_);
  if (stale_probes_ > 0) {
    --stale_probes_;
  } else if (state_.load(std::memory_order_relaxed) == State::kHalfOpen && probes_admitted_ > 0) {
    --probes_admitted_;
  }
}

CircuitBreaker::Totals CircuitBreaker::totals_locked(int64_t current) const {
  Totals t;
  for (const Bucket& b : buckets_) {
    if (b.epoch > current - kBuckets && b.epoch <= current) {
      t.calls += b.calls;
      t.failures += b.failures;
      t.slow += b.slow;
    }
  }
  return t;
}

void CircuitBreaker::record_closed_locked(bool failure, bool slow, core::MonoTime now) {
  const int64_t epoch = bucket_of(now);
  // Threads pass their own `now`, so outcomes may arrive slightly out of order: one older than the
  // whole window is dropped, one in an older bucket still in the window goes to that bucket.
  if (epoch <= newest_bucket_ - kBuckets) return;
  newest_bucket_ = std::max(newest_bucket_, epoch);
  Bucket& b = buckets_[static_cast<size_t>(((epoch % kBuckets) + kBuckets) % kBuckets)];
  if (b.epoch != epoch) b = Bucket{epoch, 0, 0, 0};
  ++b.calls;
  b.failures += failure;
  b.slow += slow;

  const Totals t = totals_locked(newest_bucket_);
  if (t.calls < min_requests_) return;
  const double calls = static_cast<double>(t.calls);
  const double error = static_cast<double>(t.failures) / calls;
  const double slow_share = static_cast<double>(t.slow) / calls;
  if (error >= error_ratio_) {
    std::snprintf(reason_, sizeof reason_, "error ratio %.2f >= %.2f over %llu calls", error,
                  error_ratio_, static_cast<unsigned long long>(t.calls));
  } else if (slow_share >= slow_call_ratio_) {
    std::snprintf(reason_, sizeof reason_, "slow call ratio %.2f >= %.2f over %llu calls",
                  slow_share, slow_call_ratio_, static_cast<unsigned long long>(t.calls));
  } else {
    return;
  }
  open_period_ = open_duration_;
  open_locked(State::kClosed, now);
}

void CircuitBreaker::record_probe_locked(bool failure, bool slow, std::chrono::nanoseconds latency,
                                         core::MonoTime now) {
  if (failure || slow) {
    // Every other probe admitted in this round and not yet finished is now stale.
    stale_probes_ += probes_admitted_ - probes_succeeded_ - 1;
    open_period_ = std::min(open_period_ * 2, max_open_duration_);
    char first[64];
    if (failure) {
      std::snprintf(first, sizeof first, "probe failed");
    } else {
      std::snprintf(first, sizeof first, "probe slow (%.0fms >= %.0fms)", ms_of(latency),
                    ms_of(slow_call_duration_));
    }
    std::snprintf(reason_, sizeof reason_, "%s; open for %.0fms", first, ms_of(open_period_));
    open_locked(State::kHalfOpen, now);
    return;
  }
  if (++probes_succeeded_ < half_open_probes_) return;
  buckets_.fill(Bucket{});
  open_period_ = open_duration_;
  state_.store(State::kClosed, std::memory_order_release);
  std::snprintf(reason_, sizeof reason_, "%u of %u probes succeeded", probes_succeeded_,
                half_open_probes_);
  notify_locked(State::kHalfOpen, State::kClosed);
}

void CircuitBreaker::open_locked(State from, core::MonoTime now) {
  open_until_ns_.store(ns_of(now) + open_period_.count(), std::memory_order_relaxed);
  state_.store(State::kOpen, std::memory_order_release);
  ++opened_total_;
  notify_locked(from, State::kOpen);
}

void CircuitBreaker::notify_locked(State from, State to) {
  if (listener_) listener_(Transition{from, to, reason_});
}

void CircuitBreaker::set_listener(std::function<void(const Transition&)> fn) {
  std::lock_guard lock(mu_);
  listener_ = std::move(fn);
}

CircuitBreaker::Snapshot CircuitBreaker::snapshot(core::MonoTime now) const {
  std::lock_guard lock(mu_);
  const Totals t = totals_locked(bucket_of(now));
  Snapshot s{
      state_.load(std::memory_order_relaxed), t.calls, t.failures, t.slow, {}, opened_total_};
  if (s.state == State::kOpen) {
    s.open_for = std::chrono::nanoseconds(
        std::max<int64_t>(0, open_until_ns_.load(std::memory_order_relaxed) - ns_of(now)));
  }
  return s;
}

bool CircuitBreaker::try_acquire_concurrent() {
  return acquire_capped(concurrent_, max_concurrent_);
}

bool CircuitBreaker::try_acquire_pending() {
  return acquire_capped(pending_, max_pending_);
}

}  // namespace sluice::governance
