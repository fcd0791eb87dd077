// SLOs and alerts: evaluates every `slo` resource (spec.h) on an interval (ApiOptions
// slo_interval_ms, control.yaml `slo.interval`, default 10 s) from what gateways report, through
// the stats domain's StatsReader, and keeps the alert states. Fired and resolved alerts are events
// (`slo_alert_fired`, `slo_alert_resolved`). GET /v1/slos[/NAME], GET /v1/alerts; Prometheus
// series sluice_control_slo_*. docs/slo.md is the contract.
//
// Where the counts come from: snapshots still in the stats store's memory (the last
// recent_stats_ms, five minutes), read incrementally each evaluation with an overlap for late
// ones and never counted twice (by gateway and at_ms); and, for an SLO that is new to this
// process (a start, an apply), its history from the stored minute rollups before that. State is
// in memory only: after a restart, figures are rebuilt from the rollups (kept stats.retention,
// 24 h by default, so longer windows see at most that) and firing alerts fire again.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "control/migrations.h"
#include "control/service.h"
#include "control/slo/evaluator.h"

namespace sluice::control::slo {

std::span<const Migration> migrations(std::string_view backend);
std::unique_ptr<Service> make_service(ServiceContext& ctx);

// Snapshots up to this late (at_ms before the previous read) are still counted.
inline constexpr int64_t kLateSnapshotMs = 30'000;

class SloService final : public Service {
 public:
  explicit SloService(ServiceContext& ctx);
  std::string_view name() const override { return "slo"; }
  std::vector<Route> routes() override;
  void tick(int64_t now) override;

  // One evaluation at `now` (tick calls it every slo_interval_ms); public for tests.
  void evaluate(int64_t now);

 private:
  HttpResponse get_slos(const Call& c);
  HttpResponse get_slo(const Call& c);
  HttpResponse get_alerts(const Call& c);

  // Under mu_.
  void reload_locked(int64_t now);
  void backfill_locked(const std::vector<std::string>& fresh, int64_t now);
  void ingest_locked(int64_t now);
  void publish_locked(const std::vector<Transition>& transitions, int64_t now);
  nlohmann::json slo_json(const SloStatus& s, bool full) const;

  ServiceContext& ctx_;
  std::mutex mu_;
  Engine engine_;
  int64_t version_ = -1;  // the config version the SLO set was read from
  int64_t last_eval_ms_ = 0;
  int64_t evaluated_ms_ = 0;  // when status was last computed (0: never)
  int64_t read_to_ms_ = 0;    // snapshots at or after read_to - kLateSnapshotMs are read next
  std::map<std::string, std::set<int64_t>> seen_;  // gateway -> at_ms of snapshots counted

  observability::Counter* evaluations_ = nullptr;
  observability::Counter* fired_ = nullptr;
  observability::Counter* resolved_ = nullptr;
  // Gauge values the evaluation sets and a scrape reads: "slo\ncity\nwindow" -> value.
  std::map<std::string, std::shared_ptr<std::atomic<double>>> values_;
  using Shared = std::shared_ptr<std::atomic<double>>;
  Shared eval_seconds_ = std::make_shared<std::atomic<double>>(0);
  Shared slo_count_ = std::make_shared<std::atomic<double>>(0);
  Shared firing_count_[2] = {std::make_shared<std::atomic<double>>(0),
                             std::make_shared<std::atomic<double>>(0)};  // page, ticket
};

}  // namespace sluice::control::slo
