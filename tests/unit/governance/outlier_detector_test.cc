#include "governance/outlier_detector.h"

#include <gtest/gtest.h>

#include <thread>
#include <tuple>
#include <vector>

namespace sluice::governance {
namespace {

using namespace std::chrono_literals;

config::OutlierDetection base_config() {
  config::OutlierDetection c;
  c.enabled = true;
  c.consecutive_errors = 5;
  c.base_ejection_time = 10s;
  c.max_ejection_time = 300s;
  c.max_ejection_percent = 50;
  return c;
}

const core::MonoTime kT0 = core::MonoTime(1000s);

void errors(OutlierDetector& od, size_t i, int n, core::MonoTime now) {
  for (int k = 0; k < n; ++k) od.record(i, true, now);
}

TEST(OutlierDetectorTest, EjectsAtExactlyConsecutiveErrors) {
  OutlierDetector od(base_config(), 4);
  errors(od, 2, 4, kT0);
  EXPECT_FALSE(od.ejected(2, kT0));
  EXPECT_TRUE(od.available(2, kT0));
  od.record(2, true, kT0);
  EXPECT_TRUE(od.ejected(2, kT0));
  EXPECT_FALSE(od.available(2, kT0));
  EXPECT_EQ(od.ejections_total(2), 1u);
  for (size_t i : {0, 1, 3}) EXPECT_TRUE(od.available(i, kT0));
  // Ejected for exactly base_ejection_time.
  EXPECT_TRUE(od.ejected(2, kT0 + 10s - 1ns));
  EXPECT_FALSE(od.ejected(2, kT0 + 10s));
  EXPECT_TRUE(od.available(2, kT0 + 10s));
}

TEST(OutlierDetectorTest, SuccessResetsTheCount) {
  OutlierDetector od(base_config(), 4);
  errors(od, 0, 4, kT0);
  od.record(0, false, kT0);
  errors(od, 0, 4, kT0);
  EXPECT_FALSE(od.ejected(0, kT0));
  od.record(0, true, kT0);
  EXPECT_TRUE(od.ejected(0, kT0));
}

TEST(OutlierDetectorTest, OutcomesWhileEjectedAreIgnored) {
  OutlierDetector od(base_config(), 4);
  errors(od, 0, 5, kT0);
  ASSERT_TRUE(od.ejected(0, kT0));
  errors(od, 0, 20, kT0 + 1s);  // calls sent before the ejection, finishing during it
  const core::MonoTime back = kT0 + 10s;
  errors(od, 0, 4, back);
  EXPECT_FALSE(od.ejected(0, back));
  od.record(0, true, back);
  EXPECT_TRUE(od.ejected(0, back));
  EXPECT_EQ(od.ejections_total(0), 2u);
}

TEST(OutlierDetectorTest, EjectionTimeGrowsAndIsCapped) {
  config::OutlierDetection c = base_config();
  c.max_ejection_time = 35s;
  OutlierDetector od(c, 4);
  std::vector<std::chrono::nanoseconds> lengths;
  od.set_listener([&](size_t, bool ejected, std::chrono::nanoseconds d) {
    if (ejected) lengths.push_back(d);
  });
  core::MonoTime t = kT0;
  for (int n = 0; n < 6; ++n) {
    errors(od, 1, 5, t);
    ASSERT_TRUE(od.ejected(1, t));
    t += lengths.back();  // re-ejected the moment it is back: no time to decay
    ASSERT_FALSE(od.ejected(1, t));
  }
  const std::vector<std::chrono::nanoseconds> want = {10s, 20s, 30s, 35s, 35s, 35s};
  EXPECT_EQ(lengths, want);
  EXPECT_EQ(od.ejections_total(1), 6u);
}

TEST(OutlierDetectorTest, MultiplierDecaysOnePerBaseTimeNotEjected) {
  OutlierDetector od(base_config(), 4);
  std::vector<std::chrono::nanoseconds> lengths;
  od.set_listener([&](size_t, bool ejected, std::chrono::nanoseconds d) {
    if (ejected) lengths.push_back(d);
  });
  errors(od, 0, 5, kT0);               // k=1: 10s, back at +10s
  errors(od, 0, 5, kT0 + 10s);         // k=2: 20s, back at +30s
  errors(od, 0, 5, kT0 + 40s - 1ns);   // 10s - 1ns back: no decay, k=3: 30s, back at +70s - 1ns
  errors(od, 0, 5, kT0 + 80s - 1ns);   // 10s back: k=2, then 3: 30s, back at +110s - 1ns
  errors(od, 0, 5, kT0 + 140s - 1ns);  // 30s back: k=0, then 1: 10s
  const std::vector<std::chrono::nanoseconds> want = {10s, 20s, 30s, 30s, 10s};
  EXPECT_EQ(lengths, want);
}

TEST(OutlierDetectorTest, MaxEjectionPercentIsRespected) {
  OutlierDetector od(base_config(), 3);  // 50% of 3: at most 1
  errors(od, 0, 5, kT0);
  ASSERT_TRUE(od.ejected(0, kT0));
  errors(od, 1, 5, kT0);
  errors(od, 2, 50, kT0);
  EXPECT_FALSE(od.ejected(1, kT0));
  EXPECT_FALSE(od.ejected(2, kT0));
  EXPECT_EQ(od.ejected_count(kT0), 1u);
  // Once endpoint 0 is back, the next error of an endpoint still over the threshold ejects it.
  const core::MonoTime back = kT0 + 10s;
  od.record(1, true, back);
  EXPECT_TRUE(od.ejected(1, back));
  od.record(2, true, back);
  EXPECT_FALSE(od.ejected(2, back));
  EXPECT_EQ(od.ejected_count(back), 1u);
}

TEST(OutlierDetectorTest, EjectionCapBounds) {
  // {percent, endpoints, most ejected at once}
  const std::tuple<uint32_t, size_t, size_t> cases[] = {
      {50, 3, 1},  {50, 4, 2},  {35, 10, 3}, {5, 10, 1},  // at least one when percent > 0
      {0, 10, 0},  {100, 2, 1}, {100, 5, 4},              // never all
      {100, 1, 0},                                        // a lone endpoint is never ejected
  };
  for (const auto& [percent, n, most] : cases) {
    config::OutlierDetection c = base_config();
    c.max_ejection_percent = percent;
    OutlierDetector od(c, n);
    for (size_t i = 0; i < n; ++i) errors(od, i, 5, kT0);
    EXPECT_EQ(od.ejected_count(kT0), most) << percent << "% of " << n;
  }
}

TEST(OutlierDetectorTest, ListenerHearsEjectionAndReturn) {
  OutlierDetector od(base_config(), 4);
  std::vector<std::tuple<size_t, bool, std::chrono::nanoseconds>> seen;
  od.set_listener([&](size_t i, bool ejected, std::chrono::nanoseconds d) {
    seen.emplace_back(i, ejected, d);
  });
  errors(od, 3, 5, kT0);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], std::make_tuple(size_t{3}, true, std::chrono::nanoseconds(10s)));
  od.record(0, false, kT0 + 10s - 1ns);
  EXPECT_EQ(seen.size(), 1u);
  // The return is reported at the first outcome, of any endpoint, at or after the end.
  od.record(0, false, kT0 + 10s);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1], std::make_tuple(size_t{3}, false, std::chrono::nanoseconds(10s)));
  od.record(0, false, kT0 + 11s);
  EXPECT_EQ(seen.size(), 2u);
}

