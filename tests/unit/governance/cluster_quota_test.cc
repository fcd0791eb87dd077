// These tests run a real redis-server (Debian's) on a free loopback port. The quota client's
// thread talks to Redis in real time, so the tests wait for its effects with bounded polls; only
// the accuracy tests offer load for a fixed span of real time.
#include "governance/cluster_quota.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "unit/governance/redis_server.h"

namespace sluice::governance {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Outcome = ClusterLimiter::Outcome;
using test::RedisServer;

QuotaClient::Options client_options(const RedisServer& redis, std::string prefix,
                                    uint32_t hint = 0) {
  QuotaClient::Options o;
  o.address.host = "127.0.0.1";
  o.address.port = redis.port();
  o.timeout = 20ms;
  o.key_prefix = std::move(prefix);
  o.node_id = "gw";
  o.gateways_hint = hint;
  o.heartbeat_interval = 100ms;
  o.lease_idle = 100ms;
  return o;
}

config::RateLimitRule rule(std::string name, config::RateAlgorithm algorithm, uint64_t requests,
                           core::Duration per, uint64_t burst = 0, size_t max_keys = 1000) {
  config::RateLimitRule r;
  r.name = std::move(name);
  r.algorithm = algorithm;
  r.scope = config::RateScope::kCluster;
  r.limit.requests = requests;
  r.limit.per = per;
  r.limit.burst = burst;
  r.max_keys = max_keys;
  return r;
}

constexpr auto kBucket = config::RateAlgorithm::kTokenBucket;
constexpr auto kWindow = config::RateAlgorithm::kSlidingWindow;

// The Redis key of a sliding-window key, as ClusterLimiter names it.
std::string window_key(const std::string& prefix, const std::string& rule_name, uint64_t hash) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash | 1));
  return prefix + "rl:sw:" + rule_name + ":" + hex;
}

bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return done();
}

// Acquires until one is allowed (the first lease has to arrive first).
bool acquire_one(ClusterLimiter& lim, std::string_view key, uint64_t hash,
                 RateDecision* d = nullptr) {
  RateDecision tmp;
  return wait_for(
      [&] { return lim.acquire(key, hash, Clock::now(), d ? d : &tmp) == Outcome::kAllowed; },
      2000ms);
}

struct Tally {
  uint64_t allowed = 0, rejected = 0, unavailable = 0;
};

TEST(ClusterQuotaTest, ConcurrencyAlgorithmIsRefused) {
  QuotaClient client(QuotaClient::Options{});
  EXPECT_THROW(ClusterLimiter(client, rule("c", config::RateAlgorithm::kConcurrency, 10, 1s)),
               std::invalid_argument);
}

TEST(ClusterQuotaTest, LimiterMayOutliveItsClient) {
  auto client = std::make_unique<QuotaClient>(QuotaClient::Options{});
  auto lim = std::make_unique<ClusterLimiter>(*client, rule("r", kBucket, 10, 1s));
  client.reset();  // e.g. members destroyed in declaration order
  RateDecision d;
  EXPECT_EQ(lim->acquire("k", 1, Clock::now(), &d), Outcome::kUnavailable);
  lim.reset();  // must not touch the client (ASan would report it)
}

TEST(ClusterQuotaTest, LeaseSize) {
  EXPECT_EQ(ClusterLimiter::lease_size(1000, 1000, 2), 12u);  // 1000 / (40 * 2)
  EXPECT_EQ(ClusterLimiter::lease_size(1000, 5, 2), 5u);      // never more than the burst
  EXPECT_EQ(ClusterLimiter::lease_size(10, 10, 3), 1u);       // at least one
  EXPECT_EQ(ClusterLimiter::lease_size(1'000'000'000, 1'000'000'000, 1), 25'000'000u);
}

TEST(ClusterQuotaTest, UnavailableUntilConnectedAndForTheFirstLease) {
  RedisServer redis;
  ASSERT_TRUE(redis.start());
  QuotaClient client(client_options(redis, "t1:", 2));
  ClusterLimiter lim(client, rule("r", kBucket, 1000, 1s));
  RateDecision d;
  EXPECT_EQ(lim.acquire("k", 42, Clock::now(), &d), Outcome::kUnavailable);  // not started
  EXPECT_EQ(d.limit, 1000u);
  client.start();
  ASSERT_TRUE(wait_for([&] { return client.healthy(); }, 2000ms));
  // A new key never waits for its lease (had it waited, the answer would be kAllowed).
  EXPECT_EQ(lim.acquire("k", 42, Clock::now(), &d), Outcome::kUnavailable);
  ASSERT_TRUE(acquire_one(lim, "k", 42, &d));
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.limit, 1000u);
  EXPECT_GT(d.remaining, 900u);  // 1000 in the bucket minus one lease of 12, plus the lease
  EXPECT_LE(d.remaining, 1000u);
  auto s = client.stats();
  EXPECT_TRUE(s.healthy);
  EXPECT_GE(s.calls, 2u);
  EXPECT_EQ(s.errors, 0u);
  EXPECT_EQ(s.gateways, 2u);
}

