// The judgement between a rollout's stages and a release's steps: a candidate sample (the
// changed gateways, the canary service) against one or more baselines (the unchanged gateways,
// the same gateways the hour before, the stable service), measurement by measurement, into
// pass | fail | inconclusive and what the driver does next. Pure: samples and settings in,
// figures and sentences out; time (how long a result has been inconclusive) is passed in.
//
// Semantics, exactly (n = requests of a group; min = Settings::min_requests):
// - Traffic gone: the candidate has no requests, the baseline has at least min, and the
//   traffic expected of the candidate (baseline requests * Comparison::expected_ratio; without
//   an expected ratio, the baseline's requests) is at least min. Every measurement of that
//   comparison fails ("no requests"): a change that loses a route's traffic is a regression.
// - error_ratio: inconclusive when either n < min. Else fail when the one-sided Fisher test of
//   candidate errors > baseline errors has p < alpha AND candidate ratio - baseline ratio >
//   max_error_ratio_increase; else pass.
// - p99: inconclusive when either histogram holds fewer than min observations, or the two
//   histograms' bounds differ (or either is `mixed`). Else fail when p99(candidate) -
//   p99(baseline) exceeds both max_p99_increase * p99(baseline) and max_p99_increase_ms, AND
//   p < alpha, where p is the smaller of two one-sided tests' p-values, doubled (Bonferroni):
//   Mann-Whitney over the buckets (candidate slower), and Fisher on the observations above the
//   bucket that holds the baseline's p99 (more of the candidate's there); else pass.
// - 429s: inconclusive when either n < min or a group's gateways did not report 429s. Else as
//   error_ratio with 429s and max_429_increase.
// - breaker_opens: fail when the candidate's opens exceed max_breaker_opens AND its opens per
//   request exceed the baseline's (an upstream failing under both is not the change's doing);
//   this needs no minimum traffic. Else inconclusive when the candidate's n < min; else pass.
// - Differences that predate the change (a Comparison with `before`: a staged rollout's changed
//   gateways CA and unchanged ones UA now, and the same two sets CB, UB over the history before
//   the change). Three comparisons are judged by the rules above: CA vs UA ("unchanged
//   gateways"), CA vs CB ("the hour before") and, not reported, UA vs UB (the trend). The
//   change's own share is the difference in differences D = (CA - CB) - (UA - UB), conclusive
//   when all four groups hold at least min (p99: comparable histograms; 429s: reported by all):
//   error ratio and 429 share: D "within" unless the one-sided z-test of D > 0 (proportions
//   adjusted as Price & Bonett 2004 do for a contrast of four: (x + 0.5) / (n + 1)) has p < alpha
//   AND D > the measurement's max increase; p99: D within max(max_p99_increase * p99(CB),
//   max_p99_increase_ms); breaker opens per request: D <= 0. Then, per measurement:
//   * CA vs CB failed is excused when UA vs UB failed too and D is within: the unchanged
//     gateways got as much worse over the same time;
//   * CA vs UA failed is excused when CA vs CB passed or was excused: the changed gateways are no
//     worse than before the change (or only as much worse as every gateway), so the difference
//     to the unchanged ones predates it.
//   An excused measurement is a pass with the reason in `excused` and its sentence. "No
//   requests" failures are never excused. CA vs CB inconclusive (too little history): CA vs UA
//   decides alone, as without `before`.
// - Verdict over every measurement of every comparison: fail if any fails; else inconclusive
//   if any is inconclusive (or there is nothing to compare); pass only when all pass.
// - next_step(): pass -> proceed; fail -> roll back; inconclusive -> on_inconclusive: proceed,
//   fail (roll back), or wait (analyse again next interval) until it has been inconclusive for
//   max_wait, then roll back: an analysis that never manages to measure is a failure.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/analysis/sample.h"
#include "control/analysis/settings.h"

namespace sluice::control::analysis {

enum class Status { kPass, kFail, kInconclusive };
std::string_view status_name(Status s);  // "pass", "fail", "inconclusive"

struct Measurement {
  Measure measure = Measure::kErrorRatio;
  std::string against;  // the comparison's baseline name
  Status status = Status::kInconclusive;
  double candidate = 0;  // ratio, share, p99 in seconds, or opens
  double baseline = 0;
  uint64_t candidate_n = 0;  // requests (histogram observations for p99)
  uint64_t baseline_n = 0;
  std::optional<double> p;  // the test's p-value, when a test ran
  std::string summary;      // one sentence with the figures
  std::string excused;      // non-empty: a failure that predates the change (status pass), why
};

// A staged rollout's history: the candidate's and the baseline's gateways over the same period
// before the change, so that a difference that was there before it is not blamed on it.
struct Before {
  std::string against = "the hour before";
  Sample candidate;  // the changed gateways before the change
  Sample baseline;   // the unchanged gateways over the same period
  // Candidate traffic now expected per request before it (interval / history).
  double expected_ratio = 0;
};

// One candidate against one baseline.
struct Comparison {
  std::string against;  // "unchanged gateways", "the hour before", "stable"
  Sample candidate;
  Sample baseline;
  // Candidate traffic expected per baseline request (canary weight / stable weight, or
  // changed gateways / unchanged ones); 0 = unknown. Decides when no traffic is a failure.
  double expected_ratio = 0;
  // Set: the comparison is also judged against the candidate's own history and excuses
  // differences that predate the change (above); its measurements against `before->against`
  // follow those against `against`.
  std::optional<Before> before;
};

struct Result {
  Status verdict = Status::kInconclusive;
  std::vector<Measurement> measurements;
  std::string summary;  // the verdict and the sentence of each failed or inconclusive measurement
};

Result analyze(std::span<const Comparison> comparisons, const Settings& settings);

enum class Step { kProceed, kWait, kRollBack };
std::string_view step_name(Step s);  // "proceed", "wait", "roll_back"

// What a driver does with `r`, given how long the analyses have been inconclusive in a row
// (0 for the first).
Step next_step(const Result& r, const Settings& settings, int64_t inconclusive_for_ms);

nlohmann::json to_json(const Measurement& m);
nlohmann::json to_json(const Result& r);

}  // namespace sluice::control::analysis
