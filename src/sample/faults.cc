#include "sample/faults.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/json.h"

namespace sluice::sample {

std::optional<FaultUpdate> parse_fault_update(std::string_view json, std::string* error) {
  std::string parse_error;
  auto parsed = core::parse_json(json, &parse_error);
  const nlohmann::json doc =
      parsed ? std::move(*parsed) : nlohmann::json(nlohmann::json::value_t::discarded);
  std::string problems;
  auto problem = [&](std::string_view text) {
    if (!problems.empty()) problems.append("; ");
    problems.append(text);
  };
  FaultUpdate u;
  if (doc.is_discarded()) {
    problem("body is not valid JSON: " + parse_error);
  } else if (!doc.is_object()) {
    problem("body must be a JSON object");
  } else {
    for (const auto& [key, value] : doc.items()) {
      if (key == "error_rate") {
        if (!value.is_number()) {
          problem("error_rate: must be a number");
        } else if (double v = value.get<double>(); !(v >= 0 && v <= 1)) {
          problem("error_rate: must be 0..1");
        } else {
          u.error_rate = v;
        }
      } else if (key == "latency_ms") {
        if (!value.is_number()) {
          problem("latency_ms: must be a number");
        } else if (double v = value.get<double>(); !(v >= 0 && v <= kMaxLatencyMs)) {
          problem("latency_ms: must be 0..3600000");
        } else {
          u.latency = std::chrono::nanoseconds(static_cast<int64_t>(std::llround(v * 1e6)));
        }
      } else if (key == "healthy") {
        if (!value.is_boolean()) {
          problem("healthy: must be true or false");
        } else {
          u.healthy = value.get<bool>();
        }
      } else {
        problem("unknown key '" + key + "' (expected error_rate, latency_ms, healthy)");
      }
    }
  }
  if (!problems.empty()) {
    if (error != nullptr) *error = std::move(problems);
    return std::nullopt;
  }
  return u;
}

std::string faults_json(const FaultSnapshot& f) {
  nlohmann::ordered_json j;  // keys in the documented order
  j["error_rate"] = f.error_rate;
  int64_t ns = f.latency.count();
  if (ns % 1'000'000 == 0) {
    j["latency_ms"] = ns / 1'000'000;
  } else {
    j["latency_ms"] = static_cast<double>(ns) / 1e6;
  }
  j["healthy"] = f.healthy;
  return j.dump();
}

void Faults::apply(const FaultUpdate& u) {
  if (u.error_rate) error_rate_.store(*u.error_rate, std::memory_order_relaxed);
  if (u.latency) latency_ns_.store(u.latency->count(), std::memory_order_relaxed);
  if (u.healthy) healthy_.store(*u.healthy, std::memory_order_relaxed);
}

void Faults::apply_snapshot(const FaultSnapshot& s) {
  error_rate_.store(s.error_rate, std::memory_order_relaxed);
  latency_ns_.store(s.latency.count(), std::memory_order_relaxed);
  healthy_.store(s.healthy, std::memory_order_relaxed);
}

}  // namespace sluice::sample
