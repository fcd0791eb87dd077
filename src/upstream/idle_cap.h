// How many idle keep-alive connections a worker keeps to one upstream endpoint: enough for the
// concurrency that endpoint recently needed, so that a steady load reuses its connections instead
// of closing and reopening them, and never more than the operator's hard cap or the memory budget.
//
// Semantics, exactly:
// - in_use: connections of this worker to the endpoint that carry a request (acquire .. release).
// - recent peak: the largest in_use seen in the current window and the one before it (windows of
//   `window`, started by the first call). A burst is remembered for `window`..2x`window`, then
//   forgotten; a level that holds is never forgotten.
// - cap(now) = hard_cap when the operator set one (max_idle_connections), else
//   max(floor, recent peak). Idle connections beyond the cap are closed when given back.
// - keep(): a connection given back is kept when idle_here < cap(now) and the worker's idle
//   connections over all endpoints stay within max_idle_total (the memory budget); else the
//   reason to close it.
// Time is passed in; no I/O, no allocation.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "core/clock.h"

namespace sluice::upstream {

struct IdleCapConfig {
  uint32_t floor = 64;    // kept whatever the demand (as long as it was once in use)
  uint32_t hard_cap = 0;  // used when `hard`
  bool hard = false;      // the operator set max_idle_connections: exactly that, no demand
  std::chrono::nanoseconds window = std::chrono::seconds(30);
};

enum class KeepDecision : uint8_t { kKeep, kOverCap, kOverMemory };

class IdleCap {
 public:
  IdleCap() = default;
  explicit IdleCap(const IdleCapConfig& cfg) : cfg_(cfg) {}
  void configure(const IdleCapConfig& cfg) { cfg_ = cfg; }

  void acquire(core::MonoTime now);
  void release(core::MonoTime now);
  uint32_t in_use() const { return in_use_; }
  uint32_t recent_peak(core::MonoTime now);
  uint32_t cap(core::MonoTime now);
  KeepDecision keep(size_t idle_here, size_t idle_total, size_t max_idle_total, core::MonoTime now);

 private:
  void roll(core::MonoTime now);

  IdleCapConfig cfg_;
  uint32_t in_use_ = 0;
  uint32_t peak_cur_ = 0;   // peak of in_use in the window that started at window_start_
  uint32_t peak_prev_ = 0;  // peak of the window before
  core::MonoTime window_start_{};
  bool started_ = false;
};

}  // namespace sluice::upstream
