// Freeze windows: periods, in a time zone, when changes under a policy that does not allow them
// wait or are refused. A `freeze_window` resource's spec (docs/changes.md, "Freeze windows"):
//   time_zone: Asia/Shanghai                  # IANA name, required
//   reason: month-end batch                   # optional, quoted in refusals
//   once:      [{start: "2026-12-31T18:00", end: "2027-01-02T06:00"}]        # local date-times
//   recurring: [{every: month, day: last, start: "18:00", end: "06:00"},      # next day 06:00
//               {every: week, day: fri, start: "18:00", end: "06:00", days: 3},  # to Monday
//               {every: day, start: "22:00", end: "23:00"}]
//
// Semantics, exactly:
// - A window covers [start, end): a change at exactly `end` is outside it.
// - Recurring: an occurrence starts on each matching local date (month: `day` 1..31 or `last`;
//   a month without that day has none; week: mon..sun; day: every date) at `start` and ends
//   `days` local dates later at `end`. `days` defaults to 0 when end > start, else 1.
// - Local times are converted in the window's zone with ICU: a time that does not exist (the hour
//   skipped when clocks go forward) means the first instant after the gap; a time that occurs
//   twice (clocks go back) means the first of the two, so a freeze starts early, never late.
// - Windows that overlap or touch chain: a frozen change waits until no window covers the time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/store.h"

namespace sluice::control::changes {

// What is wrong with a freeze_window spec, each message starting with `prefix`; empty if valid.
std::vector<std::string> check_freeze_window(const nlohmann::json& spec, const std::string& prefix);

// The occurrences of one window (a checked spec) that cover `now_ms`: the latest end, if any.
std::optional<int64_t> covering_end(const nlohmann::json& spec, int64_t now_ms);

struct Freeze {
  std::string window;       // the name of the window that covers now and ends last
  std::string reason;       // its spec's reason, may be empty
  int64_t until_ms = 0;     // when no window covers the time any more (chained)
  std::string until_local;  // "2026-12-01 06:00 Asia/Shanghai" in that window's zone
};

// Whether the freeze_window resources of `config` cover `now_ms` (other kinds are skipped).
std::optional<Freeze> frozen_at(const std::vector<Resource>& config, int64_t now_ms);

// "YYYY-MM-DD HH:MM" of `ms` in `time_zone` (a checked IANA name).
std::string local_time(int64_t ms, const std::string& time_zone);

}  // namespace sluice::control::changes
