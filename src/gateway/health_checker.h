// Active HTTP health checks of upstream endpoints, run on one thread per gateway process (not per
// worker): each target is probed with a GET every interval + jitter, and a small threshold state
// machine (HealthState) turns pass/fail results into healthy/unhealthy changes. Time (a Clock)
// and the wire (a HealthProbe) are injected, so the scheduling is tested without sockets or sleeps.
#pragma once

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "core/clock.h"
#include "core/random.h"

namespace sluice::gateway {

// Consecutive-result thresholds of one endpoint. Pure: no I/O, no clock. Starts healthy
// (optimistic), so that a start or a reload never black-holes traffic before the first checks.
class HealthState {
 public:
  explicit HealthState(uint32_t healthy_threshold = 1, uint32_t unhealthy_threshold = 1,
                       bool healthy = true);

  // Records one check result; returns the new state when this result changed it.
  std::optional<bool> record(bool pass);
  // Thresholds may change on reload; the counters stay, and the next result is judged against
  // the new thresholds. Values below 1 are taken as 1.
  void set_thresholds(uint32_t healthy_threshold, uint32_t unhealthy_threshold);

  bool healthy() const { return healthy_; }
  uint32_t consecutive_passes() const { return passes_; }
  uint32_t consecutive_failures() const { return failures_; }

 private:
  uint32_t healthy_threshold_;
  uint32_t unhealthy_threshold_;
  uint32_t passes_ = 0;
  uint32_t failures_ = 0;
  bool healthy_;
};

// The wait before the next check: `interval` + uniform [0, jitter) (just `interval` when jitter
// is zero). The first check of a new target waits next_check_delay(0, jitter, rng).
core::Duration next_check_delay(core::Duration interval, core::Duration jitter, core::Rng& rng);

// One check on the wire: what the checker asks a probe to do. The probe opens a new connection,
// sends GET `path` with Host `host` and judges the final status line (2xx/3xx pass).
struct ProbeRequest {
  asio::ip::tcp::endpoint endpoint;
  std::string host;
  std::string path;
};

// The transport of health checks, apart from their timing: the checker decides when a check
// starts and when it has taken too long (its clock), the probe only does the I/O. Tests answer
// probes by hand.
class HealthProbe {
 public:
  // `error` says why a check failed ("connect: ...", "status 503"); empty on a pass.
  using Done = std::function<void(bool pass, std::string error)>;
  virtual ~HealthProbe() = default;
  // Called on the checker thread. `done` is called at most once, from any thread; not after
  // cancel(id) has returned when called on the probe's own thread.
  virtual void start(uint64_t id, const ProbeRequest& request, Done done) = 0;
  // Abandons probe `id` (timed out, target removed, stop): its resources go, its result is not
  // wanted. Unknown ids are ignored. Checker thread.
  virtual void cancel(uint64_t id) = 0;
};

// The production probe: asio sockets on the checker's io_context, one connection per check
// (Connection: close), so that a check also proves the endpoint still accepts connections.
class HttpHealthProbe final : public HealthProbe {
 public:
  // Responses are judged on their status line; a peer that sends more than this without
  // completing a final response head fails the check and the connection is closed.
  static constexpr size_t kMaxResponseBytes = 64 * 1024;

  explicit HttpHealthProbe(asio::io_context& io) : io_(io) {}
  ~HttpHealthProbe() override;
  void start(uint64_t id, const ProbeRequest& request, Done done) override;
  void cancel(uint64_t id) override;
  size_t in_flight() const { return probes_.size(); }

 private:
  struct Probe;
  void read_more(const std::shared_ptr<Probe>& p);
  void finish(const std::shared_ptr<Probe>& p, bool pass, std::string error);

  asio::io_context& io_;
  std::unordered_map<uint64_t, std::shared_ptr<Probe>> probes_;  // io_ thread only
};

class HealthChecker {
 public:
  static constexpr size_t kMaxResponseBytes = HttpHealthProbe::kMaxResponseBytes;

  struct Target {
    std::string service;  // for logs/metrics
    std::string address;  // "host:port" as configured; the Host header when check.host is empty
    asio::ip::tcp::endpoint endpoint;
    config::HealthCheck check;
    // Called on the checker thread when the endpoint's health changes (after the thresholds).
    // Consumers start from "healthy"; see set_targets for the one call a reload may cause. Must
    // not call stop().
    std::function<void(bool healthy)> on_change;
  };

  struct Status {
    std::string service, address;
    bool healthy = true;
    uint64_t passes = 0, failures = 0;  // totals since the target was first added
    std::string last_error;             // of the most recent failed check; empty if none yet
  };

  // Production: the steady clock and HTTP probes on the checker's own thread.
  HealthChecker();
  // Injected time and transport (tests): every decision (when a check starts, when it has timed
  // out) reads `clock`; `probe` does the I/O. Both must outlive the checker. A clock that does
  // not follow real time needs wake() after it moves.
  HealthChecker(const core::Clock& clock, HealthProbe& probe);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Starts the checker thread; targets set before start are checked from now on. Idempotent;
  // start() after stop() resumes with the same targets and states.
  void start();
  // Cancels checks in flight and joins the thread. Idempotent; not from an on_change callback.
  void stop();
  // Looks at the clock again now (starts the checks due, fails those timed out) and returns once
  // that is done; at once when not started. Only needed with a clock that is moved by hand (the
  // steady clock wakes the checker by itself). Thread-safe, but not from an on_change callback.
  void wake();

  // Thread-safe: replaces the target list. Targets with the same (service, address, check path)
  // keep their state and counters (a reload must not reset health) and take the new settings and
  // on_change; when such a kept target is unhealthy, its new on_change is called once with false
  // (on the checker thread), since a new consumer assumes healthy. New targets are first checked
  // after a random offset within their jitter.
  void set_targets(std::vector<Target> targets);

  // Thread-safe, in set_targets order; for admin /stats.
  std::vector<Status> status() const;

 private:
  struct Entry;
  using EntryPtr = std::shared_ptr<Entry>;

  // Checker thread only.
  void arm(const EntryPtr& e, core::MonoTime now);
  void tick();  // starts due checks, fails timed-out ones, sets the timer for the next of either
  void start_check(const EntryPtr& e, core::MonoTime now);
  void on_result(const EntryPtr& e, uint64_t id, bool pass, std::string error);
  void finish(const EntryPtr& e, bool pass, std::string error);
  void halt(const EntryPtr& e);
  void deliver_replays();

  const core::Clock& clock_;
  // Declared before what uses it: entries, the probe and the timer hold its sockets and timers
  // and must go first.
  asio::io_context io_;
  std::unique_ptr<HttpHealthProbe> own_probe_;  // the production transport, when not injected
  HealthProbe& probe_;
  asio::steady_timer timer_;  // the next tick (real time until the clock's next due instant)
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
  std::mutex control_mutex_;    // start/stop
  uint64_t next_probe_id_ = 0;  // checker thread

  mutable std::mutex mutex_;  // entries_ and the Entry fields marked as guarded by it
  std::vector<EntryPtr> entries_;
  bool active_ = false;  // between start() and stop(); no check starts and no result counts else
};

}  // namespace sluice::gateway
