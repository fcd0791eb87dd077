// Stats and events: gateways' stats snapshots (POST/GET /v1/stats, kept in the StatsStore with
// its query interface) and the event log (POST/GET /v1/events). Provides EventLog to the other
// services and the StatsReader to later domains (SLOs, capacity, cost).
#pragma once

#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "control/migrations.h"
#include "control/service.h"
#include "control/stats/stats_store.h"

namespace sluice::control::stats {

std::span<const Migration> migrations(std::string_view backend);
std::unique_ptr<Service> make_service(ServiceContext& ctx);

class StatsService final : public Service, public EventLog {
 public:
  explicit StatsService(ServiceContext& ctx);
  std::string_view name() const override { return "stats"; }
  std::vector<Route> routes() override;
  void tick(int64_t now) override;
  // Writes every minute still in memory.
  void shutdown() override;

  int64_t append(const Event& e) override { return ctx_.store.append_event(e); }
  StatsReader& reader() { return stats_; }

 private:
  HttpResponse post_stats(const Call& c);
  HttpResponse get_stats(const Call& c);
  HttpResponse post_events(const Call& c);
  HttpResponse get_events(const Call& c);
  HttpResponse get_edges(const Call& c);
  HttpResponse get_channels(const Call& c);

  ServiceContext& ctx_;
  StatsStore stats_;           // its own lock
  int64_t next_prune_ms_ = 0;  // only the ticking thread reads it
  bool shut_down_ = false;     // idem (shutdown is called after the last tick)
  observability::Counter* snapshots_ = nullptr;
  observability::Counter* events_received_ = nullptr;
};

}  // namespace sluice::control::stats
