// One sample-service worker: a thread's io_context, its own SO_REUSEPORT acceptor, the
// connections it accepted and its counters. Workers share only the read-mostly SharedState.
#pragma once

#include <asio.hpp>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "sample/body.h"
#include "sample/faults.h"

namespace sluice::sample {

class Connection;
class Worker;

// Set up before the workers start; only `faults` changes afterwards.
struct SharedState {
  explicit SharedState(const FaultSnapshot& initial_faults) : faults(initial_faults) {}
  // Separate from construction because the instance id may name the port bound by worker 0.
  void identify(std::string_view service, std::string_view city, std::string_view zone,
                std::string_view instance);

  BodyBuilder body{"", "", "", ""};
  std::string instance_header;  // "x-sample-instance: ...\r\n"
  Faults faults;
  std::vector<Worker*> workers;  // for /_sample/stats

  struct Stats {
    uint64_t requests = 0, health_checks = 0, connections = 0, active_connections = 0;
  };
  Stats stats() const;
};

class Worker {
 public:
  Worker(SharedState& shared, unsigned index);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Opens and binds the acceptor (SO_REUSEPORT, so every worker binds the same address).
  // Start-up only; throws std::system_error.
  void listen(const asio::ip::tcp::endpoint& endpoint);
  asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

  void start();  // spawns the accept loop; then run() on the worker thread
  void run() { ioc_.run(); }
  // Thread-safe: stops accepting and closes every connection; run() returns once they are gone.
  void request_stop();

  asio::io_context& io_context() { return ioc_; }
  SharedState& shared() { return shared_; }

  // Worker-thread only (single writer, so plain load/store instead of read-modify-write).
  // Requests other than /healthz, /_sample/stats and /_sample/faults.
  void count_request() { bump(requests_); }
  void count_health_check() { bump(health_checks_); }
  bool inject_error(double rate);  // true for a fraction `rate` of calls
  void add(Connection* c);
  void remove(Connection* c);

  uint64_t requests() const { return requests_.load(std::memory_order_relaxed); }
  uint64_t health_checks() const { return health_checks_.load(std::memory_order_relaxed); }
  uint64_t connections() const { return connections_.load(std::memory_order_relaxed); }
  uint64_t active() const { return active_.load(std::memory_order_relaxed); }

 private:
  static void bump(std::atomic<uint64_t>& a, int64_t by = 1) {
    a.store(a.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
  }
  asio::awaitable<void> accept_loop();
  void stop();

  SharedState& shared_;
  // Counters read by other workers' /_sample/stats: each on its own cache line.
  alignas(64) std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> health_checks_{0};
  alignas(64) std::atomic<uint64_t> connections_{0};
  std::atomic<uint64_t> active_{0};
  alignas(64) uint64_t rng_;
  bool stopping_ = false;
  Connection* conns_ = nullptr;  // intrusive list of live connections
  // Declared after the list: destroying the io_context may destroy connections, which unlink.
  asio::io_context ioc_{1};
  asio::ip::tcp::acceptor acceptor_{ioc_};
  asio::steady_timer accept_backoff_{ioc_};
};

}  // namespace sluice::sample
