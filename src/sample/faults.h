// Run-time fault injection of the sample service: error ratio, added latency, health. One
// Faults object is shared by all workers through atomics; POST /_sample/faults updates it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::sample {

inline constexpr double kMaxLatencyMs = 3'600'000;  // one hour

struct FaultSnapshot {
  double error_rate = 0;                // 0..1: fraction of answers replaced by 500
  std::chrono::nanoseconds latency{0};  // added before each answer
  bool healthy = true;                  // false: GET /healthz answers 503
};

// Any subset of the fields; absent ones are left as they are.
struct FaultUpdate {
  std::optional<double> error_rate;
  std::optional<std::chrono::nanoseconds> latency;
  std::optional<bool> healthy;
};

// Reads {"error_rate": 0..1, "latency_ms": 0..3600000, "healthy": bool} (any subset, nothing
// else). On failure returns nullopt and sets `error` to every problem found, joined by "; ".
std::optional<FaultUpdate> parse_fault_update(std::string_view json, std::string* error);

// {"error_rate":0.1,"latency_ms":2,"healthy":true}; latency_ms has a fraction only when needed.
std::string faults_json(const FaultSnapshot& f);

class Faults {
 public:
  explicit Faults(const FaultSnapshot& initial = {}) { apply_snapshot(initial); }

  double error_rate() const { return error_rate_.load(std::memory_order_relaxed); }
  std::chrono::nanoseconds latency() const {
    return std::chrono::nanoseconds(latency_ns_.load(std::memory_order_relaxed));
  }
  bool healthy() const { return healthy_.load(std::memory_order_relaxed); }

  // Fields are updated one by one: a reader may see a new error rate with the old latency for a
  // moment, which is harmless for fault injection and keeps reads lock-free.
  void apply(const FaultUpdate& u);
  FaultSnapshot snapshot() const { return {error_rate(), latency(), healthy()}; }

 private:
  void apply_snapshot(const FaultSnapshot& s);

  std::atomic<double> error_rate_{0};
  std::atomic<int64_t> latency_ns_{0};
  std::atomic<bool> healthy_{true};
};

}  // namespace sluice::sample
