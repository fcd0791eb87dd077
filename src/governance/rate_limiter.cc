#include "governance/rate_limiter.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <thread>

#include <sys/mman.h>

namespace sluice::governance {

namespace {

using std::chrono::nanoseconds;

constexpr int64_t kLockedTat = std::numeric_limits<int64_t>::min();  // token bucket: being replaced
constexpr uint64_t kCountMask = 0xFFFFFFFFu;    // concurrency word: generation << 32 | in flight
constexpr uint64_t kLockedCount = kCountMask;   // concurrency: being replaced
constexpr int64_t kMaxSpan = int64_t{1} << 62;  // clamp for burst * interval, far beyond any uptime
constexpr uint64_t kShareScale = 1'000'000'000;  // fill(): share of quota in use, in 1e-9
constexpr uint32_t kProbe = 8;
constexpr uint32_t kProbeConcurrency = 16;  // entries in flight cannot be evicted: look further
constexpr int kRing = RateLimiter::kSubWindows + 1;
constexpr uint32_t kSpill = 1u << 30;      // sliding window: 32-bit request tallies move to 64-bit
constexpr uint32_t kInitialCapacity = 64;  // entries of a new table (7 KB; 11 KB sliding window)
// Entries past a grown table's end for keys that the growth finds no free entry for in their
// probe window (keys inserted into the larger table meanwhile can fill a window): the growth keeps
// them there instead of evicting a key from a table that is not full. The first table has none.
constexpr uint32_t kStash = 8;

size_t page_round(size_t n) {
  constexpr size_t kPage = 4096;
  return (n + kPage - 1) / kPage * kPage;
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Held for a few dozen instructions; yielding after a while lets a holder that was preempted
// (more runnable threads than cores) finish instead of burning the waiter's time slice.
inline void spin_lock(std::atomic<uint32_t>& l) {
  int spins = 0;
  while (l.exchange(1, std::memory_order_acquire) != 0) {
    while (l.load(std::memory_order_relaxed) != 0) {
      if (++spins < 256) {
        cpu_relax();
      } else {
        std::this_thread::yield();
      }
    }
  }
}

inline void spin_unlock(std::atomic<uint32_t>& l) {
  l.store(0, std::memory_order_release);
}

inline int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

inline int ring(int64_t sub) {
  return static_cast<int>(((sub % kRing) + kRing) % kRing);
}

inline int64_t to_ns(core::MonoTime t) {
  return std::chrono::duration_cast<nanoseconds>(t.time_since_epoch()).count();
}

// Callers may pass any 64-bit hash; a finaliser makes one with weak high bits (say, small
// integers) still spread over the table.
inline uint64_t mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return h;
}

uint64_t clamp_u64(uint64_t v, uint64_t hi) {
  return v < hi ? v : hi;
}

using u128 = unsigned __int128;

// Sliding window: the counts of sub-windows c - kSubWindows .. c (in ring order) at `now`, with
// the oldest weighted by the part of it still inside the last kSubWindows sub-windows. In units
// of 1/s request, so that the estimate stays exact in integers; the 128 bits hold any count
// (< 2^36) times any s (< 2^63).
// The most requests kRing consecutive sub-windows may hold: L and one sub-window's share more.
// Without it the weighted estimate alone lets up to 2L - 1 pass in one window (L at the very end
// of a sub-window, L - 1 more as it fades out 0.9 windows later).
constexpr uint64_t cap(uint64_t quota) {
  return quota + (quota + RateLimiter::kSubWindows - 1) / RateLimiter::kSubWindows;
}

struct WindowCount {
  uint64_t full = 0;    // sub-windows c - kSubWindows + 1 .. c
  uint64_t oldest = 0;  // sub-window c - kSubWindows
  int64_t elapsed = 0;  // ns since sub-window c began, in [0, s)

