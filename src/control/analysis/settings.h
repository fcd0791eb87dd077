// The analysis that runs between a rollout's stages and a release's steps: which measurements,
// their thresholds and minimum samples (a change_policy's `rollout.analysis`, a release's
// `analysis`), and what an inconclusive result leads to. docs/analysis.md has the contract and
// why the defaults are what they are.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace sluice::control::analysis {

enum class Measure { kErrorRatio, kP99, k429s, kBreakerOpens };
// "error_ratio", "p99", "429s", "breaker_opens": the names in `measurements`.
std::string_view measure_name(Measure m);
std::optional<Measure> parse_measure(std::string_view name);

enum class OnInconclusive { kWait, kProceed, kFail };

struct Settings {
  int64_t interval_ms = 60'000;             // one analysis window
  uint64_t min_requests = 200;              // per group, per measurement
  double alpha = 0.01;                      // one-sided significance level of each test
  double max_error_ratio_increase = 0.001;  // absolute: 0.001 = +0.1 percentage points
  double max_p99_increase = 0.2;            // relative: 0.2 = +20%
  double max_p99_increase_ms = 10;          // absolute; p99 fails only past both
  double max_429_increase = 0.01;           // absolute share of requests answered 429
  uint64_t max_breaker_opens = 0;           // in the candidate group per window
  std::vector<Measure> measurements = {Measure::kErrorRatio, Measure::kP99, Measure::k429s,
                                       Measure::kBreakerOpens};
  OnInconclusive on_inconclusive = OnInconclusive::kWait;
  int64_t max_wait_ms = 600'000;   // inconclusive for longer: rolled back
  int64_t history_ms = 3'600'000;  // the "before" baseline: this long before the change; 0 = none

  bool measures(Measure m) const;
};

// What is wrong with `settings` (a JSON object), each message naming its field with `prefix`
// ("rollout.analysis.alpha: must be a number in (0, 0.5], got 'x'"); every problem at once;
// empty when it is acceptable.
std::vector<std::string> check_settings(const nlohmann::json& settings, const std::string& prefix);

// The settings with defaults for what `settings` leaves out; null means every default. Throws
// std::invalid_argument with check_settings's first message when it is not acceptable.
Settings parse_settings(const nlohmann::json& settings);

// The settings as JSON, every key present (what `rollout status` can show).
nlohmann::json to_json(const Settings& s);

}  // namespace sluice::control::analysis
