// Stats snapshots and events through the router; merge_stats, the rollup arithmetic.
#include "unit/control/api_fixture.h"

namespace sluice::control::test {
namespace {

TEST_F(ApiTest, StatsKeepRecentSnapshotsAndWriteMinuteRollups) {
  const int64_t minute = kStart - kStart % 60000;
  auto snapshot = [&](int64_t requests, int64_t concurrency) {
    return Json{{"gateway", "gw-a1"},
                {"at_ms", now_},
                {"routes",
                 {{"pay",
                   {{"requests", requests},
                    {"errors", 1},
                    {"latency", {1, 2, 3}},
                    {"concurrency", concurrency}}}}}};
  };
  ASSERT_EQ(call("POST", "/v1/stats", snapshot(10, 4)).status(), 200);
  advance(5000);
  ASSERT_EQ(call("POST", "/v1/stats", snapshot(20, 2)).status(), 200);
  Json stats = call("GET", "/v1/stats?gateway=gw-a1", nullptr, "viewer").json();
  EXPECT_EQ(stats["recent"].size(), 2u);
  EXPECT_EQ(stats["rollups"].size(), 0u);  // the minute is not over

  advance(60000);
  api_.tick();
  auto rows = store_->rollup_rows(minute, minute + 60000);
  ASSERT_EQ(rows.size(), 1u);
  const Json& pay = rows[0].data["routes"]["pay"];
  EXPECT_EQ(pay["requests"], 30);
  EXPECT_EQ(pay["errors"], 2);
  EXPECT_EQ(pay["concurrency"], 4);  // a gauge: the maximum
  EXPECT_EQ(pay["latency"], Json({2, 4, 6}));
  EXPECT_EQ(rows[0].data["snapshots"], 2);
  stats = call("GET", "/v1/stats?from=" + std::to_string(minute), nullptr, "viewer").json();
  EXPECT_EQ(stats["rollups"].size(), 1u);

  EXPECT_EQ(call("POST", "/v1/stats", {{"routes", 1}}).status(), 400);

  // Retention removes old rollups.
  advance(options_.stats_retention_ms + options_.prune_interval_ms);
  api_.tick();
  EXPECT_TRUE(store_->rollup_rows(0, INT64_MAX).empty());
}

TEST_F(ApiTest, EventsFromGateways) {
  Pending r = call("POST", "/v1/events?gateway=gw-b1",
                   Json::array({{{"kind", "breaker_opened"}, {"subject", "payments"}},
                                {{"kind", "endpoint_ejected"},
                                 {"subject", "payments/127.0.0.1:9201"},
                                 {"detail", {{"errors", 5}}}}}));
  ASSERT_EQ(r.status(), 200) << r.get().body;
  EXPECT_EQ(r.json()["ids"].size(), 2u);
  Json events = call("GET", "/v1/events?limit=10", nullptr, "viewer").json();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]["kind"], "breaker_opened");
  EXPECT_EQ(events[0]["source"], "gw-b1");
  EXPECT_EQ(events[1]["detail"]["errors"], 5);
  int64_t first = events[0]["id"];
  EXPECT_EQ(
      call("GET", "/v1/events?after=" + std::to_string(first), nullptr, "viewer").json().size(),
      1u);
  EXPECT_EQ(call("POST", "/v1/events", Json::array({{{"subject", "x"}}})).status(), 400);
}

TEST(MergeStats, CountersAddGaugesKeepTheMaximum) {
  Json acc = Json::object();
  merge_stats(acc, {{"requests", 1}, {"p99", 0.5}, {"in_flight", 3}, {"ratio", 0.25}});
  merge_stats(acc, {{"requests", 2}, {"p99", 0.2}, {"in_flight", 1}, {"ratio", 0.5}});
  EXPECT_EQ(acc["requests"], 3);
  EXPECT_EQ(acc["p99"], 0.5);
  EXPECT_EQ(acc["in_flight"], 3);
  EXPECT_DOUBLE_EQ(acc["ratio"].get<double>(), 0.75);
}

}  // namespace
}  // namespace sluice::control::test
