// Drives a committed change whose effective change_policy has rollout stages: the first stage at
// commit, the analysis after each stage's interval, the next stage on a pass, waiting on an
// inconclusive result, and an automatic rollback on a failure (every gateway back on the base
// version at once, then the base's resources committed again as a system rollback change).
// docs/changes.md ("Staged rollout") is the contract.
//
// The state lives in the store (Store::put_rollout_state, one row per change, compare-and-set on
// its sequence number), so that a restarted control plane resumes where the rollout was (same
// stage, same stage clock), and control planes sharing a database follow each other: each one
// loads the stored state into its own StagedPlan, and an advance written by one makes the
// other's write fail and reload instead of advancing twice.
//
// Only one rollout at a time: while one runs, other config writes are refused (409 naming it).
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "control/rollout/plan.h"
#include "control/rollout/staged_plan.h"
#include "control/service.h"

namespace sluice::control::changes {

inline constexpr size_t kMaxAnalysesKept = 20;
// A plan pinned for a commit that never followed (lost a race, failed) is let go after this.
inline constexpr int64_t kPreparedExpiryMs = 10'000;

class RolloutDriver {
 public:
  explicit RolloutDriver(ServiceContext& ctx);

  rollout::StagedPlan& plan() { return plan_; }

  // The change rolling out now, if any (for the 409 of a write that arrives meanwhile).
  std::optional<int64_t> rolling() const;
  // A change with stages is about to commit on `base`: every gateway stays on `base` until
  // started() names the change (the fleet must not serve the new version to anyone meanwhile).
  void prepare(int64_t base, int64_t now);
  // The change `c` (state rolling_out) committed: stage 1 is reached and stored.
  void started(const ChangeRecord& c, int64_t now);
  // At start-up, before any gateway is answered: the plan of a change rolling out is its
  // stored one (a decided rollback included: every gateway on the base), or, for a change
  // committed but never stored, every gateway pinned to the base until tick() starts stage 1.
  // Without it, polls in the moment before the first tick were served the latest: the target.
  void recover();
  // Follows the stored state and, when a stage's interval is over, analyses and acts.
  void tick(int64_t now);
  // An operator aborts the rolling change `id`: rolled back like a failed analysis. "" when done,
  // else why not (the change is not rolling out here).
  std::string abort(int64_t id, const std::string& actor, const std::string& reason, int64_t now);
  // GET /v1/changes/{id}/rollout; nullopt when the change never rolled out in stages.
  std::optional<nlohmann::json> status(int64_t id, int64_t now);

 private:
  struct Run {
    int64_t change = 0;
    int64_t seq = 0;  // of the stored state this run reflects
    int64_t base = 0, target = 0;
    std::string phase;  // rolling_out, done, rolled_back
    size_t stage = 0;   // stages reached (1-based count)
    int64_t started_ms = 0;
    int64_t stage_ms = 0;                // when the current stage was reached (or last analysed)
    int64_t inconclusive_since_ms = -1;  // -1: the last analysis was not inconclusive
    std::string reason;                  // of the end: the failed check, the abort
    nlohmann::json analyses = nlohmann::json::array();
    nlohmann::json plan;  // StagedPlan::to_json
  };

  nlohmann::json to_json(const Run& r) const;
  static std::optional<Run> from_json(int64_t change, int64_t seq, const nlohmann::json& j);
  // Loads the state stored for change `id` into the plan (and run_); false if there is none.
  bool adopt(int64_t id);
  void start_locked(const ChangeRecord& c, int64_t now);
  void drive(const ChangeRecord& c, int64_t now);
  std::vector<rollout::Candidate> candidates(int64_t now);
  // Writes run_ as it is now (seq + 1); false when another control plane moved it first (run_ is
  // reloaded on the next tick).
  bool store(int64_t now);
  // Everyone back on base, the base's resources committed again, the change rolled_back.
  void roll_back(const ChangeRecord& c, const std::string& actor, const std::string& why,
                 int64_t now);
  void finish_done(const ChangeRecord& c, int64_t now);
  void end_change(const ChangeRecord& c, std::string_view to, const std::string& actor,
                  const std::string& why, int64_t now);

  ServiceContext& ctx_;
  rollout::StagedPlan plan_;
  mutable std::mutex mu_;
  std::optional<Run> run_;
  int64_t prepared_ms_ = -1;

  observability::Counter* started_ = nullptr;
  observability::Counter* rolled_back_ = nullptr;
  observability::Counter* done_ = nullptr;
  observability::Counter* stages_ = nullptr;
  observability::Counter* analyses_ = nullptr;
};

}  // namespace sluice::control::changes
