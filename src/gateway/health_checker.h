// Active HTTP health checks of upstream endpoints, run on one thread per gateway process (not per
// worker): each target is probed with a GET every interval + jitter, and a small threshold state
// machine (HealthState) turns pass/fail results into healthy/unhealthy changes.
#pragma once

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "config/config.h"
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

class HealthChecker {
 public:
  // Responses are judged on their status line; a peer that sends more than this without
  // completing a final response head fails the check and the connection is closed.
  static constexpr size_t kMaxResponseBytes = 64 * 1024;

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

  HealthChecker();
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Starts the checker thread; targets set before start are checked from now on. Idempotent;
  // start() after stop() resumes with the same targets and states.
  void start();
  // Cancels checks in flight and joins the thread. Idempotent; not from an on_change callback.
  void stop();

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
  void arm(const EntryPtr& e);
  void start_check(const EntryPtr& e);
  void read_more(const EntryPtr& e, uint64_t op);
  void finish(const EntryPtr& e, bool pass, std::string error);
  void schedule(const EntryPtr& e, core::Duration delay);
  void halt(const EntryPtr& e);
  void deliver_replays();

  // Declared first: entries hold sockets and timers of this context and must go before it.
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
  std::mutex control_mutex_;  // start/stop

  mutable std::mutex mutex_;  // entries_ and the Entry fields marked as guarded by it
  std::vector<EntryPtr> entries_;
  bool active_ = false;  // between start() and stop(); no check starts and no result counts else
};

}  // namespace sluice::gateway
