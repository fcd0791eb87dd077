#include "governance/rate_limiter.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "core/random.h"
#include "upstream/load_balancer.h"

namespace sluice::governance {
namespace {

using namespace std::chrono_literals;
using config::RateAlgorithm;
using core::MonoTime;
using std::chrono::nanoseconds;
using upstream::hash_key;

MonoTime at(nanoseconds since_epoch) {
  return MonoTime(since_epoch);
}

RateLimiter::Options opts(RateAlgorithm alg, uint64_t requests, nanoseconds per, uint64_t burst = 0,
                          size_t max_keys = 1000) {
  RateLimiter::Options o;
  o.algorithm = alg;
  o.limit = {requests, per, burst};
  o.max_keys = max_keys;
  return o;
}

RateDecision take(RateLimiter& rl, const std::string& key, MonoTime now,
                  RateTicket* ticket = nullptr) {
  return rl.acquire(key, hash_key(key), now, ticket);
}

int allowed(RateLimiter& rl, const std::string& key, MonoTime now, int attempts) {
  int n = 0;
  for (int i = 0; i < attempts; ++i) n += take(rl, key, now).allowed;
  return n;
}

// ---- token bucket (GCRA) ----

TEST(RateLimiterTokenBucket, BurstThenOnePerInterval) {
  RateLimiter rl(opts(RateAlgorithm::kTokenBucket, 100, 1s, 20));
  const MonoTime t0 = at(10s);
  EXPECT_EQ(allowed(rl, "k", t0, 50), 20);
  EXPECT_EQ(allowed(rl, "k", t0 + 10ms - 1ns, 5), 0);
  EXPECT_EQ(allowed(rl, "k", t0 + 10ms, 5), 1);
  EXPECT_EQ(allowed(rl, "k", t0 + 19ms, 5), 0);
  EXPECT_EQ(allowed(rl, "k", t0 + 20ms, 5), 1);
  // Steady: one attempt every 1ms for 1s passes exactly one per 10ms.
  int n = 0;
  for (int ms = 21; ms <= 1020; ++ms)
    n += take(rl, "k", t0 + std::chrono::milliseconds(ms)).allowed;
  EXPECT_EQ(n, 100);
  // Idle long enough refills to the burst, not beyond.
  EXPECT_EQ(allowed(rl, "k", t0 + 60s, 50), 20);
}

TEST(RateLimiterTokenBucket, DecisionValues) {
  RateLimiter rl(opts(RateAlgorithm::kTokenBucket, 100, 1s, 20));
  const MonoTime t0 = at(10s);
  RateDecision d = take(rl, "k", t0);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.limit, 20u);
  EXPECT_EQ(d.remaining, 19u);
  EXPECT_EQ(d.reset, 10ms);
  EXPECT_EQ(d.retry_after, 0ns);
  for (uint64_t i = 2; i <= 20; ++i) {
    d = take(rl, "k", t0);
    ASSERT_TRUE(d.allowed);
    EXPECT_EQ(d.remaining, 20 - i);
  }
  EXPECT_EQ(d.reset, 200ms);
  d = take(rl, "k", t0);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.remaining, 0u);
  EXPECT_EQ(d.reset, 200ms);
  EXPECT_EQ(d.retry_after, 10ms);
  d = take(rl, "k", t0 + 3ms);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.reset, 197ms);
  EXPECT_EQ(d.retry_after, 7ms);
  d = take(rl, "k", t0 + 35ms);  // 3 tokens back: take one, 2 left
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 2u);
  EXPECT_EQ(d.reset, 175ms);
}

TEST(RateLimiterTokenBucket, BurstZeroMeansRequests) {
  RateLimiter rl(opts(RateAlgorithm::kTokenBucket, 5, 1s, 0));
  EXPECT_EQ(allowed(rl, "k", at(10s), 10), 5);
  EXPECT_EQ(allowed(rl, "k", at(10s + 200ms), 10), 1);
}

