// Cluster-scope rate limits: one limit shared by every gateway, kept in Redis. Gateways lease
// quota in batches (QuotaClient's thread talks to Redis; workers only touch local leases), so a
// request never waits on Redis. Scheme and error bound: docs/cluster-limits.md. The policy (lease
// sizing, demand, local admission, expiry, and the fair-share scripts Redis runs) is here; the
// connection to Redis (timeouts, reconnects, script loading, bounded replies) is RedisLink.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "core/address.h"
#include "core/clock.h"
#include "governance/decision.h"

namespace sluice::governance {

class ClusterLimiter;
class RedisLink;

// One per gateway process: owns the Redis connection and the thread that refills and returns
// leases, keeps this gateway's heartbeat and counts the live gateways. Should outlive the
// ClusterLimiters built on it; a limiter left behind answers kUnavailable and can be destroyed
// safely (its leases are then lost), but must no longer be in use when the client goes.
class QuotaClient {
 public:
  struct Options {
    core::HostPort address;
    std::chrono::nanoseconds timeout{std::chrono::milliseconds(20)};  // per Redis call
    std::string key_prefix = "sluice:";
    std::string node_id;         // heartbeat identity; a random suffix makes it unique per process
    uint32_t gateways_hint = 0;  // > 0: the number of gateways, discovery is not used
    std::chrono::nanoseconds heartbeat_interval{std::chrono::seconds(1)};  // TTL: 3 intervals
    std::chrono::nanoseconds lease_idle{std::chrono::milliseconds(500)};   // unused tokens go back
    // The client thread's time (expiry, waits Redis names, the demand average, stalled round
    // trips); must be the clock whose `now` callers pass to acquire(). nullptr: the steady clock.
    const core::Clock* clock = nullptr;
    // Tests only: the scripts take `now` from `clock` instead of Redis TIME, so that a manual
    // clock drives the buckets, windows and fair shares too. Gateways leave it off: then
    // gateway clocks do not matter.
    bool scripts_use_clock = false;
  };

  explicit QuotaClient(Options o);
  ~QuotaClient();  // stops the thread
  QuotaClient(const QuotaClient&) = delete;
  QuotaClient& operator=(const QuotaClient&) = delete;

  void start();
  // Returns the leases still held and leaves the heartbeat set (best effort), then joins.
  void stop();

  bool healthy() const;       // Redis answered the last call within the timeout
  uint32_t gateways() const;  // live gateways sharing limits, >= 1
  const Options& options() const { return options_; }

  struct Stats {
    uint64_t calls;       // Redis commands sent
    uint64_t errors;      // round trips that failed (timeout, connection lost, error reply)
    uint64_t reconnects;  // connections made after the first one
    bool healthy;
    uint32_t gateways;
  };
  Stats stats() const;

 private:
  friend class ClusterLimiter;

  // A worker's request to the client thread. Refill: lease more tokens for the key in `slot`.
  // Return: give `count` tokens of a key that left the table back to Redis.
  struct Op {
    enum class Kind : uint8_t { kRefill, kReturn };
    Kind kind = Kind::kRefill;
    uint32_t slot = 0;
    uint32_t limit_index = 0;
    uint32_t count = 0;
    uint64_t limiter_id = 0;
    uint64_t tag = 0;
    int64_t window = 0;  // sliding window: the window the returned tokens were counted in
  };
  // A bounded multi-producer queue (Vyukov); a full queue refuses, the caller retries later.
  struct OpQueue;
  struct Script;
  struct PendingCall;
  // Tokens of a limiter that was destroyed; sent by the thread.
  struct FinalReturn {
    std::string key;
    bool sliding = false;
    uint64_t requests = 0, burst = 0;
    int64_t per_us = 0;
    uint32_t count = 0;
    int64_t window = 0;
  };

