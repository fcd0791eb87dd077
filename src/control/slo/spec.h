// `slo` and `maintenance_window` resources (docs/slo.md is the contract). An SLO names a target
// (a route or a service; channels and business systems come later and are refused for now), an
// SLI (availability or latency under a threshold), an objective and a rolling window. Its alert
// windows (5m, 30m, 1h, 6h, 1d, 3d for a 30d SLO) scale with the window: every alert window is
// multiplied by window / 30d, so a 4h SLO pages over 20 s and 1.67 s instead of 1h and 5m. A
// maintenance window silences alerts (never the figures) of some or all SLOs in some or all
// cities for a time range: a planned switchover or drill does not page.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/store.h"

namespace sluice::control::slo {

inline constexpr int64_t kMinuteMs = 60'000;
inline constexpr int64_t kHourMs = 60 * kMinuteMs;
inline constexpr int64_t kDayMs = 24 * kHourMs;
// The window the alert windows are written for (Google SRE workbook, "Alerting on SLOs").
inline constexpr int64_t kReferenceWindowMs = 30 * kDayMs;
inline constexpr int64_t kMinWindowMs = kHourMs;
inline constexpr int64_t kMaxWindowMs = 90 * kDayMs;
inline constexpr size_t kMaxCities = 16;
inline constexpr size_t kMaxMaintenanceEntries = 100;

// The burn-rate windows, for a 30d SLO; index with Window.
enum Window : int { k5m, k30m, k1h, k6h, k1d, k3d };
inline constexpr std::array<int64_t, 6> kBaseWindowsMs = {
    5 * kMinuteMs, 30 * kMinuteMs, kHourMs, 6 * kHourMs, kDayMs, 3 * kDayMs};
inline constexpr std::array<const char*, 6> kWindowNames = {"5m", "30m", "1h", "6h", "1d", "3d"};

enum class Sli { kAvailability, kLatency };

struct AlertFactors {
  double page_fast = 14.4;      // over 1h and 5m
  double page_slow = 6;         // over 6h and 30m
  double ticket = 1;            // over 3d and 6h
  uint64_t min_requests = 100;  // in the short window of a rule, else that rule does not fire
  bool operator==(const AlertFactors&) const = default;
};

struct SloSpec {
  std::string target_kind;          // route | service
  std::string target;               // its name
  std::vector<std::string> cities;  // empty: every city that reports the target
  Sli sli = Sli::kAvailability;
  double threshold_s = 0;   // latency: the threshold in seconds
  double objective = 99.9;  // percent, in (0, 100)
  int64_t window_ms = kReferenceWindowMs;
  AlertFactors alerts;
  std::string description;

  double budget() const { return 1.0 - objective / 100.0; }  // allowed bad share
  // An alert window (base length) scaled to this SLO's window.
  int64_t scaled(int64_t base_ms) const;
  int64_t window(Window w) const { return scaled(kBaseWindowsMs[w]); }
};

struct MaintenanceSpec {
  int64_t start_ms = 0;  // [start, end)
  int64_t end_ms = 0;
  std::vector<std::string> cities;  // empty: every city
  std::vector<std::string> slos;    // empty: every SLO
  std::string reason;
  bool covers(const std::string& slo, const std::string& city, int64_t now) const;
};

// "30d", "6h", "90m", "1.5h", ...: days as well as what core::parse_duration reads. Milliseconds;
// nullopt when malformed or not positive.
std::optional<int64_t> parse_span_ms(const nlohmann::json& v);
// "2026-12-08T03:00:00Z" (UTC, seconds optional, fraction not allowed) or epoch milliseconds.
std::optional<int64_t> parse_instant_ms(const nlohmann::json& v);

// Every problem of an slo spec, each starting with `prefix` ("slo/pay: spec"); `all` is the
// resource set it belongs to (its target must be in it). Empty when acceptable.
std::vector<std::string> check_slo(const nlohmann::json& spec, const std::string& prefix,
                                   const std::vector<Resource>& all);
std::vector<std::string> check_maintenance(const nlohmann::json& spec, const std::string& prefix,
                                           const std::vector<Resource>& all);

// Throw std::invalid_argument with the first problem of the shape (names are not looked up).
SloSpec parse_slo(const nlohmann::json& spec);
MaintenanceSpec parse_maintenance(const nlohmann::json& spec);

}  // namespace sluice::control::slo