TEST(RateLimiterTokenBucket, RefundGivesTheTokenBack) {
  RateLimiter rl(opts(RateAlgorithm::kTokenBucket, 100, 1s, 20));
  const MonoTime t0 = at(10s);
  EXPECT_EQ(allowed(rl, "k", t0, 19), 19);
  RateTicket t;
  ASSERT_TRUE(take(rl, "k", t0, &t).allowed);
  EXPECT_NE(t.slot, UINT32_MAX);
  EXPECT_FALSE(take(rl, "k", t0).allowed);
  rl.refund(t, t0);
  EXPECT_EQ(allowed(rl, "k", t0, 5), 1);

  // A rejected acquire's ticket refunds nothing.
  RateTicket rejected;
  EXPECT_FALSE(take(rl, "k", t0, &rejected).allowed);
  EXPECT_EQ(rejected.slot, UINT32_MAX);
  rl.refund(rejected, t0);
  EXPECT_EQ(allowed(rl, "k", t0, 5), 0);
}

TEST(RateLimiterTokenBucket, RefundNeverFillsBeyondFull) {
  RateLimiter rl(opts(RateAlgorithm::kTokenBucket, 100, 1s, 20));
  RateTicket t;
  ASSERT_TRUE(take(rl, "k", at(10s), &t).allowed);
  rl.refund(t, at(20s));  // bucket full long ago: TAT stays <= now
  EXPECT_EQ(allowed(rl, "k", at(20s), 50), 20);
}

TEST(RateLimiterTokenBucket, RefundOfAnEvictedEntryIsANoOp) {
  // 8 entries, all in one probe window; 1 per 10s each.
  RateLimiter rl(opts(RateAlgorithm::kTokenBucket, 1, 10s, 1, 8));
  RateTicket stale;
  ASSERT_TRUE(take(rl, "old", at(10s), &stale).allowed);
  const MonoTime later = at(30s);  // "old" is full again: first to go
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(take(rl, "new" + std::to_string(i), later).allowed);
  EXPECT_EQ(rl.evictions(), 1u);
  rl.refund(stale, later);
  // Had the refund reached the entry's new key, that key would pass again.
  for (int i = 0; i < 8; ++i) EXPECT_FALSE(take(rl, "new" + std::to_string(i), later).allowed) << i;
}

// ---- sliding window ----

TEST(RateLimiterSlidingWindow, NoDoubleBurstAtTheWindowEdge) {
  // 10 per 1s: sub-windows of 100ms.
  RateLimiter rl(opts(RateAlgorithm::kSlidingWindow, 10, 1s));
  EXPECT_EQ(allowed(rl, "k", at(10s + 999ms), 20), 10);
  // A fixed window [11s, 12s) would pass 10 more right here.
  RateDecision d = take(rl, "k", at(11s));
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, 1s);  // the burst counts until sub-window 10.9s + 11 * 100ms = 12s
  EXPECT_EQ(allowed(rl, "k", at(11s + 500ms), 5), 0);
  EXPECT_EQ(allowed(rl, "k", at(12s - 1ns), 5), 0);
  EXPECT_EQ(allowed(rl, "k", at(12s), 20), 10);
}

TEST(RateLimiterSlidingWindow, DecisionValuesAndPartialExpiry) {
  RateLimiter rl(opts(RateAlgorithm::kSlidingWindow, 10, 1s));
  RateDecision d;
  for (uint64_t i = 1; i <= 5; ++i) {
    d = take(rl, "k", at(10s + 50ms));  // sub-window 100 = [10.0s, 10.1s)
    ASSERT_TRUE(d.allowed);
    EXPECT_EQ(d.limit, 10u);
    EXPECT_EQ(d.remaining, 10 - i);
  }
  EXPECT_EQ(d.reset, 1050ms);  // until sub-window 111 begins: 11.1s
  for (int i = 0; i < 5; ++i) d = take(rl, "k", at(10s + 550ms));  // sub-window 105
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 0u);
  EXPECT_EQ(d.reset, 1050ms);         // until 11.6s
  d = take(rl, "k", at(11s + 50ms));  // look-back: sub-windows 100..110, all 10 still counted
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, 50ms);  // sub-window 100 leaves at 11.1s
  EXPECT_EQ(d.reset, 550ms);
  EXPECT_EQ(allowed(rl, "k", at(11s + 100ms), 20), 5);
  d = take(rl, "k", at(11s + 100ms));
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, 500ms);  // sub-window 105 leaves at 11.6s
}

