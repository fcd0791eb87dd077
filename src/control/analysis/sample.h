// One side of an analysis: the traffic of a set of gateways on the routes and services a change
// (or a release) touches, summed from the gateways' stats snapshots (POST /v1/stats bodies, as
// StatsReader::recent returns them) or their minute rollups over a window.
//
// Semantics, exactly:
// - A snapshot counts when its `gateway` is in Scope::gateways (empty: every gateway). Its
//   counters are deltas since the gateway's previous snapshot, so snapshots add up.
// - Routes named in the scope are read from the snapshot's `routes` section (the client's view:
//   one count per request, `errors` = 5xx answers, including those the gateway made for
//   connection failures). Services named are read from `services` (`errors` = 5xx and
//   connection errors), except a service that is the `service` of a named route present in the
//   same snapshot: that traffic is already counted once through the route. Neither named: every
//   route of the snapshot.
// - `throttled` (429 answers) is read from the same entries when the gateway reports it;
//   Sample::throttled_reported says whether any entry summed carried it, so that a 429
//   measurement never passes on counts nobody reported.
// - Breaker opens are per service: the named services and the services of the named routes
//   (neither named: every service). An
//   entry's `breaker_opens` counter is used when present; else one open is counted for each
//   snapshot whose `breaker` state is "open" where the same gateway's previous snapshot in the
//   list (oldest first) was not, the first snapshot of a gateway included.
// - Latency histograms add up bucket by bucket while their bounds agree; different bounds make
//   the sum `mixed` (stats::Latency::add), which the p99 measurement refuses to judge.
// - Every value comes from a gateway and is not trusted: a counter that is not a non-negative
//   integer counts as 0, a histogram with more than kMaxBuckets buckets or bounds that do not
//   parse is left out, a bucket count above kMaxBucketCount is taken as that (no gateway serves
//   1e12 requests between two reports; histograms add up without saturation, and this keeps
//   their sums below 2^64 for 100,000 snapshots), and counter sums saturate instead of
//   wrapping.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/stats/stats_store.h"

namespace sluice::control::analysis {

inline constexpr size_t kMaxBuckets = 128;
inline constexpr uint64_t kMaxBucketCount = 1'000'000'000'000;

struct Sample {
  uint64_t requests = 0;
  uint64_t errors = 0;     // 5xx and connection errors
  uint64_t throttled = 0;  // 429 answers
  uint64_t breaker_opens = 0;
  stats::Latency latency;
  uint64_t snapshots = 0;           // snapshots of the scope's gateways summed
  bool throttled_reported = false;  // some entry summed reported `throttled`

  // Adds another sample (e.g. the same gateways over a longer window).
  void add(const Sample& other);
};

struct Scope {
  std::vector<std::string> gateways;  // empty: every gateway
  std::vector<std::string> routes;
  std::vector<std::string> services;
};

// `snapshots` as StatsReader::recent returns them (oldest first), which holds the last few
// minutes only.
Sample sum_snapshots(std::span<const nlohmann::json> snapshots, const Scope& scope);

// Minute rollups as StatsReader::rollups returns them (by minute, then gateway), summed the same
// way: for windows older than the snapshots kept in memory, such as the hour before a change. A
// rollup holds a minute's snapshots of one gateway added up, and its `breaker` is the minute's
// last state, so breaker opens are counted from minute to minute (an open and a close within
// one minute are missed unless gateways report `breaker_opens`).
Sample sum_rollups(std::span<const Rollup> rollups, const Scope& scope);

}  // namespace sluice::control::analysis
