// A gateway's link to its control plane (`control_plane:` in the gateway file): it watches the
// gateway's config with long polls, hands each new version to the gateway's reload path, keeps the
// last applied one in cache_dir, and reports back which version it applied or why it refused it,
// stats snapshots (deltas) and events (breaker, ejection, health, failover). Two threads of its
// own; nothing here is on the request path, and a control plane that is slow or gone only delays
// what the link sends. Time (a Clock), the wire (a ControlTransport) and the gateway (a LinkHost)
// are injected, so the link's state machine is tested without sockets or sleeps. See
// docs/control-plane.md, "Gateway side".
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "config/config.h"
#include "core/clock.h"
#include "net/http_client.h"

namespace sluice::gateway {

class Gateway;
struct ReloadResult;
struct Snapshot;

// The sections a control plane pushed, as JSON (`config` of GET /v1/gateway-config).
struct PushedConfig {
  std::string version;  // "N.R"
  std::string json;
};

// What a gateway with control_plane starts from: the control plane's current config (one poll
// that does not wait), else the cached one, else nothing (the gateway then starts with no routes
// and is not ready until a config arrives).
struct Bootstrap {
  std::optional<PushedConfig> pushed;
  std::string source;                                   // "control plane URL" | "cache FILE" | ""
  std::shared_ptr<const config::GatewayConfig> config;  // local file + pushed sections
  // A config that was fetched but refused (the cached one, if any, is used instead).
  std::optional<PushedConfig> refused;
  std::vector<std::string> refused_errors;
};
Bootstrap bootstrap_from_control_plane(const std::string& local_path, const std::string& local_text,
                                       std::shared_ptr<const config::GatewayConfig> local);

// cache_dir/config.json: {"version", "saved_ms", "config"}; written atomically.
std::string cache_file(const config::ControlPlane& cp);
std::optional<PushedConfig> read_cache(const config::ControlPlane& cp, std::string* error);
bool write_cache(const config::ControlPlane& cp, const PushedConfig& pushed, std::string* error);

// The wire to the control plane: one HTTP call (status 0 = no answer, see error). Called from
// the link's threads, possibly two at once; `options.canceller` aborts a call in progress.
class ControlTransport {
 public:
  virtual ~ControlTransport() = default;
  virtual net::HttpReply call(const std::string& token, const std::string& method,
                              const std::string& path, const std::string* body,
                              const net::HttpOptions& options) = 0;
};

// The production transport: net::http_call to one server.
class HttpControlTransport final : public ControlTransport {
 public:
  explicit HttpControlTransport(net::ServerUrl server) : server_(std::move(server)) {}
  net::HttpReply call(const std::string& token, const std::string& method, const std::string& path,
                      const std::string* body, const net::HttpOptions& options) override;

 private:
  net::ServerUrl server_;
};

// What the link needs of its gateway. Thread-safe: called from the link's threads.
class LinkHost {
 public:
  using Applied = std::function<void(ReloadResult)>;
  virtual ~LinkHost() = default;
  // Applies a pushed config through the reload path and calls `done` with the verdict, on any
  // thread, possibly after the link stopped waiting for it.
  virtual void apply_pushed(PushedConfig pushed, Applied done) = 0;
  virtual std::shared_ptr<const Snapshot> snapshot() const = 0;  // null before the first config
  virtual nlohmann::json versions_json() const = 0;
  virtual size_t connection_count() const = 0;  // client connections open, all workers
};

class ControlLink {
 public:
  // Production: the gateway, HTTP to control_plane.address and the steady clock.
  ControlLink(Gateway& gateway, const config::GatewayConfig& config);
  // Injected (tests): all three must outlive the link. A clock that does not follow real time
  // needs wake() after it moves.
  ControlLink(LinkHost& host, const config::GatewayConfig& config, ControlTransport& transport,
              const core::Clock& clock);
  ~ControlLink();
  ControlLink(const ControlLink&) = delete;
  ControlLink& operator=(const ControlLink&) = delete;

  // `applied`: the pushed version in use at start ("" = none). `refused`: a version refused at
  // start, to report.
  void start(const std::string& applied, const std::optional<PushedConfig>& refused,
             const std::vector<std::string>& refused_errors);
  // Aborts a parked poll, joins the threads, then tells the control plane the gateway exited
  // (one status report, bounded to about a second: a control plane that is down never holds up
  // the exit by more than that).
  void stop();

  // Thread-safe: the gateway began to drain. Reported at once (by the reporter thread) as status
  // `draining`; later status reports say `draining` too, so a config applied while draining does
  // not make the gateway look healthy.
  void draining();

  // Thread-safe: an event to send with the next report.
  void add_event(std::string kind, std::string subject, std::string detail_json);

  // For admin /stats: the link's state as JSON.
  std::string state_json() const;

  // Thread-safe: look at the clock again now (waits that are due end). Only needed with a clock
  // that is moved by hand.
  void wake();
  // When the watcher polls again after a problem (its backoff, on the link's clock); nullopt
  // while it is not waiting to retry.
  std::optional<core::MonoTime> retry_at() const;

 private:
  struct Status {
    std::string version;
    bool applied = false;
    std::string error;
  };
  void watch_loop();
  void report_loop();
  bool send_status(const Status& s, const std::string& token, net::CallCanceller* canceller,
                   std::string* error);
  net::HttpReply call(const std::string& token, const std::string& method, const std::string& path,
                      const std::string* body, const net::HttpOptions& options);
  void contact();  // the control plane answered: clear the error, note the time
  void scan_events();
  std::string stats_snapshot();
  std::string applied_version() const;
  // Waits until `deadline` on the link's clock, or until stopping (false) or `until` holds
  // (checked under mu_). `retry`: a watcher backoff, shown by retry_at().
  bool sleep_until(core::MonoTime deadline, bool retry, const std::function<bool()>& until = {});
  // The status word to report for a config status: `draining` once the gateway drains.
  std::string status_word(bool applied) const;
  void report_exit();

  // Production wiring, when not injected.
  std::unique_ptr<LinkHost> own_host_;
  std::unique_ptr<ControlTransport> own_transport_;
  LinkHost& host_;
  ControlTransport& transport_;
  const core::Clock& clock_;
  config::ControlPlane cfg_;
  config::Node node_;
  std::string token_;
  net::CallCanceller watch_cancel_;
  net::CallCanceller report_cancel_;
  std::thread watcher_;
  std::thread reporter_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::string seen_;     // last version received (applied or refused)
  std::string applied_;  // last version applied
  std::optional<Status> unsent_status_;
  std::string last_error_;  // last problem talking to the control plane ("" = fine)
  // Lifecycle: running -> draining -> exited, reported to the control plane as it changes.
  bool draining_ = false;
  bool draining_unsent_ = false;
  bool exit_reported_ = false;
  int64_t last_contact_ms_ = 0;
  std::optional<core::MonoTime> retry_at_;
  uint64_t polls_ = 0, applied_count_ = 0, refused_count_ = 0, poll_errors_ = 0;
  std::vector<std::string> events_;  // JSON objects waiting to be sent

  // Reporter thread only: previous counter values (for deltas) and state (for events).
  std::map<std::string, uint64_t> prev_;
  std::map<std::string, int> state_;
};

}  // namespace sluice::gateway