TEST(RateLimiterSlidingWindow, AtMostTheLimitInAnyWindowLength) {
  RateLimiter rl(opts(RateAlgorithm::kSlidingWindow, 10, 1s));
  // Bursty arrivals: 30 attempts at the same instant every 37ms, for 20s.
  std::vector<nanoseconds> passed;
  for (nanoseconds t = 10s; t < 30s; t += 37ms) {
    for (int i = 0; i < 30; ++i) {
      if (take(rl, "k", at(t)).allowed) passed.push_back(t);
    }
  }
  size_t worst = 0;
  std::deque<nanoseconds> window;
  for (nanoseconds t : passed) {
    window.push_back(t);
    while (window.front() <= t - 1s) window.pop_front();
    worst = std::max(worst, window.size());
  }
  EXPECT_EQ(worst, 10u);
  // The strict side of the approximation: a burst of 10 counts for at most 1.1s, plus up to 37ms
  // until the next attempt, so at least 17 full bursts fit in 20s.
  EXPECT_GE(passed.size(), 170u);
  EXPECT_LE(passed.size(), 200u);
}

TEST(RateLimiterSlidingWindow, RefundDecrementsItsSubWindow) {
  RateLimiter rl(opts(RateAlgorithm::kSlidingWindow, 10, 1s));
  RateTicket t;
  ASSERT_TRUE(take(rl, "k", at(10s), &t).allowed);
  EXPECT_EQ(allowed(rl, "k", at(10s + 500ms), 20), 9);
  rl.refund(t, at(10s + 500ms));
  EXPECT_EQ(allowed(rl, "k", at(10s + 500ms), 20), 1);

  // A refund after its sub-window left the look-back changes nothing.
  RateLimiter rl2(opts(RateAlgorithm::kSlidingWindow, 10, 1s));
  ASSERT_TRUE(take(rl2, "k", at(10s), &t).allowed);
  EXPECT_EQ(allowed(rl2, "k", at(11s + 100ms), 20), 10);  // 10.0s sub-window expired
  rl2.refund(t, at(11s + 100ms));
  EXPECT_EQ(allowed(rl2, "k", at(11s + 100ms), 20), 0);
}

// ---- concurrency ----

TEST(RateLimiterConcurrency, AcquireReleaseRefund) {
  RateLimiter rl(opts(RateAlgorithm::kConcurrency, 3, 0s));
  const MonoTime t0 = at(10s);
  RateTicket a, b, c, d;
  EXPECT_EQ(take(rl, "k", t0, &a).remaining, 2u);
  EXPECT_EQ(take(rl, "k", t0, &b).remaining, 1u);
  RateDecision dc = take(rl, "k", t0, &c);
  EXPECT_TRUE(dc.allowed);
  EXPECT_EQ(dc.remaining, 0u);
  EXPECT_EQ(dc.limit, 3u);
  RateDecision rej = take(rl, "k", t0, &d);
  EXPECT_FALSE(rej.allowed);
  EXPECT_EQ(d.slot, UINT32_MAX);
  rl.release(d);                                 // no-op
  EXPECT_FALSE(take(rl, "k", t0 + 1h).allowed);  // time does not free anything
  rl.release(a);
  RateTicket e;
  EXPECT_TRUE(take(rl, "k", t0, &e).allowed);
  EXPECT_FALSE(take(rl, "k", t0).allowed);
  rl.refund(e, t0);  // a later rule rejected: same as release
  rl.release(b);
  EXPECT_EQ(allowed(rl, "k", t0, 5), 2);
}

TEST(RateLimiterConcurrency, EntriesInFlightAreNeverEvicted) {
  // 16 entries, one probe window of 16.
  RateLimiter rl(opts(RateAlgorithm::kConcurrency, 1, 0s, 0, 16));
  const MonoTime t0 = at(10s);
  std::vector<RateTicket> tickets(16);
  for (int i = 0; i < 16; ++i)
    ASSERT_TRUE(take(rl, "k" + std::to_string(i), t0, &tickets[i]).allowed);
  RateTicket untracked;
  EXPECT_TRUE(take(rl, "other", t0, &untracked).allowed);  // passes, untracked
  EXPECT_EQ(untracked.slot, UINT32_MAX);
  EXPECT_EQ(rl.untracked(), 1u);
  EXPECT_EQ(rl.evictions(), 0u);
  for (int i = 0; i < 16; ++i) EXPECT_FALSE(take(rl, "k" + std::to_string(i), t0).allowed) << i;
  rl.release(tickets[5]);
  RateTicket t;
  EXPECT_TRUE(take(rl, "other", t0, &t).allowed);
  EXPECT_NE(t.slot, UINT32_MAX);
  EXPECT_EQ(rl.evictions(), 1u);
  EXPECT_FALSE(take(rl, "other", t0).allowed);
  rl.release(tickets[5]);  // stale ticket: the entry belongs to "other" now
  EXPECT_FALSE(take(rl, "other", t0).allowed);
}