  bool usable(int64_t now_ns) const;
  bool submit(const Op& op);
  uint64_t attach(ClusterLimiter* limiter);
  void detach(uint64_t id);  // after it returns, the thread no longer touches the limiter
  void give_back(std::vector<FinalReturn> returns);

  int64_t now_ns() const { return clock_->now().time_since_epoch().count(); }
  std::string script_now() const;  // the scripts' `now` argument ("0": Redis TIME)
  std::vector<std::string> return_args(bool sliding, uint64_t requests, uint64_t burst,
                                       int64_t per_us, uint32_t count, int64_t window) const;

  void run();
  bool connect();
  void heartbeat(int64_t now_ns);
  void leave();
  void process(std::vector<Op>& ops, int64_t now_ns);
  void return_idle(int64_t now_ns, bool all);
  void send_final_returns();
  void discard(std::vector<Op>& ops);
  uint32_t current_gateways() const;
  int64_t demand_hold_us() const;

  Options options_;
  const core::Clock* clock_;
  std::string member_;  // node_id + random suffix
  std::string gateways_key_;
  std::unique_ptr<OpQueue> queue_;
  std::unique_ptr<RedisLink> link_;  // used by the thread; its counters and busy_since by any

  std::atomic<bool> running_{false};
  std::atomic<bool> healthy_{false};
  std::atomic<uint32_t> discovered_{1};

  // Wake-up of the thread: workers notify only when it sleeps, so a refill costs no syscall
  // while the thread is busy.
  std::mutex wake_mu_;
  std::condition_variable wake_cv_;
  std::atomic<bool> sleeping_{false};

  // Held by the thread while it touches limiters, and by attach/detach; never by a worker.
  std::mutex limiters_mu_;
  std::unordered_map<uint64_t, ClusterLimiter*> limiters_;
  uint64_t next_limiter_id_ = 1;
  std::vector<FinalReturn> final_returns_;

  // Thread-only state.
  int64_t next_heartbeat_ns_ = 0;
  int64_t next_idle_scan_ns_ = 0;
  std::thread thread_;
};

// The per-rule view of a cluster limit: a bounded table (max_keys) of local leases, one per key.
// acquire() takes a token from the key's lease (one atomic op) and asks the client thread for
// more when the lease runs low; it never waits for Redis. kUnavailable tells the caller to decide
// with its local share (or `allow`/`deny`, per redis.on_error): Redis is unhealthy or slow, or
// the key's first lease has not arrived yet.
class ClusterLimiter {
 public:
  ClusterLimiter(QuotaClient& client, const config::RateLimitRule& rule);  // token_bucket or
                                                                           // sliding_window
  ~ClusterLimiter();  // the tokens still leased go back to Redis
  ClusterLimiter(const ClusterLimiter&) = delete;
  ClusterLimiter& operator=(const ClusterLimiter&) = delete;

  enum class Outcome : uint8_t { kAllowed, kRejected, kUnavailable };

  // `hash` identifies the key (e.g. upstream::hash_key(key)); `key` is read only when the key
  // enters the table (to find its override). `now` must come from the steady clock: the client
  // thread compares it with its own readings.
  Outcome acquire(std::string_view key, uint64_t hash, core::MonoTime now, RateDecision* decision);
  // Gives back the token taken by the last allowed acquire of this key (a later rule rejected).
  void refund(std::string_view key, uint64_t hash);
  // The caller admitted a request of this key with its local share after kUnavailable: the
  // cluster is charged for it with the key's next refill (if the key is in the table), so that
  // decisions taken while a lease is on its way count against the shared limit.
  void charge(uint64_t hash, core::MonoTime now);
  // Undoes a charge() not yet settled (a later rule rejected the request).
  void discharge(uint64_t hash);

  // Tests only: called by insert() once it has claimed a slot for a new key and before the key
  // is published in it, i.e. where another worker may look for the same key meanwhile.
  void set_insert_hook_for_test(void (*hook)(void*), void* arg) {
    insert_hook_ = hook;
    insert_hook_arg_ = arg;
  }

