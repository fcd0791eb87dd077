#include "governance/cluster_quota.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <new>
#include <stdexcept>

#include "core/random.h"

namespace sluice::governance {

namespace {

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
constexpr nanoseconds kMaxBackoff = std::chrono::seconds(1);
constexpr nanoseconds kMinBackoff = std::chrono::milliseconds(25);
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

int64_t steady_ns() {
  return std::chrono::steady_clock::now().time_since_epoch().count();
}

timeval to_timeval(nanoseconds d) {
  auto us = std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::microseconds>(d).count());
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(us / 1'000'000);
  tv.tv_usec = static_cast<suseconds_t>(us % 1'000'000);
  return tv;
}

// Fair shares between gateways (docs/cluster-limits.md, "Fairness"). Each gateway reports the
// demand it sees for the key (requests/s); its weight is its demand over the sum of the live
// gateways' demands (a gateway is live until the time it said it would come back, plus `hold`,
// or until it returns its lease). Its credit accrues at weight * rate, capped at weight * burst
// (at least one lease). A gateway may take what the key has (bucket tokens, or room in the
// window) minus the other live gateways' credits: their shares are reserved for them, whatever
// the order calls reach Redis in, and what nobody reserved goes to whoever asks (when the credits
// add up to more than the key has, it is split in proportion to them). The key's own
// bucket or window still bounds the total. Fields per gateway <m>: d:<m> demand, v:<m> live
// until (us), c:<m> credit, t:<m> the credit's time. Returns the hash's fields, this gateway's
// credit and weight, and the other gateways' credits.
constexpr const char* kFairShareLua = R"lua(
local function share(key, member, demand, now, rate, burst, asked)
  local f = redis.call('HGETALL', key)
  local h = {}
  for i = 1, #f, 2 do h[f[i]] = f[i + 1] end
  local others = {}
  local total = demand
  for name, v in pairs(h) do
    if string.sub(name, 1, 2) == 'v:' then
      local m = string.sub(name, 3)
      if m ~= member then
        if tonumber(v) >= now then
          local d = tonumber(h['d:' .. m]) or 0
          total = total + d
          others[#others + 1] = {m, d}
        else
          redis.call('HDEL', key, 'v:' .. m, 'd:' .. m, 'c:' .. m, 't:' .. m)
        end
      end
    end
  end
  local live = #others + 1
  local function weight_of(d)
    if total <= 0 then return 1 / live end
    return math.max(d / total, 0.01 / live)
  end
  local function credit_of(m, w)
    -- Never more than its share of what the key can hold: the credits then fit in the key.
    local cap = math.max(1, burst * w)
    local c = tonumber(h['c:' .. m])
    local ts = tonumber(h['t:' .. m])
    if c == nil or ts == nil then return cap end
    if now > ts then c = c + (now - ts) * rate * w end
    return math.min(cap, c)
  end
  local reserved = 0
  for _, o in ipairs(others) do reserved = reserved + credit_of(o[1], weight_of(o[2])) end
  local weight = weight_of(demand)
  -- What this gateway can expect to get at once: its lease, or its share of the burst if that
  -- is smaller (the wait is computed for it, else a gateway would wait for a lease it can never
  -- be granted whole).
  local target = math.min(asked, math.max(1, math.floor(burst * weight)))
  return h, credit_of(member, weight), weight, reserved, target
end

-- What this gateway may take of `room`: all of it but the others' credits; when the credits add
-- up to more than the room, the room split in proportion to the credits.
local function available(room, credit, reserved)
  if room <= 0 then return 0 end
  if credit + reserved <= room then return room - reserved end
  return room * credit / (credit + reserved)
end
)lua";

// Token bucket, refilled by Redis TIME. KEYS[1]; ARGV: requests, per_us, burst, asked, ttl_ms,
// member, demand, hold_us. Returns {granted, tokens left, us until `asked` tokens are there (for
// this gateway's share), us until full}.
constexpr const char* kBucketScriptBody = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local requests = tonumber(ARGV[1])
local per = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local asked = tonumber(ARGV[4])
local member = ARGV[6]
local rate = requests / per
local v, credit, weight, reserved, target = share(KEYS[1], member, tonumber(ARGV[7]), now, rate,
                                                 burst, asked)
local tokens = tonumber(v['tk'])
local ts = tonumber(v['ts'])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
elseif now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
local avail = available(tokens, credit, reserved)
local granted = math.floor(math.min(asked, avail))
if granted < 0 then granted = 0 end
tokens = tokens - granted
credit = math.max(0, credit - granted)
local wait = 0
if granted < asked then
  -- What is not reserved grows at least at this gateway's share of the rate.
  wait = math.max((math.min(target, burst) - tokens) / rate,
                  (target - (avail - granted)) / (rate * weight))
  wait = math.ceil(wait)
  if wait < 1000 then wait = 1000 end
end
redis.call('HSET', KEYS[1], 'tk', string.format('%.17g', tokens), 'ts', string.format('%.17g', ts),
           'd:' .. member, ARGV[7], 'v:' .. member, string.format('%.17g', now + wait + tonumber(ARGV[8])),
           'c:' .. member, string.format('%.17g', credit), 't:' .. member, string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {granted, math.floor(tokens), wait, math.ceil((burst - tokens) / rate)}
)lua";

// Gives unused tokens back; the gateway leaves the key's shares. KEYS[1]; ARGV: requests, per_us,
// burst, count, member.
constexpr const char* kBucketReturnScript = R"lua(
local m = ARGV[5]
redis.call('HDEL', KEYS[1], 'v:' .. m, 'd:' .. m, 'c:' .. m, 't:' .. m)
local v = redis.call('HMGET', KEYS[1], 'tk', 'ts')
local tokens = tonumber(v[1])
local ts = tonumber(v[2])
if tokens == nil or ts == nil then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local requests = tonumber(ARGV[1])
local per = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * requests / per)
  ts = now
