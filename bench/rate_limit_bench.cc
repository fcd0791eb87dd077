// Node-scope rate limiting: the cost of one decision on a key, alone and contended by two
// threads, and with many distinct keys (table misses, insertions, evictions).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "core/random.h"
#include "governance/rate_limiter.h"
#include "upstream/load_balancer.h"

namespace {

using namespace std::chrono_literals;
using sluice::config::RateAlgorithm;
using sluice::core::MonoTime;
using sluice::governance::RateLimiter;
using sluice::governance::RateTicket;

RateLimiter::Options options(RateAlgorithm alg, uint64_t requests, size_t max_keys) {
  RateLimiter::Options o;
  o.algorithm = alg;
  o.limit = {requests, 1s, 0};
  o.max_keys = max_keys;
  return o;
}

const std::string kKey = "app-42|accounts-api";

// One limiter per algorithm, shared by every thread of a benchmark (function-local statics are
// initialised once, thread-safely).
RateLimiter& shared(RateAlgorithm alg) {
  // A limit high enough that the decisions measured are (mostly) admissions, i.e. the CAS path.
  static RateLimiter tb(options(RateAlgorithm::kTokenBucket, 1'000'000'000, 1000));
  static RateLimiter sw(options(RateAlgorithm::kSlidingWindow, 4'000'000'000, 1000));
  static RateLimiter cc(options(RateAlgorithm::kConcurrency, 1'000'000, 1000));
  switch (alg) {
    case RateAlgorithm::kTokenBucket:
      return tb;
    case RateAlgorithm::kSlidingWindow:
      return sw;
    case RateAlgorithm::kConcurrency:
      return cc;
  }
  return tb;
}

// Each thread moves its own clock by 1ns per decision (threads' clocks need not agree, as with
// real workers reading the clock at slightly different times).
void decide(benchmark::State& state, RateAlgorithm alg) {
  RateLimiter& rl = shared(alg);
  const uint64_t hash = sluice::upstream::hash_key(kKey);
  MonoTime now = MonoTime(10s) + std::chrono::nanoseconds(state.thread_index() * 1000);
  uint64_t passed = 0;
  for (auto _ : state) {
    RateTicket t;
    const auto d = rl.acquire(kKey, hash, now, &t);
    passed += d.allowed;
    if (alg == RateAlgorithm::kConcurrency) rl.release(t);
    now += 1ns;
    benchmark::DoNotOptimize(d);
  }
  state.counters["passed"] =
      benchmark::Counter(static_cast<double>(passed), benchmark::Counter::kAvgIterations);
}

void BM_RateLimitLocalDecision(benchmark::State& state) {
  decide(state, RateAlgorithm::kTokenBucket);
}
BENCHMARK(BM_RateLimitLocalDecision)->Threads(1)->Threads(2)->UseRealTime();

void BM_RateLimitLocalDecisionWindow(benchmark::State& state) {
  decide(state, RateAlgorithm::kSlidingWindow);
}
BENCHMARK(BM_RateLimitLocalDecisionWindow)->Threads(1)->Threads(2)->UseRealTime();

// acquire + release per iteration.
void BM_RateLimitLocalDecisionConcurrency(benchmark::State& state) {
  decide(state, RateAlgorithm::kConcurrency);
}
BENCHMARK(BM_RateLimitLocalDecisionConcurrency)->Threads(1)->Threads(2)->UseRealTime();

// Token bucket, 100/s per key, table of 100,000 keys; the keys cycle through `range(0)` distinct
// keys in random order, with the clock moving 100ns per decision. 10,000 keys: every decision
// finds its key; 1,000,000: nearly every decision inserts its key and evicts another.
void BM_RateLimitManyKeys(benchmark::State& state) {
  const auto n = static_cast<size_t>(state.range(0));
  RateLimiter rl(options(RateAlgorithm::kTokenBucket, 100, 100'000));
  sluice::core::Rng rng(1);
  std::vector<uint64_t> hashes(n);
  for (auto& h : hashes) h = rng.next_u64();
  std::vector<uint32_t> order(1 << 20);
  for (auto& o : order) o = static_cast<uint32_t>(rng.uniform(n));
  MonoTime now(10s);
  size_t i = 0;
  uint64_t passed = 0;
  for (auto _ : state) {
    const auto d = rl.acquire(kKey, hashes[order[i]], now, nullptr);
    passed += d.allowed;
    i = (i + 1) & (order.size() - 1);
    now += 100ns;
  }
  state.counters["passed"] =
      benchmark::Counter(static_cast<double>(passed), benchmark::Counter::kAvgIterations);
  state.counters["evictions"] =
      benchmark::Counter(static_cast<double>(rl.evictions()), benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_RateLimitManyKeys)->Arg(10'000)->Arg(1'000'000);

// A table of max_keys = 100,000 (the default) filling up with `range(0)` new keys from its first
// 64 entries: each iteration inserts every key once, growing the table about 10 times. The
// longest single acquire is one that moved the largest table (up to 65,536 entries): about the
// most a new key's request can wait on a growth (insertions of new keys wait while the move
// passes their region; requests of keys already tracked do not wait).
void BM_RateLimitGrowth(benchmark::State& state) {
  const auto n = static_cast<size_t>(state.range(0));
  sluice::core::Rng rng(3);
  std::vector<uint64_t> hashes(n);
  for (auto& h : hashes) h = rng.next_u64();
  const MonoTime now(10s);
  double longest_us = 0;
  uint64_t evictions = 0;
  for (auto _ : state) {
    RateLimiter rl(options(RateAlgorithm::kTokenBucket, 100, 100'000));
    for (uint64_t h : hashes) {
      const auto t0 = std::chrono::steady_clock::now();
      benchmark::DoNotOptimize(rl.acquire(kKey, h, now, nullptr));
      const std::chrono::duration<double, std::micro> took = std::chrono::steady_clock::now() - t0;
      longest_us = std::max(longest_us, took.count());
    }
    evictions = rl.evictions();
  }
  state.counters["longest_acquire_us"] = longest_us;
  // At the largest size (100,000 entries) full probe windows begin at about 20% load.
  state.counters["evictions"] = static_cast<double>(evictions);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
}
BENCHMARK(BM_RateLimitGrowth)->Arg(20'000)->Unit(benchmark::kMillisecond);

}  // namespace
