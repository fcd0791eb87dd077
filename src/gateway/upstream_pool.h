// Keep-alive connections to upstream endpoints, pooled per worker and per endpoint address.
// An idle pooled connection always has one read-readiness wait armed, so an upstream that closes
// it (or sends bytes nobody asked for) is noticed and the connection dropped before reuse.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/clock.h"

namespace sluice::gateway {

class UpstreamPool;

// Who is told when an upstream connection in use becomes readable or fails.
class UpstreamUser {
 public:
  virtual ~UpstreamUser() = default;
  virtual void on_upstream_readable() = 0;
};

class UpstreamConnection : public std::enable_shared_from_this<UpstreamConnection> {
 public:
  UpstreamConnection(asio::io_context& io, std::string key) : socket_(io), key_(std::move(key)) {}

  asio::ip::tcp::socket& socket() { return socket_; }
  const std::string& key() const { return key_; }
  bool reused() const { return requests_ > 0; }
  void count_request() { ++requests_; }

  // Arms a readiness wait unless one is armed. Calls user->on_upstream_readable() when it fires
  // while a user is attached; when idle in a pool, checks for close and leaves the pool if so.
  void arm_wait();
  bool wait_armed() const { return wait_armed_; }

  void attach(UpstreamUser* user) { user_ = user; }
  void detach() { user_ = nullptr; }
  void close();
  bool is_open() const { return socket_.is_open(); }

  core::MonoTime idle_since;
  std::chrono::nanoseconds idle_timeout{0};

 private:
  friend class UpstreamPool;
  asio::ip::tcp::socket socket_;
  std::string key_;
  UpstreamUser* user_ = nullptr;
  UpstreamPool* pool_ = nullptr;  // set while idle in a pool
  uint64_t requests_ = 0;
  bool wait_armed_ = false;
};

class UpstreamPool {
 public:
  // Takes an idle connection to `key`, most recently used first; null if none.
  std::shared_ptr<UpstreamConnection> take(const std::string& key);
  // Keeps a healthy connection for reuse, up to max_idle per key; closes it otherwise.
  void put(std::shared_ptr<UpstreamConnection> conn, size_t max_idle,
           std::chrono::nanoseconds idle_timeout, core::MonoTime now);
  // Removes a connection that was closed while idle.
  void remove(UpstreamConnection* conn);
  // Closes connections idle for longer than their service's idle timeout.
  void sweep(core::MonoTime now);
  void close_all();
  size_t idle_count() const;

 private:
  std::unordered_map<std::string, std::vector<std::shared_ptr<UpstreamConnection>>> idle_;
};

}  // namespace sluice::gateway
