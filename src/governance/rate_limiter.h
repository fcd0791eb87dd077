// Node-scope rate limiter: one limit per key for the whole gateway process, shared by every worker
// thread through a table of atomically updated entries (token bucket as GCRA, sliding window,
// concurrency) that grows with the keys in use up to max_keys; a full table evicts the entry that
// carries least state.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.h"
#include "core/clock.h"
#include "governance/decision.h"

namespace sluice::governance {

// What one allowed acquire took, for refund() and release(). A rejected acquire (and a
// concurrency acquire that could not be tracked) returns slot == UINT32_MAX: refund and release
// of it are no-ops.
struct RateTicket {
  uint32_t slot = UINT32_MAX;
  uint32_t generation = 0;  // the entry's tenancy; a ticket for an evicted entry is ignored
  int64_t stamp = 0;        // sliding_window: the sub-window that was counted
  uint64_t hash = 0;        // the key, to find its entry again after the table grew
  uint32_t table = 0;       // the table the slot index refers to (RateLimiter::Table::level)
};

// Semantics per algorithm (L = requests, P = per, B = burst or L when 0):
//
// token_bucket, as GCRA: emission interval T = P / L (in whole ns, at least 1), capacity B. The
// entry holds the theoretical arrival time TAT; a request at `now` passes iff
// max(TAT, now) - now <= (B - 1) * T, and then TAT = max(TAT, now) + T. So B pass at once from a
// full bucket, then one per T. Decision: limit = B; remaining = requests that would pass right
// now after this one; reset = TAT - now (until the bucket is full again); retry_after (rejected)
// = time until one token is back. refund moves TAT back by T, never below now.
//
// sliding_window: P is split into kSubWindows sub-windows of s = ceil(P / kSubWindows) ns,
// aligned to multiples of s since the MonoTime epoch; the window is W = kSubWindows * s (= P, or
// up to kSubWindows - 1 ns more when P is not a multiple of kSubWindows ns). At e ns into
// sub-window c, the count of the last W is estimated as sub-windows c - kSubWindows + 1 .. c in
// full plus sub-window c - kSubWindows weighted by the share of it still inside, (s - e) / s:
// the estimate of the cluster scope's script, on sub-windows of P / kSubWindows instead of whole
// windows. A request passes iff estimate + 1 <= L and the kSubWindows + 1 sub-windows
// c - kSubWindows .. c, counted in full, hold at most cap = L + ceil(L / kSubWindows) with it.
// Exact consequences (requests placed at the `now` they were decided at):
//  - Any kSubWindows consecutive sub-windows hold at most L requests (the last one to pass saw
//    them all in full). So any interval of up to (kSubWindows - 1) * s (0.9 P) holds at most L:
//    the 2L burst of a fixed window at its edge cannot happen.
//  - Any interval of length W touches at most kSubWindows + 1 sub-windows, which the last request
//    to pass in it saw in full: at most cap (L + L / 10) requests. Without the cap the weighting
//    alone would allow 2L - 1 (L at the very end of a sub-window, L - 1 more as its weight fades
//    out 0.9 W later; the unit test AtMostTheCapInAnyWindow builds it).
//  - Under steady overload both conditions hold with L per W (the cluster scope's rate; a ring
//    that counted the oldest sub-window in full gave L per P + s, -9%): the estimate stays at L,
//    and evenly spread sub-windows of L / kSubWindows sum to the cap. After a burst the cap spreads
//    the returning quota out instead of repeating the burst W later.
// Decision: limit = L; remaining = what would pass right now after this one (floor(L - estimate),
// at most cap - the full count); reset = until the estimate is 0 (the newest non-empty
// sub-window j has faded out, at (j + kSubWindows + 1) * s); retry_after (rejected) = until, if
// nothing else passes meanwhile, both conditions hold again (exact to the ns). refund
// decrements the sub-window it incremented, if that one still counts (in full or weighted).
//
// concurrency: at most L acquired and not yet released per key (P and burst unused).
// Decision: limit = L; remaining = L - in flight; reset and retry_after 0 (unknown: depends on
// when requests end; the caller picks a hint). refund and release both give the slot back: call
// exactly ONE of them per allowed acquire.
//
// Keys and memory: at most max_keys keys are tracked, exactly (max_keys = 10 tracks at most 10).
// The table starts with min(64, C) entries, C = max(max_keys, 8) (16 for concurrency), and
// doubles, up to C, when a new key finds no entry it may take without evicting (below). An entry
// is 64 bytes + 48 for the key text (+ 64 for sliding window), so a rule costs about 7 KB (11 KB)
// until it sees keys, and at most C entries. A growth allocates the larger table (mmap), moves
// every entry into it (O(table), done by the request whose new key needed the room) and gives the
// smaller table's entries back to the OS (madvise); only its 64-byte header and insertion locks
// (4 bytes per 8 entries) stay until the limiter is destroyed, so the retired tables add less than
// 5 bytes per entry of the largest. A key lives within a probe window of 8 entries (16 for
// concurrency) from its hash's home. When that window has no unused entry, the new key takes the
// place of an entry that carries no information (full bucket, expired window, nothing in flight);
// else the table grows if it is smaller than C; else token bucket and sliding window evict the
// window's entry closest to full (least quota used, relative to its limit). An eviction costs
// the evicted key what it had used (it starts again with its full quota); a flood of one-off
// keys, each using one request's worth, thus only displaces keys that have used about as little,
// and a key that is being limited keeps its entry. Concurrency never evicts an entry with requests
// in flight: if all of the window's entries have some, the request passes untracked (counted in
// untracked(); size max_keys well above the number of keys in flight at once). A growth never
// evicts to make room in the larger table: a key whose window there was filled meanwhile (by
// keys inserted during the growth) goes to one of 8 spare entries past the table's end, which
// lookups search once a growth has used them, until the next growth moves it into a window.
// (Only when those 8 are taken too does a growth evict, or for concurrency with a window all in
// flight drop, the key it moves; counted as an eviction.)
//
// Overrides: an override key is the composed key string. It is resolved when the key's entry is
// created (by key text, so whatever `hash` the caller uses) and the entry keeps that limit.
//
// Threads: acquire/refund/release/set_divisor are thread-safe and do not throw; they do not
// allocate except in the acquire that grows the table (at most log2(C / 64) times per limiter).
// Token bucket and concurrency update one atomic word with CAS; sliding window and entry
// (re)placement take a per-entry spinlock held for a few dozen instructions. Counting is exact
// under contention. One theoretical race is not excluded for token bucket: an acquire that reads
// its entry, stalls while that entry is evicted and re-used by another key, and finds on resuming
// that the new key's TAT equals, to the nanosecond, the one it read, charges its request to the
// new key (one token, once); concurrency carries the generation in its CAS word and is exact.
// Growth keeps lock-free readers safe: the larger table is published first; an entry is moved
// under its lock with its state word locked (a reader's CAS then fails and it looks again, in the
// larger table); a key not yet moved is found in the smaller one, which no longer takes new keys
// once the mover has passed every insertion lock; new keys enter the larger table only after
// that barrier, and only in windows that no key still to be moved can land in (a key lands at
// about twice its home): a new key waits until the mover has passed its region of the smaller
// table (for a window that wraps around the end, the whole move), so that keys inserted during a
// growth cannot fill a moved key's window. A reader that still holds the smaller table after its
// entries were given back reads zeros there: no key matches, so it looks again (a TAT is never 0,
// so no CAS can succeed on a zeroed word). Tickets find their entry again by hash when the table
// changed.
class RateLimiter {
 public:
  static constexpr int kSubWindows = 10;
  static constexpr size_t kKeyTextBytes = 47;  // prefix of the key kept for hot_keys()

