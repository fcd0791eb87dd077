#include "governance/adaptive_concurrency.h"

#include <gtest/gtest.h>

#include <cmath>
#include <thread>

namespace sluice::governance {
namespace {

using namespace std::chrono_literals;
using Algorithm = config::AdaptiveConcurrency::Algorithm;

config::AdaptiveConcurrency gradient_config() {
  config::AdaptiveConcurrency c;
  c.enabled = true;
  c.algorithm = Algorithm::kGradient;
  c.initial_limit = 50;
  c.min_limit = 5;
  c.max_limit = 200;
  c.sample_window = 250ms;
  c.tolerance = 1.5;
  return c;
}

config::AdaptiveConcurrency aimd_config() {
  config::AdaptiveConcurrency c = gradient_config();
  c.algorithm = Algorithm::kAimd;
  c.latency_threshold = 500ms;
  c.backoff = 0.9;
  return c;
}

// One sample window starting at `t`: `n` calls in flight at once (default: the whole limit), all
// with `latency`; `drops` of them dropped. Returns the time the window closed.
core::MonoTime window(AdaptiveConcurrency& ac, core::MonoTime t, std::chrono::nanoseconds latency,
                      uint32_t n = 0, uint32_t drops = 0) {
  if (n == 0) n = ac.limit();
  for (uint32_t i = 0; i < n; ++i) EXPECT_TRUE(ac.try_acquire());
  for (uint32_t i = 0; i + 1 < n; ++i) ac.release(latency, i < drops, t);
  t += 250ms;
  ac.release(latency, false, t);  // closes the window
  EXPECT_EQ(ac.in_flight(), 0u);
  return t;
}

const core::MonoTime kT0 = core::MonoTime(1000s);

TEST(AdaptiveConcurrencyTest, StartsAtInitialLimitAndWaitsForAFullWindow) {
  AdaptiveConcurrency ac(gradient_config());
  EXPECT_EQ(ac.limit(), 50u);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(ac.try_acquire());
  for (int i = 0; i < 50; ++i) ac.release(10ms, false, kT0 + 249ms);
  EXPECT_EQ(ac.limit(), 50u);  // window opened at kT0+249ms, not closed yet
  ASSERT_TRUE(ac.try_acquire());
  ac.release(10ms, false, kT0 + 499ms - 1ns);
  EXPECT_EQ(ac.limit(), 50u);
  ASSERT_TRUE(ac.try_acquire());
  ac.release(10ms, false, kT0 + 499ms);
  // Gradient 1: 0.8 * 50 + 0.2 * (50 + sqrt(50)) = 51.41.
  EXPECT_EQ(ac.limit(), 51u);
  EXPECT_EQ(ac.baseline(), 10ms);
}

TEST(AdaptiveConcurrencyTest, GradientFallsWhenLatencyRisesAndRecoversWhenItFalls) {
  AdaptiveConcurrency ac(gradient_config());
  core::MonoTime t = kT0;
  for (int i = 0; i < 20; ++i) t = window(ac, t, 10ms);
  const uint32_t grown = ac.limit();
  EXPECT_GT(grown, 60u);
  EXPECT_LT(grown, 200u);

  // 25ms > 1.5 x 10ms: g = 0.6, and every window lowers the limit (towards 1 / (1 - g)^2).
  uint32_t prev = grown;
  for (int i = 0; i < 5; ++i) {
    t = window(ac, t, 25ms);
    EXPECT_LT(ac.limit(), prev) << "window " << i;
    prev = ac.limit();
  }
  // 14ms < 1.5 x baseline (which the 25ms windows nudged up only a little): it grows again.
  EXPECT_LT(ac.baseline(), 11ms);
  for (int i = 0; i < 5; ++i) {
    t = window(ac, t, 14ms);
    EXPECT_GT(ac.limit(), prev) << "window " << i;
    prev = ac.limit();
  }
}

TEST(AdaptiveConcurrencyTest, GradientSettlesWhereTheQueueAllowanceBalancesTheGradient) {
  AdaptiveConcurrency ac(gradient_config());
  core::MonoTime t = kT0;
  for (int i = 0; i < 10; ++i) t = window(ac, t, 10ms);
  // 16ms is above 1.5 x 10ms, but g = 0.9375 lowers L only above 1 / (1 - g)^2 = 256: a mild
  // rise slows the limit's growth rather than reversing it while the limit is small.
  AdaptiveConcurrency twin(gradient_config());
  core::MonoTime u = kT0;
  for (int i = 0; i < 10; ++i) u = window(twin, u, 10ms);
  const uint32_t before = ac.limit();
  for (int i = 0; i < 5; ++i) {
    t = window(ac, t, 16ms);
    u = window(twin, u, 10ms);
  }
  EXPECT_GT(ac.limit(), before);
  EXPECT_LT(ac.limit(), twin.limit());
}

TEST(AdaptiveConcurrencyTest, GradientDropsAtMostByHalfPerWindow) {
  AdaptiveConcurrency ac(gradient_config());
  core::MonoTime t = kT0;
  for (int i = 0; i < 10; ++i) t = window(ac, t, 10ms);
  const double before = ac.limit();
  t = window(ac, t, 10s);  // gradient clamped to 0.5
  // 0.8 L + 0.2 (0.5 L + sqrt L) = 0.9 L + 0.2 sqrt L, L being the unrounded estimate (>= before).
  EXPECT_GE(ac.limit(), static_cast<uint32_t>(0.9 * before + 0.2 * std::sqrt(before)));
  EXPECT_LE(ac.limit(), static_cast<uint32_t>(0.9 * (before + 1) + 0.2 * std::sqrt(before + 1)));
}

TEST(AdaptiveConcurrencyTest, GradientStaysWithinBounds) {
  AdaptiveConcurrency ac(gradient_config());
  core::MonoTime t = kT0;
  for (int i = 0; i < 10; ++i) t = window(ac, t, 10ms);
  for (int i = 0; i < 100; ++i) {
    t = window(ac, t, 1s);
    ASSERT_GE(ac.limit(), 5u);
  }
  EXPECT_EQ(ac.limit(), 5u);
  // The inflated baseline decays back (5% a window while > 2x the sample), then growth resumes.
  for (int i = 0; i < 400; ++i) {
    t = window(ac, t, 10ms);
    ASSERT_LE(ac.limit(), 200u);
  }
  EXPECT_EQ(ac.limit(), 200u);
}

TEST(AdaptiveConcurrencyTest, GradientDoesNotGrowWhenTheLimitIsNotUsedOrCallsDrop) {
  AdaptiveConcurrency ac(gradient_config());
  core::MonoTime t = kT0;
  t = window(ac, t, 10ms, 24);  // peak 24 < 50 / 2
  EXPECT_EQ(ac.limit(), 50u);
  t = window(ac, t, 10ms, 50, 1);  // a drop
  EXPECT_EQ(ac.limit(), 50u);
  t = window(ac, t, 10ms, 25);  // peak 25 = 50 / 2: used
  EXPECT_EQ(ac.limit(), 51u);
}

TEST(AdaptiveConcurrencyTest, AimdBacksOffOnDropsAndSlowSamplesAndGrowsByOne) {
  AdaptiveConcurrency ac(aimd_config());
  core::MonoTime t = kT0;
  t = window(ac, t, 10ms, 0, 1);  // 50 x 0.9 = 45
  EXPECT_EQ(ac.limit(), 45u);
  t = window(ac, t, 10ms, 0, 1);  // 40.5
  EXPECT_EQ(ac.limit(), 40u);
  t = window(ac, t, 501ms);  // slower than the threshold: 36.45
  EXPECT_EQ(ac.limit(), 36u);
  t = window(ac, t, 500ms);  // at the threshold is fine: 37.45
  EXPECT_EQ(ac.limit(), 37u);
  t = window(ac, t, 10ms, 18);  // peak 18 < 37.45 / 2: not used, unchanged
  EXPECT_EQ(ac.limit(), 37u);
  t = window(ac, t, 10ms, 19);  // 19 >= 18.7: used, +1
  EXPECT_EQ(ac.limit(), 38u);
  // One back-off per window however many calls dropped in it.
  t = window(ac, t, 10ms, 0, 30);  // 38.45 x 0.9 = 34.6
  EXPECT_EQ(ac.limit(), 34u);
}

TEST(AdaptiveConcurrencyTest, AimdStaysWithinBounds) {
  AdaptiveConcurrency ac(aimd_config());
  core::MonoTime t = kT0;
  for (int i = 0; i < 100; ++i) t = window(ac, t, 10ms, 0, 1);
  EXPECT_EQ(ac.limit(), 5u);
  for (int i = 0; i < 300; ++i) t = window(ac, t, 10ms);
  EXPECT_EQ(ac.limit(), 200u);
}

TEST(AdaptiveConcurrencyTest, UnmeasuredReleasesTakeNoSample) {
  AdaptiveConcurrency ac(aimd_config());
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(ac.try_acquire());
  EXPECT_FALSE(ac.try_acquire());
  for (int i = 0; i < 50; ++i) ac.release_without_sample();
  EXPECT_EQ(ac.in_flight(), 0u);
  EXPECT_EQ(ac.limit(), 50u);
  ac.force_acquire();
  EXPECT_EQ(ac.in_flight(), 1u);
}

TEST(PriorityFractionTest, LinearFromOneToOneMinusReserve) {
  EXPECT_DOUBLE_EQ(priority_fraction(0, 4, 0.3), 1.0);
  EXPECT_DOUBLE_EQ(priority_fraction(1, 4, 0.3), 0.9);
  EXPECT_DOUBLE_EQ(priority_fraction(2, 4, 0.3), 0.8);
  EXPECT_DOUBLE_EQ(priority_fraction(3, 4, 0.3), 0.7);
  EXPECT_DOUBLE_EQ(priority_fraction(9, 4, 0.3), 0.7);  // past the lowest: the lowest
  EXPECT_DOUBLE_EQ(priority_fraction(1, 2, 0.5), 0.5);
  EXPECT_DOUBLE_EQ(priority_fraction(0, 1, 0.3), 1.0);
  EXPECT_DOUBLE_EQ(priority_fraction(0, 0, 0.3), 1.0);
  EXPECT_DOUBLE_EQ(priority_fraction(2, 3, 0.0), 1.0);
}

TEST(AdaptiveConcurrencyTest, AdmitsExactCountsByFraction) {
  config::AdaptiveConcurrency c = gradient_config();
  c.initial_limit = 10;
  AdaptiveConcurrency ac(c);
  int lowest = 0;
  while (ac.try_acquire(0.7)) ++lowest;
  EXPECT_EQ(lowest, 7);  // in_flight < 7
  int middle = 0;
  while (ac.try_acquire(0.75)) ++middle;
  EXPECT_EQ(middle, 1);  // in_flight < 7.5: one more
  int highest = 0;
  while (ac.try_acquire(1.0)) ++highest;
  EXPECT_EQ(highest, 2);
  EXPECT_EQ(ac.in_flight(), 10u);
  ac.release_without_sample();
  EXPECT_FALSE(ac.try_acquire(0.9));  // 9 < 9 is false
  EXPECT_TRUE(ac.try_acquire(0.91));
  // Any fraction admits the first call.
  AdaptiveConcurrency one(c);
  EXPECT_TRUE(one.try_acquire(0.01));
  EXPECT_FALSE(one.try_acquire(0.01));
}

TEST(InFlightGateTest, AdmitsExactCountsByFraction) {
  InFlightGate gate(100);
  EXPECT_EQ(gate.limit(), 100u);
  int low = 0;
  while (gate.try_acquire(priority_fraction(3, 4, 0.3))) ++low;
  EXPECT_EQ(low, 70);
  int high = 0;
  while (gate.try_acquire(priority_fraction(0, 4, 0.3))) ++high;
  EXPECT_EQ(high, 30);
  gate.release();
  EXPECT_EQ(gate.in_flight(), 99u);
  EXPECT_FALSE(gate.try_acquire(0.7));
  EXPECT_TRUE(gate.try_acquire(1.0));
  gate.force_acquire();
  EXPECT_EQ(gate.in_flight(), 101u);

  InFlightGate none(0);  // no cap
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(none.try_acquire(0.1));
  EXPECT_EQ(none.in_flight(), 1000u);
}

TEST(InFlightGateTest, TwoThreadsAdmitExactly) {
  InFlightGate gate(1000);
  std::atomic<int> admitted{0};
  auto work = [&] {
    for (int i = 0; i < 100000; ++i) admitted += gate.try_acquire(0.5);
  };
  std::thread a(work), b(work);
  a.join();
  b.join();
  EXPECT_EQ(admitted.load(), 500);
  EXPECT_EQ(gate.in_flight(), 500u);
}

TEST(AdaptiveConcurrencyTest, TwoThreadsKeepInFlightExact) {
  config::AdaptiveConcurrency c = aimd_config();
  c.initial_limit = 8;
  c.min_limit = 8;
  c.max_limit = 8;
  AdaptiveConcurrency ac(c);
  std::atomic<int> over{0};
  auto work = [&](int id) {
    for (int i = 0; i < 50000; ++i) {
      if (!ac.try_acquire()) continue;
      if (ac.in_flight() > 8) over.fetch_add(1);
      ac.release(1ms, i % 7 == id, kT0 + std::chrono::milliseconds(i / 100));
    }
  };
  std::thread a(work, 0), b(work, 1);
  a.join();
  b.join();
  EXPECT_EQ(over.load(), 0);
  EXPECT_EQ(ac.in_flight(), 0u);
  EXPECT_EQ(ac.limit(), 8u);
}

}  // namespace
}  // namespace sluice::governance
