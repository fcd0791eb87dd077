// One probe's results in one city: the failing/recovered transitions and the window figures.
#include "control/probes/history.h"

#include <gtest/gtest.h>

namespace sluice::control::probes {
namespace {

Result run(int64_t at, bool ok, int64_t latency = 10) {
  Result r;
  r.at_ms = at;
  r.ok = ok;
  r.status = ok ? 200 : 503;
  r.latency_ms = latency;
  if (!ok) r.reason = "status 503 (expected 200)";
  return r;
}

TEST(ProbeHistory, FailingAfterNInARowRecoversAtFirstGood) {
  History h(2);
  EXPECT_EQ(h.state(), "pending");
  EXPECT_EQ(h.record(run(1'000, true)), Transition::kNone);
  EXPECT_EQ(h.state(), "ok");
  EXPECT_EQ(h.since_ms(), 1'000);
  EXPECT_EQ(h.record(run(2'000, false)), Transition::kNone);  // one blip: not failing
  EXPECT_EQ(h.state(), "ok");
  EXPECT_EQ(h.record(run(3'000, true)), Transition::kNone);
  EXPECT_EQ(h.record(run(4'000, false)), Transition::kNone);
  EXPECT_EQ(h.record(run(5'000, false)), Transition::kFailing);
  EXPECT_EQ(h.state(), "failing");
  EXPECT_EQ(h.since_ms(), 5'000);
  EXPECT_EQ(h.record(run(6'000, false)), Transition::kNone);  // once per episode
  ASSERT_TRUE(h.last_failure());
  EXPECT_EQ(h.last_failure()->at_ms, 6'000);
  EXPECT_EQ(h.record(run(7'000, true)), Transition::kRecovered);
  EXPECT_EQ(h.state(), "ok");
  EXPECT_EQ(h.since_ms(), 7'000);
  EXPECT_EQ(h.last_failure()->reason, "status 503 (expected 200)");  // kept after recovery
}

TEST(ProbeHistory, FailAfterOneFailsAtOnce) {
  History h(1);
  EXPECT_EQ(h.record(run(1'000, false)), Transition::kFailing);
  EXPECT_EQ(h.state(), "failing");
}

TEST(ProbeHistory, WindowFiguresNearestRank) {
  History h(2);
  // 100 runs, one a second, latencies 1..100 ms; every 10th fails.
  for (int i = 1; i <= 100; ++i) h.record(run(i * 1'000, i % 10 != 0, i));
  WindowFigures all = h.window(100'000, 100'000);
  EXPECT_EQ(all.runs, 100);
  EXPECT_EQ(all.good, 90);
  EXPECT_DOUBLE_EQ(all.success_ratio, 0.9);
  EXPECT_EQ(all.p50_ms, 50);
  EXPECT_EQ(all.p99_ms, 99);
  // (90 s, 100 s]: runs 91..100.
  WindowFigures last10 = h.window(100'000, 10'000);
  EXPECT_EQ(last10.runs, 10);
  EXPECT_EQ(last10.good, 9);
  EXPECT_EQ(last10.p50_ms, 95);
  EXPECT_EQ(last10.p99_ms, 100);
  WindowFigures none = h.window(500'000, 10'000);
  EXPECT_EQ(none.runs, 0);
  EXPECT_EQ(none.success_ratio, 0);
}

TEST(ProbeHistory, BoundedInTimeAndCount) {
  History h(2);
  for (int64_t i = 0; i < static_cast<int64_t>(kMaxResults) + 10; ++i) h.record(run(i * 100, true));
  EXPECT_EQ(h.recent().size(), kMaxResults);
  h.record(run(10 * kKeepMs, true));
  EXPECT_EQ(h.recent().size(), 1u);  // everything an hour older dropped
}

}  // namespace
}  // namespace sluice::control::probes
