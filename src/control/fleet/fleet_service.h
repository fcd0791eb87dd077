// The gateway fleet: the config long poll (GET /v1/gateway-config answers when the (config
// version, registry revision) pair a gateway is served moves), gateway status reports and their
// health as the control plane sees it, and /ready. It provides ConfigFeed (writes elsewhere wake
// its polls), GatewaySightings (stats snapshots count as being heard from) and GatewayDirectory
// (the gateways and their versions, for rollouts).
//
// Under a VersionPlan (a staged rollout) each gateway is served the plan's config version for it,
// never newer than the latest known, with the latest registry revision; a parked poll is woken
// exactly when that answer differs from the version it holds. Bodies are built once per (config
// version, registry revision) and shared by every poll answered with it.
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

namespace sluice::control::fleet {

std::span<const Migration> migrations(std::string_view backend);
std::unique_ptr<Service> make_service(ServiceContext& ctx);

std::string version_string(Revision r);

class FleetService final : public Service,
                           public ConfigFeed,
                           public GatewaySightings,
                           public GatewayDirectory {
 public:
  explicit FleetService(ServiceContext& ctx);
  ~FleetService() override;
  std::string_view name() const override { return "fleet"; }
  std::vector<Route> routes() override;
  void tick(int64_t now) override;
  // Answers every parked long poll with 503 and refuses new ones: the process is stopping.
  void shutdown() override;

  // ConfigFeed
  void changed(Deferred* after) override { refresh_revision(after); }
  Revision current() const override;
  size_t waiting() const override { return waiting_.load(); }
  void plan_changed(Deferred* after) override;

  // GatewaySightings
  void heard_from(const std::string& gateway, int64_t now, int64_t local_version,
                  int64_t units_version) override;

  // GatewayDirectory
  std::vector<GatewayView> gateways(int64_t now) override;
  std::map<int64_t, std::vector<std::string>> gateways_on_versions(int64_t now) override;

 private:
  struct Waiter {
    Respond respond;
    std::string after;
    Revision after_rev;  // `after` parsed (a waiter is parked only on a well-formed one)
    std::string gateway, city;
    int64_t deadline_ms = 0;
  };
  struct GatewaySeen {
    std::string city, zone;
    int64_t seen_ms = 0;
    std::string applied;  // "N.R" as last reported to this control plane
    // From the gateway's last stats snapshot ("versions"); -1 = not reported.
    int64_t local_version = -1;
    int64_t units_version = -1;
  };

  std::optional<HttpResponse> get_gateway_config(const Call& c);
  HttpResponse post_gateway_status(const Call& c);
  HttpResponse get_gateways(const Call& c);
  HttpResponse get_ready(const Call& c);

  // Learned of a (possibly) new revision: wake the long polls it answers, now or, with `after`,
  // once the request's own answer is on its way.
  // Also re-checks the waiters when the plan's generation moved.
  void update_revision(Revision r, Deferred* after);
  // Reads the store's revision, then update_revision.
  void refresh_revision(Deferred* after);
  void answer_waiters(Revision rev, std::vector<Waiter>& waiters);
  // What `gateway` (of `city`) is served when `latest` is the newest pair known.
  Revision answer_for(const std::string& gateway, const std::string& city, Revision latest) const;
  int64_t plan_generation() const;
  std::shared_ptr<const std::string> config_body(Revision r);
  void note_gateway(const std::string& id, const std::string& city, const std::string& zone,
                    int64_t now);

  ServiceContext& ctx_;

  mutable std::mutex mu_;
  Revision rev_;  // the newest revision known
  // Gateway-config answers by revision, all of the newest registry revision cached (a rollout
  // serves two config versions; more only briefly).
  std::vector<std::pair<Revision, std::shared_ptr<const std::string>>> bodies_;
  int64_t plan_generation_ = -1;  // of ctx_.versions when the waiters were last checked
  std::vector<Waiter> waiters_;
  bool shut_down_ = false;
  std::map<std::string, GatewaySeen> gateways_;  // by id, as seen by this control plane
  std::set<std::string> stored_gateways_;        // ids the store is known to have

  int64_t next_poll_ms_ = 0;  // only the ticking thread reads it
  std::atomic<size_t> waiting_{0};
  std::atomic<int64_t> config_version_{0};
  std::atomic<int64_t> registry_revision_{0};

  observability::Counter* polls_answered_ = nullptr;
  observability::Counter* polls_timed_out_ = nullptr;
};

}  // namespace sluice::control::fleet