  struct Limit {
    uint64_t requests = 0;
    std::chrono::nanoseconds per{std::chrono::seconds(1)};
    uint64_t burst = 0;  // 0 = requests
  };
  struct Options {
    config::RateAlgorithm algorithm = config::RateAlgorithm::kTokenBucket;
    Limit limit;
    std::vector<std::pair<std::string, Limit>> overrides;
    size_t max_keys = 100000;
  };

  static Options options_from(const config::RateLimitRule& rule);

  // Throws std::invalid_argument for a limit of 0 requests or a `per` <= 0 (except concurrency).
  explicit RateLimiter(Options options);
  ~RateLimiter();
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // `hash` identifies the key (upstream::hash_key(key) or any well-mixed 64-bit hash; two keys
  // with the same hash share an entry). `key` is read only when the key gets an entry (override
  // lookup, hot-key text). `ticket` may be null when the caller will never refund or release.
  RateDecision acquire(std::string_view key, uint64_t hash, core::MonoTime now, RateTicket* ticket);
  // Undoes an allowed acquire (a later rule rejected the request). No-op for a ticket of a
  // rejected acquire or of an entry evicted since.
  void refund(const RateTicket& t, core::MonoTime now);
  // Concurrency: the request ended. No-op for the other algorithms.
  void release(const RateTicket& t);

  // Every limit becomes limit / n (at least 1; burst likewise), e.g. this node's share of a
  // cluster limit. Takes effect for the next decisions; n = 0 is taken as 1. While n != 1 each
  // decision costs two divisions more (the limits for n = 1 are precomputed).
  void set_divisor(uint32_t n);
  uint32_t divisor() const { return divisor_.load(std::memory_order_relaxed); }

