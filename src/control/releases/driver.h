// The stepping of one release, as a pure state machine: its persisted state, what is due at
// `now`, and what an analysis verdict leads to. The releases service does the I/O (reading
// stats, writing config versions, storing the state); this file decides. Time is passed in.
//
// Semantics, exactly:
// - pending: the first step is due at once (the route goes to steps[0] percent).
// - stepping at percent p (a step below 100): an analysis is due when now >= next_analysis_ms
//   (the step's start + interval, then every interval). It compares the canary's share of the
//   route with the stable's over [window_from_ms, now), window_from_ms being the step's start.
//   pass -> the next step (100: promoted, the route on the canary alone); fail -> 0% at once,
//   rolled_back, the failed checks named; inconclusive -> analysis::next_step with the time
//   inconclusive in a row: proceed, roll back, or wait (the window keeps growing from the
//   step's start, bounded by what the stats keep).
// - A write that did not commit leaves the state as it was; the step is tried again at
//   retry_at_ms (a rollback, which is remembered in the state, sooner). paused: nothing is due
//   until resumed; resuming starts the step's window afresh.
// - promoted, rolled_back, aborted are final. A spec applied again that differs from the one a
//   final release ran with starts a new release (pending).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/analysis/analysis.h"
#include "control/releases/spec.h"

namespace sluice::control::releases {

inline constexpr std::string_view kPending = "pending";
inline constexpr std::string_view kStepping = "stepping";
inline constexpr std::string_view kPaused = "paused";
inline constexpr std::string_view kPromoted = "promoted";
inline constexpr std::string_view kRolledBack = "rolled_back";
inline constexpr std::string_view kAborted = "aborted";
inline constexpr size_t kMaxAnalysesKept = 50;

struct ReleaseState {
  std::string state = std::string(kPending);
  int step = -1;         // index into the spec's steps of the weights in force; -1 before any
  uint32_t percent = 0;  // the canary's weight in force
  int64_t started_ms = 0, step_started_ms = 0, window_from_ms = 0, next_analysis_ms = 0;
  int64_t inconclusive_since_ms = -1;  // -1: the last analysis was not inconclusive
  int64_t updated_ms = 0, retry_at_ms = 0;
  std::string reason;               // why it is where it is (final states, pause)
  std::vector<std::string> failed;  // the checks that failed ("p99 vs stable")
  std::string last_error;           // the last write that did not commit
  // A rollback decided but not committed yet (its write was refused): retried until it is.
  std::string rollback_reason;
  bool rollback_abort = false;
  nlohmann::json spec;                   // the spec it runs with
  std::vector<nlohmann::json> analyses;  // newest last, at most kMaxAnalysesKept

  bool is_final() const;
  nlohmann::json to_json() const;
  static ReleaseState from_json(const nlohmann::json& j);  // tolerant: missing keys default
};

// What the driver wants written next.
struct Move {
  enum class Kind { kNone, kAnalyze, kStep, kRollBack } kind = Kind::kNone;
  uint32_t percent = 0;  // kStep: the new canary weight
  std::string reason;    // kRollBack: why (the failed checks, an operator's abort)
  bool abort = false;    // kRollBack: asked by an operator (aborted, not rolled_back)
};

// What is due now (kAnalyze: call analyze_release, then after_analysis).
Move due(const ReleaseState& s, const ReleaseSpec& spec, int64_t now);

// The canary's and the stable's traffic on the release's route in `snapshots` (as
// StatsReader::recent returns them), compared; expected_ratio from `percent`.
analysis::Comparison compare(std::span<const nlohmann::json> snapshots, const ReleaseSpec& spec,
                             uint32_t percent);

// Records `r` in `s` and says what follows: kStep to the next percent, kRollBack, or kNone
// (wait).
Move after_analysis(ReleaseState& s, const ReleaseSpec& spec, const analysis::Result& r,
                    int64_t now);

// Remembers a rollback (failed analysis, an operator's abort) until its write commits.
Move begin_rollback(ReleaseState& s, std::string reason, bool abort, int64_t now);

// The state once a write of `m` committed (kStep, kRollBack), or once it did not (`error`).
void committed(ReleaseState& s, const ReleaseSpec& spec, const Move& m, int64_t now);
void write_failed(ReleaseState& s, const Move& m, const std::string& error, int64_t now);

}  // namespace sluice::control::releases