// ---- overrides, divisor ----

TEST(RateLimiterOverrides, VipKeyGetsItsOwnLimit) {
  auto o = opts(RateAlgorithm::kTokenBucket, 10, 1s);
  o.overrides = {{"vip|accounts", {100, 1s, 0}}, {"slow|accounts", {1, 1s, 0}}};
  RateLimiter rl(o);
  const MonoTime t0 = at(10s);
  EXPECT_EQ(allowed(rl, "vip|accounts", t0, 500), 100);
  EXPECT_EQ(allowed(rl, "slow|accounts", t0, 500), 1);
  EXPECT_EQ(allowed(rl, "plain|accounts", t0, 500), 10);
  EXPECT_EQ(take(rl, "vip|accounts", t0 + 10ms).limit, 100u);
  // Resolved by key text: any caller hash works.
  int n = 0;
  for (int i = 0; i < 500; ++i) n += rl.acquire("vip|accounts", 42, t0, nullptr).allowed;
  EXPECT_EQ(n, 100);
}

TEST(RateLimiterDivisor, EveryLimitIsShared) {
  auto o = opts(RateAlgorithm::kTokenBucket, 100, 1s, 20);
  o.overrides = {{"vip", {1000, 1s, 0}}};
  RateLimiter rl(o);
  rl.set_divisor(4);  // 25/s, burst 5; vip 250/s burst 250
  const MonoTime t0 = at(10s);
  EXPECT_EQ(allowed(rl, "k", t0, 50), 5);
  EXPECT_EQ(allowed(rl, "k", t0 + 40ms - 1ns, 5), 0);
  EXPECT_EQ(allowed(rl, "k", t0 + 40ms, 5), 1);
  EXPECT_EQ(allowed(rl, "vip", t0, 2000), 250);
  rl.set_divisor(1000);  // at least 1: 1/s, burst 1
  EXPECT_EQ(allowed(rl, "j", t0, 50), 1);
  EXPECT_EQ(allowed(rl, "j", t0 + 1s - 1ns, 50), 0);
  EXPECT_EQ(allowed(rl, "j", t0 + 1s, 50), 1);
  rl.set_divisor(0);  // taken as 1
  EXPECT_EQ(rl.divisor(), 1u);
  EXPECT_EQ(allowed(rl, "k", t0 + 1h, 50), 20);

  RateLimiter conc(opts(RateAlgorithm::kConcurrency, 10, 0s));
  conc.set_divisor(3);
  EXPECT_EQ(allowed(conc, "k", t0, 10), 3);
  RateLimiter win(opts(RateAlgorithm::kSlidingWindow, 10, 1s));
  win.set_divisor(2);
  EXPECT_EQ(allowed(win, "k", t0, 10), 5);
}

// ---- keys: eviction, hot keys ----

// One attempt of "hot" every 1ms and one one-off key every 1us, for 1s from t0; returns how many
// "hot" attempts passed. With `warm`, "hot" takes its burst just before the flood starts.
int flood(RateLimiter& rl, bool warm, int* hot_warm) {
  core::Rng rng(7);
  const nanoseconds t0 = 10s;
  if (warm) *hot_warm = allowed(rl, "hot", at(t0 - 1ms), 20);
  int hot_allowed = 0;
  for (int i = 0; i < 1'000'000; ++i) {
    const nanoseconds t = t0 + std::chrono::microseconds(i);
    if (i % 1000 == 0) hot_allowed += take(rl, "hot", at(t)).allowed;
    rl.acquire("flood", rng.next_u64(), at(t), nullptr);
  }
  return hot_allowed;
}