end
tokens = math.min(burst, tokens + tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'tk', string.format('%.17g', tokens), 'ts', string.format('%.17g', ts))
return 1
)lua";

// Sliding window counter: counts of this window and the previous one, the previous weighted by
// how much of it still overlaps the window ending now. KEYS[1]; ARGV: limit, per_us, asked,
// ttl_ms, member, demand, hold_us. Returns {granted, remaining, us until `asked` may fit (for this
// gateway's share), us until full, window}.
constexpr const char* kWindowScriptBody = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local per = tonumber(ARGV[2])
local asked = tonumber(ARGV[3])
local w = math.floor(now / per)
local member = ARGV[5]
local rate = limit / per
local h, credit, fair, reserved, target = share(KEYS[1], member, tonumber(ARGV[6]), now, rate,
                                               limit, asked)
local sw = tonumber(h['w'])
local c = tonumber(h['c']) or 0
local p = tonumber(h['p']) or 0
if sw == nil or sw < w - 1 then
  c = 0
  p = 0
elseif sw == w - 1 then
  p = c
  c = 0
elseif sw > w then
  w = sw
end
local elapsed = now - w * per
if elapsed < 0 then elapsed = 0 end
local rest = per - elapsed
local weight = 1 - elapsed / per
local avail = available(limit - (p * weight + c), credit, reserved)
local granted = math.floor(math.min(asked, avail))
if granted < 0 then granted = 0 end
c = c + granted
credit = math.max(0, credit - granted)
local wait = 0
if granted < asked then
  local room = limit - math.min(asked, limit) - c
  if p > 0 and room >= 0 then
    wait = per * (1 - room / p) - elapsed
  else
    wait = rest
  end
  if wait > rest then wait = rest end
  wait = math.max(wait, (target - (avail - granted)) / (rate * fair))
  if wait < 1000 then wait = 1000 end
end
redis.call('HSET', KEYS[1], 'w', string.format('%.17g', w), 'c', c, 'p', p,
           'd:' .. member, ARGV[6], 'v:' .. member, string.format('%.17g', now + wait + tonumber(ARGV[7])),
           'c:' .. member, string.format('%.17g', credit), 't:' .. member, string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local remaining = math.floor(limit - (p * weight + c))
if remaining < 0 then remaining = 0 end
local reset = 0
if p > 0 then reset = rest end
if c > 0 then reset = rest + per end
return {granted, remaining, math.ceil(wait), math.ceil(reset), w}
)lua";

