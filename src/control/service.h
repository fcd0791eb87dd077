// A control-plane domain service: the routes it answers, the tables it owns (its migrations, in
// its folder, listed in domains.cc) and its own lock. The router (api.h) does what every route
// shares: matching a path to the service that owns its prefix, authentication and roles, error
// mapping (store failures 503, malformed JSON 400, anything else 500), counting responses.
// Services never share a lock: what one needs of another goes through the narrow interfaces
// below, which the owning service provides in the ServiceContext.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "control/auth.h"
#include "control/server.h"
#include "control/store.h"
#include "observability/metrics.h"

namespace sluice::control {
namespace stats {
class StatsReader;  // control/stats/stats_store.h
}
namespace cmdb {
class Cmdb;  // control/cmdb/cmdb.h
}

struct ApiOptions {
  int64_t default_wait_ms = 30'000;   // long poll without `wait`
  int64_t max_wait_ms = 300'000;      // longer waits are cut to this
  int64_t sweep_interval_ms = 1'000;  // registry TTL sweep
  // How often the store's revision is read, to learn of writes made through another control
  // plane on the same database (local writes wake waiters at once).
  int64_t revision_poll_ms = 200;
  int64_t recent_stats_ms = 5 * 60'000;  // snapshots kept in memory
  size_t max_recent_per_gateway = 1'000;
  int64_t stats_retention_ms = 24 * 3'600'000LL;       // 1-minute rollups in the store
  int64_t events_retention_ms = 7 * 24 * 3'600'000LL;  // events in the store
  int64_t prune_interval_ms = 60'000;
  // A minute's rollup is written this long after the minute ends (late snapshots still count;
  // later ones rewrite it).
  int64_t rollup_grace_ms = 2'000;
  // A gateway not heard from (poll, status, stats) for this long is reported "stale".
  int64_t gateway_stale_ms = 90'000;
  // A config write without expected_version that loses a race with another control plane on the
  // same database is redone on the new latest version, at most this many times in all, after a
  // random pause of up to min(write_backoff_ms << n, write_backoff_max_ms) before redo n. (Writes
  // through one control plane are serialised and never race each other.)
  int write_attempts = 20;
  int64_t write_backoff_ms = 2;
  int64_t write_backoff_max_ms = 100;
  // The CMDB reconciler (control/cmdb/reconcile_service.h): a pass at least this often (and on
  // every registry, config or CMDB change); how long an observation and a traffic call edge
  // stay current (control config `cmdb:`).
  int64_t cmdb_reconcile_interval_ms = 10'000;
  int64_t cmdb_window_ms = 30'000;
  int64_t cmdb_traffic_window_ms = 300'000;
  // How often SLOs are evaluated (control.yaml `slo.interval`; docs/slo.md).
  int64_t slo_interval_ms = 10'000;
};

// Work a request leaves for after its own answer is on its way: waking the long polls a write
// answers, so that a write is not answered after every watching gateway (1,000 watchers added
// ~30 ms to each write).
using Deferred = std::vector<std::function<void()>>;

// One matched request as a service sees it.
struct Call {
  const HttpRequest& req;
  std::vector<std::string> params;  // the {} segments of the route, decoded
  Principal who;                    // empty for routes without a role
  int64_t now = 0;
  Deferred* after = nullptr;
  Respond* respond = nullptr;  // for an answer given later (a parked long poll)
};

// nullopt: the service keeps `respond` and answers later.
using RouteFn = std::function<std::optional<HttpResponse>(const Call&)>;

struct Route {
  std::string_view method;                // GET also answers HEAD
  std::vector<std::string_view> pattern;  // "{}" matches one segment
  std::optional<Role> role;               // nullopt: no token needed
  RouteFn run;
};

// A route answered by a member function of its service: member_route(this, &S::get_x).
template <class S>
RouteFn member_route(S* self, HttpResponse (S::*fn)(const Call&)) {
  return [self, fn](const Call& c) -> std::optional<HttpResponse> { return (self->*fn)(c); };
}

// ------------------------------------------------------------------ between services

// What gateways watch (owned by the fleet service): the (config version, registry revision) pair.
class ConfigFeed {
 public:
  virtual ~ConfigFeed() = default;
  // A write that a gateway's config is built from was committed (a config version, a registry
  // change): read the store's revision and wake the long polls it answers, after the request's
  // own answer when `after` is given.
  virtual void changed(Deferred* after) = 0;
  virtual Revision current() const = 0;
  virtual size_t waiting() const = 0;
  // The VersionPlan's answers may have changed (its generation moved): wake the long polls whose
  // answer did, without reading the store; after the request's own answer when `after` is given.
  // The fleet also notices a moved generation on its next tick (~100 ms) by itself.
  virtual void plan_changed(Deferred* after) { changed(after); }
};

// The event log (owned by the stats service).
class EventLog {
 public:
  virtual ~EventLog() = default;
  virtual int64_t append(const Event& e) = 0;  // the event's id
};

// Gateways heard from outside the fleet's own routes (owned by the fleet service).
class GatewaySightings {
 public:
  virtual ~GatewaySightings() = default;
  // local_version, units_version: -1 = not reported.
  virtual void heard_from(const std::string& gateway, int64_t now, int64_t local_version,
                          int64_t units_version) = 0;
};

// Which config version each gateway is served. Owned by the changes service while a staged
// rollout runs (control/rollout/); without one (nullptr in the context), every gateway gets the
// latest committed version.
class VersionPlan {
 public:
  virtual ~VersionPlan() = default;
  // The config version to serve `gateway` (of `city`; either may be empty for a gateway that did
  // not say) when `latest` is the newest committed version.
  virtual int64_t version_for(const std::string& gateway, const std::string& city,
                              int64_t latest) const = 0;
  // Moves whenever an answer of version_for may have changed (a stage reached, a rollback).
  virtual int64_t generation() const = 0;
};

// Config writes as changes (owned by the changes service, control/changes/): apply, delete and
// rollback ask it before they commit. Without one (nullptr), writes commit as they are.
struct ChangeRequest {
  std::string operation;  // apply | delete | rollback
  std::string author, reason;
  bool emergency = false;
  int64_t base = 0;                                // the latest version the write was computed on
  int64_t target_version = 0;                      // rollback: the version restored
  const std::vector<Resource>* current = nullptr;  // version `base`
  const std::vector<Resource>* next = nullptr;     // what the write would commit (valid)
  const nlohmann::json* diff = nullptr;            // resource_diff(current, next), not empty
};

class ChangeGate {
 public:
  virtual ~ChangeGate() = default;
  struct Verdict {
    // Set: the write is held (proposed, waiting for approval or a freeze's end) or refused, and
    // this is the answer; nothing was committed.
    std::optional<HttpResponse> answer;
    // Otherwise: the change to record with the version, in the same transaction
    // (Store::commit_change).
    ChangeRecord change;
    ChangeTransition rolled_back;  // for a rollback: what the changes it undoes record
  };
  // Called under the writer's lock, before the commit.
  virtual Verdict review(const ChangeRequest& r, int64_t now) = 0;
  // After commit_change succeeded (metrics, logs).
  virtual void committed(const ChangeRecord& c) = 0;
};

// A gateway as the fleet knows it, as GET /v1/gateways lists it.
struct GatewayView {
  std::string id, city, zone;
  std::string status;           // as last reported: applied, refused, draining, exited, connected
  std::string error;            // with status refused: the gateway's reason
  std::string health;           // ok, behind, pending, refused, draining, exited, stale
  int64_t applied_version = 0;  // the config version last reported
  int64_t served_version = 0;   // the config version this control plane serves it now
  int64_t seen_ms = 0;
};

// The gateways known and the versions they are on (owned by the fleet service); for rollouts
// (which gateways a stage may select, `sluice ctl rollout status`). Reads the store: may throw
// StoreError.
class GatewayDirectory {
 public:
  virtual ~GatewayDirectory() = default;
  virtual std::vector<GatewayView> gateways(int64_t now) = 0;
  // Config version -> ids of the gateways whose last report is that version applied (status
  // "applied"), sorted; gateways whose last report is not an applied config (none yet, or a
  // refusal: they run an older one) under -1. Exited and stale gateways are left out.
  virtual std::map<int64_t, std::vector<std::string>> gateways_on_versions(int64_t now) = 0;
};

// Config writes made by the control plane itself (owned by the resources service): a release's
// steps. Each goes through the same path as an apply (validation, the change gate, version
// races, waking the gateways) and so becomes a version and a change record like any other.
struct ConfigEdit {
  std::string author, reason;
  bool emergency = false;  // skips the approval a change_policy asks for (a rollback to safety)
  // Builds the new set from the latest one; nullopt: nothing to write (answered 404 `missing`).
  std::function<std::optional<std::vector<Resource>>(const std::vector<Resource>&)> make_next;
  std::string missing = "nothing to change";
};

class ConfigWriter {
 public:
  virtual ~ConfigWriter() = default;
  // The answer an apply would get: 200 {version, diff, unchanged?, change?}, or the refusal
  // (400 invalid, 404 missing, a change gate's hold or refusal, 409 lost races), with nothing
  // committed. Never call it while holding a lock the resources service may wait on.
  virtual HttpResponse write(const ConfigEdit& e, Deferred* after) = 0;
};

// Observed traffic (owned by the stats service; counted by the gateways, docs/control-plane.md
// "Observed traffic"): who calls whom through the gateways (the x-sluice-caller an instance
// sends) and the channels requests come through, summed over the gateways' reports.
struct ObservedTotals {
  uint64_t requests = 0;
  uint64_t errors = 0;        // answered 5xx
  int64_t first_seen_ms = 0;  // start of the first minute with a request (minute precision)
  int64_t last_seen_ms = 0;   // the last gateway report that counted one
  std::vector<std::string> gateways, cities;  // that counted one, sorted
};
struct ObservedEdge : ObservedTotals {
  std::string caller;  // as sent ("other" and "invalid": see docs/operations.md)
  std::string callee;  // the service the route sent the request to
};
struct ObservedChannel : ObservedTotals {
  std::string channel;
};

class ObservedTraffic {
 public:
  virtual ~ObservedTraffic() = default;
  // With requests in [from_ms, to_ms) (whole minutes: from rounded down, to up), sorted by
  // caller then callee (channels by name). Throws std::invalid_argument for a range longer than
  // stats::kMaxPoints minutes or from >= to; may throw StoreError.
  virtual std::vector<ObservedEdge> edges(int64_t from_ms, int64_t to_ms) = 0;
  virtual std::vector<ObservedChannel> channels(int64_t from_ms, int64_t to_ms) = 0;
};

// Synthetic probes' states, per probe and city (owned by the probes service, control/probes/):
// what incidents open on (a probe failing in one city) and quote in their timelines. The
// transitions are also events (`probe_failing`, `probe_recovered`) in the event log.
struct ProbeState {
  std::string probe, city;
  std::string state;       // pending | ok | failing
  int64_t since_ms = 0;    // when `state` began
  int64_t last_at_ms = 0;  // the last result's time; 0 = none yet
  bool last_ok = false;
  std::string last_failure;  // the last failure's reason; empty = none kept
  int64_t last_failure_ms = 0;
};

class ProbeResults {
 public:
  virtual ~ProbeResults() = default;
  // Every (probe, city) of the latest config's probes, sorted by probe then city.
  virtual std::vector<ProbeState> probe_states() const = 0;
};

struct ServiceContext {
  Store& store;
  Auth& auth;
  const ApiOptions& options;
  std::function<int64_t()> now_ms;
  observability::Registry& metrics;
  observability::Counter* store_errors = nullptr;
  // Set by the service that provides each (in its constructor); used by the others when they
  // handle a request, never while holding their own lock. The router refuses to start if one is
  // missing.
  ConfigFeed* feed = nullptr;
  EventLog* events = nullptr;
  GatewaySightings* sightings = nullptr;
  stats::StatsReader* stats = nullptr;    // what gateways reported, for later domains
  VersionPlan* versions = nullptr;        // optional: nullptr serves the latest to every gateway
  ChangeGate* changes = nullptr;          // optional: nullptr commits every write at once
  GatewayDirectory* directory = nullptr;  // set by the fleet service
  ConfigWriter* writer = nullptr;         // resources: config writes by other services
  ObservedTraffic* observed = nullptr;    // stats: caller -> callee edges and channels
  ProbeResults* probes = nullptr;         // optional: set by the probes service
  cmdb::Cmdb* cmdb = nullptr;             // the CMDB's model and store (cmdb service)

  // Runs periodic work; a failure is counted and logged, and retried on the next tick.
  void guarded(const char* what, const std::function<void()>& fn) const;
};

class Service {
 public:
  virtual ~Service() = default;
  virtual std::string_view name() const = 0;
  // Every path prefix ("/v1/<segment>", or a top-level "/<segment>") belongs to one service.
  virtual std::vector<Route> routes() = 0;
  // Periodic work, every ~100 ms, in registration order.
  virtual void tick(int64_t now) {}
  // The process is stopping: answer what is parked, write what is buffered.
  virtual void shutdown() {}
};

}  // namespace sluice::control