TEST(RateLimiterKeys, HotKeyStaysLimitedUnderAFloodOfKeys) {
  RateLimiter rl(opts(RateAlgorithm::kTokenBucket, 10, 1s, 0, 1000));
  int burst = 0;
  // After its burst at t0 - 1ms (TAT = t0 + 999ms) one more passes every 100ms: at t0 + 99ms,
  // 199ms, ..., 999ms.
  EXPECT_EQ(flood(rl, true, &burst), 10);
  EXPECT_EQ(burst, 10);
  EXPECT_EQ(rl.key_count(), rl.capacity());  // 1000: the table never grows
  EXPECT_GE(rl.evictions(), 1'000'000u - 1000u);
  auto hot = rl.hot_keys(1);
  ASSERT_EQ(hot.size(), 1u);
  EXPECT_EQ(hot[0].key, "hot");
  EXPECT_EQ(hot[0].allowed, 20u);
  EXPECT_EQ(hot[0].rejected, 1000u);
}

TEST(RateLimiterKeys, KeyArrivingWithAFloodLosesAtMostWhatItUsedEarly) {
  // A key with 1 token used looks like any one-off key and may be evicted (getting that token
  // back) until it has used more than the flood's keys: a few tokens at most, here 19 + 3.
  RateLimiter rl(opts(RateAlgorithm::kTokenBucket, 10, 1s, 0, 1000));
  const int hot_allowed = flood(rl, false, nullptr);
  EXPECT_GE(hot_allowed, 19);
  EXPECT_LE(hot_allowed, 24);
}

TEST(RateLimiterKeys, SlidingWindowHotKeySurvivesAFlood) {
  RateLimiter rl(opts(RateAlgorithm::kSlidingWindow, 10, 1s, 0, 1000));
  int burst = 0;
  // The burst at t0 - 1ms (sub-window 9.9s) counts until t0 + 1s: nothing more passes.
  EXPECT_EQ(flood(rl, true, &burst), 0);
  EXPECT_EQ(burst, 10);
  EXPECT_EQ(rl.key_count(), rl.capacity());
  EXPECT_GE(rl.evictions(), 1'000'000u - 1000u);
}

TEST(RateLimiterKeys, EntriesWithoutInformationAreReplacedFirst) {
  // 8 entries in one probe window, 1 per second each.
  RateLimiter rl(opts(RateAlgorithm::kTokenBucket, 1, 1s, 1, 8));
  take(rl, "x", at(10s));  // full again from 11s
  for (int i = 0; i < 7; ++i) take(rl, "a" + std::to_string(i), at(10s + 900ms));
  EXPECT_EQ(rl.key_count(), 8u);
  EXPECT_EQ(rl.evictions(), 0u);
  EXPECT_TRUE(take(rl, "late", at(11s + 500ms)).allowed);
  EXPECT_EQ(rl.evictions(), 1u);
  EXPECT_EQ(rl.key_count(), 8u);
  // "x" made room; every "a" kept its state.
  for (int i = 0; i < 7; ++i)
    EXPECT_FALSE(take(rl, "a" + std::to_string(i), at(11s + 500ms)).allowed);
  EXPECT_EQ(rl.evictions(), 1u);
}

TEST(RateLimiterKeys, HotKeysMostRequestsFirst) {
  RateLimiter rl(opts(RateAlgorithm::kTokenBucket, 4, 1s));
  const MonoTime t0 = at(10s);
  allowed(rl, "a", t0, 5);
  allowed(rl, "b", t0, 3);
  allowed(rl, "c", t0, 7);
  const std::string long_key(100, 'x');
  allowed(rl, long_key, t0, 1);
  EXPECT_EQ(rl.key_count(), 4u);
  auto hot = rl.hot_keys(3);
  ASSERT_EQ(hot.size(), 3u);
  EXPECT_EQ(hot[0].key, "c");
  EXPECT_EQ(hot[0].allowed, 4u);
  EXPECT_EQ(hot[0].rejected, 3u);
  EXPECT_EQ(hot[1].key, "a");
  EXPECT_EQ(hot[1].allowed, 4u);
  EXPECT_EQ(hot[1].rejected, 1u);
  EXPECT_EQ(hot[2].key, "b");
  EXPECT_EQ(hot[2].allowed, 3u);
  EXPECT_EQ(hot[2].rejected, 0u);
  auto all = rl.hot_keys(10);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[3].key, std::string(RateLimiter::kKeyTextBytes, 'x'));
}

// ---- threads ----

