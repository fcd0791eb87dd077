// The control plane's /v1 API (docs/control-plane.md): versioned resources, the service
// registry, the gateway config long poll, gateway reports (status, stats, events) and tokens.
// Time comes from an injected clock; periodic work (TTL sweep, long-poll timeouts, rollups,
// retention) runs in tick(), so tests drive all of it without sleeping.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/auth.h"
#include "control/server.h"
#include "control/store.h"
#include "observability/metrics.h"

namespace sluice::control {

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
};

// [{op: add|change|remove, kind, name, before?, after?}] sorted by kind, name.
nlohmann::json resource_diff(const std::vector<Resource>& before,
                             const std::vector<Resource>& after);

// Sums snapshot `x` into rollup `acc`: numbers add up (counters and histogram buckets are deltas
// since the previous snapshot), gauges keep their maximum (keys `concurrency`, `in_flight`,
// `max`, `*_max` and quantiles `p50`, `p99`, ...), lists add element-wise, other values are
// replaced.
void merge_stats(nlohmann::json& acc, const nlohmann::json& x, std::string_view key = {});

// One config write: what apply, delete and rollback have in common.
struct ConfigWrite {
  std::string author;
  std::string reason;               // required unless dry_run
  std::optional<int64_t> expected;  // expected_version: 409 unless the latest is this one
  bool dry_run = false;
  // Builds the new set from the current one; nullopt answers 404 with `missing`.
  std::function<std::optional<std::vector<Resource>>(const std::vector<Resource>&)> make_next;
  std::string missing;
};

class Api final : public Handler {
 public:
  using NowMs = std::function<int64_t()>;

  Api(Store& store, Auth& auth, ApiOptions options, NowMs now_ms);
  ~Api() override;
  Api(const Api&) = delete;
  Api& operator=(const Api&) = delete;

  void handle(HttpRequest request, Respond respond) override;

  // Where the long polls woken by a request are answered (see Wakeup): the server's thread
  // pool, so that the request's own connection is free to write its answer first. Unset (unit
  // tests): at once, before handle() returns.
  using Runner = std::function<void(std::function<void()>)>;
  void set_runner(Runner run) { runner_ = std::move(run); }

  // Periodic work, called every ~100 ms by the owner (tests call it after moving the clock).
  // Never throws: store failures are logged and retried on the next tick.
  void tick();
  // Answers every parked long poll with 503 and refuses new ones: the process is stopping.
  void shutdown();

  size_t waiting() const { return waiting_.load(); }
  // "N.R" as gateways see it now.
  std::string current_version() const;
  observability::Registry& metrics() { return metrics_; }

 private:
  struct Route;
  struct Call;
  struct Waiter {
    Respond respond;
    std::string after;
    int64_t deadline_ms = 0;
  };
  // Long polls woken by a request (a write, a registration): handle() has them answered after
  // the request's own answer is on its way, so that a write is not answered after every watching
  // gateway (1,000 watchers added ~30 ms to each write).
  struct Wakeup {
    Revision rev;
    std::vector<Waiter> waiters;
  };
  using Wakeups = std::vector<Wakeup>;
  struct GatewaySeen {
    std::string city, zone;
    int64_t seen_ms = 0;
    std::string applied;  // "N.R" as last reported to this control plane
    // From the gateway's last stats snapshot ("versions"); -1 = not reported.
    int64_t local_version = -1;
    int64_t units_version = -1;
  };
  struct Snapshot {
    int64_t at_ms = 0;
    nlohmann::json data;
  };
  struct Accumulator {
    nlohmann::json data = nlohmann::json::object();
    bool dirty = false;
  };

  std::optional<HttpResponse> dispatch(const HttpRequest& req, Respond& respond, Wakeups& wakeups);