TEST(OutlierDetectorTest, HealthIsCombinedWithEjection) {
  OutlierDetector od(base_config(), 3);
  EXPECT_TRUE(od.healthy(1));
  od.set_health(1, false);
  EXPECT_FALSE(od.healthy(1));
  EXPECT_FALSE(od.ejected(1, kT0));
  EXPECT_FALSE(od.available(1, kT0));
  // A health-check failure does not use up the ejection budget (1 of 3).
  errors(od, 0, 5, kT0);
  EXPECT_TRUE(od.ejected(0, kT0));
  EXPECT_FALSE(od.available(0, kT0));
  // Healthy again but still ejected: not available until both hold.
  od.set_health(0, false);
  od.set_health(0, true);
  EXPECT_FALSE(od.available(0, kT0 + 5s));
  EXPECT_TRUE(od.available(0, kT0 + 10s));
  od.set_health(1, true);
  EXPECT_TRUE(od.available(1, kT0));
}

TEST(OutlierDetectorTest, DisabledRecordsNothingButHealthWorks) {
  config::OutlierDetection c = base_config();
  c.enabled = false;
  OutlierDetector od(c, 3);
  EXPECT_EQ(od.size(), 3u);
  errors(od, 0, 100, kT0);
  EXPECT_FALSE(od.ejected(0, kT0));
  EXPECT_EQ(od.ejections_total(0), 0u);
  od.set_health(2, false);
  EXPECT_FALSE(od.available(2, kT0));
  EXPECT_TRUE(od.available(0, kT0));
}