TEST(RateLimiterThreads, TwoThreadsOnOneKeyAdmitExactlyTheQuota) {
  for (RateAlgorithm alg :
       {RateAlgorithm::kTokenBucket, RateAlgorithm::kSlidingWindow, RateAlgorithm::kConcurrency}) {
    RateLimiter rl(opts(alg, 1000, 1s, 1000));
    const MonoTime t0 = at(10s);
    std::atomic<int> passed{0};
    auto run = [&] {
      int n = 0;
      for (int i = 0; i < 2000; ++i) n += take(rl, "shared", t0).allowed;
      passed += n;
    };
    std::thread a(run), b(run);
    a.join();
    b.join();
    EXPECT_EQ(passed.load(), 1000) << static_cast<int>(alg);
  }
}

TEST(RateLimiterThreads, ConcurrentInsertionsMakeOneEntryPerKey) {
  RateLimiter rl(opts(RateAlgorithm::kTokenBucket, 1, 1s, 1, 4000));
  const MonoTime t0 = at(10s);
  std::atomic<int> passed{0};
  auto run = [&] {
    int n = 0;
    for (int i = 0; i < 1000; ++i) n += take(rl, "key" + std::to_string(i), t0).allowed;
    passed += n;
  };
  std::thread a(run), b(run);
  a.join();
  b.join();
  EXPECT_EQ(passed.load(), 1000);
  EXPECT_EQ(rl.key_count(), 1000u);
}

TEST(RateLimiterThreads, AcquireAndReleaseBalance) {
  RateLimiter rl(opts(RateAlgorithm::kConcurrency, 2, 0s));
  const MonoTime t0 = at(10s);
  auto run = [&] {
    for (int i = 0; i < 20000; ++i) {
      RateTicket t;
      if (take(rl, "k", t0, &t).allowed) rl.release(t);
    }
  };
  std::thread a(run), b(run);
  a.join();
  b.join();
  EXPECT_EQ(allowed(rl, "k", t0, 5), 2);
}

TEST(RateLimiterThreads, FloodFromTwoThreadsKeepsTheHotKeyExact) {
  for (RateAlgorithm alg : {RateAlgorithm::kTokenBucket, RateAlgorithm::kSlidingWindow}) {
    RateLimiter rl(opts(alg, 10, 1s, 0, 1000));
    const MonoTime t0 = at(10s);
    std::atomic<int> passed{0};
    auto run = [&](uint64_t seed) {
      core::Rng rng(seed);
      int n = 0;
      for (int i = 0; i < 100'000; ++i) {
        if (i % 10 == 0) n += take(rl, "hot", t0).allowed;
        rl.acquire("flood", rng.next_u64(), t0, nullptr);
      }
      passed += n;
    };
    std::thread a(run, 1), b(run, 2);
    a.join();
    b.join();
    // One-off keys each use 1/10 of their quota; "hot" uses all of it and is never the victim.
    EXPECT_EQ(passed.load(), 10) << static_cast<int>(alg);
    EXPECT_EQ(rl.key_count(), rl.capacity());
  }
}

// ---- construction ----

TEST(RateLimiterOptions, FromRule) {
  config::RateLimitRule rule;
  rule.algorithm = RateAlgorithm::kSlidingWindow;
  rule.limit = {50, 2s, 0};
  rule.overrides.push_back({"vip", {500, 2s, 0}});
  rule.max_keys = 123;
  auto o = RateLimiter::options_from(rule);
  EXPECT_EQ(o.algorithm, RateAlgorithm::kSlidingWindow);
  EXPECT_EQ(o.limit.requests, 50u);
  EXPECT_EQ(o.limit.per, 2s);
  ASSERT_EQ(o.overrides.size(), 1u);
  EXPECT_EQ(o.overrides[0].first, "vip");
  EXPECT_EQ(o.overrides[0].second.requests, 500u);
  EXPECT_EQ(o.max_keys, 123u);
  RateLimiter rl(o);
  EXPECT_EQ(rl.capacity(), 128u);
}

TEST(RateLimiterOptions, RejectsAZeroLimit) {
  EXPECT_THROW(RateLimiter(opts(RateAlgorithm::kTokenBucket, 0, 1s)), std::invalid_argument);
  EXPECT_THROW(RateLimiter(opts(RateAlgorithm::kSlidingWindow, 1, 0s)), std::invalid_argument);
  EXPECT_THROW(RateLimiter(opts(RateAlgorithm::kTokenBucket, 1, 1s, 0, 0)), std::invalid_argument);
  EXPECT_NO_THROW(RateLimiter(opts(RateAlgorithm::kConcurrency, 1, 0s)));
}

}  // namespace
}  // namespace sluice::governance