  // Handlers (one per route). `who` is the caller (empty for unauthenticated routes).
  HttpResponse get_resources(const Call& c);
  HttpResponse get_resource(const Call& c);
  HttpResponse post_apply(const Call& c);
  HttpResponse delete_resource(const Call& c);
  HttpResponse get_versions(const Call& c);
  HttpResponse get_version(const Call& c);
  HttpResponse post_rollback(const Call& c);
  HttpResponse post_instance(const Call& c);
  HttpResponse put_heartbeat(const Call& c);
  HttpResponse delete_instance(const Call& c);
  HttpResponse get_instances(const Call& c);
  std::optional<HttpResponse> get_gateway_config(const Call& c, Respond& respond);
  HttpResponse post_gateway_status(const Call& c);
  HttpResponse get_gateways(const Call& c);
  HttpResponse post_stats(const Call& c);
  HttpResponse get_stats(const Call& c);
  HttpResponse post_events(const Call& c);
  HttpResponse get_events(const Call& c);
  HttpResponse get_tokens(const Call& c);
  HttpResponse post_token(const Call& c);
  HttpResponse delete_token(const Call& c);
  HttpResponse get_ready(const Call& c);

  // Commits a new resource set (shared by apply, delete and rollback): validates, diffs, honours
  // dry_run and expected_version, retries lost races when no version was expected.
  HttpResponse write_config(const Call& c, const ConfigWrite& w);

  // Learned of a (possibly) new revision: wake the long polls it answers, now or, with `defer`,
  // by handing them to the caller (see Wakeup).
  void update_revision(Revision r, Wakeups* defer = nullptr);
  // Reads the store's revision, then update_revision.
  void refresh_revision(Wakeups* defer = nullptr);
  void answer_waiters(Revision rev, std::vector<Waiter>& waiters);
  std::shared_ptr<const std::string> config_body(Revision r);
  void note_gateway(const std::string& id, const std::string& city, const std::string& zone,
                    int64_t now);

  void sweep(int64_t now);
  void flush_rollups(int64_t now, bool all);
  void prune(int64_t now);

  Store& store_;
  Auth& auth_;
  ApiOptions options_;
  NowMs now_ms_;
  Runner runner_;
  observability::Registry metrics_;

  // Config writes through this control plane, one at a time: read, validate, commit. Held while
  // the store is asked, never while mu_ is.
  std::mutex write_mu_;

  mutable std::mutex mu_;
  Revision rev_;                             // the newest revision known
  std::shared_ptr<const std::string> body_;  // gateway-config answer for body_rev_
  Revision body_rev_{-1, -1};
  std::vector<Waiter> waiters_;
  bool shut_down_ = false;
  std::map<std::string, GatewaySeen> gateways_;         // by id, as seen by this control plane
  std::set<std::string> stored_gateways_;               // ids the store is known to have
  std::map<std::string, std::deque<Snapshot>> recent_;  // by gateway
  std::map<std::pair<int64_t, std::string>, Accumulator> minutes_;  // (minute, gateway)

  int64_t next_sweep_ms_ = 0;
  int64_t next_poll_ms_ = 0;
  int64_t next_prune_ms_ = 0;

  std::atomic<size_t> waiting_{0};
  std::atomic<int64_t> config_version_{0};
  std::atomic<int64_t> registry_revision_{0};

  // Metrics, declared here with the component that owns them.
  observability::Counter* responses_[5] = {};  // by status class 1xx..5xx
  observability::Counter* versions_written_ = nullptr;
  observability::Counter* apply_rejected_ = nullptr;
  observability::Counter* conflicts_ = nullptr;
  observability::Counter* write_redos_ = nullptr;
  observability::Counter* heartbeats_ = nullptr;
  observability::Counter* instances_expired_ = nullptr;
  observability::Counter* polls_answered_ = nullptr;
  observability::Counter* polls_timed_out_ = nullptr;
  observability::Counter* snapshots_ = nullptr;
  observability::Counter* events_received_ = nullptr;
  observability::Counter* store_errors_ = nullptr;
};

}  // namespace sluice::control
