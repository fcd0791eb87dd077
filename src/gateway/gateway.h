// The gateway process: loads and validates config, runs the workers, the admin API, reload
// (SIGHUP, POST /reload) and drain (SIGTERM, POST /drain). The main thread runs the control loop:
// signals and the admin listener; workers run the request path.
#pragma once

#include <nlohmann/json.hpp>

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config/loader.h"
#include "gateway/control_link.h"
#include "gateway/governance.h"
#include "gateway/shared.h"
#include "gateway/snapshot.h"
#include "router/units.h"

namespace sluice::gateway {

class Worker;
class AdminServer;

struct ReloadResult {
  bool ok = false;
  uint64_t version = 0;
  std::vector<std::string> errors;
};

class Gateway {
 public:
  // `local_text`: the file's text that `config` was loaded from (needed with control_plane, to
  // merge each pushed config with it). `boot`: with control_plane, what the gateway starts from.
  Gateway(std::string config_path, std::shared_ptr<const config::GatewayConfig> config,
          std::string local_text = {}, std::optional<Bootstrap> boot = std::nullopt);
  ~Gateway();

  // Binds listeners and the admin port, starts workers; then runs until drained or stopped.
  // Returns the process exit code.
  int run();

  // Control thread only. With control_plane, reload() re-reads the local file and merges it with
  // the pushed config in use; apply_pushed() merges a new pushed config with the local file as
  // last loaded. Both go through the same checks and swap.
  ReloadResult reload();
  ReloadResult apply_pushed(const PushedConfig& pushed);
  asio::io_context& io() { return io_; }
  void begin_drain(const char* why);
  bool draining() const { return draining_.load(); }
  // With control_plane: not before a config from the control plane (or its cache) is in use.
  bool ready() const {
    return started_.load() && !draining_.load() && (!control_plane_ || has_pushed_.load());
  }

  uint64_t version() const { return version_.load(); }
  // Version of the shard ownership table in use (0 = no units). Thread-safe.
  uint64_t units_version() const {
    return units_version_ ? static_cast<uint64_t>(units_version_->value()) : 0;
  }
  // The version numbers an operator meets, under the names used everywhere (/ready, /stats,
  // the stats snapshots for `sluice ctl gateways`; docs/operations.md, "Version numbers"):
  // local_version, units_version, and with a control plane config in use control_plane_version
  // ("N.R") and config_version (N). Thread-safe.
  nlohmann::json versions_json() const;
  // With control_plane: the pushed version in use ("N.R"; "" = none), and whether none arrived.
  std::string pushed_version() const;
  bool control_plane_waiting() const { return control_plane_ && !has_pushed_.load(); }
  std::shared_ptr<const Snapshot> snapshot() const;
  GatewayShared& shared() { return shared_; }
  const std::vector<std::unique_ptr<Worker>>& workers() const { return workers_; }
  std::string stats_json() const;
  // Declares the metric series of the callers and channels seen so far (observed.h), whose
  // values are only known once requests carry them; called before each /metrics answer.
  void declare_observed_metrics();
  std::string config_json() const;
  // Admin GET /units and POST /units/switch: (HTTP status, JSON body). Control thread only.
  std::pair<int, std::string> units_json() const;
  std::pair<int, std::string> switch_units(std::string_view body);
  double uptime_seconds() const;

 private:
  void watch_signals();
  void poll_drain();
  void declare_metrics();
  void schedule_tick();
  void push_units(std::shared_ptr<const router::UnitTable> table);
  ReloadResult install(config::LoadResult loaded, const std::string& what);
  // Deletes the metric series of config versions no snapshot uses any more (once a second).
  void sweep_metrics();

  std::string config_path_;
  std::string local_text_;  // the local file as last loaded
  std::shared_ptr<const config::GatewayConfig> config_;
  // With control_plane: the pushed config in use (control thread), and the link's threads.
  bool control_plane_ = false;
  std::atomic<bool> has_pushed_{false};
  std::optional<PushedConfig> pushed_;
  std::optional<Bootstrap> boot_;  // what the control-plane link starts from; dropped after
  std::unique_ptr<ControlLink> link_;
  std::shared_ptr<const Snapshot> snapshot_;
  mutable std::mutex snapshot_mu_;
  // Snapshots replaced by a reload, while requests may still use them; and the config version
  // below which every metric series has been swept.
  std::vector<std::weak_ptr<const Snapshot>> retired_;
  uint64_t swept_below_ = 0;
  GatewayShared shared_;
  asio::io_context io_;
  asio::signal_set signals_;
  asio::steady_timer drain_timer_;
  asio::steady_timer tick_timer_;  // governance housekeeping, once a second
  std::unique_ptr<Governance> governance_;
  // Shard ownership in force (control thread); every worker gets each new version.
  std::shared_ptr<const router::UnitTable> units_;
  observability::Gauge* units_version_ = nullptr;
  observability::Counter* unit_switches_ = nullptr;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<AdminServer> admin_;
  std::atomic<uint64_t> version_{1};
  std::atomic<bool> draining_{false};
  std::atomic<bool> started_{false};
  std::chrono::steady_clock::time_point drain_deadline_;
  std::chrono::steady_clock::time_point started_at_;
  observability::Counter* reload_ok_ = nullptr;
  observability::Counter* reload_failed_ = nullptr;
  observability::Gauge* config_version_ = nullptr;
  int exit_code_ = 0;
};

}  // namespace sluice::gateway
