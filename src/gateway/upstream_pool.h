// Keep-alive connections to upstream endpoints, pooled per worker and per endpoint address.
// An idle pooled connection always has a read armed, so an upstream that closes it (or sends
// bytes nobody asked for) is noticed and the connection dropped before it could be reused. That
// read alone is not enough: its completion may already have been taken from the kernel and be
// waiting to run (epoll defers handlers, io_uring runs a batch in order) when a request takes the
// connection, and bytes may sit in the socket since the loop last looked. So take() checks every
// connection before handing it out (the read still pending, nothing to read) and closes it
// otherwise: a connection in an unknown state is never reused (RFC 9112 section 9.3.2).
//
// How many idle connections stay is upstream::IdleCap's decision: the recent peak of connections
// in use per endpoint (or the operator's hard cap), within the worker's share of
// limits.max_idle_upstream_bytes.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/clock.h"
#include "gateway/event_loop.h"
#include "upstream/idle_cap.h"

namespace sluice::gateway {

class UpstreamPool;
class UpstreamConnection;

// The pool's state for one endpoint address in one worker.
struct PoolEntry {
  std::vector<std::shared_ptr<UpstreamConnection>> idle;  // most recently used last
  upstream::IdleCap cap;
};

// Who is given what an upstream connection in use reads (or its errno; n == 0 is EOF).
class UpstreamUser {
 public:
  virtual ~UpstreamUser() = default;
  virtual void on_upstream_data(int err, const char* data, size_t n) = 0;
};

// Why the pool closed a connection (sluice_upstream_pool_closed_total{reason}).
enum class PoolCloseReason : uint8_t {
  kUpstreamClosed = 0,  // EOF or an error while idle
  kUnsolicited,         // bytes arrived while idle: a response nobody asked for
  kUnclean,             // found with unread bytes (or a finished read) when about to be reused
  kIdleTimeout,         // idle longer than the service's timeouts.idle
  kOverCap,             // given back beyond the endpoint's idle cap
  kOverMemory,          // given back beyond the worker's share of max_idle_upstream_bytes
  kCount
};
const char* to_string(PoolCloseReason r);

class UpstreamConnection : public std::enable_shared_from_this<UpstreamConnection> {
 public:
  static constexpr size_t kReadBufferBytes = 16 * 1024;

  UpstreamConnection(EventLoop& loop, std::string key)
      : socket_(loop), key_(std::move(key)), buf_(new char[kReadBufferBytes]) {}

  Stream& socket() { return socket_; }
  const std::string& key() const { return key_; }
  bool reused() const { return requests_ > 0; }
  void count_request() { ++requests_; }

  // Arms a read unless one is armed. What it reads goes to the attached user; while idle in a
  // pool, anything read (or EOF) makes the connection unusable: it leaves the pool and closes.
  // Cheap: a read armed on a drained socket waits for epoll with no syscall, and on io_uring is
  // one submission in the next enter.
  void read();
  bool reading() const { return reading_; }

  void attach(UpstreamUser* user) { user_ = user; }
  void detach() { user_ = nullptr; }
  void close();
  bool is_open() const { return socket_.is_open(); }

  core::MonoTime idle_since;
  std::chrono::nanoseconds idle_timeout{0};

 private:
  friend class UpstreamPool;
  // Idle and about to be reused: its read is still waiting and nothing is there to read.
  bool clean();

  Stream socket_;
  std::string key_;
  UpstreamUser* user_ = nullptr;
  UpstreamPool* pool_ = nullptr;  // set while idle in a pool
  PoolEntry* entry_ = nullptr;    // the pool's entry for key_, while counted in use
  std::unique_ptr<char[]> buf_;
  uint64_t requests_ = 0;
  bool reading_ = false;
};

class UpstreamPool {
 public:
  // The most idle connections this worker keeps over all endpoints (its memory budget).
  void set_max_idle_total(size_t n) { max_idle_total_ = n; }
  size_t max_idle_total() const { return max_idle_total_; }

  // Takes a clean idle connection to `key`, most recently used first, and counts it in use;
  // null if none. Connections found unclean are closed on the way.
  std::shared_ptr<UpstreamConnection> take(const std::string& key, core::MonoTime now);
  // A new (unconnected) connection to `key`, counted in use.
  std::shared_ptr<UpstreamConnection> create(EventLoop& loop, const std::string& key,
                                             core::MonoTime now);
  // Gives back a connection whose exchange ended cleanly: kept for reuse within the endpoint's
  // idle cap and the memory budget, closed otherwise.
  void put(std::shared_ptr<UpstreamConnection> conn, const upstream::IdleCapConfig& cap,
           std::chrono::nanoseconds idle_timeout, core::MonoTime now);
  // Gives back a connection that must not be reused: closes it.
  void discard(std::shared_ptr<UpstreamConnection> conn, core::MonoTime now);
  // Removes a connection that was closed while idle.
  void remove(UpstreamConnection* conn, PoolCloseReason why);
  // Closes connections idle for longer than their service's idle timeout.
  void sweep(core::MonoTime now);
  void close_all();
  size_t idle_count() const { return idle_total_; }

  // Read by other threads (metrics scrape).
  uint64_t closed(PoolCloseReason r) const {
    return closed_[static_cast<size_t>(r)].load(std::memory_order_relaxed);
  }

 private:
  // Counted in use: acquire now.
  void acquire(UpstreamConnection& conn, PoolEntry& e, core::MonoTime now);
  void release(UpstreamConnection& conn, core::MonoTime now);
  void count(PoolCloseReason r) {
    auto& c = closed_[static_cast<size_t>(r)];
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  // Entries are never erased (one per endpoint address ever used by this worker), so that a
  // connection can point at its own.
  std::unordered_map<std::string, PoolEntry> entries_;
  size_t idle_total_ = 0;
  size_t max_idle_total_ = SIZE_MAX;
  std::array<std::atomic<uint64_t>, static_cast<size_t>(PoolCloseReason::kCount)> closed_{};
};

}  // namespace sluice::gateway
