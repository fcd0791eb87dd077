// Which gateways a rollout's stages put on the new version: pure selection, gateways and stages
// in, a set of gateway ids out, no I/O and no clock, so every control plane (and the same one
// after a restart) computes the same set from the same inputs.
//
// Semantics, exactly:
// - The rollout order of a change is the gateways sorted by FNV-1a 64 of (change id, NUL,
//   gateway id), ties by id: stable across processes and builds (never std::hash), different
//   per change so that the same gateways are not always first.
// - Only live candidates are picked and counted (the caller leaves out stale and exited
//   gateways); a gateway selected earlier stays selected even if it is no longer live.
// - Stages are cumulative and each one tops up: {percent: P} adds the earliest unselected live
//   gateways in rollout order until at least ceil(P x live / 100) (at least 1 when any is live)
//   are selected; {gateways: "...,count=N"} adds the earliest matching ones until at least N of
//   the matching live gateways are selected; without count, {gateways: ...} and {city: C} add
//   every matching live gateway; {all: true} selects every gateway, including any that appear
//   later (StagedPlan serves `all` to gateways it has never seen).
// - A gateway that appears after a stage was reached is not selected until a later stage picks
//   it (or `all`).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "control/rollout/plan.h"

namespace sluice::control::rollout {

struct Candidate {
  std::string id, city, zone;
  bool live = true;  // false: stale or exited; never picked, not counted
};

struct Selection {
  std::set<std::string> ids;
  bool all = false;  // an {all: true} stage was reached
};

uint64_t order_key(std::string_view change_id, std::string_view gateway_id);

// `known` sorted into the change's rollout order.
std::vector<Candidate> rollout_order(std::string_view change_id, std::vector<Candidate> known);

// What `current` becomes when `stage` is reached with the gateways `known` now.
Selection advance(Selection current, const Selector& stage, const std::vector<Candidate>& known,
                  std::string_view change_id);

// The selection after the first `reached` stages of `stages` (0: nobody), folded with advance()
// over the same `known` gateways.
Selection select(const std::vector<Stage>& stages, size_t reached,
                 const std::vector<Candidate>& known, std::string_view change_id);

}  // namespace sluice::control::rollout
