#include "upstream/idle_cap.h"

#include <algorithm>

namespace sluice::upstream {

void IdleCap::roll(core::MonoTime now) {
  if (!started_) {
    started_ = true;
    window_start_ = now;
    return;
  }
  if (now < window_start_ + cfg_.window) return;
  if (now < window_start_ + 2 * cfg_.window) {
    peak_prev_ = peak_cur_;
    window_start_ += cfg_.window;
  } else {
    // Whole windows went by without a call: in_use held its value throughout them.
    peak_prev_ = in_use_;
    window_start_ = now;
  }
  peak_cur_ = in_use_;
}

void IdleCap::acquire(core::MonoTime now) {
  roll(now);
  ++in_use_;
  peak_cur_ = std::max(peak_cur_, in_use_);
}

void IdleCap::release(core::MonoTime now) {
  roll(now);
  if (in_use_ > 0) --in_use_;
}

uint32_t IdleCap::recent_peak(core::MonoTime now) {
  roll(now);
  return std::max(peak_cur_, peak_prev_);
}

uint32_t IdleCap::cap(core::MonoTime now) {
  if (cfg_.hard) return cfg_.hard_cap;
  return std::max(cfg_.floor, recent_peak(now));
}

KeepDecision IdleCap::keep(size_t idle_here, size_t idle_total, size_t max_idle_total,
                           core::MonoTime now) {
  if (idle_here >= cap(now)) return KeepDecision::kOverCap;
  if (idle_total >= max_idle_total) return KeepDecision::kOverMemory;
  return KeepDecision::kKeep;
}

}  // namespace sluice::upstream