  size_t capacity() const { return capacity_; }
  uint32_t gateways() const { return client_.gateways(); }  // the divisor of the local share
  size_t size() const;  // keys in the table (counts all slots; for tests and stats)
  // Lease size for a limit of `requests` shared by `gateways` (see docs/cluster-limits.md).
  static uint32_t lease_size(uint64_t requests, uint64_t burst, uint32_t gateways);
  // The demand a key reports (requests/s): an exponentially weighted average with a time
  // constant of 1 s, moved by `seen` requests over the `dt_ns` since the last report (taken as
  // at least 1 ms: a report right after the previous one says little about the rate).
  static double average_demand(double previous, uint32_t seen, int64_t dt_ns);

 private:
  friend class QuotaClient;

  struct Limit {
    uint64_t requests = 0;
    uint64_t burst = 0;  // token bucket capacity (>= 1)
    int64_t per_us = 0;
  };
  // Word layout: key fingerprint (32) | primed (1) | exhausted (1) | tokens (30). One CAS moves
  // tokens and checks the slot still holds the key, so a lease can never leak to another key.
  struct alignas(64) Slot {
    std::atomic<uint64_t> tag{0};  // hash | 1; 0 = empty, kBusy = being (re)assigned
    std::atomic<uint64_t> word{0};
    std::atomic<int64_t> last_used_ns{0};
    std::atomic<int64_t> refill_sent_ns{0};  // one refill in flight per key; 0 = none
    std::atomic<int64_t> next_refill_ns{0};  // quota exhausted: do not ask before this
    std::atomic<int64_t> reset_at_ns{0};
    std::atomic<int64_t> lease_window{0};
    std::atomic<uint32_t> limit_index{0};  // 0 = rule limit, i + 1 = overrides[i]
    std::atomic<uint32_t> redis_remaining{0};
    std::atomic<uint32_t> seen{0};  // requests since the last refill (the demand it reports)
    std::atomic<uint32_t> debt{0};  // admitted by the local share, not yet charged to Redis
    std::atomic<double> demand{0};  // client thread: requests/s, averaged over ~1 s
    std::atomic<int64_t> demand_ns{0};
    // Held while a key whose home this slot is enters the table: two workers that missed the
    // same new key must not put it in two slots (the second copy's lease would be stranded).
    std::atomic<uint32_t> inserting{0};
  };

  Slot* find(uint64_t tag) const;
  Slot* insert(uint64_t tag, std::string_view key, int64_t now_ns);
  uint32_t limit_index_for(std::string_view key) const;
  void add_debt(Slot& s, uint64_t n);
  static double update_demand(Slot& s, int64_t now_ns);  // client thread
  void request_refill(Slot& s, uint32_t idx, uint64_t tag, int64_t now_ns);
  void fill(RateDecision* d, const Limit& lim, uint64_t tokens, const Slot* s, int64_t now_ns,
            bool allowed, int64_t retry_ns) const;
  std::string redis_key(uint64_t tag) const;

  QuotaClient& client_;
  std::string name_;
  bool sliding_ = false;
  std::vector<Limit> limits_;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>> overrides_;
  size_t capacity_ = 0;
  struct SlotsDeleter {
    size_t bytes;  // no initializer: it would keep the type from being default-constructible here
    void operator()(Slot* p) const;
  };
  std::unique_ptr<Slot[], SlotsDeleter> slots_;
  std::string key_base_;  // prefix + "rl:tb:" / "rl:sw:" + rule name + ":"
  uint64_t id_ = 0;
  std::atomic<bool> orphaned_{false};  // the client was destroyed first
  void (*insert_hook_)(void*) = nullptr;
  void* insert_hook_arg_ = nullptr;

  // Client-thread only: slots that received tokens, scanned for idle leases.
  std::vector<uint32_t> leased_;
  std::vector<uint8_t> in_leased_;
};

}  // namespace sluice::governance
