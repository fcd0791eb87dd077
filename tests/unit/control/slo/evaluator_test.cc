// The evaluator with figures worked out by hand: burn rates, budgets, the multiwindow rules at
// their boundaries, the minimum-traffic guard, maintenance windows, cities and overall, the
// latency SLI read from histograms, and alert transitions. Time is passed in.
#include "control/slo/evaluator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

namespace sluice::control::slo {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr int64_t kBase = 1'699'999'980'000;  // a minute boundary

Json availability(Json extra = Json::object()) {
  Json s = {{"target", {{"route", "pay"}}}, {"sli", "availability"}, {"objective", 99.9}};
  s.update(extra);
  return s;
}

// Minute i's sample lands at kBase + i minutes; evaluations are 5 s later, inside the sample's
// 10 s bucket, so the 1h window holds exactly the last 60 samples.
int64_t minute(int i) {
  return kBase + int64_t{i} * kMinuteMs;
}
int64_t after(int i) {
  return minute(i) + 5'000;
}

TEST(Ring, KeepsItsSpanAndSumsWholeBuckets) {
  Ring r(10, 100);  // 10 ms buckets over 100 ms (12 cells)
  r.add(5, {1, 10});
  r.add(15, {2, 10});
  r.add(15, {0, 10});
  EXPECT_DOUBLE_EQ(r.sum(0, 19).total, 30);
  EXPECT_DOUBLE_EQ(r.sum(1, 19).total, 20);  // bucket [0,10) starts before 1: left out
  EXPECT_DOUBLE_EQ(r.sum(10, 10).bad, 2);
  r.add(120, {5, 5});  // moves on to bucket 12: the 12 cells hold buckets 1..12, 0 is gone
  EXPECT_DOUBLE_EQ(r.sum(0, 200).total, 25);
  r.add(200, {1, 1});  // head 20: cells 9..20 kept, the first two cleared
  EXPECT_DOUBLE_EQ(r.sum(0, 200).total, 6);
  r.add(50, {9, 9});  // older than the span: dropped
  EXPECT_DOUBLE_EQ(r.sum(0, 200).total, 6);
  r.add(100'000, {1, 2});  // far ahead: everything before is gone
  EXPECT_DOUBLE_EQ(r.sum(0, 100'000).total, 2);
}

TEST(Evaluator, BurnRatesAndBudgetByHand) {
  Engine e;
  e.set_slos({{"pay", availability()}});
  // 60 minutes of 1,000 requests with 5 errors: an error ratio of 0.5% against a 0.1% budget.
  for (int i = 0; i < 60; ++i) e.add("pay", "a", minute(i), {5, 1000});
  auto t = e.evaluate(after(59));
  ASSERT_EQ(e.status().size(), 1u);
  const SloStatus& s = e.status()[0];
  ASSERT_EQ(s.cities.size(), 1u);
  const Figures& f = s.cities[0].figures;
  EXPECT_DOUBLE_EQ(f.windows[k5m].total, 5000);
  EXPECT_DOUBLE_EQ(f.windows[k1h].total, 60000);
  EXPECT_DOUBLE_EQ(f.windows[k30m].bad, 150);
  for (int w = 0; w < 6; ++w) EXPECT_NEAR(f.burn[w], 5.0, 1e-9) << kWindowNames[w];
  // Budget over 30d: 60,000 requests allow 60 bad; 300 spent: 1 - 300/60 = -4.
  EXPECT_NEAR(f.budget_remaining, -4.0, 1e-9);
  // 5 < 6 < 14.4: no page; the ticket (>= 1 over 3d and 6h, 60,000 >= 100 requests) fires.
  EXPECT_FALSE(s.cities[0].page());
  EXPECT_TRUE(s.cities[0].ticket());
  ASSERT_EQ(t.size(), 1u);
  EXPECT_TRUE(t[0].fired);
  EXPECT_EQ(t[0].alert.severity, Severity::kTicket);
  EXPECT_EQ(t[0].alert.rule, "3d+6h");
  EXPECT_NEAR(t[0].alert.burn_long, 5.0, 1e-9);
  // Evaluating again changes nothing: the alert keeps firing without a new transition.
  EXPECT_TRUE(e.evaluate(after(59)).empty());
  EXPECT_EQ(e.firing().size(), 1u);
}

TEST(Evaluator, FastBurnPagesWhenTheOneHourWindowCrossesTheFactor) {
  Engine e;
  e.set_slos({{"pay", availability()}});
  // Six hours of clean traffic, then 5% errors (burn 50). After k faulty minutes the 1h window's
  // burn is 50k/60: 14.17 at k = 17 (no page), 15 at k = 18 (page); the 5m window is at 50 from
  // k = 5 on. The slow rule would need 50k/360 >= 6 over 6h: k = 44.
  for (int i = 0; i < 360; ++i) e.add("pay", "a", minute(i), {0, 1000});
  EXPECT_TRUE(e.evaluate(after(359)).empty());
  int paged_at = -1;
  for (int k = 1; k <= 30 && paged_at < 0; ++k) {
    const int i = 359 + k;
    e.add("pay", "a", minute(i), {50, 1000});
    for (const Transition& t : e.evaluate(after(i)))
      if (t.fired && t.alert.severity == Severity::kPage) {
        paged_at = k;
        EXPECT_EQ(t.alert.rule, "1h+5m");
        EXPECT_NEAR(t.alert.burn_long, 15.0, 1e-9);
        EXPECT_NEAR(t.alert.burn_short, 50.0, 1e-9);
        EXPECT_EQ(t.alert.since_ms, after(i));
      }
    if (k == 17) EXPECT_NEAR(e.status()[0].cities[0].figures.burn[k1h], 50.0 * 17 / 60, 1e-9);
  }
  EXPECT_EQ(paged_at, 18);
  // The fault ends: with j clean minutes the 5m burn is 10 per faulty minute left in it, 10 at
  // j = 4, under 14.4 (and the 6h burn, 50 * 18/360 = 2.5, is under 6): resolved at j = 4.
  int resolved_at = -1;
  for (int k = 1; k <= 10 && resolved_at < 0; ++k) {
    const int i = 359 + 18 + k;
    e.add("pay", "a", minute(i), {0, 1000});
    for (const Transition& t : e.evaluate(after(i)))
      if (!t.fired && t.alert.severity == Severity::kPage) resolved_at = k;
  }
  EXPECT_EQ(resolved_at, 4);
  ASSERT_FALSE(e.resolved().empty());
  EXPECT_EQ(e.resolved().back().severity, Severity::kPage);
}

TEST(Evaluator, SlowBurnPagesOverSixHoursAndThirtyMinutes) {
  Engine e;
  // Factors moved so that only the slow rule can fire: burn 7 is under a fast factor of 20.
  e.set_slos({{"pay", availability({{"alerts", {{"page_fast", 20}, {"ticket", 100}}}})}});
  for (int i = 0; i < 360; ++i) e.add("pay", "a", minute(i), {7, 1000});
  auto t = e.evaluate(after(359));
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].alert.rule, "6h+30m");
  EXPECT_NEAR(e.status()[0].cities[0].figures.burn[k6h], 7.0, 1e-9);
}

TEST(Evaluator, FewerRequestsThanTheGuardDoNotPage) {
  for (uint64_t min_requests : {100u, 20u}) {
    Engine e;
    e.set_slos({{"pay", availability({{"alerts", {{"min_requests", min_requests}}}})}});
    // Three minutes of 10 requests with 1 error (burn 100): the 5m window holds 30 requests.
    for (int i = 0; i < 3; ++i) e.add("pay", "a", minute(i), {1, 10});
    auto t = e.evaluate(after(2));
    const CityStatus& c = e.status()[0].cities[0];
    EXPECT_NEAR(c.figures.burn[k5m], 100, 1e-9);
    if (min_requests == 100) {
      EXPECT_TRUE(t.empty());
      EXPECT_FALSE(c.page());
      EXPECT_TRUE(c.rule.guarded_page);
      EXPECT_TRUE(c.rule.guarded_ticket);
    } else {
      EXPECT_TRUE(c.page());
      EXPECT_FALSE(c.rule.guarded_page);
      EXPECT_EQ(t.size(), 2u);  // page and ticket
    }
  }
}

TEST(Evaluator, MaintenanceSilencesItsCitiesOnlyAndOnlyWhileItLasts) {
  Engine e;
  e.set_slos({{"pay", availability()}});
  MaintenanceSpec m;
  m.start_ms = minute(0);
  m.end_ms = minute(5);
  m.cities = {"a"};
  e.set_maintenance({{"drill", m}});
  for (int i = 0; i < 5; ++i) {
    e.add("pay", "a", minute(i), {100, 1000});
    e.add("pay", "b", minute(i), {100, 1000});
  }
  auto t = e.evaluate(after(4));
  const SloStatus& s = e.status()[0];
  ASSERT_EQ(s.cities.size(), 2u);
  EXPECT_EQ(s.cities[0].city, "a");
  EXPECT_EQ(s.cities[0].maintenance, "drill");
  EXPECT_FALSE(s.cities[0].page());
  EXPECT_TRUE(s.cities[0].rule.page_fast);  // the burn is real and shown
  EXPECT_TRUE(s.cities[1].page());
  for (const Transition& tr : t) EXPECT_EQ(tr.alert.city, "b");
  // The window ends at minute 5: city a pages on the next evaluation.
  e.add("pay", "a", minute(5), {100, 1000});
  bool a_paged = false;
  for (const Transition& tr : e.evaluate(after(5)))
    if (tr.fired && tr.alert.city == "a" && tr.alert.severity == Severity::kPage) a_paged = true;
  EXPECT_TRUE(a_paged);
}

TEST(Evaluator, CitiesAndOverall) {
  Engine e;
  e.set_slos({{"pay", availability()}, {"pay-a", availability({{"cities", {"a"}}})}});
  Json snap = {{"gateway", "gw-a1"},
               {"city", "a"},
               {"at_ms", minute(0)},
               {"routes", {{"pay", {{"requests", 1000}, {"errors", 10}}}}}};
  e.ingest(snap);
  snap["city"] = "b";
  snap["routes"]["pay"]["errors"] = 0;
  e.ingest(snap);
  e.evaluate(after(0));
  ASSERT_EQ(e.status().size(), 2u);
  const SloStatus& all = e.status()[0];
  ASSERT_EQ(all.cities.size(), 2u);
  EXPECT_NEAR(all.cities[0].figures.burn[k5m], 10.0, 1e-9);  // 10/1000 / 0.001
  EXPECT_NEAR(all.cities[1].figures.burn[k5m], 0.0, 1e-9);
  EXPECT_NEAR(all.overall.burn[k5m], 5.0, 1e-9);  // 10/2000 / 0.001
  EXPECT_DOUBLE_EQ(all.overall.windows[k5m].total, 2000);
  // An SLO of city a only ignores city b's traffic.
  const SloStatus& only_a = e.status()[1];
  ASSERT_EQ(only_a.cities.size(), 1u);
  EXPECT_DOUBLE_EQ(only_a.overall.windows[k5m].total, 1000);
}

TEST(Evaluator, CitiesAsReportedAreBoundedAndChecked) {
  Engine e;
  e.set_slos({{"pay", availability()}});
  for (int i = 0; i < 20; ++i)
    e.ingest({{"city", fmt::format("c{:02}", i)},
              {"at_ms", minute(0)},
              {"routes", {{"pay", {{"requests", 10}, {"errors", 0}}}}}});
  e.evaluate(after(0));
  EXPECT_EQ(e.status()[0].cities.size(), kMaxCities);  // the first 16; the rest dropped
  EXPECT_DOUBLE_EQ(e.status()[0].overall.windows[k5m].total, 160);

  Engine f;
  f.set_slos({{"pay", availability()}});
  f.ingest({{"city", "a b/../c"}, {"at_ms", minute(0)}, {"routes", {{"pay", {{"requests", 1}}}}}});
  f.ingest({{"city", 7}, {"at_ms", minute(0)}, {"routes", {{"pay", {{"requests", 1}}}}}});
  f.ingest({{"at_ms", "soon"}, {"routes", {{"pay", {{"requests", 1}}}}}});  // no time: dropped
  f.ingest({{"at_ms", minute(0)}, {"routes", {{"pay", {{"requests", -5}, {"errors", 9}}}}}});
  f.evaluate(after(0));
  ASSERT_EQ(f.status()[0].cities.size(), 1u);
  EXPECT_EQ(f.status()[0].cities[0].city, "-");
  EXPECT_DOUBLE_EQ(f.status()[0].overall.windows[k5m].total, 2);  // -5 reads as 0
  EXPECT_DOUBLE_EQ(f.status()[0].overall.windows[k5m].bad, 0);    // never more bad than requests
}

TEST(Evaluator, LatencyShareUnderTheThresholdFromHistograms) {
  Json hist = {{"le", "0.1 0.25 0.5"}, {"buckets", {60, 20, 10, 10}}, {"count", 100}};
  // 60 + 20 whole, and (0.3 - 0.25) / (0.5 - 0.25) = 1/5 of the 10 in (0.25, 0.5].
  EXPECT_DOUBLE_EQ(under_threshold(hist, 0.3), 82);
  EXPECT_DOUBLE_EQ(under_threshold(hist, 0.25), 80);
  EXPECT_DOUBLE_EQ(under_threshold(hist, 0.05), 30);  // half of the first bucket (0, 0.1]
  EXPECT_DOUBLE_EQ(under_threshold(hist, 5), 90);     // the +Inf bucket is over any threshold
  EXPECT_DOUBLE_EQ(under_threshold({{"le", "0.1 x"}, {"buckets", {1, 2, 3}}}, 1), 0);
  EXPECT_DOUBLE_EQ(under_threshold({{"le", "0.5 0.1"}, {"buckets", {1, 2, 3}}}, 1), 0);

  SloSpec s = parse_slo({{"target", {{"route", "pay"}}},
                         {"sli", "latency"},
                         {"threshold", "300ms"},
                         {"objective", 99}});
  Counts c = counts_of({{"requests", 100}, {"errors", 50}, {"latency", hist}}, s);
  EXPECT_DOUBLE_EQ(c.total, 100);
  EXPECT_DOUBLE_EQ(c.bad, 18);  // errors do not count in a latency SLI; slow answers do
  Engine e;
  e.set_slos({{"pay",
               {{"target", {{"route", "pay"}}},
                {"sli", "latency"},
                {"threshold", "300ms"},
                {"objective", 99}}}});
  e.ingest({{"city", "a"}, {"at_ms", minute(0)}, {"routes", {{"pay", {{"latency", hist}}}}}});
  e.evaluate(after(0));
  EXPECT_NEAR(e.status()[0].overall.burn[k5m], 18.0, 1e-9);  // 18% bad / 1% budget
}

TEST(Evaluator, ScaledWindowsUseScaledBuckets) {
  Engine e;
  // A 4h SLO: 1h -> 20 s, 5m -> 1.666 s; its fine buckets are 10 s / 180 = 55 ms.
  e.set_slos({{"pay", availability({{"window", "4h"}})}});
  for (int ms = 100; ms < 20'000; ms += 500)
    e.add("pay", "a", kBase + ms, {ms >= 15'100 ? 1.0 : 0.0, 10});
  e.evaluate(kBase + 19'999);
  const Figures& f = e.status()[0].overall;
  // The 1h (20 s) window: 40 samples, 10 bad of 400 -> 2.5% -> burn 25.
  EXPECT_NEAR(f.windows[k1h].total, 400, 1e-9);
  EXPECT_NEAR(f.burn[k1h], 25, 1e-9);
  // The 5m (1.666 s) window: buckets from 18,333 ms on (the first starts at 18,345), so the
  // samples at 18.6, 19.1 and 19.6 s -> all bad.
  EXPECT_NEAR(f.windows[k5m].total, 30, 1e-9);
  EXPECT_NEAR(f.burn[k5m], 100, 1e-9);
}

TEST(Evaluator, AChangedSpecStartsOverAndADeletedOneIsGone) {
  Engine e;
  e.set_slos({{"pay", availability()}});
  for (int i = 0; i < 5; ++i) e.add("pay", "a", minute(i), {100, 1000});
  EXPECT_FALSE(e.evaluate(after(4)).empty());
  EXPECT_FALSE(e.firing().empty());
  // Unchanged: data and alerts kept.
  EXPECT_TRUE(e.set_slos({{"pay", availability()}}).empty());
  EXPECT_FALSE(e.firing().empty());
  // Changed: returned as fresh (to backfill), its alerts dropped, its data gone.
  EXPECT_EQ(e.set_slos({{"pay", availability({{"objective", 99}})}}),
            std::vector<std::string>{"pay"});
  EXPECT_TRUE(e.firing().empty());
  e.evaluate(after(4));
  EXPECT_DOUBLE_EQ(e.status()[0].overall.windows[k5m].total, 0);
  e.set_slos({});
  e.evaluate(after(5));
  EXPECT_TRUE(e.status().empty());
  EXPECT_EQ(e.slo_count(), 0u);
}

}  // namespace
}  // namespace sluice::control::slo