  struct HotKey {
    std::string key;  // at most kKeyTextBytes of the key
    uint64_t allowed;
    uint64_t rejected;
  };
  // The n tracked keys with the most requests (allowed + rejected) since they got their entry,
  // most first. For the admin API: allocates, and scans the whole table.
  std::vector<HotKey> hot_keys(size_t n) const;

  size_t key_count() const { return key_count_.load(std::memory_order_relaxed); }
  uint64_t evictions() const { return evictions_.load(std::memory_order_relaxed); }
  uint64_t untracked() const { return untracked_.load(std::memory_order_relaxed); }
  // Entries of the current table (grows up to max_capacity()).
  size_t capacity() const;
  size_t max_capacity() const { return max_capacity_; }
  size_t max_keys() const { return max_keys_; }
  uint64_t growths() const { return growths_.load(std::memory_order_relaxed); }
  config::RateAlgorithm algorithm() const { return algorithm_; }

 private:
  struct Stats;
  struct Slot;
  struct Window;
  struct KeyText;
  struct Table;
  // A limit in the units the decision code uses, for the current divisor.
  struct Params {
    uint64_t quota = 1;     // B for token bucket, L otherwise
    int64_t interval = 1;   // token bucket: T
    int64_t tolerance = 0;  // token bucket: (B - 1) * T
    int64_t sub = 1;        // sliding window: s
  };
  struct Located {
    Table* table = nullptr;
    uint32_t index = 0;
  };

  Params params(uint32_t limit_index) const;
  Params scaled(const Limit& limit, uint32_t divisor) const;
  uint32_t home(const Table& t, uint64_t hash) const;
  int64_t find(const Table& t, uint64_t hash) const;
  Located locate(const RateTicket& ticket) const;
  uint32_t override_for(std::string_view key) const;
  bool reserve_key();

  RateDecision acquire_gcra(Table& t, uint32_t index, uint64_t hash, int64_t now,
                            RateTicket* ticket, bool* retry);
  RateDecision acquire_window(Table& t, uint32_t index, uint64_t hash, int64_t now,
                              RateTicket* ticket, bool* retry);
  RateDecision acquire_concurrency(Table& t, uint32_t index, uint64_t hash, RateTicket* ticket,
                                   bool* retry);
  RateDecision insert(Table& t, std::string_view key, uint64_t hash, int64_t now,
                      RateTicket* ticket, bool* retry);
  // Takes entry `index` away from its updaters (the caller holds its lock); false if it changed
  // hands since it was scored as holding `expected_hash`.
  bool claim(Table& t, uint32_t index, uint64_t expected_hash);
  void grow(Table& t, int64_t now);  // `now` scores victims in a rare full window
  // During a growth from `from` into `to`: may a new key take an entry of the window at `h0`?
  bool moved_around(const Table& to, const Table& from, uint32_t h0) const;
  void move_entry(Table& from, uint32_t index, Table& to, int64_t now);
  // Sliding window, under the entry's lock: moves the ring to sub-window `c` and returns the
  // sub-window requests are now counted in.
  int64_t advance(Window& w, int64_t c);
  RateDecision window_decision(const uint32_t* counts, int64_t c, const Params& p, bool allowed,
                               int64_t now) const;
  // Guards an entry's tenancy changes (and, for sliding window, its counts).
  std::atomic<uint32_t>& entry_lock(const Table& t, uint32_t index) const;
  HotKey counts_of(const Table& t, uint32_t index) const;  // without the key text
  // 0 = carries no information at `now` (may be replaced freely); otherwise the share of its
  // quota in use; UINT64_MAX = must not be evicted.
  uint64_t fill(const Table& t, uint32_t index, int64_t now) const;

  config::RateAlgorithm algorithm_;
  std::vector<Limit> limits_;               // [0] = the rule's limit, [i + 1] = overrides[i]
  std::vector<Params> base_params_;         // limits_ at divisor 1
  std::vector<std::string> override_keys_;  // sorted; index into limits_ in override_index_
  std::vector<uint32_t> override_index_;
  size_t max_keys_;
  uint32_t max_capacity_;
  uint32_t probe_;
  std::atomic<Table*> table_{nullptr};
  std::mutex grow_mu_;                          // one growth at a time; never waited for
  std::vector<std::unique_ptr<Table>> tables_;  // every table made, under grow_mu_
  std::atomic<bool> grow_failed_{false};        // mmap failed: evict instead of growing
  std::atomic<uint32_t> divisor_{1};
  std::atomic<size_t> key_count_{0};
  std::atomic<uint64_t> evictions_{0};
  std::atomic<uint64_t> untracked_{0};
  std::atomic<uint64_t> growths_{0};
};

}  // namespace sluice::governance