  WindowCount(const uint32_t* counts, int64_t c, int64_t sub, int64_t now) {
    for (int i = 0; i < kRing; ++i) full += counts[i];
    oldest = counts[ring(c - RateLimiter::kSubWindows)];
    full -= oldest;
    // A `now` before sub-window c (a thread that read the clock a little earlier than the one
    // that moved the ring on) is taken as its start: the oldest then weighs in full.
    elapsed = std::clamp<int64_t>(now - c * sub, 0, sub - 1);
  }
  // The estimate, times s.
  u128 scaled(int64_t sub) const {
    return static_cast<u128>(oldest) * static_cast<uint64_t>(sub - elapsed) +
           static_cast<u128>(full) * static_cast<uint64_t>(sub);
  }
  // Does one more request fit under `quota`? (estimate + 1 <= quota, as the cluster script's
  // floor(limit - estimate) >= 1.) The weight is in [1/s, 1]: most decisions need no product.
  bool fits(uint64_t quota, int64_t sub) const {
    // The cap: the kRing sub-windows counted in full hold at most cap(quota), which bounds any
    // interval of one window (it touches at most kRing sub-windows).
    if (full + oldest + 1 > cap(quota)) return false;
    if (full + oldest < quota) return true;
    if (full >= quota) return false;
    return scaled(sub) + static_cast<uint64_t>(sub) <=
           static_cast<u128>(quota) * static_cast<uint64_t>(sub);
  }
  // The estimate rounded up to whole requests: full + ceil(oldest * (s - e) / s).
  uint64_t ceiling(int64_t sub) const {
    return full + oldest -
           mul_div(oldest, static_cast<uint64_t>(elapsed), static_cast<uint64_t>(sub));
  }
  // floor(a * b / d) for a result that fits in 64 bits; one 64-bit division unless the product
  // needs more (s above 4.3 s with a full sub-window).
  static uint64_t mul_div(uint64_t a, uint64_t b, uint64_t d) {
    uint64_t product = 0;
    if (!__builtin_mul_overflow(a, b, &product)) return product / d;
    return static_cast<uint64_t>(static_cast<u128>(a) * b / d);
  }
};

}  // namespace

// Requests decided for an entry's current key, for hot_keys().
struct RateLimiter::Stats {
  std::atomic<uint64_t> allowed{0};
  std::atomic<uint64_t> rejected{0};
};

struct alignas(64) RateLimiter::Slot {
  std::atomic<uint64_t> hash{0};  // 0 = never used; a used entry is only ever replaced
  std::atomic<int64_t> state{0};  // token bucket: TAT in ns; concurrency: see kCountMask
  Stats stats;  // token bucket, concurrency: in the line the decision writes anyway
  std::atomic<uint32_t> generation{0};
  std::atomic<uint32_t> limit{0};  // index into limits_
  std::atomic<uint32_t> lock{0};   // tenancy changes (not used by sliding window: Window::lock)
};

// Sliding-window counts of one entry. Its lock, in the same cache line as everything a decision
// writes, serialises updates and tenancy changes of the entry; the counts are atomics only so
// that eviction scoring may read them without the lock. The request statistics are kept here too
// (32-bit, spilled into Slot::stats now and then), updated under the lock: with them in another
// line a decision contended by two threads took ~2x longer.
struct alignas(64) RateLimiter::Window {
  std::atomic<int64_t> newest{0};  // sub-window index counted in counts[ring(newest)]
  std::atomic<uint32_t> counts[kRing] = {};
  std::atomic<uint32_t> lock{0};
  std::atomic<uint32_t> allowed{0};
  std::atomic<uint32_t> rejected{0};
};

struct RateLimiter::KeyText {
  char text[kKeyTextBytes];
  uint8_t len = 0;
};

// One generation of the table. The entries live in one anonymous mapping so that a retired table
// can give them back to the OS while a stale reader may still look at them (it then reads zeros);
// the header and the insertion locks stay until the limiter goes.
struct RateLimiter::Table {
  uint32_t capacity = 0;  // entries in probe windows
  uint32_t level = 0;     // 0 for the first table, +1 per growth
  uint32_t spare = 0;     // entries after those (kStash in a grown table)
  uint32_t stripe_mask = 0;
  Slot* slots = nullptr;
  Window* windows = nullptr;  // sliding window only
  KeyText* keys = nullptr;
  void* map = nullptr;
  size_t map_bytes = 0;
  std::unique_ptr<std::atomic<uint32_t>[]> stripes;  // serialise insertion of one key
  std::atomic<Table*> prev{nullptr};  // the smaller table, while its entries move here
  std::atomic<bool> open{true};       // takes new keys (false until prev stopped taking them)
  std::atomic<bool> frozen{false};    // replaced by a larger table: takes no new keys
  std::atomic<bool> stashed{false};   // a growth put a key past the end: find() looks there too
  std::atomic<uint32_t> moved{0};     // while a growth empties this table: entries [0, moved) done

  uint32_t entries() const { return capacity + spare; }

