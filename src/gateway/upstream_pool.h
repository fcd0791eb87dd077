// Keep-alive connections to upstream endpoints, pooled per worker and per endpoint address.
// An idle pooled connection always has a read armed, so an upstream that closes it (or sends
// bytes nobody asked for) is noticed and the connection dropped before it could be reused.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/clock.h"
#include "gateway/event_loop.h"

namespace sluice::gateway {

class UpstreamPool;

// Who is given what an upstream connection in use reads (or its errno; n == 0 is EOF).
class UpstreamUser {
 public:
  virtual ~UpstreamUser() = default;
  virtual void on_upstream_data(int err, const char* data, size_t n) = 0;
};

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
  Stream socket_;
  std::string key_;
  UpstreamUser* user_ = nullptr;
  UpstreamPool* pool_ = nullptr;  // set while idle in a pool
  std::unique_ptr<char[]> buf_;
  uint64_t requests_ = 0;
  bool reading_ = false;
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
