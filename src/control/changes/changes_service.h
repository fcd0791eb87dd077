// Changes: every config write through the control plane (apply, delete, rollback) as a change
// record with its diff, what it affects, and an append-only history of states, approvals and
// reviews. Writes that a change_policy governs are held (proposed) until enough approvals arrive
// and no freeze window forbids them; the rest commit at once, recorded as done. Also the DORA
// figures of the records (GET /v1/changes/metrics and /metrics). docs/changes.md is the contract.
#pragma once

#include <memory>
#include <mutex>
#include <span>
#include <string_view>
#include <vector>

#include "control/changes/dora.h"
#include "control/changes/rollout_driver.h"
#include "control/migrations.h"
#include "control/service.h"

namespace sluice::control::changes {

std::span<const Migration> migrations(std::string_view backend);
std::unique_ptr<Service> make_service(ServiceContext& ctx);

class ChangesService final : public Service, public ChangeGate {
 public:
  explicit ChangesService(ServiceContext& ctx);
  std::string_view name() const override { return "changes"; }
  std::vector<Route> routes() override;
  // Commits approved changes that waited for a freeze window to end.
  void tick(int64_t now) override;

  Verdict review(const ChangeRequest& r, int64_t now) override;
  void committed(const ChangeRecord& c) override;

 private:
  HttpResponse get_changes(const Call& c);
  HttpResponse get_change(const Call& c);
  HttpResponse get_metrics(const Call& c);
  HttpResponse post_approve(const Call& c);
  HttpResponse post_reject(const Call& c);
  HttpResponse post_abort(const Call& c);
  HttpResponse post_review(const Call& c);
  HttpResponse get_rollout(const Call& c);
  // The 409 of a write that arrives while change `rolling` rolls out.
  HttpResponse busy(int64_t rolling) const;

  // Commits a change whose approvals are complete, on the latest config: `u` (the approval and
  // transitions that led here) is recorded with it. Waits (records `u`, answers 202) in a freeze
  // its policy says to wait for; refuses (records nothing, 409) in one it says to refuse; rejects
  // it as stale (409) when a resource it touches changed since it was proposed.
  HttpResponse commit_held(ChangeRecord ch, const std::string& expected_state, ChangeUpdate u,
                           const std::string& actor, int64_t now, Deferred* after);
  const Figures& cached_figures(int64_t now);

  ServiceContext& ctx_;
  RolloutDriver driver_;
  int64_t last_drive_ms_ = 0;
  // Approvals, rejections, aborts, reviews and the tick's commits, one at a time.
  std::mutex mu_;
  int64_t last_sweep_ms_ = 0;

  std::mutex figures_mu_;
  Figures figures_;
  int64_t figures_at_ms_ = -1;

  observability::Counter* proposed_ = nullptr;
  observability::Counter* committed_ = nullptr;
  observability::Counter* emergency_ = nullptr;
};

}  // namespace sluice::control::changes
