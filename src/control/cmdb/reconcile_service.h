// The reconciler in the control plane: an Extension of the CMDB service (cmdb_service.h) that
// records the registry's instances as observed facts, runs a pass (reconcile.h) on every registry
// or config change, on every CMDB write and every `interval`, and answers the findings, fixes,
// ignores, accuracy and impact routes under /v1/cmdb/ (docs/cmdb.md). Prometheus:
// sluice_control_cmdb_accuracy{type,measure}, sluice_control_cmdb_findings{kind},
// sluice_control_cmdb_reconciles_total.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "control/cmdb/cmdb_service.h"
#include "control/cmdb/findings.h"
#include "control/cmdb/reconcile.h"

namespace sluice::control::cmdb {

inline constexpr std::int64_t kDefaultReconcileIntervalMs = 10'000;
inline constexpr std::size_t kMaxReasonBytes = 1024;

std::unique_ptr<Extension> make_reconcile_extension(ServiceContext& ctx, Cmdb& cmdb);

class ReconcileExtension final : public Extension {
 public:
  ReconcileExtension(ServiceContext& ctx, Cmdb& cmdb);
  std::vector<Route> routes() override;
  void tick(int64_t now) override;

  // Records what the registry holds and runs one pass at `now` (the tick calls it when due).
  void run(int64_t now);

 private:
  HttpResponse get_findings(const Call& c);
  HttpResponse post_fix(const Call& c);
  HttpResponse post_ignore(const Call& c);
  HttpResponse get_accuracy(const Call& c);
  HttpResponse get_impact(const Call& c);
  void observe_registry(int64_t now);
  void observe_traffic(int64_t now);
  void publish();  // under mu_

  ServiceContext& ctx_;
  Cmdb& cmdb_;
  ReconcileOptions options_;
  std::int64_t interval_ms_ = kDefaultReconcileIntervalMs;

  // The ticking thread's own: when the next pass is due, the feed's revision it last saw.
  std::int64_t next_ms_ = 0;
  Revision seen_feed_{};

  // One pass at a time (the tick's, a fix's); taken before mu_, and held while calling the store.
  std::mutex run_mu_;
  std::int64_t seen_cmdb_ = -1;  // the CMDB's revision after the last pass's own write

  std::mutex mu_;  // below; never held while calling the store
  FindingBook book_;
  Accuracy accuracy_;
  std::shared_ptr<const Graph> graph_;  // the model the last pass read (impact queries)
  std::int64_t passes_ = 0;
  std::vector<std::string> accuracy_types_;  // types with a gauge set (reset to 1 when gone)

  observability::Counter* reconciles_ = nullptr;
  observability::Counter* fixes_ = nullptr;
};

}  // namespace sluice::control::cmdb
