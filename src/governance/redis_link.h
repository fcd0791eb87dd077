// The Redis transport of cluster quotas: one blocking hiredis connection, used by one thread.
// Connect and every pipelined round trip are bounded in time, replies in size; Lua scripts are
// loaded once per connection and called by EVALSHA. It knows nothing of leases or limits: that
// policy is in cluster_quota.{h,cc}.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/address.h"
#include "core/clock.h"

struct redisContext;  // hiredis

namespace sluice::governance {

// A reply copied out of hiredis, with the shapes the quota scripts use: an integer, a short
// string (a script's SHA, an error or status text) or a flat array of integers. Anything else,
// or anything larger, is kOther: a caller treats it as a failed call.
struct RedisReply {
  enum class Type : uint8_t { kNone, kInteger, kString, kStatus, kError, kNil, kArray, kOther };
  static constexpr size_t kMaxElements = 8;
  static constexpr size_t kMaxText = 256;

  Type type = Type::kNone;  // kNone: no reply came (the round trip failed before it)
  int64_t integer = 0;
  std::string text;  // kString, kStatus, kError (at most kMaxText bytes)
  int64_t elements[kMaxElements] = {};
  size_t count = 0;  // kArray: elements used

  bool is_error() const { return type == Type::kError; }
  bool noscript() const { return type == Type::kError && text.starts_with("NOSCRIPT"); }
  // An element of an array reply (integers, or strings holding integers); 0 when absent.
  int64_t at(size_t i) const { return i < count ? elements[i] : 0; }
};

class RedisLink {
 public:
  struct Options {
    core::HostPort address;
    std::chrono::nanoseconds timeout{std::chrono::milliseconds(20)};  // connect, each round trip
    // Bytes buffered per call of a round trip while its replies are incomplete: a peer that
    // sends more is not Redis answering our scripts, and the connection is dropped.
    size_t max_reply_bytes = 4 * 1024;
    std::vector<std::string> scripts;  // loaded on every connect; call them by index
  };
  struct Call {
    std::vector<std::string> args;
    RedisReply reply;
  };

  // `clock` stamps the start of a round trip (busy_since), the only time read by policy code;
  // the socket deadlines are real time (they bound real waits).
  RedisLink(Options o, const core::Clock& clock);
  ~RedisLink();
  RedisLink(const RedisLink&) = delete;
  RedisLink& operator=(const RedisLink&) = delete;

  bool connected() const { return ctx_ != nullptr; }               // the link's thread only
  bool up() const { return up_.load(std::memory_order_acquire); }  // any thread
  // Connects and loads the scripts unless the reconnect backoff (25 ms doubling to 1 s, with
  // jitter) has not run out. Returns connected().
  bool connect();
  // Drops the connection and starts the backoff (a failed call, or a reply the caller refuses,
  // e.g. NOSCRIPT after Redis lost its scripts: the reconnect loads them again).
  void fail();
  void disconnect();
  // Real-time steady ns until the next connect attempt may run (0 = now).
  int64_t connect_wait_ns() const;

  // Sends every call in one pipeline and reads the replies. On an I/O error, a timeout, a reply
  // over the size bound or a protocol error the connection is dropped (fail()) and false is
  // returned; replies that did come are left in calls[i].reply either way.
  bool round_trip(std::vector<Call>& calls);
  // EVALSHA of script `script` on one key; `args` follow the key.
  Call evalsha(size_t script, std::string key, std::vector<std::string> args) const;

  // Start of the round trip in progress (the injected clock's ns), 0 = none. Any thread.
  int64_t busy_since() const { return busy_since_.load(std::memory_order_relaxed); }
  uint64_t calls() const { return calls_.load(std::memory_order_relaxed); }
  uint64_t errors() const { return errors_.load(std::memory_order_relaxed); }
  uint64_t reconnects() const { return reconnects_.load(std::memory_order_relaxed); }
  void count_error() { errors_.fetch_add(1, std::memory_order_relaxed); }

 private:
  bool read_reply(void** reply, int64_t deadline_ns, size_t max_buffered);

  Options options_;
  const core::Clock& clock_;
  redisContext* ctx_ = nullptr;
  std::vector<std::string> shas_;
  bool connected_once_ = false;
  std::chrono::nanoseconds backoff_{0};
  int64_t next_connect_ns_ = 0;  // real steady ns
  std::atomic<bool> up_{false};
  std::atomic<int64_t> busy_since_{0};
  std::atomic<uint64_t> calls_{0}, errors_{0}, reconnects_{0};
};

}  // namespace sluice::governance