TEST(OutlierDetectorTest, TwoThreadsEjectOnce) {
  OutlierDetector od(base_config(), 4);
  std::atomic<int> events{0};
  od.set_listener([&](size_t, bool ejected, std::chrono::nanoseconds) { events += ejected; });
  auto work = [&] {
    for (int i = 0; i < 10000; ++i) {
      od.record(0, true, kT0);
      od.record(1, i % 2 == 0, kT0);  // never 5 in a row from one thread alone
    }
  };
  std::thread a(work), b(work);
  a.join();
  b.join();
  EXPECT_EQ(od.ejections_total(0), 1u);
  EXPECT_EQ(events.load(), od.ejections_total(0) + od.ejections_total(1));
  EXPECT_EQ(od.ejected_count(kT0), od.ejected(1, kT0) ? 2u : 1u);
}

TEST(OutlierDetectorTest, MarkDownTakesEndpointOutForBaseTime) {
  OutlierDetector od(base_config(), 2);
  EXPECT_TRUE(od.mark_down(0, kT0));
  EXPECT_TRUE(od.down(0, kT0));
  EXPECT_FALSE(od.available(0, kT0));
  EXPECT_TRUE(od.available(1, kT0));
  EXPECT_FALSE(od.ejected(0, kT0));  // not an ejection: the cap does not count it
  EXPECT_EQ(od.downs_total(0), 1u);
  // A second refusal while down does not extend it.
  EXPECT_FALSE(od.mark_down(0, kT0 + 5s));
  EXPECT_EQ(od.downs_total(0), 1u);
  EXPECT_TRUE(od.down(0, kT0 + 10s - 1ns));
  EXPECT_FALSE(od.down(0, kT0 + 10s));
  EXPECT_TRUE(od.available(0, kT0 + 10s));
  EXPECT_TRUE(od.mark_down(0, kT0 + 10s));
  EXPECT_EQ(od.downs_total(0), 2u);
}

TEST(OutlierDetectorTest, MarkDownIsNotCappedAndWorksWhenDisabled) {
  // Passive "down" is a fact (nothing listens), not a statistic: every endpoint may be down,
  // also without an outlier_detection section (defaults: 10s).
  OutlierDetector od(config::OutlierDetection{}, 3);
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(od.mark_down(i, kT0));
  for (size_t i = 0; i < 3; ++i) EXPECT_FALSE(od.available(i, kT0 + 9s));
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(od.available(i, kT0 + 10s));
}

TEST(OutlierDetectorTest, DownEndsWhenHealthCheckPassesOrAnAnswerArrives) {
  OutlierDetector od(base_config(), 2);
  ASSERT_TRUE(od.mark_down(0, kT0));
  od.set_health(0, true);  // no transition (it was healthy): the mark stays
  EXPECT_TRUE(od.down(0, kT0 + 1s));
  od.set_health(0, false);
  od.set_health(0, true);  // unhealthy -> healthy: the checker reaches it again
  EXPECT_FALSE(od.down(0, kT0 + 1s));
  EXPECT_TRUE(od.available(0, kT0 + 1s));

  ASSERT_TRUE(od.mark_down(1, kT0));
  od.record(1, true, kT0 + 1s);  // an error does not end it
  EXPECT_TRUE(od.down(1, kT0 + 1s));
  od.record(1, false, kT0 + 2s);  // an answer does
  EXPECT_FALSE(od.down(1, kT0 + 2s));
}

TEST(OutlierDetectorTest, TwoThreadsMarkDownOnce) {
  OutlierDetector od(base_config(), 2);
  std::atomic<int> won{0};
  auto work = [&] {
    for (int i = 0; i < 10000; ++i) won += od.mark_down(1, kT0);
  };
  std::thread a(work), b(work);
  a.join();
  b.join();
  EXPECT_EQ(won.load(), 1);
  EXPECT_EQ(od.downs_total(1), 1u);
}

}  // namespace
}  // namespace sluice::governance
