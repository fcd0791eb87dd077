// The SLO evaluator: per SLO and city, the good/bad counts gateways report, kept in timelines of
// fixed-width buckets, turned into error budgets, burn rates and multiwindow alerts. Pure: it is
// fed snapshots and asked at `now`; it never reads a clock or the store (slo_service.h does).
//
// Semantics, exactly (docs/slo.md):
// - Bad events: availability, the target's `errors` (5xx, and for services connection errors) of
//   its `requests`; latency, the responses of its latency histogram above the threshold, read
//   linearly inside the bucket that holds the threshold (as histogram_quantile reads a bucket).
// - A snapshot's counts are placed at its `at_ms` in its gateway's `city`. A window of length W
//   at `now` sums the buckets whose start is at or after now - W, so it spans between W minus one
//   bucket and W: buckets are 1/30 of the 5m window (W/360 of the 1h window) for 5m, 30m and 1h,
//   1/72 of the 6h window for 6h, 1d and 3d, and 1/720 of the SLO window for the budget.
// - Burn rate = bad share in the window / (1 - objective); 0 without requests.
// - Error budget remaining = 1 - bad / (requests * (1 - objective)) over the SLO window (1 with
//   no requests; negative once overspent).
// - Alerts, per SLO and city: page when burn >= page_fast over 1h and 5m, or >= page_slow over
//   6h and 30m; ticket when burn >= ticket over 3d and 6h. A rule fires only with at least
//   min_requests requests in its short window (5m, 30m, 6h), and never while a maintenance window
//   covers the SLO and city. An alert is firing while its rule holds and resolved the first
//   evaluation it does not.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/slo/spec.h"

namespace sluice::control::slo {

struct Counts {
  double bad = 0;
  double total = 0;
  Counts& operator+=(const Counts& o) {
    bad += o.bad;
    total += o.total;
    return *this;
  }
};

// Buckets of one width over a bounded span, as a ring: adding at t moves the ring forward to t
// (clearing what falls out); data older than the span is dropped.
class Ring {
 public:
  Ring(int64_t width_ms, int64_t span_ms);
  void add(int64_t at_ms, const Counts& c);
  // Buckets whose start is in [from_ms, to_ms] (the bucket holding to_ms included).
  Counts sum(int64_t from_ms, int64_t to_ms) const;
  int64_t width() const { return width_; }
  size_t size() const { return cells_.size(); }

 private:
  int64_t width_;
  std::vector<Counts> cells_;
  int64_t head_;  // index (t / width) of the newest bucket
};

// One SLO's counts in one city: three rings, for the short windows, the long ones and the budget.
class Timeline {
 public:
  explicit Timeline(const SloSpec& s);
  void add(int64_t at_ms, const Counts& c);
  Counts window(Window w, int64_t now) const;  // one of the six alert windows
  Counts budget_window(int64_t now) const;     // the SLO's window

 private:
  std::array<int64_t, 6> windows_{};  // the alert windows' lengths, scaled
  int64_t budget_ms_ = 0;
  Ring fine_, coarse_, budget_;
};

struct Figures {
  std::array<Counts, 6> windows;  // by Window
  std::array<double, 6> burn{};
  Counts budget_counts;
  double budget_remaining = 1;
  void add(const Figures& o);  // counts only; call finish() after
  void finish(const SloSpec& s);
};

enum class Severity { kPage, kTicket };
const char* severity_name(Severity s);

// Which rule holds; `guarded`: the burn rates hold but the short window has fewer requests than
// min_requests.
struct RuleResult {
  bool page_fast = false, page_slow = false, ticket = false;
  bool guarded_page = false, guarded_ticket = false;
};
RuleResult rules(const Figures& f, const AlertFactors& a);

struct CityStatus {
  std::string city;
  Figures figures;
  RuleResult rule;
  std::string maintenance;  // the covering maintenance window's name, if any
  bool page() const { return maintenance.empty() && (rule.page_fast || rule.page_slow); }
  bool ticket() const { return maintenance.empty() && rule.ticket; }
};

struct SloStatus {
  std::string name;
  SloSpec spec;
  nlohmann::json raw;  // the resource's spec as applied
  Figures overall;
  std::vector<CityStatus> cities;  // sorted by city
};

struct Alert {
  std::string slo, city;
  Severity severity = Severity::kPage;
  std::string rule;  // "1h+5m", "6h+30m", "3d+6h"
  int64_t since_ms = 0;
  int64_t resolved_ms = 0;  // 0 while firing
  double burn_long = 0, burn_short = 0, factor = 0;
};

// A transition for the event log.
struct Transition {
  bool fired = false;  // else resolved
  Alert alert;
};

// Every SLO of a config, their timelines and alert states.
class Engine {
 public:
  // Replaces the SLO set (specs already checked). An SLO whose spec is unchanged keeps its data;
  // a new or changed one starts empty and is returned, so the caller can backfill it.
  std::vector<std::string> set_slos(const std::map<std::string, nlohmann::json>& slos);
  void set_maintenance(const std::map<std::string, MaintenanceSpec>& windows);

  // Adds a gateway snapshot (POST /v1/stats data: city, at_ms, routes, services); only SLOs
  // named in `only` when it is given.
  void ingest(const nlohmann::json& snapshot, const std::set<std::string>* only = nullptr);
  // Adds counts at `at_ms` to SLO `name` in `city` directly (tests, backfill of rollups). An SLO
  // keeps at most kMaxCities cities: counts of further ones are dropped.
  void add(const std::string& name, const std::string& city, int64_t at_ms, const Counts& c);

  // Figures and rule results of every SLO at `now`, and the alert transitions they cause.
  std::vector<Transition> evaluate(int64_t now);

  const std::vector<SloStatus>& status() const { return status_; }
  const std::map<std::tuple<std::string, std::string, int>, Alert>& firing() const {
    return firing_;
  }
  const std::vector<Alert>& resolved() const { return resolved_; }  // newest last, bounded
  size_t slo_count() const { return slos_.size(); }
  int64_t longest_window_ms() const;

 private:
  struct Slo {
    nlohmann::json raw;
    SloSpec spec;
    std::map<std::string, std::unique_ptr<Timeline>> cities;
  };
  std::map<std::string, Slo> slos_;
  // (section, key) -> SLO names reading it.
  std::map<std::pair<std::string, std::string>, std::vector<std::string>> index_;
  std::map<std::string, MaintenanceSpec> maintenance_;
  std::vector<SloStatus> status_;
  std::map<std::tuple<std::string, std::string, int>, Alert> firing_;
  std::vector<Alert> resolved_;
};

// The bad and total counts of one stats item (a route or service entry of a snapshot).
Counts counts_of(const nlohmann::json& item, const SloSpec& s);
// Responses at or under `threshold_s` in a histogram item {le, buckets, count}: whole buckets
// whose bound is <= threshold, plus the linear share of the bucket holding it.
double under_threshold(const nlohmann::json& latency, double threshold_s);

inline constexpr size_t kMaxResolvedKept = 200;

}  // namespace sluice::control::slo