TEST(ClusterQuotaTest, GatewayCountIsDiscovered) {
  RedisServer redis;
  ASSERT_TRUE(redis.start());
  QuotaClient a(client_options(redis, "t2:"));
  QuotaClient b(client_options(redis, "t2:"));  // same node_id: still two gateways
  a.start();
  ASSERT_TRUE(wait_for([&] { return a.healthy(); }, 2000ms));
  EXPECT_EQ(a.gateways(), 1u);
  b.start();
  EXPECT_TRUE(wait_for([&] { return a.gateways() == 2 && b.gateways() == 2; }, 2000ms));
  QuotaClient c(client_options(redis, "t2:", 5));
  EXPECT_EQ(c.gateways(), 5u);  // the hint wins, even before connecting
  b.stop();                     // leaves the set at once
  EXPECT_TRUE(wait_for([&] { return a.gateways() == 1; }, 2000ms));
  EXPECT_EQ(a.stats().gateways, 1u);
}

// Cluster windows are aligned to the epoch (Redis TIME, the same clock as the system's here).
std::chrono::nanoseconds to_window_edge(std::chrono::nanoseconds per) {
  return per - std::chrono::system_clock::now().time_since_epoch() % per;
}

TEST(ClusterQuotaTest, UnusedLeaseIsReturnedAndAnotherGatewayGetsIt) {
  // Keep the few seconds of this test clear of the hour's edge: a new window there would change
  // the counts and shorten retry_after.
  if (to_window_edge(1h) < 15s) std::this_thread::sleep_for(to_window_edge(1h) + 100ms);
  RedisServer redis;
  ASSERT_TRUE(redis.start());
  const std::string prefix = "t3:";
  auto r = rule("r", kWindow, 1000, 1h);
  QuotaClient a(client_options(redis, prefix, 2));
  QuotaClient b(client_options(redis, prefix, 2));
  a.start();
  b.start();
  ClusterLimiter la(a, r);
  ClusterLimiter lb(b, r);
  const uint64_t h = 0x1234567890abcdefULL;
  const std::string key = window_key(prefix, "r", h);

  ASSERT_TRUE(acquire_one(la, "k", h));
  RateDecision d;
  ASSERT_EQ(la.acquire("k", h, Clock::now(), &d), Outcome::kAllowed);
  la.refund("k", h);  // one of the two used
  // One lease of 1000 / (40 * 2) = 12 is counted in Redis; 11 of it is unused.
  EXPECT_EQ(redis.command({"HGET", key, "c"}), "12");
  EXPECT_TRUE(wait_for([&] { return redis.command({"HGET", key, "c"}) == "1"; }, 2000ms));

  // Gateway b can now take everything else: exactly 999, however its leases fall.
  Tally t;
  wait_for(
      [&] {
        Outcome o = lb.acquire("k", h, Clock::now(), &d);
        if (o == Outcome::kAllowed) ++t.allowed;
        return t.allowed >= 999;
      },
      3000ms);
  EXPECT_EQ(t.allowed, 999u);
  Outcome last = Outcome::kAllowed;
  for (int i = 0; i < 50; ++i) {
    last = lb.acquire("k", h, Clock::now(), &d);
    EXPECT_NE(last, Outcome::kAllowed);
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(last, Outcome::kRejected);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.remaining, 0u);
  // The window is an hour long: the quota comes back at the edge at the earliest.
  EXPECT_GT(d.retry_after, std::min<std::chrono::nanoseconds>(1min, to_window_edge(1h)));
  // Gateway a gave its lease back, so for it the key is new again.
  EXPECT_EQ(la.acquire("k", h, Clock::now(), &d), Outcome::kUnavailable);
}

