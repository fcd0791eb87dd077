#include "governance/outlier_detector.h"

#include <algorithm>

namespace sluice::governance {

namespace {

int64_t ns_of(core::MonoTime t) {
  return t.time_since_epoch().count();
}

size_t max_ejected_of(uint32_t percent, size_t n) {
  if (n <= 1 || percent == 0) return 0;
  size_t cap = static_cast<size_t>(percent) * n / 100;
  cap = std::max<size_t>(cap, 1);
  return std::min(cap, n - 1);
}

}  // namespace

OutlierDetector::OutlierDetector(const config::OutlierDetection& cfg, size_t endpoints)
    : enabled_(cfg.enabled),
      consecutive_errors_(std::max<uint32_t>(1, cfg.consecutive_errors)),
      base_ns_(std::max<int64_t>(1, cfg.base_ejection_time.count())),
      max_ns_(std::max<int64_t>(base_ns_, cfg.max_ejection_time.count())),
      max_multiplier_(static_cast<uint32_t>((max_ns_ + base_ns_ - 1) / base_ns_)),
      size_(endpoints),
      max_ejected_(max_ejected_of(cfg.max_ejection_percent, endpoints)),
      endpoints_(new Endpoint[endpoints]) {}

bool OutlierDetector::ejected(size_t i, core::MonoTime now) const {
  return ns_of(now) < endpoints_[i].ejected_until.load(std::memory_order_acquire);
}

bool OutlierDetector::healthy(size_t i) const {
  return endpoints_[i].healthy.load(std::memory_order_relaxed);
}

void OutlierDetector::set_health(size_t i, bool healthy) {
  Endpoint& e = endpoints_[i];
  // The checker reaches the endpoint again: whatever a refused connection said is outdated.
  if (healthy && !e.healthy.load(std::memory_order_relaxed)) {
    e.down_until.store(INT64_MIN, std::memory_order_release);
  }
  e.healthy.store(healthy, std::memory_order_relaxed);
}

bool OutlierDetector::down(size_t i, core::MonoTime now) const {
  return ns_of(now) < endpoints_[i].down_until.load(std::memory_order_acquire);
}

bool OutlierDetector::mark_down(size_t i, core::MonoTime now) {
  Endpoint& e = endpoints_[i];
  const int64_t t = ns_of(now);
  int64_t until = e.down_until.load(std::memory_order_acquire);
  if (t < until) return false;
  // Only one of the workers racing to mark it wins; the others see it down.
  if (!e.down_until.compare_exchange_strong(until, t + base_ns_, std::memory_order_acq_rel)) {
    return false;
  }
  e.downs.fetch_add(1, std::memory_order_relaxed);
  return true;
}

uint64_t OutlierDetector::downs_total(size_t i) const {
  return endpoints_[i].downs.load(std::memory_order_relaxed);
}

uint64_t OutlierDetector::ejections_total(size_t i) const {
  return endpoints_[i].ejections.load(std::memory_order_relaxed);
}

void OutlierDetector::record(size_t i, bool error, core::MonoTime now) {
  const int64_t t = ns_of(now);
  if (!error) {
    // An answer from an endpoint marked down (a request sent before the mark, or in panic mode)
    // proves it serves again.
    Endpoint& d = endpoints_[i];
    if (t < d.down_until.load(std::memory_order_relaxed)) {
      d.down_until.store(INT64_MIN, std::memory_order_release);
    }
  }
  if (!enabled_) return;
  if (t >= next_expiry_.load(std::memory_order_relaxed)) {
    std::lock_guard lock(mu_);
    sweep_locked(t);
  }
  Endpoint& e = endpoints_[i];
  if (t < e.ejected_until.load(std::memory_order_acquire)) return;
  if (!error) {
    // Load first: the common all-success case then never writes the shared line.
    if (e.consecutive.load(std::memory_order_relaxed) != 0) {
      e.consecutive.store(0, std::memory_order_relaxed);
    }
    return;
  }
  if (e.consecutive.fetch_add(1, std::memory_order_relaxed) + 1 < consecutive_errors_) return;
  std::lock_guard lock(mu_);
  try_eject_locked(i, t);
}

void OutlierDetector::try_eject_locked(size_t i, int64_t now_ns) {
  Endpoint& e = endpoints_[i];
  // Re-checked under the lock: another thread may have ejected it, or a success reset the count,
  // since this thread's error crossed the threshold.
  if (now_ns < e.ejected_until.load(std::memory_order_relaxed)) return;
  if (e.consecutive.load(std::memory_order_relaxed) < consecutive_errors_) return;
  if (ejected_count_locked(now_ns) >= max_ejected_) return;

  if (e.multiplier > 0 && now_ns > e.decay_from) {
    const int64_t periods = (now_ns - e.decay_from) / base_ns_;
    const uint32_t dec = static_cast<uint32_t>(std::min<int64_t>(periods, e.multiplier));
    e.multiplier -= dec;
    e.decay_from += dec * base_ns_;
  }
  if (e.multiplier < max_multiplier_) ++e.multiplier;
  const int64_t length = std::min<int64_t>(e.multiplier * base_ns_, max_ns_);
  const int64_t until = now_ns + length;

  e.ejected_until.store(until, std::memory_order_release);
  e.consecutive.store(0, std::memory_order_relaxed);
  e.ejections.fetch_add(1, std::memory_order_relaxed);
  e.decay_from = until;
  e.ejected_for = length;
  e.reported = true;
  if (until < next_expiry_.load(std::memory_order_relaxed)) {
    next_expiry_.store(until, std::memory_order_relaxed);
  }
  if (listener_) listener_(i, true, std::chrono::nanoseconds(length));
}

void OutlierDetector::sweep_locked(int64_t now_ns) {
  int64_t next = INT64_MAX;
  for (size_t i = 0; i < size_; ++i) {
    Endpoint& e = endpoints_[i];
    if (!e.reported) continue;
    const int64_t until = e.ejected_until.load(std::memory_order_relaxed);
    if (until > now_ns) {
      next = std::min(next, until);
      continue;
    }
    e.reported = false;
    if (listener_) listener_(i, false, std::chrono::nanoseconds(e.ejected_for));
  }
  next_expiry_.store(next, std::memory_order_relaxed);
}

size_t OutlierDetector::ejected_count_locked(int64_t now_ns) const {
  size_t n = 0;
  for (size_t i = 0; i < size_; ++i) {
    n += now_ns < endpoints_[i].ejected_until.load(std::memory_order_relaxed);
  }
  return n;
}

size_t OutlierDetector::ejected_count(core::MonoTime now) const {
  return ejected_count_locked(ns_of(now));
}

void OutlierDetector::set_listener(
    std::function<void(size_t endpoint, bool ejected, std::chrono::nanoseconds for_how_long)> fn) {
  std::lock_guard lock(mu_);
  listener_ = std::move(fn);
}

}  // namespace sluice::governance