// Gives unused tokens back to the window they were counted in; the gateway leaves the key's
// shares. KEYS[1]; ARGV: count, window, member.
constexpr const char* kWindowReturnScript = R"lua(
local m = ARGV[3]
redis.call('HDEL', KEYS[1], 'v:' .. m, 'd:' .. m, 'c:' .. m, 't:' .. m)
local v = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local sw = tonumber(v[1])
if sw == nil then return 0 end
local n = tonumber(ARGV[1])
local lw = tonumber(ARGV[2])
if sw == lw then
  redis.call('HSET', KEYS[1], 'c', math.max(0, (tonumber(v[2]) or 0) - n))
elseif sw == lw + 1 then
  redis.call('HSET', KEYS[1], 'p', math.max(0, (tonumber(v[3]) or 0) - n))
else
  return 0
end
return 1
)lua";

// Heartbeat: this gateway's member scored by Redis TIME (ms); members older than the TTL leave.
// KEYS[1]; ARGV: member, ttl_ms. Returns the live gateways.
constexpr const char* kHeartbeatScript = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return redis.call('ZCARD', KEYS[1])
)lua";

int64_t reply_int(const redisReply* r) {
  if (r == nullptr) return 0;
  if (r->type == REDIS_REPLY_INTEGER) return r->integer;
  if (r->type == REDIS_REPLY_STRING) return std::strtoll(r->str, nullptr, 10);
  return 0;
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

// One command of a pipelined round trip and what to do with its reply.
struct QuotaClient::PendingCall {
  std::vector<std::string> args;
  redisReply* reply = nullptr;
  ClusterLimiter* limiter = nullptr;  // refills only
  Op op;
  uint32_t asked = 0;
  uint32_t debt = 0;  // local admissions charged with this refill
};

// ---------------------------------------------------------------------------------------------
// QuotaClient

QuotaClient::QuotaClient(Options o) : options_(std::move(o)), queue_(new OpQueue(kQueueSize)) {
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
  return usable(steady_ns());
}

bool QuotaClient::usable(int64_t now_ns) const {
  if (!healthy_.load(std::memory_order_acquire)) return false;
  // A round trip that has run longer than the timeout will fail; do not wait for it to.
  const int64_t busy = busy_since_.load(std::memory_order_relaxed);
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
  return Stats{calls_.load(), errors_.load(), reconnects_.load(), healthy(), gateways()};
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

void QuotaClient::run() {
  // hiredis writes with write(2): a peer that went away must give EPIPE, not kill the process.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  std::vector<Op> ops;
  ops.reserve(kMaxBatch);
  while (running_.load(std::memory_order_acquire)) {
    int64_t now = steady_ns();
    if (ctx_ == nullptr && now >= next_connect_ns_) connect();

    ops.clear();
    Op op;
    while (ops.size() < kMaxBatch && queue_->pop(op)) ops.push_back(op);

    now = steady_ns();
    if (ctx_ == nullptr) {
      discard(ops);
    } else {
      if (now >= next_heartbeat_ns_) heartbeat(now);
      if (ctx_ != nullptr && !ops.empty()) process(ops, steady_ns());
      if (ctx_ != nullptr) send_final_returns();
      if (ctx_ != nullptr && steady_ns() >= next_idle_scan_ns_) {
        return_idle(steady_ns(), false);
        next_idle_scan_ns_ = steady_ns() + std::max<int64_t>(kMs, options_.lease_idle.count() / 4);
      }
      if (ctx_ == nullptr) discard(ops);  // the round trip failed: nothing of it was credited
    }
    if (!queue_->empty()) continue;

    now = steady_ns();
    int64_t until = now + kMaxSleep.count();
    if (ctx_ == nullptr) {
      until = std::min(until, next_connect_ns_);
    } else {
      until = std::min({until, next_heartbeat_ns_, next_idle_scan_ns_});
    }
    if (until <= now) continue;
    std::unique_lock<std::mutex> lock(wake_mu_);
    sleeping_.store(true, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (queue_->empty() && running_.load(std::memory_order_acquire))
      wake_cv_.wait_for(lock, nanoseconds(until - now));
    sleeping_.store(false, std::memory_order_relaxed);
  }

  // Leaving: hand back what this gateway still holds so the others can use it at once.
  if (ctx_ != nullptr) {
    return_idle(steady_ns(), true);
    if (ctx_ != nullptr) send_final_returns();
    if (ctx_ != nullptr) leave();
  }
  disconnect();
}

bool QuotaClient::connect() {
  const timeval tv = to_timeval(options_.timeout);
  redisContext* c =
      redisConnectWithTimeout(options_.address.host.c_str(), options_.address.port, tv);
  if (c == nullptr || c->err != 0) {
    if (c != nullptr) redisFree(c);
    ctx_ = nullptr;
    fail("connect");
    return false;
  }
  redisSetTimeout(c, tv);
  ctx_ = c;

  const std::string bucket = std::string(kFairShareLua) + kBucketScriptBody;
  const std::string window = std::string(kFairShareLua) + kWindowScriptBody;
  const char* scripts[] = {bucket.c_str(), window.c_str(), kBucketReturnScript, kWindowReturnScript,
                           kHeartbeatScript};
  std::string* shas[] = {&sha_bucket_, &sha_window_, &sha_bucket_return_, &sha_window_return_,
                         &sha_heartbeat_};
  std::vector<PendingCall> calls(5);
  for (size_t i = 0; i < 5; ++i) calls[i].args = {"SCRIPT", "LOAD", scripts[i]};
  if (!round_trip(calls)) {
    for (auto& call : calls)
      if (call.reply != nullptr) freeReplyObject(call.reply);
    return false;
  }
  bool ok = true;
  for (size_t i = 0; i < 5; ++i) {
    redisReply* r = calls[i].reply;
    if (r != nullptr && r->type == REDIS_REPLY_STRING) {
      shas[i]->assign(r->str, r->len);
    } else {
      ok = false;
    }
    if (r != nullptr) freeReplyObject(r);
  }
  if (!ok) {
    fail("script load");
    return false;
  }
  if (connected_once_) reconnects_.fetch_add(1, std::memory_order_relaxed);
  connected_once_ = true;
  backoff_ = nanoseconds(0);
  heartbeat(steady_ns());  // learn the gateway count before the first lease is sized
  if (ctx_ == nullptr) return false;
  healthy_.store(true, std::memory_order_release);
  return true;
}

void QuotaClient::disconnect() {
  if (ctx_ != nullptr) redisFree(ctx_);
  ctx_ = nullptr;
}

void QuotaClient::fail(const char* /*what*/) {
  healthy_.store(false, std::memory_order_release);
  errors_.fetch_add(1, std::memory_order_relaxed);
  disconnect();
  backoff_ = backoff_ == nanoseconds(0) ? kMinBackoff : std::min(backoff_ * 2, kMaxBackoff);
  // Jitter so that gateways that lost Redis together do not come back in lockstep.
  const auto jitter = static_cast<int64_t>(
      core::thread_rng().uniform(static_cast<uint64_t>(backoff_.count() / 4 + 1)));
  next_connect_ns_ = steady_ns() + backoff_.count() + jitter;
}

// Sends every call in one pipelined round trip. On an I/O error or timeout the connection is
// dropped (fail()) and false is returned; replies received are left in calls[i].reply either way
// (nullptr where none came) and belong to the caller.
bool QuotaClient::round_trip(std::vector<PendingCall>& calls) {
  if (ctx_ == nullptr || calls.empty()) return ctx_ != nullptr;
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (auto& call : calls) {
    argv.clear();
    lens.clear();
    for (auto& a : call.args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    redisAppendCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data());
  }
  calls_.fetch_add(calls.size(), std::memory_order_relaxed);
  busy_since_.store(steady_ns(), std::memory_order_relaxed);
  bool ok = true;
  for (auto& call : calls) {
    void* r = nullptr;
    if (redisGetReply(ctx_, &r) != REDIS_OK) {
      ok = false;
      break;
    }
    call.reply = static_cast<redisReply*>(r);
  }
  busy_since_.store(0, std::memory_order_relaxed);
  if (!ok) fail("round trip");
  return ok;
}

void QuotaClient::heartbeat(int64_t now_ns) {
  next_heartbeat_ns_ = now_ns + options_.heartbeat_interval.count();
  const int64_t ttl_ms = std::max<int64_t>(1, 3 * options_.heartbeat_interval.count() / kMs);
  std::vector<PendingCall> calls(1);
  calls[0].args = {"EVALSHA", sha_heartbeat_, "1", gateways_key_, member_, std::to_string(ttl_ms)};
  if (!round_trip(calls)) return;
  redisReply* r = calls[0].reply;
  if (r != nullptr && r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
    discovered_.store(static_cast<uint32_t>(r->integer), std::memory_order_relaxed);
  } else if (r != nullptr && r->type == REDIS_REPLY_ERROR) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    if (std::strncmp(r->str, "NOSCRIPT", 8) == 0) {
      freeReplyObject(r);
      fail("noscript");  // the reconnect loads the scripts again
      return;
    }
  }
  if (r != nullptr) freeReplyObject(r);
}

void QuotaClient::leave() {
  std::vector<PendingCall> calls(1);
  calls[0].args = {"ZREM", gateways_key_, member_};
  round_trip(calls);
  if (calls[0].reply != nullptr) freeReplyObject(calls[0].reply);
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

// The arguments of one lease or give-back call.
std::vector<std::string> lease_args(const std::string& sha, std::string key, bool sliding,
                                    uint64_t requests, uint64_t burst, int64_t per_us,
                                    uint32_t asked, const std::string& member, double demand,
                                    int64_t hold_us) {
  char demand_text[32];
  std::snprintf(demand_text, sizeof demand_text, "%.6g", demand);
  if (sliding) {
    const int64_t ttl_ms = 2 * (per_us / 1000) + 1000;
    return {"EVALSHA",
            sha,
            "1",
            std::move(key),
            std::to_string(requests),
            std::to_string(per_us),
            std::to_string(asked),
            std::to_string(ttl_ms),
            member,
            demand_text,
            std::to_string(hold_us)};
  }
  const auto fill_ms =
      static_cast<int64_t>(static_cast<double>(burst) * static_cast<double>(per_us) /
                           static_cast<double>(requests) / 1000.0);
  return {"EVALSHA",
          sha,
          "1",
          std::move(key),
          std::to_string(requests),
          std::to_string(per_us),
          std::to_string(burst),
          std::to_string(asked),
          std::to_string(fill_ms + 1000),
          member,
          demand_text,
          std::to_string(hold_us)};
}

std::vector<std::string> return_args(const std::string& sha, std::string key, bool sliding,
                                     uint64_t requests, uint64_t burst, int64_t per_us,
                                     uint32_t count, int64_t window, const std::string& member) {
  if (sliding)
    return {"EVALSHA", sha, "1", std::move(key), std::to_string(count), std::to_string(window),
            member};
  return {"EVALSHA",
          sha,
          "1",
          std::move(key),
          std::to_string(requests),
          std::to_string(per_us),
          std::to_string(burst),
          std::to_string(count),
          member};
}

}  // namespace

// Requests/s this gateway sees for the key (all outcomes), an exponentially weighted average over
// about one second, updated at each refill.
double ClusterLimiter::update_demand(Slot& s, int64_t now_ns) {
  const uint32_t seen = s.seen.exchange(0, std::memory_order_relaxed);
  const int64_t since = s.demand_ns.load(std::memory_order_relaxed);
  double demand = s.demand.load(std::memory_order_relaxed);
  // At least 1 ms: a refill right after the previous one says little about the rate.
  const double dt = static_cast<double>(std::max<int64_t>(kMs, now_ns - since)) / 1e9;
  const double alpha = 1.0 - std::exp(-dt / kDemandTau);
  demand += alpha * (static_cast<double>(seen) / dt - demand);
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
  std::vector<PendingCall> calls;
  calls.reserve(ops.size());
  for (const Op& op : ops) {
    auto it = limiters_.find(op.limiter_id);
    if (it == limiters_.end()) continue;
    ClusterLimiter* lim = it->second;
    const ClusterLimiter::Limit& limit =
        lim->limits_[std::min<size_t>(op.limit_index, lim->limits_.size() - 1)];
    PendingCall call;
    call.op = op;
    if (op.kind == Op::Kind::kReturn) {
      call.args = return_args(lim->sliding_ ? sha_window_return_ : sha_bucket_return_,
                              lim->redis_key(op.tag), lim->sliding_, limit.requests, limit.burst,
                              limit.per_us, op.count, op.window, member_);
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
      call.args = lease_args(lim->sliding_ ? sha_window_ : sha_bucket_, lim->redis_key(op.tag),
                             lim->sliding_, limit.requests, limit.burst, limit.per_us, call.asked,
                             member_, demand, demand_hold_us());
    }
    calls.push_back(std::move(call));
  }
  ops.clear();
  if (calls.empty()) return;

  const bool ok = round_trip(calls);
  const int64_t now = steady_ns();
  bool noscript = false;
  for (auto& call : calls) {
    redisReply* r = call.reply;
    if (call.limiter != nullptr) {
      ClusterLimiter::Slot& s = call.limiter->slots_[call.op.slot];
      bool settle = false;
      if (ok && r != nullptr && r->type == REDIS_REPLY_ARRAY && r->elements >= 4) {
        const auto granted = static_cast<uint64_t>(std::max<int64_t>(0, reply_int(r->element[0])));
        const int64_t remaining = reply_int(r->element[1]);
        const int64_t wait_us = reply_int(r->element[2]);
        const int64_t reset_us = reply_int(r->element[3]);
        const int64_t window = r->elements >= 5 ? reply_int(r->element[4]) : 0;
        const bool exhausted = granted < call.asked;
        // What the local share admitted is paid first; what Redis could not cover stays owed.
        const uint64_t paid = std::min<uint64_t>(granted, call.debt);
        const uint64_t owed = call.debt - paid;
        // Advisory fields first, so a worker that sees the new tokens also sees them.
        s.next_refill_ns.store(exhausted ? now + wait_us * 1000 : 0, std::memory_order_relaxed);
        s.redis_remaining.store(
            static_cast<uint32_t>(std::clamp<int64_t>(remaining, 0, UINT32_MAX)),
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
        // No grant: the debt is still owed (if the key is still here).
        if (call.debt > 0 && s.tag.load(std::memory_order_acquire) == call.op.tag)
          call.limiter->add_debt(s, call.debt);
        if (r != nullptr && r->type == REDIS_REPLY_ERROR) {
          errors_.fetch_add(1, std::memory_order_relaxed);
          if (std::strncmp(r->str, "NOSCRIPT", 8) == 0) noscript = true;
        }
      }
      s.refill_sent_ns.store(0, std::memory_order_release);
      if (settle) call.limiter->request_refill(s, call.op.limit_index, call.op.tag, now);
    } else if (r != nullptr && r->type == REDIS_REPLY_ERROR) {
      errors_.fetch_add(1, std::memory_order_relaxed);
      if (std::strncmp(r->str, "NOSCRIPT", 8) == 0) noscript = true;
    }
    if (r != nullptr) freeReplyObject(r);
    call.reply = nullptr;
  }
  if (noscript && ctx_ != nullptr) fail("noscript");  // the reconnect loads the scripts again
}

// Takes back the tokens of leases whose key has not been used for lease_idle (or of all leases
// when leaving) and gives them to Redis. The key's next request gets kUnavailable until a new
// lease arrives, as for a new key.
void QuotaClient::return_idle(int64_t now_ns, bool all) {
  std::lock_guard<std::mutex> lock(limiters_mu_);
  std::vector<PendingCall> calls;
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
          PendingCall call;
          call.args = return_args(lim->sliding_ ? sha_window_return_ : sha_bucket_return_,
                                  lim->redis_key(tag), lim->sliding_, limit.requests, limit.burst,
                                  limit.per_us, static_cast<uint32_t>(tokens),
                                  s.lease_window.load(std::memory_order_relaxed), member_);
          calls.push_back(std::move(call));
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
  round_trip(calls);  // on failure the tokens are lost: an under-admission of these leases
  for (auto& call : calls) {
    if (call.reply != nullptr) {
      if (call.reply->type == REDIS_REPLY_ERROR) errors_.fetch_add(1, std::memory_order_relaxed);
      freeReplyObject(call.reply);
    }
  }
}

void QuotaClient::send_final_returns() {
  std::vector<FinalReturn> returns;
  {
    std::lock_guard<std::mutex> lock(limiters_mu_);
    if (final_returns_.empty()) return;
    returns.swap(final_returns_);
  }
  std::vector<PendingCall> calls(returns.size());
  for (size_t i = 0; i < returns.size(); ++i) {
    auto& r = returns[i];
    calls[i].args = {"EVALSHA", r.sliding ? sha_window_return_ : sha_bucket_return_, "1", r.key};
    for (auto& a : r.args) calls[i].args.push_back(std::move(a));
  }
  round_trip(calls);
  for (auto& call : calls)
    if (call.reply != nullptr) freeReplyObject(call.reply);
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
    if (sliding_) {
      r.args = {std::to_string(tokens), std::to_string(s.lease_window.load()), client_.member_};
    } else {
      r.args = {std::to_string(l.requests), std::to_string(l.per_us), std::to_string(l.burst),
                std::to_string(tokens), client_.member_};
    }
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