TEST(ClusterQuotaTest, OverrideLimitAndNoDoubleSpendingAcrossThreads) {
  RedisServer redis;
  ASSERT_TRUE(redis.start());
  auto o = client_options(redis, "t4:", 2);
  o.lease_idle = 10s;  // keep leases: the count must come out exact from the leases alone
  o.timeout = 200ms;   // a loaded machine: a refill answered after the timeout loses its lease
  QuotaClient client(o);
  client.start();
  auto r = rule("r", kWindow, 1000, 1h);
  r.overrides.push_back({"vip", {50, 1h, 0}});
  ClusterLimiter lim(client, r);

  // Four workers hammer one key: exactly the limit passes.
  std::atomic<uint64_t> allowed{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&] {
      RateDecision d;
      auto end = Clock::now() + 1500ms;
      while (Clock::now() < end && allowed.load() < 1000) {
        if (lim.acquire("k", 7, Clock::now(), &d) == Outcome::kAllowed) allowed.fetch_add(1);
      }
      // A little more, to catch any token beyond the limit.
      for (int i = 0; i < 200; ++i)
        if (lim.acquire("k", 7, Clock::now(), &d) == Outcome::kAllowed) allowed.fetch_add(1);
    });
  }
  for (auto& t : workers) t.join();
  // Exactly the limit: no token is spent twice across threads, and none is stranded (two
  // workers that missed the new key at once could put it in two slots, and the second copy's
  // lease was lost: KeyMissedByTwoWorkersAtOnceGetsOneSlot). The one under-admission the design
  // keeps: a refill answered after the timeout loses its lease, 12 tokens per failed round trip
  // (docs/cluster-limits.md); with none failed, exactly 1000.
  const uint64_t failed = client.stats().errors;
  EXPECT_LE(allowed.load(), 1000u);
  EXPECT_GE(allowed.load(), 1000u - 12 * std::min<uint64_t>(failed, 80)) << failed << " failed";
  EXPECT_EQ(lim.size(), 1u);

  uint64_t vip = 0;
  RateDecision d;
  wait_for(
      [&] {
        if (lim.acquire("vip", 99, Clock::now(), &d) == Outcome::kAllowed) ++vip;
        return false;
      },
      300ms);
  EXPECT_EQ(vip, 50u);
  EXPECT_EQ(d.limit, 50u);
}

// Spends key `hash` of `lim` on a frozen manual clock until Redis has counted `limit` in the
// window and the limiter has answered 20 times in a row without admitting: what it admitted.
uint64_t spend_all(ClusterLimiter& lim, const core::ManualClock& clock, const RedisServer& redis,
                   const std::string& redis_key, uint64_t hash, uint64_t limit) {
  uint64_t allowed = 0;
  int refused = 0;
  RateDecision d;
  wait_for(
      [&] {
        if (lim.acquire("k", hash, clock.now(), &d) == Outcome::kAllowed) {
          ++allowed;
          refused = 0;
        } else if (redis.command({"HGET", redis_key, "c"}) == std::to_string(limit)) {
          ++refused;
        }
        return refused >= 20;
      },
      10000ms);
  return allowed;
}

// Issue 11's open defect, made deterministic: worker A misses a new key and claims a slot for it;
// before A publishes the key there, worker B misses it too. B must not put the key in a second
// slot: that copy's lease (12 tokens here) would be stranded, since find() returns the first, and
// the key would stop at 988 of 1,000. A hook inside insert() runs B's acquire at exactly that
// point; the manual clock keeps every lease from expiring, so nothing else moves tokens.
TEST(ClusterQuotaTest, KeyMissedByTwoWorkersAtOnceGetsOneSlot) {
  RedisServer redis;
  ASSERT_TRUE(redis.start());
  const std::string prefix = "t11:";
  core::ManualClock clock;
  auto o = client_options(redis, prefix, 2);
  o.clock = &clock;
  o.scripts_use_clock = true;  // the window is the manual clock's, far from any edge
  QuotaClient client(o);
  client.start();
  ASSERT_TRUE(wait_for([&] { return client.healthy(); }, 2000ms));
  ClusterLimiter lim(client, rule("r", kWindow, 1000, 1h));

  struct Race {
    ClusterLimiter* lim;
    core::ManualClock* clock;
    int calls = 0;
    Outcome b = Outcome::kAllowed;
  } race{&lim, &clock};
  lim.set_insert_hook_for_test(
      [](void* arg) {
        auto* r = static_cast<Race*>(arg);
        if (r->calls++ > 0) return;  // B's own insert, if it gets that far
        RateDecision d;
        r->b = r->lim->acquire("k", 7, r->clock->now(), &d);
      },
      &race);
  RateDecision d;
  EXPECT_EQ(lim.acquire("k", 7, clock.now(), &d), Outcome::kUnavailable);  // A: lease on its way
  lim.set_insert_hook_for_test(nullptr, nullptr);
  EXPECT_EQ(race.b, Outcome::kUnavailable);  // B decides without the cluster
  EXPECT_EQ(lim.size(), 1u);                 // one slot holds the key

  const uint64_t allowed = spend_all(lim, clock, redis, window_key(prefix, "r", 7), 7, 1000);
  EXPECT_EQ(allowed, 1000u) << client.stats().errors << " round trips failed";
}

