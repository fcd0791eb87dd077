#include "upstream/idle_cap.h"

#include <gtest/gtest.h>

#include "core/clock.h"

namespace sluice::upstream {
namespace {

using std::chrono::seconds;

IdleCapConfig demand(uint32_t floor, seconds window = seconds(30)) {
  IdleCapConfig c;
  c.floor = floor;
  c.window = window;
  return c;
}

TEST(IdleCapTest, FloorAppliesWithoutDemand) {
  core::ManualClock clock;
  IdleCap cap(demand(64));
  EXPECT_EQ(cap.cap(clock.now()), 64u);
  EXPECT_EQ(cap.keep(63, 63, 1000, clock.now()), KeepDecision::kKeep);
  EXPECT_EQ(cap.keep(64, 64, 1000, clock.now()), KeepDecision::kOverCap);
}

TEST(IdleCapTest, CapFollowsPeakInUse) {
  core::ManualClock clock;
  IdleCap cap(demand(64));
  for (int i = 0; i < 256; ++i) cap.acquire(clock.now());
  EXPECT_EQ(cap.in_use(), 256u);
  // Everything comes back: each of the 256 may stay idle, the 257th may not.
  for (int i = 0; i < 256; ++i) {
    EXPECT_EQ(cap.keep(static_cast<size_t>(i), static_cast<size_t>(i), 100000, clock.now()),
              KeepDecision::kKeep)
        << i;
    cap.release(clock.now());
  }
  EXPECT_EQ(cap.in_use(), 0u);
  EXPECT_EQ(cap.cap(clock.now()), 256u);
  EXPECT_EQ(cap.keep(256, 256, 100000, clock.now()), KeepDecision::kOverCap);
}

TEST(IdleCapTest, SteadyLevelIsNeverForgotten) {
  core::ManualClock clock;
  IdleCap cap(demand(8, seconds(10)));
  for (int i = 0; i < 100; ++i) cap.acquire(clock.now());
  // 100 stay in use for a long time (several windows without any call).
  clock.advance(seconds(95));
  EXPECT_EQ(cap.recent_peak(clock.now()), 100u);
  // Churn at the same level: one released and one acquired every second.
  for (int s = 0; s < 60; ++s) {
    clock.advance(seconds(1));
    cap.release(clock.now());
    cap.acquire(clock.now());
  }
  EXPECT_EQ(cap.cap(clock.now()), 100u);
}

TEST(IdleCapTest, BurstIsForgottenAfterOneToTwoWindows) {
  core::ManualClock clock;
  IdleCap cap(demand(4, seconds(10)));
  cap.acquire(clock.now());  // starts the first window at t=0
  clock.advance(seconds(3));
  for (int i = 0; i < 49; ++i) cap.acquire(clock.now());
  for (int i = 0; i < 49; ++i) cap.release(clock.now());
  EXPECT_EQ(cap.cap(clock.now()), 50u);
  // t=10: a new window; the burst is still the previous window's peak.
  clock.advance(seconds(7));
  EXPECT_EQ(cap.cap(clock.now()), 50u);
  // t=19.999: still within the window after the burst's.
  clock.advance(std::chrono::milliseconds(9999));
  EXPECT_EQ(cap.cap(clock.now()), 50u);
  // t=20: the burst's window is two windows back: forgotten; 1 in use, floor 4.
  clock.advance(std::chrono::milliseconds(1));
  EXPECT_EQ(cap.recent_peak(clock.now()), 1u);
  EXPECT_EQ(cap.cap(clock.now()), 4u);
}

TEST(IdleCapTest, LongSilenceKeepsOnlyWhatIsInUse) {
  core::ManualClock clock;
  IdleCap cap(demand(2, seconds(10)));
  for (int i = 0; i < 30; ++i) cap.acquire(clock.now());
  for (int i = 0; i < 27; ++i) cap.release(clock.now());
  clock.advance(seconds(3600));
  EXPECT_EQ(cap.recent_peak(clock.now()), 3u);
  EXPECT_EQ(cap.cap(clock.now()), 3u);
}

TEST(IdleCapTest, HardCapIgnoresDemand) {
  core::ManualClock clock;
  IdleCapConfig c;
  c.hard = true;
  c.hard_cap = 16;
  IdleCap cap(c);
  for (int i = 0; i < 500; ++i) cap.acquire(clock.now());
  EXPECT_EQ(cap.cap(clock.now()), 16u);
  EXPECT_EQ(cap.keep(15, 15, 100000, clock.now()), KeepDecision::kKeep);
  EXPECT_EQ(cap.keep(16, 16, 100000, clock.now()), KeepDecision::kOverCap);
}

TEST(IdleCapTest, HardCapZeroKeepsNothing) {
  core::ManualClock clock;
  IdleCapConfig c;
  c.hard = true;
  c.hard_cap = 0;
  IdleCap cap(c);
  EXPECT_EQ(cap.keep(0, 0, 100000, clock.now()), KeepDecision::kOverCap);
}

TEST(IdleCapTest, MemoryBudgetBoundsTheWorker) {
  core::ManualClock clock;
  IdleCap cap(demand(64));
  for (int i = 0; i < 1024; ++i) cap.acquire(clock.now());
  // Demand would keep this one, the worker's budget (100 idle connections in all) does not.
  EXPECT_EQ(cap.keep(10, 99, 100, clock.now()), KeepDecision::kKeep);
  EXPECT_EQ(cap.keep(10, 100, 100, clock.now()), KeepDecision::kOverMemory);
  EXPECT_EQ(cap.keep(10, 100, 0, clock.now()), KeepDecision::kOverMemory);
}

TEST(IdleCapTest, ReleaseNeverUnderflows) {
  core::ManualClock clock;
  IdleCap cap(demand(1));
  cap.release(clock.now());
  EXPECT_EQ(cap.in_use(), 0u);
  cap.acquire(clock.now());
  EXPECT_EQ(cap.in_use(), 1u);
}

}  // namespace
}  // namespace sluice::upstream
