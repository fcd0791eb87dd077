// Observed traffic in the stats: the `edges` (callee -> caller -> counts) and `channels`
// (channel -> counts) sections of the gateways' snapshots, checked when they arrive and summed
// over minutes and gateways into the ObservedTraffic answers (control/service.h).
//
// Semantics, exactly:
// - A snapshot's `edges` is {callee: {caller: {requests, errors}}} and `channels` is
//   {channel: {requests, errors}}; names are letters, digits, '_', '.' and '-' (1..128), counts
//   non-negative integers. Entries that are not so are dropped (the rest of the snapshot stays),
//   as are entries beyond kMaxEdgesPerSnapshot / kMaxChannelsPerSnapshot (a gateway sends at most
//   34 values per route slot: observed.h in the gateway).
// - Each kept entry is stamped `seen_ms_max` = the snapshot's time, so that a rollup keeps the
//   time of the last snapshot that counted it (merge_stats keeps the maximum of *_max keys).
// - An answer sums every (minute, gateway) rollup of the range: first_seen_ms is the start of the
//   first minute with a request, last_seen_ms the largest seen_ms_max, gateways and cities those
//   whose rollups counted one. At most kMaxObservedAnswer entries (the busiest first are not
//   chosen: the answer is cut in name order and says so with `truncated`).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/service.h"

namespace sluice::control::stats {

inline constexpr size_t kMaxEdgesPerSnapshot = 10'000;
inline constexpr size_t kMaxChannelsPerSnapshot = 1'000;
inline constexpr size_t kMaxObservedAnswer = 10'000;

// (minute start, gateway) -> that minute's rollup of the gateway's snapshots.
using MinuteRollups = std::map<std::pair<int64_t, std::string>, nlohmann::json>;

// Checks and stamps the `edges` and `channels` of a snapshot's sections in place (see above).
void stamp_observed(nlohmann::json& sections, int64_t at_ms);

// Sums of the rollups; `truncated` is set when more than kMaxObservedAnswer entries had requests.
std::vector<ObservedEdge> observed_edges(const MinuteRollups& minutes, bool* truncated = nullptr);
std::vector<ObservedChannel> observed_channels(const MinuteRollups& minutes,
                                               bool* truncated = nullptr);

}  // namespace sluice::control::stats