// Expiry runs on the client's clock: a lease stays while the manual clock stands still, however
// long that is in real time, and goes back to Redis once lease_idle has passed on it.
TEST(ClusterQuotaTest, IdleLeaseGoesBackAfterLeaseIdleOnTheInjectedClock) {
  RedisServer redis;
  ASSERT_TRUE(redis.start());
  const std::string prefix = "t12:";
  core::ManualClock clock;
  auto o = client_options(redis, prefix, 2);
  o.clock = &clock;
  o.scripts_use_clock = true;
  o.lease_idle = 500ms;
  QuotaClient client(o);
  client.start();
  ASSERT_TRUE(wait_for([&] { return client.healthy(); }, 2000ms));
  ClusterLimiter lim(client, rule("r", kWindow, 1000, 1h));
  const std::string key = window_key(prefix, "r", 9);
  RateDecision d;
  ASSERT_TRUE(
      wait_for([&] { return lim.acquire("k", 9, clock.now(), &d) == Outcome::kAllowed; }, 2000ms));
  EXPECT_EQ(redis.command({"HGET", key, "c"}), "12");  // one lease of 1000 / (40 * 2)

  // Idle keys are looked for every lease_idle / 4 of the clock's time.
  clock.advance(499ms);
  std::this_thread::sleep_for(200ms);  // the client thread has time to scan: nothing is idle yet
  EXPECT_EQ(redis.command({"HGET", key, "c"}), "12");
  clock.advance(130ms);  // past lease_idle and the next scan: 11 unused tokens go back
  EXPECT_TRUE(wait_for([&] { return redis.command({"HGET", key, "c"}) == "1"; }, 2000ms));
  EXPECT_EQ(lim.acquire("k", 9, clock.now(), &d), Outcome::kUnavailable);  // a new key again
}