  static std::unique_ptr<Table> make(uint32_t capacity, uint32_t level, bool sliding) {
    auto t = std::make_unique<Table>();
    t->capacity = capacity;
    t->level = level;
    t->spare = level > 0 ? kStash : 0;
    const uint32_t n = t->entries();
    const size_t slot_bytes = page_round(sizeof(Slot) * n);
    const size_t window_bytes = sliding ? page_round(sizeof(Window) * n) : 0;
    const size_t key_bytes = page_round(sizeof(KeyText) * n);
    t->map_bytes = slot_bytes + window_bytes + key_bytes;
    void* m =
        mmap(nullptr, t->map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    t->map = m;
    auto* base = static_cast<char*>(m);
    t->slots = new (base) Slot[n];
    if (sliding) t->windows = new (base + slot_bytes) Window[n];
    t->keys = new (base + slot_bytes + window_bytes) KeyText[n];
    uint32_t stripes = 16;
    while (stripes < capacity / 8 && stripes < 65536) stripes *= 2;
    t->stripes = std::make_unique<std::atomic<uint32_t>[]>(stripes);
    for (uint32_t i = 0; i < stripes; ++i) t->stripes[i].store(0, std::memory_order_relaxed);
    t->stripe_mask = stripes - 1;
    return t;
  }
  // Gives the entries' memory back; a later read sees zeros (no key), a write faults a zero page
  // in again. The entries are atomics of trivially destructible types: nothing to destroy.
  void retire() { madvise(map, map_bytes, MADV_DONTNEED); }
  ~Table() {
    if (map != nullptr) munmap(map, map_bytes);
  }
};

RateLimiter::Options RateLimiter::options_from(const config::RateLimitRule& rule) {
  Options o;
  o.algorithm = rule.algorithm;
  o.limit = Limit{rule.limit.requests, rule.limit.per, rule.limit.burst};
  for (const auto& ov : rule.overrides) {
    o.overrides.emplace_back(ov.key, Limit{ov.limit.requests, ov.limit.per, ov.limit.burst});
  }
  o.max_keys = rule.max_keys;
  return o;
}

RateLimiter::RateLimiter(Options options) : algorithm_(options.algorithm) {
  auto check = [&](const Limit& l, const std::string& what) {
    if (l.requests == 0) throw std::invalid_argument(what + ": requests must be at least 1");
    if (algorithm_ != config::RateAlgorithm::kConcurrency && l.per.count() <= 0) {
      throw std::invalid_argument(what + ": per must be positive");
    }
  };
  check(options.limit, "rate limit");
  limits_.push_back(options.limit);

  // Overrides sorted by key (first one wins for a duplicate) for a binary search at insertion.
  std::vector<std::pair<std::string, Limit>> ovs = std::move(options.overrides);
  std::stable_sort(ovs.begin(), ovs.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [key, limit] : ovs) {
    if (!override_keys_.empty() && override_keys_.back() == key) continue;
    check(limit, "override '" + key + "'");
    override_keys_.push_back(key);
    override_index_.push_back(static_cast<uint32_t>(limits_.size()));
    limits_.push_back(limit);
  }
  for (const Limit& l : limits_) base_params_.push_back(scaled(l, 1));

  if (options.max_keys == 0) throw std::invalid_argument("rate limit: max_keys must be at least 1");
  if (options.max_keys > (size_t{1} << 30)) {
    throw std::invalid_argument("rate limit: max_keys must be at most 2^30");
  }
  probe_ = algorithm_ == config::RateAlgorithm::kConcurrency ? kProbeConcurrency : kProbe;
  max_keys_ = options.max_keys;
  // A probe window must fit in the table; max_keys below it is kept by counting (reserve_key).
  max_capacity_ = static_cast<uint32_t>(std::max<size_t>(options.max_keys, probe_));
  auto first = Table::make(std::min(kInitialCapacity, max_capacity_), 0,
                           algorithm_ == config::RateAlgorithm::kSlidingWindow);
  if (!first) throw std::bad_alloc();
  table_.store(first.get(), std::memory_order_release);
  tables_.push_back(std::move(first));
}

RateLimiter::~RateLimiter() = default;

size_t RateLimiter::capacity() const {
  return table_.load(std::memory_order_acquire)->capacity;
}

bool RateLimiter::reserve_key() {
  size_t n = key_count_.load(std::memory_order_relaxed);
  while (n < max_keys_) {
    if (key_count_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed)) return true;
  }
  return false;
}

RateLimiter::Params RateLimiter::scaled(const Limit& limit, uint32_t divisor) const {
  Params p;
  const uint64_t requests = std::max<uint64_t>(1, limit.requests / divisor);
  switch (algorithm_) {
    case config::RateAlgorithm::kTokenBucket: {
      const uint64_t burst =
          limit.burst == 0 ? requests : std::max<uint64_t>(1, limit.burst / divisor);
      const auto per = static_cast<uint64_t>(limit.per.count());
      p.interval = static_cast<int64_t>(std::max<uint64_t>(1, per / requests));
      int64_t tolerance = 0;
      if (__builtin_mul_overflow(static_cast<int64_t>(clamp_u64(burst - 1, uint64_t{1} << 62)),
                                 p.interval, &tolerance) ||
          tolerance > kMaxSpan) {
        tolerance = kMaxSpan;
      }
      p.tolerance = tolerance;
      p.quota = burst;
      break;
    }
    case config::RateAlgorithm::kSlidingWindow: {
      p.quota = clamp_u64(requests, kCountMask - 1);
      const int64_t per = limit.per.count();
      p.sub = std::max<int64_t>(1, (per + kSubWindows - 1) / kSubWindows);
      break;
    }
    case config::RateAlgorithm::kConcurrency:
      p.quota = clamp_u64(requests, kCountMask - 1);
      break;
  }
  return p;
}

RateLimiter::Params RateLimiter::params(uint32_t limit_index) const {
  const uint32_t div = divisor_.load(std::memory_order_relaxed);
  if (div == 1) return base_params_[limit_index];
  return scaled(limits_[limit_index], div);  // local share of a cluster limit: two divisions more
}

void RateLimiter::set_divisor(uint32_t n) {
  divisor_.store(n == 0 ? 1 : n, std::memory_order_relaxed);
}

std::atomic<uint32_t>& RateLimiter::entry_lock(const Table& t, uint32_t index) const {
  return t.windows ? t.windows[index].lock : t.slots[index].lock;
}

RateLimiter::HotKey RateLimiter::counts_of(const Table& t, uint32_t index) const {
  const Stats& st = t.slots[index].stats;
  HotKey k{
      {}, st.allowed.load(std::memory_order_relaxed), st.rejected.load(std::memory_order_relaxed)};
  if (t.windows) {
    k.allowed += t.windows[index].allowed.load(std::memory_order_relaxed);
    k.rejected += t.windows[index].rejected.load(std::memory_order_relaxed);
  }
  return k;
}

// Multiply-shift: a key's home in a table twice as large is about twice its home here.
uint32_t RateLimiter::home(const Table& t, uint64_t hash) const {
  return static_cast<uint32_t>((static_cast<unsigned __int128>(mix(hash)) * t.capacity) >> 64);
}

int64_t RateLimiter::find(const Table& t, uint64_t hash) const {
  uint32_t idx = home(t, hash);
  for (uint32_t i = 0; i < probe_; ++i) {
    if (t.slots[idx].hash.load(std::memory_order_acquire) == hash) return idx;
    if (++idx == t.capacity) idx = 0;
  }
  if (t.stashed.load(std::memory_order_acquire)) {
    for (uint32_t i = t.capacity; i < t.entries(); ++i) {
      if (t.slots[i].hash.load(std::memory_order_acquire) == hash) return i;
    }
  }
  return -1;
}

RateLimiter::Located RateLimiter::locate(const RateTicket& ticket) const {
  Table* t = table_.load(std::memory_order_acquire);
  if (ticket.table == t->level && ticket.slot < t->entries() &&
      t->slots[ticket.slot].hash.load(std::memory_order_acquire) == ticket.hash) {
    return {t, ticket.slot};
  }
  int64_t idx = find(*t, ticket.hash);
  if (idx >= 0) return {t, static_cast<uint32_t>(idx)};
  if (Table* p = t->prev.load(std::memory_order_acquire)) {
    idx = find(*p, ticket.hash);
    if (idx >= 0) return {p, static_cast<uint32_t>(idx)};
  }
  return {};
}

uint32_t RateLimiter::override_for(std::string_view key) const {
  if (override_keys_.empty()) return 0;
  auto it = std::lower_bound(override_keys_.begin(), override_keys_.end(), key,
                             [](const std::string& a, std::string_view b) { return a < b; });
  if (it == override_keys_.end() || *it != key) return 0;
  return override_index_[it - override_keys_.begin()];
}

RateDecision RateLimiter::acquire(std::string_view key, uint64_t hash, core::MonoTime now,
                                  RateTicket* ticket) {
  RateTicket scratch;
  if (ticket == nullptr) ticket = &scratch;
  *ticket = RateTicket{};
  const uint64_t h = hash == 0 ? 1 : hash;  // 0 marks an unused entry
  const int64_t t = to_ns(now);
  for (;;) {
    // `retry`: the entry changed hands under us (or another thread is inserting this key, or
    // the table grew).
    bool retry = false;
    RateDecision d;
    Table* table = table_.load(std::memory_order_acquire);
    Table* at = table;
    int64_t idx = find(*table, h);
    if (idx < 0) {
      // While a growth moves entries, a key not moved yet is still in the smaller table.
      if (Table* p = table->prev.load(std::memory_order_acquire)) {
        at = p;
        idx = find(*p, h);
      }
    }
    if (idx < 0) {
      d = insert(*table, key, h, t, ticket, &retry);
    } else {
      const auto i = static_cast<uint32_t>(idx);
      switch (algorithm_) {
        case config::RateAlgorithm::kTokenBucket:
          d = acquire_gcra(*at, i, h, t, ticket, &retry);
          break;
        case config::RateAlgorithm::kSlidingWindow:
          d = acquire_window(*at, i, h, t, ticket, &retry);
          break;
        case config::RateAlgorithm::kConcurrency:
          d = acquire_concurrency(*at, i, h, ticket, &retry);
          break;
      }
    }
    if (!retry) return d;
    cpu_relax();
  }
}

RateDecision RateLimiter::acquire_gcra(Table& t, uint32_t index, uint64_t hash, int64_t now,
                                       RateTicket* ticket, bool* retry) {
  Slot& slot = t.slots[index];
  const uint32_t gen = slot.generation.load(std::memory_order_acquire);
  int64_t s = slot.state.load(std::memory_order_acquire);
  const Params p = params(slot.limit.load(std::memory_order_relaxed));
  for (;;) {
    // Re-checked after every read of the state: a state read after a replacement belongs to
    // another key (the replacement stores hash and generation before releasing the state).
    if (s == kLockedTat || slot.hash.load(std::memory_order_acquire) != hash ||
        slot.generation.load(std::memory_order_acquire) != gen) {
      *retry = true;
      return {};
    }
    const int64_t tat = std::max(s, now);
    RateDecision d;
    d.limit = p.quota;
    if (tat - now > p.tolerance) {
      slot.stats.rejected.fetch_add(1, std::memory_order_relaxed);
      d.allowed = false;
      d.remaining = 0;
      d.reset = nanoseconds(tat - now);
      d.retry_after = nanoseconds(tat - p.tolerance - now);
      return d;
    }
    const int64_t next = tat + p.interval;
    if (slot.state.compare_exchange_weak(s, next, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
      slot.stats.allowed.fetch_add(1, std::memory_order_relaxed);
      const int64_t headroom = p.tolerance - (next - now);
      d.remaining = headroom < 0 ? 0 : static_cast<uint64_t>(headroom / p.interval) + 1;
      d.reset = nanoseconds(next - now);
      *ticket = RateTicket{index, gen, 0, hash, t.level};
      return d;
    }
  }
}

RateDecision RateLimiter::acquire_concurrency(Table& t, uint32_t index, uint64_t hash,
                                              RateTicket* ticket, bool* retry) {
  Slot& slot = t.slots[index];
  const uint32_t gen = slot.generation.load(std::memory_order_acquire);
  auto w = static_cast<uint64_t>(slot.state.load(std::memory_order_acquire));
  const Params p = params(slot.limit.load(std::memory_order_relaxed));
  for (;;) {
    // The generation is part of the CAS word, so a CAS can only succeed on this tenancy.
    if ((w >> 32) != gen || (w & kCountMask) == kLockedCount ||
        slot.hash.load(std::memory_order_acquire) != hash) {
      *retry = true;
      return {};
    }
    const uint64_t in_flight = w & kCountMask;
    RateDecision d;
    d.limit = p.quota;
    if (in_flight >= p.quota) {
      slot.stats.rejected.fetch_add(1, std::memory_order_relaxed);
      d.allowed = false;
      return d;
    }
    auto expected = static_cast<int64_t>(w);
    if (slot.state.compare_exchange_weak(expected, static_cast<int64_t>(w + 1),
                                         std::memory_order_acq_rel, std::memory_order_acquire)) {
      slot.stats.allowed.fetch_add(1, std::memory_order_relaxed);
      d.remaining = p.quota - in_flight - 1;
      *ticket = RateTicket{index, gen, 0, hash, t.level};
      return d;
    }
    w = static_cast<uint64_t>(expected);
  }
}

int64_t RateLimiter::advance(Window& w, int64_t c) {
  const int64_t newest = w.newest.load(std::memory_order_relaxed);
  // A `now` older than the newest sub-window (threads read the clock at slightly different
  // times) counts in the newest: that only makes the request count longer.
  if (c <= newest) return newest;
  if (c - newest >= kRing) {
    for (auto& n : w.counts) n.store(0, std::memory_order_relaxed);
  } else {
    for (int64_t j = newest + 1; j <= c; ++j) w.counts[ring(j)].store(0, std::memory_order_relaxed);
  }
  w.newest.store(c, std::memory_order_relaxed);
  return c;
}

RateDecision RateLimiter::window_decision(const uint32_t* counts, int64_t c, const Params& p,
                                          bool allowed, int64_t now) const {
  const WindowCount wc(counts, c, p.sub, now);
  RateDecision d;
  d.allowed = allowed;
  d.limit = p.quota;
  // Requests that would pass right now, floor(L - estimate): each needs estimate + 1 <= L.
  const uint64_t used = wc.oldest == 0 ? wc.full : wc.ceiling(p.sub);
  d.remaining = used < p.quota ? p.quota - used : 0;
  const uint64_t all = wc.full + wc.oldest;
  d.remaining = std::min<uint64_t>(d.remaining, all < cap(p.quota) ? cap(p.quota) - all : 0);
  // Sub-window j counts in full until sub-window j + kSubWindows begins and then fades out over
  // one more sub-window: it has no weight left from (j + kRing) * s on.
  for (int64_t j = c; j > c - kRing; --j) {
    if (counts[ring(j)] != 0) {
      d.reset = nanoseconds(std::max<int64_t>(0, (j + kRing) * p.sub - now));
      break;
    }
  }
  if (!allowed) {
    // The first moment the estimate, with no new requests, lets one more pass. In sub-window
    // c + k the counts of c + k - kSubWindows + 1 .. c are in full (`full`) and c + k - kSubWindows
    // weighs (s - e) / s at e ns into it: one fits once oldest * (s - e) <= (L - 1 - full) * s.
    // At k = kSubWindows nothing is in full any more, so the loop always ends there at the latest.
    uint64_t full = wc.full + wc.oldest;
    for (int64_t k = 0; k <= kSubWindows; ++k) {
      const uint64_t oldest = counts[ring(c + k - kSubWindows)];
      full -= oldest;
      if (full >= p.quota) continue;
      // With room >= oldest it fits already at the start of sub-window c + k.
      const uint64_t room = p.quota - 1 - full;
      const int64_t e = room >= oldest ? 0
                                       : p.sub - static_cast<int64_t>(WindowCount::mul_div(
                                                     room, static_cast<uint64_t>(p.sub), oldest));
      d.retry_after = nanoseconds(std::max<int64_t>(0, (c + k) * p.sub + e - now));
      break;
    }
    // The cap: at the start of sub-window c + k the k oldest of the kRing have left.
    uint64_t all_k = wc.full + wc.oldest;
    for (int64_t k = 0; k <= kRing && all_k + 1 > cap(p.quota); ++k) {
      all_k -= counts[ring(c + k - kSubWindows)];
      if (all_k + 1 <= cap(p.quota)) {
        d.retry_after =
            std::max(d.retry_after, nanoseconds(std::max<int64_t>(0, (c + k + 1) * p.sub - now)));
      }
    }
  }
  return d;
}

RateDecision RateLimiter::acquire_window(Table& t, uint32_t index, uint64_t hash, int64_t now,
                                         RateTicket* ticket, bool* retry) {
  Slot& slot = t.slots[index];
  Window& w = t.windows[index];
  // The division before the lock: the lock is what two threads on one key wait for. A limit
  // changed meanwhile (an override) only applies from the next decision.
  const Params p = params(slot.limit.load(std::memory_order_relaxed));
  const int64_t now_sub = floor_div(now, p.sub);
  spin_lock(w.lock);
  if (slot.hash.load(std::memory_order_relaxed) != hash) {
    spin_unlock(w.lock);
    *retry = true;
    return {};
  }
  const int64_t c = advance(w, now_sub);
  // Copy out, then build the decision after unlocking: the lock covers only the update.
  uint32_t counts[kRing];
  for (int i = 0; i < kRing; ++i) counts[i] = w.counts[i].load(std::memory_order_relaxed);
  const bool allowed = WindowCount(counts, c, p.sub, now).fits(p.quota, p.sub);
  if (allowed) w.counts[ring(c)].store(++counts[ring(c)], std::memory_order_relaxed);
  std::atomic<uint32_t>& tally = allowed ? w.allowed : w.rejected;
  const uint32_t n = tally.load(std::memory_order_relaxed) + 1;
  if (n < kSpill) {
    tally.store(n, std::memory_order_relaxed);
  } else {
    (allowed ? slot.stats.allowed : slot.stats.rejected).fetch_add(n, std::memory_order_relaxed);
    tally.store(0, std::memory_order_relaxed);
  }
  const uint32_t gen = slot.generation.load(std::memory_order_relaxed);
  spin_unlock(w.lock);
  if (allowed) *ticket = RateTicket{index, gen, c, hash, t.level};
  return window_decision(counts, c, p, allowed, now);
}

uint64_t RateLimiter::fill(const Table& t, uint32_t index, int64_t now) const {
  const Slot& slot = t.slots[index];
  switch (algorithm_) {
    case config::RateAlgorithm::kTokenBucket: {
      const int64_t s = slot.state.load(std::memory_order_relaxed);
      if (s == kLockedTat) return UINT64_MAX;
      if (s <= now) return 0;
      const Params p = params(slot.limit.load(std::memory_order_relaxed));
      const double share =
          static_cast<double>(s - now) / static_cast<double>(p.tolerance + p.interval);
      return 1 + static_cast<uint64_t>(std::min(share, 4.0) * kShareScale);
    }
    case config::RateAlgorithm::kSlidingWindow: {
      const Params p = params(slot.limit.load(std::memory_order_relaxed));
      const Window& w = t.windows[index];
      const int64_t newest = w.newest.load(std::memory_order_relaxed);
      const int64_t c = std::max(floor_div(now, p.sub), newest);
      // Sub-windows c - kSubWindows (weighted) .. newest still count. Read without the lock: a
      // racing update makes the score slightly stale, which only matters for the choice of victim.
      const int64_t first = c - kSubWindows;
      if (newest < first) return 0;
      int r = ring(first);
      const uint64_t oldest = w.counts[r].load(std::memory_order_relaxed);
      uint64_t full = 0;
      for (int64_t j = first + 1; j <= newest; ++j) {
        if (++r == kRing) r = 0;
        full += w.counts[r].load(std::memory_order_relaxed);
      }
      if (oldest == 0 && full == 0) return 0;
      // In double, as for token bucket: a score needs no exact integers.
      const int64_t elapsed = std::clamp<int64_t>(now - c * p.sub, 0, p.sub - 1);
      const double estimate = static_cast<double>(full) + static_cast<double>(oldest) *
                                                              static_cast<double>(p.sub - elapsed) /
                                                              static_cast<double>(p.sub);
      return 1 + static_cast<uint64_t>(std::min(estimate / static_cast<double>(p.quota), 4.0) *
                                       kShareScale);
    }
    case config::RateAlgorithm::kConcurrency: {
      const auto w = static_cast<uint64_t>(slot.state.load(std::memory_order_relaxed));
      return (w & kCountMask) == 0 ? 0 : UINT64_MAX;
    }
  }
  return UINT64_MAX;
}

bool RateLimiter::claim(Table& t, uint32_t index, uint64_t expected_hash) {
  Slot& slot = t.slots[index];
  if (slot.hash.load(std::memory_order_relaxed) != expected_hash) return false;
  if (expected_hash == 0) {
    // An unused entry has no updaters yet, but will as soon as a hash is visible: they must not
    // see the unused state as their key's.
    slot.state.store(algorithm_ == config::RateAlgorithm::kConcurrency
                         ? static_cast<int64_t>(kLockedCount)
                         : kLockedTat,
                     std::memory_order_relaxed);
    return true;
  }
  if (algorithm_ == config::RateAlgorithm::kTokenBucket) {
    int64_t s = slot.state.load(std::memory_order_acquire);
    return s != kLockedTat &&
           slot.state.compare_exchange_strong(s, kLockedTat, std::memory_order_acq_rel);
  }
  if (algorithm_ == config::RateAlgorithm::kConcurrency) {
    int64_t w = slot.state.load(std::memory_order_acquire);
    return (static_cast<uint64_t>(w) & kCountMask) == 0 &&
           slot.state.compare_exchange_strong(
               w, static_cast<int64_t>(static_cast<uint64_t>(w) | kLockedCount),
               std::memory_order_acq_rel);
  }
  return true;  // sliding window: its updaters hold the entry's lock, which the caller holds
}

RateDecision RateLimiter::insert(Table& t, std::string_view key, uint64_t hash, int64_t now,
                                 RateTicket* ticket, bool* retry) {
  if (!t.open.load(std::memory_order_acquire)) {
    // A growth is waiting for the smaller table's insertions to end (microseconds).
    std::this_thread::yield();
    *retry = true;
    return {};
  }
  const uint32_t h0 = home(t, hash);
  if (const Table* from = t.prev.load(std::memory_order_acquire);
      from != nullptr && !moved_around(t, *from, h0)) {
    // Keys still to be moved may need this window: wait for the growth to pass it.
    std::this_thread::yield();
    *retry = true;
    return {};
  }
  std::atomic<uint32_t>& stripe = t.stripes[h0 & t.stripe_mask];
  spin_lock(stripe);
  // A larger table took over (this thread read the table before it was published): look there.
  // Every insertion of this key goes through this stripe: if another thread inserted it while
  // we were looking, use its entry; during a growth it may still be in the smaller table.
  Table* prev = t.prev.load(std::memory_order_acquire);
  if (t.frozen.load(std::memory_order_acquire) || find(t, hash) >= 0 ||
      (prev != nullptr && find(*prev, hash) >= 0)) {
    spin_unlock(stripe);
    *retry = true;
    return {};
  }
  for (;;) {
    // The victim: an unused entry, else one without information, else (the table cannot grow)
    // the one closest to full.
    int64_t unused = -1;
    int64_t best = -1;
    uint64_t best_fill = UINT64_MAX;
    uint64_t best_hash = 0;
    uint32_t idx = h0;
    for (uint32_t i = 0; i < probe_; ++i, idx = idx + 1 == t.capacity ? 0 : idx + 1) {
      const uint64_t h = t.slots[idx].hash.load(std::memory_order_acquire);
      if (h == 0) {
        if (unused < 0) unused = idx;
        continue;
      }
      const uint64_t f = fill(t, idx, now);
      if (f < best_fill) {
        best = idx;
        best_fill = f;
        best_hash = h;
      }
    }
    const bool counted = unused >= 0 && reserve_key();
    if (counted) {
      best = unused;
      best_hash = 0;
    } else if (best_fill != 0 && t.capacity < max_capacity_ &&
               !grow_failed_.load(std::memory_order_relaxed)) {
      // No room without evicting: make the table larger instead.
      spin_unlock(stripe);
      grow(t, now);
      *retry = true;
      return {};
    }
    if (best < 0 && algorithm_ != config::RateAlgorithm::kConcurrency) {
      cpu_relax();  // every entry in reach is being replaced by other insertions right now
      continue;
    }
    if (best < 0) {
      // Concurrency: every entry in reach has requests in flight. Let the request pass
      // untracked rather than fail requests of new keys (documented; counted).
      spin_unlock(stripe);
      untracked_.fetch_add(1, std::memory_order_relaxed);
      RateDecision d;
      d.limit = params(override_for(key)).quota;
      d.remaining = d.limit - 1;
      return d;
    }

    const auto b = static_cast<uint32_t>(best);
    Slot& slot = t.slots[b];
    std::atomic<uint32_t>& lock = entry_lock(t, b);
    spin_lock(lock);
    // Take the entry away from lock-free updaters before changing its key; give up on this
    // victim if it changed since we scored it.
    if (!claim(t, b, best_hash)) {
      spin_unlock(lock);
      if (counted) key_count_.fetch_sub(1, std::memory_order_relaxed);
      continue;
    }

    const uint32_t limit_index = override_for(key);
    const Params p = params(limit_index);
    const uint32_t gen = slot.generation.load(std::memory_order_relaxed) + 1;
    slot.generation.store(gen, std::memory_order_relaxed);
    slot.limit.store(limit_index, std::memory_order_relaxed);
    slot.stats.allowed.store(1, std::memory_order_relaxed);
    slot.stats.rejected.store(0, std::memory_order_relaxed);
    if (t.windows) {
      t.windows[b].allowed.store(0, std::memory_order_relaxed);
      t.windows[b].rejected.store(0, std::memory_order_relaxed);
    }
    slot.hash.store(hash, std::memory_order_release);
    KeyText& kt = t.keys[b];
    kt.len = static_cast<uint8_t>(std::min(key.size(), kKeyTextBytes));
    std::memcpy(kt.text, key.data(), kt.len);

    // The entry starts with this request already counted (the first request of a key always
    // passes: every quota is at least 1), so a competing insertion sees it as in use.
    RateDecision d;
    d.limit = p.quota;
    d.remaining = p.quota - 1;
    int64_t stamp = 0;
    switch (algorithm_) {
      case config::RateAlgorithm::kTokenBucket:
        d.reset = nanoseconds(p.interval);
        d.remaining = p.quota - 1;  // == (tolerance - interval) / interval + 1, unless clamped
        slot.state.store(now + p.interval, std::memory_order_release);
        break;
      case config::RateAlgorithm::kSlidingWindow: {
        Window& w = t.windows[b];
        stamp = floor_div(now, p.sub);
        for (auto& n : w.counts) n.store(0, std::memory_order_relaxed);
        w.counts[ring(stamp)].store(1, std::memory_order_relaxed);
        w.newest.store(stamp, std::memory_order_relaxed);
        d.reset = nanoseconds((stamp + kRing) * p.sub - now);
        break;
      }
      case config::RateAlgorithm::kConcurrency:
        slot.state.store(static_cast<int64_t>((uint64_t{gen} << 32) | 1),
                         std::memory_order_release);
        break;
    }
    spin_unlock(lock);
    spin_unlock(stripe);
    if (best_hash != 0) evictions_.fetch_add(1, std::memory_order_relaxed);
    *ticket = RateTicket{b, gen, stamp, hash, t.level};
    return d;
  }
}

// A key of `from` lands in `to` at about twice its home there (multiply-shift homes; at most
// to.capacity / from.capacity times it, rounded down): one that takes an entry of the window at
// `h0` has its home in `to` below h0 + probe, hence its home in `from` at most `last` below and
// its entry in `from` below last + probe. Once the growth has moved those, new keys cannot take
// a moved key's last free entry. Windows that wrap around the end wait for the whole move.
bool RateLimiter::moved_around(const Table& to, const Table& from, uint32_t h0) const {
  if (h0 < probe_ || uint64_t{h0} + probe_ > to.capacity) return false;
  const uint64_t last = (uint64_t{h0} + probe_) * from.capacity / to.capacity;
  return from.moved.load(std::memory_order_acquire) > last + probe_;
}

// Runs in the acquire whose new key found no room. Readers and updaters of existing keys go on
// meanwhile (see the header); insertions of new keys wait while the smaller table's last
// insertions end (the stripe barrier below), then until the move has passed their region
// (moved_around).
void RateLimiter::grow(Table& t, int64_t now) {
  std::unique_lock<std::mutex> lk(grow_mu_, std::try_to_lock);
  if (!lk.owns_lock()) {
    std::this_thread::yield();  // another thread is growing the table
    return;
  }
  if (table_.load(std::memory_order_acquire) != &t || t.capacity >= max_capacity_) return;
  const auto capacity =
      static_cast<uint32_t>(std::min<uint64_t>(uint64_t{t.capacity} * 2, max_capacity_));
  auto made = Table::make(capacity, t.level + 1, t.windows != nullptr);
  if (!made) {
    grow_failed_.store(true, std::memory_order_relaxed);
    return;
  }
  Table* n = made.get();
  n->prev.store(&t, std::memory_order_relaxed);
  n->open.store(false, std::memory_order_relaxed);
  tables_.push_back(std::move(made));
  table_.store(n, std::memory_order_seq_cst);
  // Stop insertions into the smaller table: one that took its stripe before `frozen` was set
  // has finished once we got the stripe; later ones see `frozen` and go to the larger table.
  t.frozen.store(true, std::memory_order_seq_cst);
  for (uint32_t i = 0; i <= t.stripe_mask; ++i) {
    spin_lock(t.stripes[i]);
    spin_unlock(t.stripes[i]);
  }
  // From here the smaller table only loses entries, so an insertion into the larger one that
  // finds its key in neither table may create it.
  n->open.store(true, std::memory_order_release);
  for (uint32_t i = 0; i < t.entries(); ++i) {
    move_entry(t, i, *n, now);
    t.moved.store(i + 1, std::memory_order_release);
  }
  n->prev.store(nullptr, std::memory_order_release);
  t.retire();
  growths_.fetch_add(1, std::memory_order_relaxed);
}

void RateLimiter::move_entry(Table& from, uint32_t index, Table& to, int64_t now) {
  Slot& src = from.slots[index];
  std::atomic<uint32_t>& src_lock = entry_lock(from, index);
  spin_lock(src_lock);
  const uint64_t hash = src.hash.load(std::memory_order_relaxed);
  if (hash == 0) {
    spin_unlock(src_lock);
    return;
  }
  // Freeze the state: lock-free updaters fail their CAS from here on and look again. No claim
  // can hold it (claims hold the entry lock), so the loops only wait out updaters' CASes.
  int64_t state = 0;
  if (algorithm_ == config::RateAlgorithm::kTokenBucket) {
    state = src.state.load(std::memory_order_acquire);
    while (!src.state.compare_exchange_weak(state, kLockedTat, std::memory_order_acq_rel,
                                            std::memory_order_acquire)) {
    }
  } else if (algorithm_ == config::RateAlgorithm::kConcurrency) {
    state = src.state.load(std::memory_order_acquire);
    while (!src.state.compare_exchange_weak(
        state, static_cast<int64_t>(static_cast<uint64_t>(state) | kLockedCount),
        std::memory_order_acq_rel, std::memory_order_acquire)) {
    }
  }

  const uint32_t h0 = home(to, hash);
  std::atomic<uint32_t>& stripe = to.stripes[h0 & to.stripe_mask];
  spin_lock(stripe);
  bool placed = false;
  // Insertions of this key into `to` look in `from` under this stripe, so it cannot be in `to`.
  while (find(to, hash) < 0) {
    int64_t best = -1;
    uint64_t best_fill = UINT64_MAX;
    uint64_t best_hash = 0;
    uint32_t idx = h0;
    for (uint32_t i = 0; i < probe_; ++i, idx = idx + 1 == to.capacity ? 0 : idx + 1) {
      const uint64_t h = to.slots[idx].hash.load(std::memory_order_acquire);
      if (h == 0) {
        best = idx;
        best_hash = 0;
        break;
      }
      const uint64_t f = fill(to, idx, now);
      if (f < best_fill) {
        best = idx;
        best_fill = f;
        best_hash = h;
      }
    }
    if (best < 0 || best_hash != 0) {
      // No unused entry in the window (keys inserted into the larger table meanwhile can fill
      // it): keep the key past the table's end rather than evict a key from a table with room.
      for (uint32_t i = to.capacity; i < to.entries(); ++i) {
        if (to.slots[i].hash.load(std::memory_order_acquire) == 0) {
          best = i;
          best_hash = 0;
          break;
        }
      }
    }
    // Else evict the window's entry closest to empty; a window all in flight (concurrency):
    // drop the moved key. Both are counted as evictions.
    if (best < 0) break;
    const auto b = static_cast<uint32_t>(best);
    Slot& dst = to.slots[b];
    std::atomic<uint32_t>& lock = entry_lock(to, b);
    spin_lock(lock);
    if (!claim(to, b, best_hash)) {
      spin_unlock(lock);
      continue;
    }
    // Before the key shows: a reader that misses it in `to` finds it still in `from`.
    if (b >= to.capacity) to.stashed.store(true, std::memory_order_release);
    if (best_hash != 0) {
      // Evicted to make room for the moved key: the key count is unchanged overall.
      key_count_.fetch_sub(1, std::memory_order_relaxed);
      evictions_.fetch_add(1, std::memory_order_relaxed);
    }
    dst.generation.store(src.generation.load(std::memory_order_relaxed), std::memory_order_relaxed);
    dst.limit.store(src.limit.load(std::memory_order_relaxed), std::memory_order_relaxed);
    dst.stats.allowed.store(src.stats.allowed.load(std::memory_order_relaxed),
                            std::memory_order_relaxed);
    dst.stats.rejected.store(src.stats.rejected.load(std::memory_order_relaxed),
                             std::memory_order_relaxed);
    if (to.windows) {
      const Window& sw = from.windows[index];
      Window& dw = to.windows[b];
      for (int r = 0; r < kRing; ++r)
        dw.counts[r].store(sw.counts[r].load(std::memory_order_relaxed), std::memory_order_relaxed);
      dw.newest.store(sw.newest.load(std::memory_order_relaxed), std::memory_order_relaxed);
      dw.allowed.store(sw.allowed.load(std::memory_order_relaxed), std::memory_order_relaxed);
      dw.rejected.store(sw.rejected.load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
    to.keys[b] = from.keys[index];
    dst.hash.store(hash, std::memory_order_release);
    if (algorithm_ != config::RateAlgorithm::kSlidingWindow) {
      dst.state.store(state, std::memory_order_release);
    }
    spin_unlock(lock);
    placed = true;
    break;
  }
  spin_unlock(stripe);
  if (!placed) {
    key_count_.fetch_sub(1, std::memory_order_relaxed);
    evictions_.fetch_add(1, std::memory_order_relaxed);
  }
  // Readers of the smaller table no longer find the key; its state word stays locked.
  src.hash.store(0, std::memory_order_release);
  spin_unlock(src_lock);
}

void RateLimiter::refund(const RateTicket& t, core::MonoTime now) {
  if (t.slot == UINT32_MAX) return;
  if (algorithm_ == config::RateAlgorithm::kConcurrency) {
    release(t);
    return;
  }
  const int64_t n = to_ns(now);
  // The loops look the entry up again after any change: it may have moved to a larger table.
  for (;;) {
    const Located at = locate(t);
    if (at.table == nullptr) return;  // evicted
    Slot& slot = at.table->slots[at.index];
    if (algorithm_ == config::RateAlgorithm::kTokenBucket) {
      int64_t s = slot.state.load(std::memory_order_acquire);
      if (s == kLockedTat) {  // being moved or replaced
        cpu_relax();
        continue;
      }
      // Read after the state: a state read from another tenancy (or a retired, zeroed table)
      // fails one of these.
      if (slot.hash.load(std::memory_order_acquire) != t.hash) continue;
      if (slot.generation.load(std::memory_order_acquire) != t.generation) return;
      if (s <= n) return;  // the bucket is full already
      const Params p = params(slot.limit.load(std::memory_order_relaxed));
      // Never 0: a zeroed (retired) word must not match any live TAT.
      const int64_t back = std::max<int64_t>({s - p.interval, n, 1});
      if (slot.state.compare_exchange_strong(s, back, std::memory_order_acq_rel)) return;
      continue;
    }
    Window& w = at.table->windows[at.index];
    spin_lock(w.lock);
    if (slot.hash.load(std::memory_order_relaxed) != t.hash) {
      spin_unlock(w.lock);
      continue;
    }
    if (slot.generation.load(std::memory_order_relaxed) == t.generation) {
      const int64_t newest = w.newest.load(std::memory_order_relaxed);
      // Still counted (not yet cleared for a later sub-window)?
      if (t.stamp <= newest && t.stamp > newest - kRing) {
        auto& c = w.counts[ring(t.stamp)];
        const uint32_t v = c.load(std::memory_order_relaxed);
        if (v > 0) c.store(v - 1, std::memory_order_relaxed);
      }
    }
    spin_unlock(w.lock);
    return;
  }
}

void RateLimiter::release(const RateTicket& t) {
  if (algorithm_ != config::RateAlgorithm::kConcurrency || t.slot == UINT32_MAX) return;
  for (;;) {
    const Located at = locate(t);
    if (at.table == nullptr) return;
    Slot& slot = at.table->slots[at.index];
    const int64_t w = slot.state.load(std::memory_order_acquire);
    const auto u = static_cast<uint64_t>(w);
    if ((u & kCountMask) == kLockedCount) {  // being moved (a claim needs 0 in flight)
      cpu_relax();
      continue;
    }
    if (slot.hash.load(std::memory_order_acquire) != t.hash) continue;  // moved, or zeroed
    // An entry with requests in flight is never replaced, so a matching generation means the
    // count includes this ticket's request.
    if ((u >> 32) != t.generation || (u & kCountMask) == 0) return;
    int64_t expected = w;
    if (slot.state.compare_exchange_strong(expected, w - 1, std::memory_order_acq_rel)) return;
  }
}

std::vector<RateLimiter::HotKey> RateLimiter::hot_keys(size_t n) const {
  struct Candidate {
    uint64_t total;
    uint32_t index;
  };
  // The current table; during a growth, keys not moved yet are missing from this answer.
  const Table& t = *table_.load(std::memory_order_acquire);
  std::vector<Candidate> all;
  for (uint32_t i = 0; i < t.entries(); ++i) {
    if (t.slots[i].hash.load(std::memory_order_relaxed) == 0) continue;
    const HotKey c = counts_of(t, i);
    all.push_back({c.allowed + c.rejected, i});
  }
  const size_t k = std::min(n, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<ptrdiff_t>(k), all.end(),
                    [](const Candidate& a, const Candidate& b) {
                      return a.total != b.total ? a.total > b.total : a.index < b.index;
                    });
  std::vector<HotKey> out;
  out.reserve(k);
  for (size_t i = 0; i < k; ++i) {
    std::atomic<uint32_t>& lock = entry_lock(t, all[i].index);
    // The key text changes only under the entry's lock.
    spin_lock(lock);
    const KeyText kt = t.keys[all[i].index];
    spin_unlock(lock);
    HotKey k = counts_of(t, all[i].index);
    k.key.assign(kt.text, kt.len);
    out.push_back(std::move(k));
  }
  return out;
}

}  // namespace sluice::governance
