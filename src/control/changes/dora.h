// The DORA figures and the assessment's change figures, computed from change records over a
// window [from_ms, to_ms). Semantics, exactly (docs/changes.md, "Figures"):
// - deployments: changes that reached `done` in the window; frequency = deployments / days.
// - lead time: proposed -> done of those deployments; p50 and p90 by nearest rank.
// - failed: of the deployments, those rolled back since; plus changes aborted in the window after
//   they were approved (incidents do not exist yet). failure rate = failed / (deployments +
//   aborted after approval); 0 when there is nothing to divide.
// - time to restore: for each failed deployment, done -> rolled_back; p50 and p90.
// - rollback failure rate: the same failure rate over rollback changes only.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/store.h"

namespace sluice::control::changes {

struct Figures {
  int64_t from_ms = 0, to_ms = 0;
  int64_t deployments = 0;
  double per_day = 0;
  std::optional<double> lead_p50_s, lead_p90_s;
  int64_t failed = 0;
  int64_t attempts = 0;  // deployments + aborted after approval
  double failure_rate = 0;
  std::optional<double> restore_p50_s, restore_p90_s;
  int64_t rollbacks = 0, failed_rollbacks = 0;
  double rollback_failure_rate = 0;
  int64_t emergency = 0;       // deployments that skipped approval
  int64_t review_pending = 0;  // of those, not reviewed yet
  nlohmann::json to_json() const;
};

// `changes`: with their transitions (those without a transition in the window do not count).
Figures figures(const std::vector<ChangeRecord>& changes, int64_t from_ms, int64_t to_ms);

// Nearest-rank percentile (q in (0, 1]) of unsorted values; nullopt when empty.
std::optional<double> percentile(std::vector<double> values, double q);

}  // namespace sluice::control::changes