// The demand a key reports: an average over about a second, pure arithmetic on the times given.
TEST(ClusterQuotaTest, AverageDemand) {
  const double e = std::exp(-1.0);
  EXPECT_NEAR(ClusterLimiter::average_demand(0, 100, 1'000'000'000), 100 * (1 - e), 1e-9);
  // A steady 200/s, reported every 10 ms, is reached within a few time constants.
  double d = 0;
  for (int i = 0; i < 500; ++i) d = ClusterLimiter::average_demand(d, 2, 10'000'000);
  EXPECT_NEAR(d, 200.0, 200.0 * 0.01);
  // Reports closer together than 1 ms count as 1 ms apart.
  EXPECT_DOUBLE_EQ(ClusterLimiter::average_demand(50, 3, 0),
                   ClusterLimiter::average_demand(50, 3, 1'000'000));
  // No requests: the average decays by e per second.
  EXPECT_NEAR(ClusterLimiter::average_demand(100, 0, 1'000'000'000), 100 * e, 1e-9);
}

TEST(ClusterQuotaTest, EvictedKeyReturnsItsLease) {
  RedisServer redis;
  ASSERT_TRUE(redis.start());
  const std::string prefix = "t5:";
  auto o = client_options(redis, prefix, 2);
  o.lease_idle = 10s;
  QuotaClient client(o);
  client.start();
  ClusterLimiter lim(client, rule("r", kWindow, 1000, 1h, 0, /*max_keys=*/2));
  ASSERT_TRUE(acquire_one(lim, "k1", 101));
  ASSERT_TRUE(acquire_one(lim, "k2", 202));
  EXPECT_EQ(lim.size(), 2u);
  EXPECT_EQ(redis.command({"HGET", window_key(prefix, "r", 101), "c"}), "12");
  ASSERT_TRUE(acquire_one(lim, "k3", 303));  // evicts k1, the least recently used
  EXPECT_EQ(lim.size(), 2u);
  EXPECT_TRUE(wait_for(
      [&] {
        return redis.command({"HGET", window_key(prefix, "r", 101), "c"}) == "1";
      },
      2000ms));
  EXPECT_EQ(redis.command({"HGET", window_key(prefix, "r", 202), "c"}), "12");
}

// Redis killed: every acquire stays fast, kUnavailable follows within the timeout of the first
// call that finds Redis gone; a Redis started again on the same port is found by itself.
TEST(ClusterQuotaTest, RedisDownFallsBackAndRecovers) {
  RedisServer redis;
  ASSERT_TRUE(redis.start());
  QuotaClient client(client_options(redis, "t6:", 2));
  client.start();
  ClusterLimiter lim(client, rule("r", kBucket, 1000, 1s));
  ASSERT_TRUE(acquire_one(lim, "k", 5));

  redis.kill_now();
  const auto killed = Clock::now();
  Clock::duration slowest{0};
  Clock::time_point first_unavailable{};
  RateDecision d;
  while (Clock::now() - killed < 400ms) {
    auto t0 = Clock::now();
    Outcome o = lim.acquire("k", 5, t0, &d);
    slowest = std::max(slowest, Clock::now() - t0);
    if (o == Outcome::kUnavailable && first_unavailable == Clock::time_point{})
      first_unavailable = t0;
    std::this_thread::sleep_for(100us);
  }
  ASSERT_NE(first_unavailable, Clock::time_point{});
  // The next lease refill or heartbeat (every 100ms) finds the connection closed.
  EXPECT_LT(first_unavailable - killed, 150ms);
  EXPECT_LT(slowest, 20ms);
  EXPECT_FALSE(client.healthy());
  EXPECT_GE(client.stats().errors, 1u);
  EXPECT_EQ(lim.acquire("k", 5, Clock::now(), &d), Outcome::kUnavailable);

  ASSERT_TRUE(redis.start());  // same port
  EXPECT_TRUE(acquire_one(lim, "k", 5));
  EXPECT_TRUE(client.healthy());
  EXPECT_GE(client.stats().reconnects, 1u);
  std::printf("[ figures  ] kill -> first kUnavailable: %.1f ms, slowest acquire: %.3f ms\n",
              std::chrono::duration<double, std::milli>(first_unavailable - killed).count(),
              std::chrono::duration<double, std::milli>(slowest).count());
}

// Redis stopped (SIGSTOP): the connection stays up but nothing answers. Workers must fall back
// no later than `timeout` after the client thread's call went out, without waiting for it.
TEST(ClusterQuotaTest, SlowRedisFallsBackWithinTimeout) {
  RedisServer redis;
  ASSERT_TRUE(redis.start());
  QuotaClient client(client_options(redis, "t7:", 2));
  client.start();
  ClusterLimiter lim(client, rule("r", kBucket, 100000, 1s));
  ASSERT_TRUE(acquire_one(lim, "k", 5));

  redis.pause();
  const uint64_t calls_before = client.stats().calls;
  const auto paused = Clock::now();
  Clock::time_point first_call{}, first_unavailable{};
  Clock::duration slowest{0};
  RateDecision d;
  while (Clock::now() - paused < 300ms && first_unavailable == Clock::time_point{}) {
    auto t0 = Clock::now();
    Outcome o = lim.acquire("k", 5, t0, &d);
    slowest = std::max(slowest, Clock::now() - t0);
    if (first_call == Clock::time_point{} && client.stats().calls != calls_before) first_call = t0;
    if (o == Outcome::kUnavailable) first_unavailable = t0;
  }
  ASSERT_NE(first_call, Clock::time_point{});
  ASSERT_NE(first_unavailable, Clock::time_point{});
  const auto fallback = first_unavailable - first_call;
  // The timeout, plus slack for a busy machine (less than a second timeout would need).
  EXPECT_LE(fallback, 20ms + 15ms);
  EXPECT_LT(slowest, 20ms);

  std::this_thread::sleep_until(paused + 100ms);  // long enough that the call surely timed out
  EXPECT_FALSE(client.healthy());
  EXPECT_GE(client.stats().errors, 1u);
  redis.resume();
  EXPECT_TRUE(acquire_one(lim, "k", 5));
  EXPECT_GE(client.stats().reconnects, 1u);
  std::printf("[ figures  ] call out -> first kUnavailable: %.1f ms (timeout 20 ms)\n",
              std::chrono::duration<double, std::milli>(fallback).count());
}

// Two gateways (two clients, two limiters, one Redis) each offered `offered` requests per second.
Tally offer_load(ClusterLimiter& a, ClusterLimiter& b, int offered_per_ms,
                 std::chrono::milliseconds span, std::vector<int64_t>* allowed_at_us) {
  Tally totals;
  std::mutex mu;
  auto gateway = [&](ClusterLimiter& lim, uint64_t hash) {
    Tally t;
    std::vector<int64_t> at;
    RateDecision d;
    auto start = Clock::now();
    auto next = start;
    while (next - start < span) {
      for (int i = 0; i < offered_per_ms; ++i) {
        Outcome o = lim.acquire("k", hash, Clock::now(), &d);
        if (o == Outcome::kAllowed) {
          ++t.allowed;
          if (allowed_at_us != nullptr)
            at.push_back(std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count());
        } else if (o == Outcome::kRejected) {
          ++t.rejected;
        } else {
          ++t.unavailable;
        }
      }
      next += 1ms;
      std::this_thread::sleep_until(next);
    }
    std::lock_guard<std::mutex> lock(mu);
    totals.allowed += t.allowed;
    totals.rejected += t.rejected;
    totals.unavailable += t.unavailable;
    if (allowed_at_us != nullptr) allowed_at_us->insert(allowed_at_us->end(), at.begin(), at.end());
  };
  std::thread ta(gateway, std::ref(a), 77);
  std::thread tb(gateway, std::ref(b), 77);
  ta.join();
  tb.join();
  return totals;
}

// Redis commands and failed round trips of two gateways over `seconds`.
void report_redis(const QuotaClient& a, const QuotaClient& b, double seconds) {
  auto sa = a.stats();
  auto sb = b.stats();
  std::printf("[ figures  ] Redis commands %llu (%.0f/s for both gateways), errors %llu\n",
              static_cast<unsigned long long>(sa.calls + sb.calls),
              static_cast<double>(sa.calls + sb.calls) / seconds,
              static_cast<unsigned long long>(sa.errors + sb.errors));
}

TEST(ClusterQuotaTest, TwoGatewaysShareATokenBucket) {
  RedisServer redis;
  ASSERT_TRUE(redis.start());
  // Accuracy, not timeouts, is measured here: a 20 ms timeout on a loaded machine turned a
  // stalled round trip into 230 local decisions (1.5%) once in a full `make test` run.
  auto o = client_options(redis, "t8:");
  o.timeout = 200ms;
  QuotaClient a(o);
  QuotaClient b(o);
  a.start();
  b.start();
  ASSERT_TRUE(wait_for([&] { return a.gateways() == 2 && b.gateways() == 2; }, 2000ms));
  auto r = rule("r", kBucket, 1000, 1s, /*burst=*/100);
  ClusterLimiter la(a, r);
  ClusterLimiter lb(b, r);

  // 1000/s with a burst of 100, each gateway offered 5000/s (5x the whole limit each).
  auto start = Clock::now();
  Tally t = offer_load(la, lb, 5, 1500ms, nullptr);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double expected = 100 + 1000 * seconds;
  const double error = (static_cast<double>(t.allowed) - expected) / expected;
  std::printf(
      "[ figures  ] token bucket: admitted %llu in %.3f s, expected %.0f (%+.2f%%); rejected "
      "%llu, unavailable %llu\n",
      static_cast<unsigned long long>(t.allowed), seconds, expected, error * 100,
      static_cast<unsigned long long>(t.rejected), static_cast<unsigned long long>(t.unavailable));
  report_redis(a, b, seconds);
  EXPECT_LT(std::abs(error), 0.03);
  EXPECT_GT(t.rejected, 3 * t.allowed);  // it really was overloaded
  // Before each gateway's first lease (the first millisecond's 5 requests of each) and, on a
  // loaded machine, while a stalled round trip exceeds the timeout: never a sizeable share.
  EXPECT_LT(t.unavailable, (t.allowed + t.rejected + t.unavailable) / 100);
}

TEST(ClusterQuotaTest, TwoGatewaysShareASlidingWindow) {
  RedisServer redis;
  ASSERT_TRUE(redis.start());
  auto o = client_options(redis, "t9:");
  o.timeout = 200ms;  // as above: accuracy, not timeouts
  QuotaClient a(o);
  QuotaClient b(o);
  a.start();
  b.start();
  ASSERT_TRUE(wait_for([&] { return a.gateways() == 2 && b.gateways() == 2; }, 2000ms));
  ClusterLimiter la(a, rule("r", kWindow, 500, 500ms));
  ClusterLimiter lb(b, rule("r", kWindow, 500, 500ms));

  std::vector<int64_t> at;
  Tally t = offer_load(la, lb, 5, 2000ms, &at);
  ASSERT_FALSE(at.empty());
  // Windows are aligned on Redis TIME, i.e. the wall clock of this machine. Count whole windows
  // after the first (which starts with an empty previous window, so it may take a full 500 at
  // once).
  const int64_t per = 500'000;
  const int64_t first = *std::min_element(at.begin(), at.end()) / per + 1;
  const int64_t last = *std::max_element(at.begin(), at.end()) / per - 1;  // last whole one
  ASSERT_GE(last - first + 1, 2);
  uint64_t in_whole = 0;
  for (int64_t x : at)
    if (x / per >= first && x / per <= last) ++in_whole;
  const double expected = 500.0 * static_cast<double>(last - first + 1);
  const double error = (static_cast<double>(in_whole) - expected) / expected;
  std::printf(
      "[ figures  ] sliding window: admitted %llu in %lld whole windows, expected %.0f (%+.2f%%); "
      "total %llu, rejected %llu, unavailable %llu\n",
      static_cast<unsigned long long>(in_whole), static_cast<long long>(last - first + 1), expected,
      error * 100, static_cast<unsigned long long>(t.allowed),
      static_cast<unsigned long long>(t.rejected), static_cast<unsigned long long>(t.unavailable));
  report_redis(a, b, 2.0);
  EXPECT_LT(std::abs(error), 0.03);
  EXPECT_LT(t.unavailable, (t.allowed + t.rejected + t.unavailable) / 100);
}

// Two gateways offered `per_ms_a` and `per_ms_b` requests a millisecond for `span`: what each got.
std::pair<Tally, Tally> offer_each(ClusterLimiter& a, ClusterLimiter& b, int per_ms_a, int per_ms_b,
                                   std::chrono::milliseconds span) {
  auto gateway = [&](ClusterLimiter& lim, int per_ms, Tally* t) {
    RateDecision d;
    auto start = Clock::now();
    auto next = start;
    while (next - start < span) {
      for (int i = 0; i < per_ms; ++i) {
        Outcome o = lim.acquire("k", 78, Clock::now(), &d);
        if (o == Outcome::kAllowed) {
          ++t->allowed;
        } else if (o == Outcome::kRejected) {
          ++t->rejected;
        } else {
          ++t->unavailable;
        }
      }
      next += 1ms;
      std::this_thread::sleep_until(next);
    }
  };
  Tally ta, tb;
  std::thread x(gateway, std::ref(a), per_ms_a, &ta);
  std::thread y(gateway, std::ref(b), per_ms_b, &tb);
  x.join();
  y.join();
  return {ta, tb};
}

// Issue 11: two gateways under equal load got 90-98/s and 2-10/s of a 100/s limit (a lease of
// one token; whichever gateway's call reached Redis first after a token came back got it).
TEST(ClusterQuotaTest, SharesFollowDemand) {
  for (auto [alg, name] : {std::pair{kBucket, "bucket"}, std::pair{kWindow, "window"}}) {
    RedisServer redis;
    ASSERT_TRUE(redis.start());
    auto oa = client_options(redis, "t10:");
    oa.timeout = 200ms;  // a loaded machine: a lost round trip would lose a lease
    oa.lease_idle = 500ms;
    QuotaClient a(oa);
    QuotaClient b(oa);
    a.start();
    b.start();
    ASSERT_TRUE(wait_for([&] { return a.gateways() == 2 && b.gateways() == 2; }, 2000ms));
    // 100/s; each gateway is offered 1000/s (equal), then 3000/s against 1000/s.
    auto r =
        alg == kBucket ? rule("r", kBucket, 100, 1s, /*burst=*/10) : rule("r", kWindow, 100, 1s);
    ClusterLimiter la(a, r);
    ClusterLimiter lb(b, r);
    offer_each(la, lb, 1, 1, 1000ms);  // warm up: demands known to Redis
    for (auto [pa, pb] : {std::pair{1, 1}, std::pair{3, 1}}) {
      auto start = Clock::now();
      auto [ta, tb] = offer_each(la, lb, pa, pb, 3000ms);
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      const double total = static_cast<double>(ta.allowed + tb.allowed);
      std::printf("[ figures  ] %s, demand %d:%d: gateway a %llu, b %llu in %.2f s (%.1f/s)\n",
                  name, pa, pb, static_cast<unsigned long long>(ta.allowed),
                  static_cast<unsigned long long>(tb.allowed), seconds, total / seconds);
      // The total stays within 5% of the limit (the bucket's burst is spent in the warm-up).
      EXPECT_NEAR(total / seconds, 100.0, 5.0) << name << " " << pa << ":" << pb;
      const double share_a = static_cast<double>(ta.allowed) / total;
      if (pa == pb) {
        // Equal demand, equal shares: within 20% of each other.
        EXPECT_NEAR(static_cast<double>(ta.allowed) / static_cast<double>(tb.allowed), 1.0, 0.2)
            << name;
      } else {
        // Shares follow demand (3:1 -> 75%), and neither starves.
        EXPECT_NEAR(share_a, 0.75, 0.1) << name;
        EXPECT_GT(tb.allowed, 0.1 * total) << name;
      }
    }
  }
}

// The accuracy target, 10 s of real time per algorithm, so not run by default:
//   cluster_quota_test --gtest_also_run_disabled_tests --gtest_filter='*TenSeconds*'
// Two gateways, limit 1000/s, each gateway offered 5000/s (so 5x the limit each, 10x together).
TEST(ClusterQuotaTest, DISABLED_TenSecondsAtFiveTimesTheLimit) {
  for (auto algorithm : {kBucket, kWindow}) {
    RedisServer redis;
    ASSERT_TRUE(redis.start());
    QuotaClient a(client_options(redis, "t10:"));
    QuotaClient b(client_options(redis, "t10:"));
    a.start();
    b.start();
    ASSERT_TRUE(wait_for([&] { return a.gateways() == 2 && b.gateways() == 2; }, 2000ms));
    auto r = rule("r", algorithm, 1000, 1s);  // token bucket: burst = requests = 1000
    ClusterLimiter la(a, r);
    ClusterLimiter lb(b, r);
    std::vector<int64_t> at;
    auto start = Clock::now();
    Tally t = offer_load(la, lb, 5, 10s, &at);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (algorithm == kBucket) {
      const double exact = 1000 + 1000 * seconds;  // what one exact bucket would admit
      std::printf(
          "[ figures  ] token bucket, %.3f s: admitted %llu; exact bucket %.0f (%+.2f%%); "
          "rate x time %.0f (%+.2f%%); rejected %llu, unavailable %llu\n",
          seconds, static_cast<unsigned long long>(t.allowed), exact,
          (static_cast<double>(t.allowed) - exact) / exact * 100, 1000 * seconds,
          (static_cast<double>(t.allowed) - 1000 * seconds) / (1000 * seconds) * 100,
          static_cast<unsigned long long>(t.rejected),
          static_cast<unsigned long long>(t.unavailable));
      EXPECT_LT(std::abs(static_cast<double>(t.allowed) - exact) / exact, 0.05);
    } else {
      const int64_t per = 1'000'000;
      const int64_t first = *std::min_element(at.begin(), at.end()) / per + 1;
      const int64_t last = *std::max_element(at.begin(), at.end()) / per - 1;
      uint64_t in_whole = 0;
      uint64_t worst = 0;
      for (int64_t w = first; w <= last; ++w) {
        uint64_t n = 0;
        for (int64_t x : at) n += x / per == w;
        in_whole += n;
        worst = std::max<uint64_t>(worst, n > 1000 ? n - 1000 : 1000 - n);
      }
      const double expected = 1000.0 * static_cast<double>(last - first + 1);
      std::printf(
          "[ figures  ] sliding window, %.3f s: admitted %llu in %lld whole windows, expected "
          "%.0f (%+.2f%%), worst window off by %llu; total %llu, rejected %llu, unavailable "
          "%llu\n",
          seconds, static_cast<unsigned long long>(in_whole),
          static_cast<long long>(last - first + 1), expected,
          (static_cast<double>(in_whole) - expected) / expected * 100,
          static_cast<unsigned long long>(worst), static_cast<unsigned long long>(t.allowed),
          static_cast<unsigned long long>(t.rejected),
          static_cast<unsigned long long>(t.unavailable));
      EXPECT_LT(std::abs(static_cast<double>(in_whole) - expected) / expected, 0.05);
    }
    report_redis(a, b, seconds);
  }
}

}  // namespace
}  // namespace sluice::governance
