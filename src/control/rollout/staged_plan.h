// The VersionPlan of a staged rollout: which config version each gateway is served while a
// change rolls out. The driver (the changes service) writes it at each stage, rollback and end;
// the fleet reads it on every gateway-config poll, so reads take a shared lock and never block
// on each other.
//
// Semantics, exactly (version_for(gateway, city, latest)):
// - idle (no rollout; also after finish()): `latest`, for every gateway.
// - rolling out: `target` for a gateway in the selection or for everyone once an {all: true}
//   stage was reached; `base` for every other gateway, for a gateway that appeared after the
//   last stage was computed, and for a poll that names no gateway (an unreleased change must not
//   leak to an anonymous reader).
// - rolled back: `base` for everyone, until finish().
// The fleet never serves more than the newest version it knows, whatever the plan says.
// generation() moves on every write, after the new state is visible; the writer then calls
// ConfigFeed::plan_changed so the long polls whose answer changed are woken at once.
// Lock order: the plan's lock is a leaf (the fleet may hold its own lock while reading it).
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/rollout/selection.h"
#include "control/service.h"

namespace sluice::control::rollout {

inline constexpr size_t kMaxSelected = 100'000;

class StagedPlan final : public VersionPlan {
 public:
  enum class Phase { kIdle, kRollingOut, kRolledBack };
  struct State {
    Phase phase = Phase::kIdle;
    std::string change;  // the change's id (its rollout order depends on it)
    int64_t base = 0;    // the version everyone had before the change
    int64_t target = 0;  // the change's version
    size_t stage = 0;    // stages reached so far (0: none yet, only started)
    Selection selection;
  };

  StagedPlan() = default;

  // A rollout of `target` begins; nobody is selected yet (everyone stays on `base`).
  void start(std::string change, int64_t base, int64_t target);
  // `stage` stages are reached and `selection` is on the target (from rollout::advance). Ignored
  // unless rolling out.
  void reach(size_t stage, Selection selection);
  // Everyone back on base. Ignored unless rolling out.
  void rollback();
  // The rollout is over (done, or a rollback every gateway applied): back to serving the latest.
  void finish();

  State state() const;

  // {"phase", "change", "base_version", "target_version", "stage", "all", "selected"}: what the
  // driver stores, and load() takes back after a restart.
  nlohmann::json to_json() const;
  // Replaces the state with a stored one; on any problem changes nothing and says what (each
  // message names its field), so a damaged record never half-applies.
  std::vector<std::string> load(const nlohmann::json& j);

  // VersionPlan
  int64_t version_for(const std::string& gateway, const std::string& city,
                      int64_t latest) const override;
  int64_t generation() const override { return generation_.load(std::memory_order_acquire); }

 private:
  void replace(State s);

  mutable std::shared_mutex mu_;
  State state_;
  std::atomic<int64_t> generation_{0};
};

std::string_view phase_name(StagedPlan::Phase p);

}  // namespace sluice::control::rollout
