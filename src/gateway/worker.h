// A worker: one thread, one event loop, its own listeners (SO_REUSEPORT), connections, upstream
// pools and load-balancer state. Nothing here is shared with other workers on the request path.
#pragma once

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "gateway/event_loop.h"
#include "gateway/snapshot.h"
#include "gateway/upstream_pool.h"
#include "observability/access_log.h"
#include "router/units.h"
#include "upstream/load_balancer.h"

namespace sluice::gateway {

class Connection;
struct GatewayShared;

// Per worker, per snapshot: the balancer and in-flight counts of each service.
struct WorkerService {
  std::vector<upstream::EndpointState> states;
  std::unique_ptr<upstream::LoadBalancer> lb;
  uint32_t active_requests = 0;
  uint32_t active_retries = 0;
};

struct WorkerServices {
  std::shared_ptr<const Snapshot> snapshot;
  std::vector<WorkerService> services;
};

class Worker {
 public:
  Worker(GatewayShared& shared, unsigned index);
  ~Worker();

  // Opens this worker's listening sockets (SO_REUSEPORT); throws std::system_error on failure.
  void open_listeners();
  void start(std::shared_ptr<const Snapshot> snapshot);
  void join();

  // Thread-safe: executed on the worker's loop.
  void apply(std::shared_ptr<const Snapshot> snapshot);
  // Thread-safe: a new unit (shard) ownership table; requests waiting on a switch re-decide.
  void apply_units(std::shared_ptr<const router::UnitTable> units);
  // Control thread, once, before begin_drain() and while the listeners are open: shuts the
  // listening sockets down (SHUT_RD) at once, so that no worker accepts another connection
  // however late its loop gets to the drain; connections still in a listener's accept queue are
  // reset by the kernel (they were never accepted).
  void stop_accepting();
  void begin_drain();
  void stop();

  size_t connection_count() const { return connection_count_.load(std::memory_order_relaxed); }
  size_t idle_upstream_count() const { return idle_upstreams_.load(std::memory_order_relaxed); }
  // Thread-safe: connections this worker's pool closed, by reason.
  uint64_t pool_closed(PoolCloseReason r) const { return pool_.closed(r); }

  // Used by connections (worker thread only).
  EventLoop& loop() { return loop_; }
  GatewayShared& shared() { return shared_; }
  unsigned index() const { return index_; }
  const std::shared_ptr<WorkerServices>& services() const { return services_; }
  UpstreamPool& pool() { return pool_; }
  char* scratch() { return scratch_.data(); }
  size_t scratch_size() const { return scratch_.size(); }
  observability::AccessLogger& access_log() { return *access_log_; }
  const std::shared_ptr<const router::UnitTable>& units() const { return units_; }
  // Per-request scratch for endpoint availability (worker thread only).
  std::vector<uint8_t>& available_scratch() { return available_; }
  // True from the moment the gateway began to drain (not only once this loop got to it).
  bool draining() const { return draining_ || shared_drain_->load(std::memory_order_relaxed); }
  core::MonoTime now() const { return now_; }
  core::MonoTime refresh_now() { return now_ = std::chrono::steady_clock::now(); }

  void link(Connection* c);
  void unlink(Connection* c);

 private:
  // A listening socket of this worker.
  struct Listener final : IoWatcher {
    Worker* worker = nullptr;
    size_t index = 0;
    int fd = -1;
    void on_io(uint32_t events) override;
  };
  // Accepts what is waiting on a listener (all of it: the socket is edge-triggered).
  void accept(Listener& l);
  void close_listeners();
  void sweep();

  GatewayShared& shared_;
  unsigned index_;
  EventLoop loop_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  bool accept_paused_ = false;  // out of file descriptors: retried by the sweep
  std::shared_ptr<WorkerServices> services_;
  std::shared_ptr<const router::UnitTable> units_;
  std::vector<uint8_t> available_;
  UpstreamPool pool_;
  std::vector<char> scratch_;
  std::unique_ptr<observability::AccessLogger> access_log_;
  Connection* connections_ = nullptr;  // intrusive list head
  std::atomic<size_t> connection_count_{0};
  std::atomic<size_t> idle_upstreams_{0};
  std::thread thread_;
  core::MonoTime now_;
  bool draining_ = false;
  const std::atomic<bool>* shared_drain_;  // GatewayShared::draining
  bool stopped_ = false;
};

}  // namespace sluice::gateway
