#include "governance/cluster_quota.h"

#include <signal.h>
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <new>
#include <stdexcept>

#include "core/random.h"
#include "governance/cluster_quota_scripts.h"
#include "governance/redis_link.h"

namespace sluice::governance {

namespace {

using namespace quota_scripts;  // the script indices

using std::chrono::nanoseconds;

constexpr int64_t kMs = 1'000'000;  // ns

// Slot word: fingerprint (32) | primed (1) | exhausted (1) | tokens (30).
constexpr uint64_t kTokenMask = (uint64_t{1} << 30) - 1;
constexpr uint64_t kExhausted = uint64_t{1} << 30;
constexpr uint64_t kPrimed = uint64_t{1} << 31;
constexpr uint64_t kBusy = 2;  // tags are odd, so no key has this one
constexpr size_t kProbe = 8;   // slots a key may live in: its home slot and the next 7

// A lease is 1/kLeaseDivisor of the limit split between the gateways: small enough that what all
// gateways hold is a few percent of the limit, large enough that a hot key costs Redis about
// kLeaseDivisor * gateways calls per period.
constexpr uint64_t kLeaseDivisor = 40;
constexpr uint64_t kMaxLease = uint64_t{1} << 28;
constexpr size_t kQueueSize = 16384;
constexpr size_t kMaxBatch = 256;
constexpr nanoseconds kMaxSleep = std::chrono::milliseconds(50);
constexpr double kDemandTau = 1.0;  // s: time constant of a key's demand average

uint32_t fingerprint(uint64_t tag) {
  return static_cast<uint32_t>(tag);
}
uint32_t fingerprint_of_word(uint64_t w) {
  return static_cast<uint32_t>(w >> 32);
}
uint64_t make_word(uint32_t fp, uint64_t flags, uint64_t tokens) {
  return (uint64_t{fp} << 32) | flags | std::min(tokens, kTokenMask);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The queue from workers to the client thread: Dmitry Vyukov's bounded MPMC queue, used with one
// consumer. A push is one CAS; it never blocks and never allocates.

struct QuotaClient::OpQueue {
  struct Cell {
    std::atomic<size_t> seq{0};
    Op op;
  };
  explicit OpQueue(size_t n) : mask(n - 1), cells(new Cell[n]) {
    for (size_t i = 0; i < n; ++i) cells[i].seq.store(i, std::memory_order_relaxed);
  }
  bool push(const Op& op) {
    size_t pos = tail.load(std::memory_order_relaxed);
    for (;;) {
      Cell& c = cells[pos & mask];
      size_t seq = c.seq.load(std::memory_order_acquire);
      auto dif = static_cast<intptr_t>(seq) - static_cast<intptr_t>(pos);
      if (dif == 0) {
        if (tail.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          c.op = op;
          c.seq.store(pos + 1, std::memory_order_release);
          return true;
        }
      } else if (dif < 0) {
        return false;  // full
      } else {
        pos = tail.load(std::memory_order_relaxed);
      }
    }
  }
  bool pop(Op& out) {
    Cell& c = cells[head & mask];
    size_t seq = c.seq.load(std::memory_order_acquire);
    if (static_cast<intptr_t>(seq) - static_cast<intptr_t>(head + 1) < 0) return false;
    out = c.op;
    c.seq.store(head + mask + 1, std::memory_order_release);
    ++head;
    return true;
  }
  bool empty() const {
    const Cell& c = cells[head & mask];
    return static_cast<intptr_t>(c.seq.load(std::memory_order_acquire)) -
               static_cast<intptr_t>(head + 1) <
           0;
  }

  const size_t mask;
  std::unique_ptr<Cell[]> cells;
  alignas(64) std::atomic<size_t> tail{0};
  alignas(64) size_t head = 0;  // consumer only
};

// What to do with the reply of one refill of a pipelined round trip.
struct QuotaClient::PendingCall {
  ClusterLimiter* limiter = nullptr;  // refills only
  Op op;
  uint32_t asked = 0;
  uint32_t debt = 0;  // local admissions charged with this refill
};

// ---------------------------------------------------------------------------------------------
// QuotaClient

QuotaClient::QuotaClient(Options o)
    : options_(std::move(o)),
      clock_(options_.clock != nullptr ? options_.clock : &core::SteadyClock::instance()),
      queue_(new OpQueue(kQueueSize)) {
  if (options_.timeout <= nanoseconds(0)) options_.timeout = std::chrono::milliseconds(20);
  if (options_.heartbeat_interval <= nanoseconds(0))
    options_.heartbeat_interval = std::chrono::seconds(1);
  if (options_.lease_idle <= nanoseconds(0)) options_.lease_idle = std::chrono::milliseconds(500);
  // Two gateways configured with the same node id must still count as two.
  char suffix[24];
  std::snprintf(suffix, sizeof suffix, ":%016llx",
                static_cast<unsigned long long>(core::Rng().next_u64()));
  member_ = (options_.node_id.empty() ? std::string("sluice") : options_.node_id) + suffix;
  gateways_key_ = options_.key_prefix + "gateways";
  RedisLink::Options lo;
  lo.address = options_.address;
  lo.timeout = options_.timeout;
  for (size_t i = 0; i < quota_scripts::kCount; ++i)
    lo.scripts.push_back(quota_scripts::text(static_cast<quota_scripts::Script>(i)));
  link_ = std::make_unique<RedisLink>(std::move(lo), *clock_);
}

QuotaClient::~QuotaClient() {
  stop();
  std::lock_guard<std::mutex> lock(limiters_mu_);
  for (auto& [id, lim] : limiters_) lim->orphaned_.store(true, std::memory_order_release);
}

void QuotaClient::start() {
  if (running_.exchange(true)) return;
  thread_ = std::thread([this] { run(); });
}

void QuotaClient::stop() {
  if (!running_.exchange(false)) return;
  {
    std::lock_guard<std::mutex> lock(wake_mu_);
    wake_cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

bool QuotaClient::healthy() const {
  return usable(now_ns());
}

bool QuotaClient::usable(int64_t now_ns) const {
  if (!healthy_.load(std::memory_order_acquire) || !link_->up()) return false;
  // A round trip that has run longer than the timeout will fail; do not wait for it to.
  const int64_t busy = link_->busy_since();
  return busy == 0 || now_ns - busy <= options_.timeout.count();
}

uint32_t QuotaClient::gateways() const {
  if (options_.gateways_hint > 0) return options_.gateways_hint;
  return std::max<uint32_t>(1, discovered_.load(std::memory_order_relaxed));
}

uint32_t QuotaClient::current_gateways() const {
  return gateways();
}

QuotaClient::Stats QuotaClient::stats() const {
  return Stats{link_->calls(), link_->errors(), link_->reconnects(), healthy(), gateways()};
}

bool QuotaClient::submit(const Op& op) {
  if (!queue_->push(op)) return false;
  // Pairs with the fence after sleeping_ is set in run(): either the thread sees the op before it
  // sleeps, or we see it sleeping and wake it.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (sleeping_.load(std::memory_order_relaxed)) {
    std::lock_guard<std::mutex> lock(wake_mu_);
    wake_cv_.notify_one();
  }
  return true;
}

uint64_t QuotaClient::attach(ClusterLimiter* limiter) {
  std::lock_guard<std::mutex> lock(limiters_mu_);
  uint64_t id = next_limiter_id_++;
  limiters_.emplace(id, limiter);
  return id;
}

void QuotaClient::detach(uint64_t id) {
  std::lock_guard<std::mutex> lock(limiters_mu_);
  limiters_.erase(id);
}

void QuotaClient::give_back(std::vector<FinalReturn> returns) {
  if (returns.empty()) return;
  std::lock_guard<std::mutex> lock(limiters_mu_);
  for (auto& r : returns) final_returns_.push_back(std::move(r));
}

std::string QuotaClient::script_now() const {
  if (!options_.scripts_use_clock) return "0";
  return std::to_string(std::max<int64_t>(1, now_ns() / 1000));
}

void QuotaClient::run() {
  // hiredis writes with write(2): a peer that went away must give EPIPE, not kill the process.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  std::vector<Op> ops;
  ops.reserve(kMaxBatch);
  while (running_.load(std::memory_order_acquire)) {
    if (!link_->connected()) connect();

    ops.clear();
    Op op;
    while (ops.size() < kMaxBatch && queue_->pop(op)) ops.push_back(op);

    if (!link_->connected()) {
      discard(ops);
    } else {
      if (now_ns() >= next_heartbeat_ns_) heartbeat(now_ns());
      if (link_->connected() && !ops.empty()) process(ops, now_ns());
      if (link_->connected()) send_final_returns();
      if (link_->connected() && now_ns() >= next_idle_scan_ns_) {
        return_idle(now_ns(), false);
        next_idle_scan_ns_ = now_ns() + std::max<int64_t>(kMs, options_.lease_idle.count() / 4);
      }
      if (!link_->connected()) discard(ops);  // the round trip failed: nothing of it was credited
    }
    if (!link_->connected()) healthy_.store(false, std::memory_order_release);
    if (!queue_->empty()) continue;

    // Sleep until the next thing due, at most kMaxSleep of real time.
    int64_t wait = kMaxSleep.count();
    if (!link_->connected()) {
      wait = std::min(wait, link_->connect_wait_ns());
    } else {
      const int64_t now = now_ns();
      wait = std::min({wait, next_heartbeat_ns_ - now, next_idle_scan_ns_ - now});
    }
    if (wait <= 0) continue;
    std::unique_lock<std::mutex> lock(wake_mu_);
    sleeping_.store(true, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (queue_->empty() && running_.load(std::memory_order_acquire))
      wake_cv_.wait_for(lock, nanoseconds(wait));
    sleeping_.store(false, std::memory_order_relaxed);
  }

  // Leaving: hand back what this gateway still holds so the others can use it at once.
  if (link_->connected()) {
    return_idle(now_ns(), true);
    if (link_->connected()) send_final_returns();
    if (link_->connected()) leave();
  }
  link_->disconnect();
}

bool QuotaClient::connect() {
  if (!link_->connect()) return false;
  heartbeat(now_ns());  // learn the gateway count before the first lease is sized
  if (!link_->connected()) return false;
  healthy_.store(true, std::memory_order_release);
  return true;
}

void QuotaClient::heartbeat(int64_t now_ns) {
  next_heartbeat_ns_ = now_ns + options_.heartbeat_interval.count();
  const int64_t ttl_ms = std::max<int64_t>(1, 3 * options_.heartbeat_interval.count() / kMs);
  std::vector<RedisLink::Call> calls;
  calls.push_back(link_->evalsha(kHeartbeat, gateways_key_, {member_, std::to_string(ttl_ms)}));
  if (!link_->round_trip(calls)) return;
  const RedisReply& r = calls[0].reply;
  if (r.type == RedisReply::Type::kInteger && r.integer > 0) {
    discovered_.store(static_cast<uint32_t>(std::min<int64_t>(r.integer, UINT32_MAX)),
                      std::memory_order_relaxed);
  } else if (r.noscript()) {
    link_->fail();  // the reconnect loads the scripts again
  } else {
    link_->count_error();
  }
}

void QuotaClient::leave() {
  std::vector<RedisLink::Call> calls(1);
  calls[0].args = {"ZREM", gateways_key_, member_};
  link_->round_trip(calls);
}

// Ops that cannot be sent: release the keys' refill claims so workers ask again later.
void QuotaClient::discard(std::vector<Op>& ops) {
  if (ops.empty()) return;
  std::lock_guard<std::mutex> lock(limiters_mu_);
  for (const Op& op : ops) {
    if (op.kind != Op::Kind::kRefill) continue;
    auto it = limiters_.find(op.limiter_id);
    if (it == limiters_.end()) continue;
    it->second->slots_[op.slot].refill_sent_ns.store(0, std::memory_order_release);
  }
  ops.clear();
}

namespace {

// The arguments of one lease call, after the key.
std::vector<std::string> lease_args(bool sliding, uint64_t requests, uint64_t burst, int64_t per_us,
                                    uint32_t asked, const std::string& member, double demand,
                                    int64_t hold_us, std::string now) {
  char demand_text[32];
  std::snprintf(demand_text, sizeof demand_text, "%.6g", demand);
  if (sliding) {
    const int64_t ttl_ms = 2 * (per_us / 1000) + 1000;
    return {std::to_string(requests),
            std::to_string(per_us),
            std::to_string(asked),
            std::to_string(ttl_ms),
            member,
            demand_text,
            std::to_string(hold_us),
            std::move(now)};
  }
  const auto fill_ms =
      static_cast<int64_t>(static_cast<double>(burst) * static_cast<double>(per_us) /
                           static_cast<double>(requests) / 1000.0);
  return {std::to_string(requests),
          std::to_string(per_us),
          std::to_string(burst),
          std::to_string(asked),
          std::to_string(fill_ms + 1000),
          member,
          demand_text,
          std::to_string(hold_us),
          std::move(now)};
}

}  // namespace

// The arguments of one give-back call, after the key.
std::vector<std::string> QuotaClient::return_args(bool sliding, uint64_t requests, uint64_t burst,
                                                  int64_t per_us, uint32_t count,
                                                  int64_t window) const {
  if (sliding) return {std::to_string(count), std::to_string(window), member_};
  return {std::to_string(requests),
          std::to_string(per_us),
          std::to_string(burst),
          std::to_string(count),
          member_,
          script_now()};
}

double ClusterLimiter::average_demand(double previous, uint32_t seen, int64_t dt_ns) {
  const double dt = static_cast<double>(std::max<int64_t>(kMs, dt_ns)) / 1e9;
  const double alpha = 1.0 - std::exp(-dt / kDemandTau);
  return previous + alpha * (static_cast<double>(seen) / dt - previous);
}

// Requests/s this gateway sees for the key (all outcomes), updated at each refill.
double ClusterLimiter::update_demand(Slot& s, int64_t now_ns) {
  const uint32_t seen = s.seen.exchange(0, std::memory_order_relaxed);
  const int64_t since = s.demand_ns.load(std::memory_order_relaxed);
  const double demand =
      average_demand(s.demand.load(std::memory_order_relaxed), seen, now_ns - since);
  s.demand.store(demand, std::memory_order_relaxed);
  s.demand_ns.store(now_ns, std::memory_order_relaxed);
  return demand;
}

// A gateway stays in the other gateways' shares until the time it said it would come back, plus
// this: long enough for a busy client thread, short enough that a gateway whose traffic stopped
// leaves the shares soon.
int64_t QuotaClient::demand_hold_us() const {
  return std::max<int64_t>(2 * options_.lease_idle.count(), 200 * kMs) / 1000;
}

void QuotaClient::process(std::vector<Op>& ops, int64_t now_ns) {
  std::lock_guard<std::mutex> lock(limiters_mu_);
  const uint32_t gateways = current_gateways();
  std::vector<RedisLink::Call> calls;
  std::vector<PendingCall> pending;
  calls.reserve(ops.size());
  pending.reserve(ops.size());
  for (const Op& op : ops) {
    auto it = limiters_.find(op.limiter_id);
    if (it == limiters_.end()) continue;
    ClusterLimiter* lim = it->second;
    const ClusterLimiter::Limit& limit =
        lim->limits_[std::min<size_t>(op.limit_index, lim->limits_.size() - 1)];
    PendingCall call;
    call.op = op;
    if (op.kind == Op::Kind::kReturn) {
      calls.push_back(link_->evalsha(lim->sliding_ ? kWindowReturn : kBucketReturn,
                                     lim->redis_key(op.tag),
                                     return_args(lim->sliding_, limit.requests, limit.burst,
                                                 limit.per_us, op.count, op.window)));
    } else {
      ClusterLimiter::Slot& s = lim->slots_[op.slot];
      if (s.tag.load(std::memory_order_acquire) != op.tag) {
        s.refill_sent_ns.store(0, std::memory_order_release);  // the key left the slot
        continue;
      }
      call.limiter = lim;
      // Requests admitted by the local share while this key had no lease are charged now, on
      // top of the lease (they are part of the cluster's total).
      call.debt = s.debt.exchange(0, std::memory_order_acq_rel);
      const uint32_t lease = ClusterLimiter::lease_size(limit.requests, limit.burst, gateways);
      call.asked =
          static_cast<uint32_t>(std::min<uint64_t>(uint64_t{lease} + call.debt, kMaxLease));
      const double demand = ClusterLimiter::update_demand(s, now_ns);
      calls.push_back(
          link_->evalsha(lim->sliding_ ? kWindow : kBucket, lim->redis_key(op.tag),
                         lease_args(lim->sliding_, limit.requests, limit.burst, limit.per_us,
                                    call.asked, member_, demand, demand_hold_us(), script_now())));
    }
    pending.push_back(call);
  }
  ops.clear();
  if (calls.empty()) return;

  const bool ok = link_->round_trip(calls);
  const int64_t now = this->now_ns();
  bool noscript = false;
  for (size_t i = 0; i < calls.size(); ++i) {
    const RedisReply& r = calls[i].reply;
    PendingCall& call = pending[i];
    if (r.is_error()) {
      link_->count_error();
      if (r.noscript()) noscript = true;
    }
    if (call.limiter == nullptr) continue;
    ClusterLimiter::Slot& s = call.limiter->slots_[call.op.slot];
    bool settle = false;
    if (ok && r.type == RedisReply::Type::kArray && r.count >= 4) {
      const auto granted =
          static_cast<uint64_t>(std::clamp<int64_t>(r.at(0), 0, static_cast<int64_t>(call.asked)));
      const int64_t remaining = r.at(1);
      const int64_t wait_us = std::clamp<int64_t>(r.at(2), 0, INT64_MAX / 2000);
      const int64_t reset_us = std::clamp<int64_t>(r.at(3), 0, INT64_MAX / 2000);
      const int64_t window = r.count >= 5 ? r.at(4) : 0;
      const bool exhausted = granted < call.asked;
      // What the local share admitted is paid first; what Redis could not cover stays owed.
      const uint64_t paid = std::min<uint64_t>(granted, call.debt);
      const uint64_t owed = call.debt - paid;
      // Advisory fields first, so a worker that sees the new tokens also sees them.
      s.next_refill_ns.store(exhausted ? now + wait_us * 1000 : 0, std::memory_order_relaxed);
      s.redis_remaining.store(static_cast<uint32_t>(std::clamp<int64_t>(remaining, 0, UINT32_MAX)),
                              std::memory_order_relaxed);
      s.reset_at_ns.store(now + reset_us * 1000, std::memory_order_relaxed);
      if (granted > 0) s.lease_window.store(window, std::memory_order_relaxed);
      const uint32_t fp = fingerprint(call.op.tag);
      uint64_t w = s.word.load(std::memory_order_acquire);
      bool credited = false;
      while (fingerprint_of_word(w) == fp) {
        const uint64_t tokens = (w & kTokenMask) + granted - paid;
        const uint64_t nw = make_word(fp, kPrimed | (exhausted ? kExhausted : 0), tokens);
        if (s.word.compare_exchange_weak(w, nw, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
          credited = true;
          break;
        }
      }
      if (credited) {
        if (owed > 0) call.limiter->add_debt(s, owed);
        // Local admissions made while this refill was on its way: settle them now rather
        // than with the key's next request, which may never come.
        settle = !exhausted && s.debt.load(std::memory_order_relaxed) > 0;
        if (!call.limiter->in_leased_[call.op.slot]) {
          call.limiter->in_leased_[call.op.slot] = 1;
          call.limiter->leased_.push_back(call.op.slot);
        }
      } else if (granted > paid) {
        // The key was evicted while its refill was in flight: the grant goes straight back.
        Op back;
        back.kind = Op::Kind::kReturn;
        back.limiter_id = call.op.limiter_id;
        back.limit_index = call.op.limit_index;
        back.tag = call.op.tag;
        back.count = static_cast<uint32_t>(granted - paid);
        back.window = window;
        submit(back);
      }
    } else {
      // No grant: the debt is still owed (if the key is still here). A reply of another shape
      // than the script's counts as a failed call.
      if (call.debt > 0 && s.tag.load(std::memory_order_acquire) == call.op.tag)
        call.limiter->add_debt(s, call.debt);
      if (ok && !r.is_error()) link_->count_error();
    }
    s.refill_sent_ns.store(0, std::memory_order_release);
    if (settle) call.limiter->request_refill(s, call.op.limit_index, call.op.tag, now);
  }
  if (noscript && link_->connected()) link_->fail();  // the reconnect loads the scripts again
}

// Takes back the tokens of leases whose key has not been used for lease_idle (or of all leases
// when leaving) and gives them to Redis. The key's next request gets kUnavailable until a new
// lease arrives, as for a new key.
void QuotaClient::return_idle(int64_t now_ns, bool all) {
  std::lock_guard<std::mutex> lock(limiters_mu_);
  std::vector<RedisLink::Call> calls;
  for (auto& [id, lim] : limiters_) {
    auto& list = lim->leased_;
    for (size_t i = 0; i < list.size();) {
      const uint32_t idx = list[i];
      ClusterLimiter::Slot& s = lim->slots_[idx];
      const uint64_t tag = s.tag.load(std::memory_order_acquire);
      uint64_t w = s.word.load(std::memory_order_acquire);
      const bool owned = tag != 0 && tag != kBusy && fingerprint_of_word(w) == fingerprint(tag);
      if (owned && !(w & kPrimed)) {
        // Nothing to keep track of until a new lease arrives.
      } else if (owned && (all || now_ns - s.last_used_ns.load(std::memory_order_relaxed) >=
                                      options_.lease_idle.count())) {
        const uint64_t nw = make_word(fingerprint(tag), 0, 0);
        while (fingerprint_of_word(w) == fingerprint(tag) &&
               !s.word.compare_exchange_weak(w, nw, std::memory_order_acq_rel,
                                             std::memory_order_acquire)) {
        }
        const uint64_t tokens = fingerprint_of_word(w) == fingerprint(tag) ? (w & kTokenMask) : 0;
        if (tokens > 0) {
          const uint32_t li = s.limit_index.load(std::memory_order_relaxed);
          const ClusterLimiter::Limit& limit =
              lim->limits_[std::min<size_t>(li, lim->limits_.size() - 1)];
          calls.push_back(
              link_->evalsha(lim->sliding_ ? kWindowReturn : kBucketReturn, lim->redis_key(tag),
                             return_args(lim->sliding_, limit.requests, limit.burst, limit.per_us,
                                         static_cast<uint32_t>(tokens),
                                         s.lease_window.load(std::memory_order_relaxed))));
        }
      } else if (owned) {
        ++i;  // still in use
        continue;
      }
      lim->in_leased_[idx] = 0;
      list[i] = list.back();
      list.pop_back();
    }
  }
  if (calls.empty()) return;
  link_->round_trip(calls);  // on failure the tokens are lost: an under-admission of these leases
  for (auto& call : calls)
    if (call.reply.is_error()) link_->count_error();
}

void QuotaClient::send_final_returns() {
  std::vector<FinalReturn> returns;
  {
    std::lock_guard<std::mutex> lock(limiters_mu_);
    if (final_returns_.empty()) return;
    returns.swap(final_returns_);
  }
  std::vector<RedisLink::Call> calls;
  calls.reserve(returns.size());
  for (auto& r : returns)
    calls.push_back(
        link_->evalsha(r.sliding ? kWindowReturn : kBucketReturn, std::move(r.key),
                       return_args(r.sliding, r.requests, r.burst, r.per_us, r.count, r.window)));
  link_->round_trip(calls);
}

// ---------------------------------------------------------------------------------------------
// ClusterLimiter

void ClusterLimiter::SlotsDeleter::operator()(Slot* p) const {
  if (p != nullptr) munmap(p, bytes);
}

uint32_t ClusterLimiter::lease_size(uint64_t requests, uint64_t burst, uint32_t gateways) {
  uint64_t s = requests / (kLeaseDivisor * std::max<uint32_t>(1, gateways));
  s = std::min({s, burst, kMaxLease});
  return static_cast<uint32_t>(std::max<uint64_t>(1, s));
}

ClusterLimiter::ClusterLimiter(QuotaClient& client, const config::RateLimitRule& rule)
    : client_(client), name_(rule.name) {
  static_assert(sizeof(Slot) == 128, "docs/cluster-limits.md states 128 bytes per key slot");
  if (rule.algorithm == config::RateAlgorithm::kConcurrency)
    throw std::invalid_argument("cluster scope supports token_bucket and sliding_window only");
  sliding_ = rule.algorithm == config::RateAlgorithm::kSlidingWindow;
  auto to_limit = [&](const config::RateLimitValue& v) {
    Limit l;
    l.requests = std::max<uint64_t>(1, v.requests);
    l.burst = sliding_ ? l.requests : (v.burst > 0 ? v.burst : l.requests);
    l.per_us =
        std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::microseconds>(v.per).count());
    return l;
  };
  limits_.push_back(to_limit(rule.limit));
  for (const auto& o : rule.overrides) {
    overrides_.emplace(o.key, static_cast<uint32_t>(limits_.size()));
    limits_.push_back(to_limit(o.limit));
  }
  capacity_ = std::max<size_t>(1, rule.max_keys);
  // An anonymous mapping is zero-filled and committed page by page as keys touch it, so a rule
  // costs memory for the keys it sees, up to max_keys slots. All-zero bytes are the empty state
  // of every field of a Slot (integer and double atomics), so no constructor needs to run over
  // it (which would commit every page).
  const size_t bytes = sizeof(Slot) * capacity_;
  void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) throw std::bad_alloc();
  slots_ = std::unique_ptr<Slot[], SlotsDeleter>(static_cast<Slot*>(m), SlotsDeleter{bytes});
  in_leased_.assign(capacity_, 0);
  key_base_ = client_.options().key_prefix + (sliding_ ? "rl:sw:" : "rl:tb:") + name_ + ":";
  id_ = client_.attach(this);
}

ClusterLimiter::~ClusterLimiter() {
  if (orphaned_.load(std::memory_order_acquire)) return;  // nobody left to give leases back to
  client_.detach(id_);
  // The client thread no longer touches the table; what it still holds goes back to Redis.
  std::vector<QuotaClient::FinalReturn> returns;
  for (size_t i = 0; i < capacity_; ++i) {
    const Slot& s = slots_[i];
    const uint64_t tag = s.tag.load(std::memory_order_acquire);
    const uint64_t w = s.word.load(std::memory_order_acquire);
    if (tag == 0 || tag == kBusy || fingerprint_of_word(w) != fingerprint(tag)) continue;
    const uint64_t tokens = w & kTokenMask;
    if (tokens == 0) continue;
    const Limit& l = limits_[std::min<size_t>(s.limit_index.load(), limits_.size() - 1)];
    QuotaClient::FinalReturn r;
    r.key = redis_key(tag);
    r.sliding = sliding_;
    r.requests = l.requests;
    r.burst = l.burst;
    r.per_us = l.per_us;
    r.count = static_cast<uint32_t>(tokens);
    r.window = s.lease_window.load();
    returns.push_back(std::move(r));
  }
  client_.give_back(std::move(returns));
}

std::string ClusterLimiter::redis_key(uint64_t tag) const {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(tag));
  return key_base_ + hex;
}

size_t ClusterLimiter::size() const {
  size_t n = 0;
  for (size_t i = 0; i < capacity_; ++i) {
    uint64_t t = slots_[i].tag.load(std::memory_order_relaxed);
    if (t != 0 && t != kBusy) ++n;
  }
  return n;
}

uint32_t ClusterLimiter::limit_index_for(std::string_view key) const {
  if (overrides_.empty()) return 0;
  auto it = overrides_.find(key);
  return it == overrides_.end() ? 0 : it->second;
}

ClusterLimiter::Slot* ClusterLimiter::find(uint64_t tag) const {
  const size_t home = static_cast<size_t>((static_cast<unsigned __int128>(tag) * capacity_) >> 64);
  const size_t probe = std::min(kProbe, capacity_);
  size_t i = home;
  for (size_t k = 0; k < probe; ++k) {
    if (slots_[i].tag.load(std::memory_order_acquire) == tag) return &slots_[i];
    if (++i == capacity_) i = 0;
  }
  return nullptr;
}

// Puts the key in an empty slot of its probe window or, when there is none, in place of the
// least recently used key there (whose unused tokens go back to Redis). Returns nullptr when
// another worker is rearranging the same slot; the caller then decides without the cluster.
ClusterLimiter::Slot* ClusterLimiter::insert(uint64_t tag, std::string_view key, int64_t now_ns) {
  const size_t home = static_cast<size_t>((static_cast<unsigned __int128>(tag) * capacity_) >> 64);
  const size_t probe = std::min(kProbe, capacity_);
  // Every worker that inserts this key goes through its home slot's gate, one at a time: without
  // it, two workers that both missed the new key could claim two slots for it, and the lease of
  // the copy that find() does not return would be stranded (issue 11: 988 of 1,000 admitted).
  // A worker that finds the gate taken decides without the cluster, as for any busy slot.
  std::atomic<uint32_t>& gate = slots_[home].inserting;
  uint32_t open = 0;
  if (!gate.compare_exchange_strong(open, 1, std::memory_order_acquire)) return nullptr;
  struct Release {
    std::atomic<uint32_t>& g;
    ~Release() { g.store(0, std::memory_order_release); }
  } release{gate};
  Slot* victim = nullptr;
  uint64_t victim_tag = 0;
  int64_t oldest = INT64_MAX;
  size_t i = home;
  for (size_t k = 0; k < probe; ++k) {
    Slot& s = slots_[i];
    uint64_t t = s.tag.load(std::memory_order_acquire);
    if (t == tag) return &s;  // another worker inserted it meanwhile
    if (t == 0) {
      if (s.tag.compare_exchange_strong(t, kBusy, std::memory_order_acq_rel)) {
        victim = &s;
        victim_tag = 0;
        break;
      }
    } else if (t != kBusy) {
      const int64_t used = s.last_used_ns.load(std::memory_order_relaxed);
      if (used < oldest) {
        oldest = used;
        victim = &s;
        victim_tag = t;
      }
    }
    if (++i == capacity_) i = 0;
  }
  if (victim == nullptr) return nullptr;
  if (victim_tag != 0 &&
      !victim->tag.compare_exchange_strong(victim_tag, kBusy, std::memory_order_acq_rel))
    return nullptr;

  if (insert_hook_ != nullptr) insert_hook_(insert_hook_arg_);
  // The slot is ours (kBusy). Swapping the word retires the old key's lease in one step: any
  // worker still holding the old tag fails its fingerprint check from here on.
  const uint64_t old =
      victim->word.exchange(make_word(fingerprint(tag), 0, 0), std::memory_order_acq_rel);
  if (victim_tag != 0 && fingerprint_of_word(old) == fingerprint(victim_tag) &&
      (old & kTokenMask) > 0) {
    QuotaClient::Op back;
    back.kind = QuotaClient::Op::Kind::kReturn;
    back.limiter_id = id_;
    back.limit_index = victim->limit_index.load(std::memory_order_relaxed);
    back.tag = victim_tag;
    back.count = static_cast<uint32_t>(old & kTokenMask);
    back.window = victim->lease_window.load(std::memory_order_relaxed);
    client_.submit(back);  // a full queue loses them: an under-admission of one lease at most
  }
  victim->limit_index.store(limit_index_for(key), std::memory_order_relaxed);
  victim->last_used_ns.store(now_ns, std::memory_order_relaxed);
  victim->next_refill_ns.store(0, std::memory_order_relaxed);
  victim->reset_at_ns.store(0, std::memory_order_relaxed);
  victim->redis_remaining.store(0, std::memory_order_relaxed);
  victim->lease_window.store(0, std::memory_order_relaxed);
  victim->seen.store(0, std::memory_order_relaxed);
  victim->debt.store(0, std::memory_order_relaxed);
  victim->demand.store(0, std::memory_order_relaxed);
  victim->demand_ns.store(now_ns, std::memory_order_relaxed);
  victim->tag.store(tag, std::memory_order_release);
  return victim;
}

void ClusterLimiter::request_refill(Slot& s, uint32_t idx, uint64_t tag, int64_t now_ns) {
  int64_t sent = s.refill_sent_ns.load(std::memory_order_relaxed);
  if (sent != 0 ||
      !s.refill_sent_ns.compare_exchange_strong(sent, now_ns, std::memory_order_acq_rel))
    return;
  QuotaClient::Op op;
  op.kind = QuotaClient::Op::Kind::kRefill;
  op.limiter_id = id_;
  op.slot = static_cast<uint32_t>(&s - slots_.get());
  op.limit_index = idx;
  op.tag = tag;
  if (!client_.submit(op)) s.refill_sent_ns.store(0, std::memory_order_release);
}

void ClusterLimiter::fill(RateDecision* d, const Limit& lim, uint64_t tokens, const Slot* s,
                          int64_t now_ns, bool allowed, int64_t retry_ns) const {
  if (d == nullptr) return;
  d->allowed = allowed;
  d->limit = lim.requests;
  d->remaining = 0;
  d->reset = nanoseconds(0);
  d->retry_after = nanoseconds(0);
  if (s == nullptr) return;
  d->remaining =
      std::min<uint64_t>(lim.requests, tokens + s->redis_remaining.load(std::memory_order_relaxed));
  d->reset =
      nanoseconds(std::max<int64_t>(0, s->reset_at_ns.load(std::memory_order_relaxed) - now_ns));
  if (!allowed) d->retry_after = nanoseconds(retry_ns);
}

ClusterLimiter::Outcome ClusterLimiter::acquire(std::string_view key, uint64_t hash,
                                                core::MonoTime now, RateDecision* decision) {
  const int64_t now_ns = now.time_since_epoch().count();
  const uint64_t tag = hash | 1;
  if (orphaned_.load(std::memory_order_relaxed) || !client_.usable(now_ns)) {
    fill(decision, limits_[0], 0, nullptr, now_ns, false, 0);
    return Outcome::kUnavailable;
  }
  Slot* s = find(tag);
  if (s == nullptr) s = insert(tag, key, now_ns);
  if (s == nullptr) {
    fill(decision, limits_[0], 0, nullptr, now_ns, false, 0);
    return Outcome::kUnavailable;
  }
  const uint32_t idx = s->limit_index.load(std::memory_order_relaxed);
  const Limit& lim = limits_[idx < limits_.size() ? idx : 0];
  s->seen.fetch_add(1, std::memory_order_relaxed);  // demand, reported with the next refill
  // Stored at most once a millisecond: a hot key's workers need not all write the same line.
  if (now_ns - s->last_used_ns.load(std::memory_order_relaxed) >= kMs)
    s->last_used_ns.store(now_ns, std::memory_order_relaxed);

  const uint32_t fp = fingerprint(tag);
  uint64_t w = s->word.load(std::memory_order_acquire);
  bool allowed = false;
  uint64_t tokens = 0;
  for (;;) {
    if (fingerprint_of_word(w) != fp) {  // the slot changed hands under us
      fill(decision, lim, 0, nullptr, now_ns, false, 0);
      return Outcome::kUnavailable;
    }
    tokens = w & kTokenMask;
    if (tokens == 0) break;
    if (s->word.compare_exchange_weak(w, w - 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
      allowed = true;
      --tokens;
      break;
    }
  }

  const bool primed = (w & kPrimed) != 0;
  const bool exhausted = (w & kExhausted) != 0;
  const uint32_t lease = lease_size(lim.requests, lim.burst, client_.gateways());
  const int64_t next_refill = s->next_refill_ns.load(std::memory_order_relaxed);
  if (tokens <= lease / 2 && (!primed || !exhausted || now_ns >= next_refill))
    request_refill(*s, idx, tag, now_ns);

  // Time for one token of the whole cluster's limit: the soonest a retry could pass.
  const int64_t step_ns =
      std::max<int64_t>(kMs, static_cast<int64_t>(static_cast<double>(lim.per_us) * 1000.0 /
                                                  static_cast<double>(lim.requests)));
  if (allowed) {
    fill(decision, lim, tokens, s, now_ns, true, 0);
    return Outcome::kAllowed;
  }
  if (!primed) {  // first lease not here yet
    fill(decision, lim, 0, nullptr, now_ns, false, 0);
    return Outcome::kUnavailable;
  }
  if (exhausted) {
    fill(decision, lim, 0, s, now_ns, false, std::max(step_ns, next_refill - now_ns));
    return Outcome::kRejected;
  }
  // The lease ran dry before its refill came back. A refill stuck longer than the timeout means
  // the client thread is not getting answers: decide without the cluster.
  const int64_t sent = s->refill_sent_ns.load(std::memory_order_relaxed);
  if (sent == 0 || now_ns - sent > client_.options().timeout.count()) {
    fill(decision, lim, 0, nullptr, now_ns, false, 0);
    return Outcome::kUnavailable;
  }
  fill(decision, lim, 0, s, now_ns, false, step_ns);
  return Outcome::kRejected;
}

void ClusterLimiter::add_debt(Slot& s, uint64_t n) {
  // At most one burst is owed per key: after a long outage the cluster makes up for one burst
  // of local decisions, not for all of them.
  const uint32_t idx = s.limit_index.load(std::memory_order_relaxed);
  const uint64_t most = limits_[idx < limits_.size() ? idx : 0].burst;
  uint32_t d = s.debt.load(std::memory_order_relaxed);
  while (!s.debt.compare_exchange_weak(
      d, static_cast<uint32_t>(std::min<uint64_t>(d + n, std::min<uint64_t>(most, kTokenMask))),
      std::memory_order_acq_rel, std::memory_order_relaxed)) {
  }
}

void ClusterLimiter::charge(uint64_t hash, core::MonoTime now) {
  const uint64_t tag = hash | 1;
  Slot* s = find(tag);
  if (s == nullptr) return;  // not in the table (Redis down before its first request): not owed
  const uint32_t fp = fingerprint(tag);
  if (fingerprint_of_word(s->word.load(std::memory_order_acquire)) != fp) return;
  add_debt(*s, 1);
  // Settle it with the next round trip if no refill is on its way (not while Redis is down: the
  // queued refill would only be discarded).
  const int64_t now_ns = now.time_since_epoch().count();
  if (client_.usable(now_ns))
    request_refill(*s, s->limit_index.load(std::memory_order_relaxed), tag, now_ns);
}

void ClusterLimiter::discharge(uint64_t hash) {
  Slot* s = find(hash | 1);
  if (s == nullptr) return;
  uint32_t d = s->debt.load(std::memory_order_relaxed);
  while (d > 0 && !s->debt.compare_exchange_weak(d, d - 1, std::memory_order_acq_rel,
                                                 std::memory_order_relaxed)) {
  }
}

void ClusterLimiter::refund(std::string_view /*key*/, uint64_t hash) {
  const uint64_t tag = hash | 1;
  Slot* s = find(tag);
  if (s == nullptr) return;  // evicted meanwhile: the token is lost (an under-admission of one)
  uint64_t w = s->word.load(std::memory_order_acquire);
  while (fingerprint_of_word(w) == fingerprint(tag) && (w & kTokenMask) < kTokenMask) {
    if (s->word.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire))
      return;
  }
}

}  // namespace sluice::governance
