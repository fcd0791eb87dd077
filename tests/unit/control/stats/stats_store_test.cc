// The stats query interface: series by dimension over a time range, in steps of whole minutes,
// from rollups in the store and minutes still in memory, with sums, rates, error ratios and
// histogram percentiles; bad and oversized queries refused. Time is passed in.
#include "control/stats/stats_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdexcept>

namespace sluice::control::stats {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr int64_t kT0 = 1'700'000'040'000 - 1'700'000'040'000 % kMinuteMs;  // a minute boundary

// A latency histogram as gateways send it: bounds 0.01 0.1 1 (seconds) and +Inf.
Json latency(uint64_t a, uint64_t b, uint64_t c, uint64_t inf) {
  return {
      {"le", "0.01 0.1 1"}, {"buckets", {a, b, c, inf}}, {"count", a + b + c + inf}, {"sum_us", 0}};
}

Json snapshot(const std::string& city, uint64_t requests, uint64_t errors, Json lat,
              int concurrency = 0) {
  Json item = {{"requests", requests}, {"errors", errors}, {"latency", std::move(lat)}};
  if (concurrency) item["concurrency"] = concurrency;
  return {{"city", city},
          {"services", {{"accounts", item}, {"cards", {{"requests", 1}}}}},
          {"routes", {{"acc", {{"service", "accounts"}, {"requests", requests}}}}},
          {"channels", {{"mobile", {{"requests", requests}}}}}};
}

class StatsStoreTest : public ::testing::Test {
 protected:
  void post(const std::string& gw, int64_t at, const Json& sections) {
    Json data = sections;
    data["gateway"] = gw;
    data["at_ms"] = at;
    stats_.add(gw, at, at, data, sections);
  }

  std::unique_ptr<Store> store_ = Store::open("sqlite::memory:");
  ApiOptions options_;
  StatsStore stats_{*store_, options_};
};

TEST(Latency, PercentilesInterpolateInsideTheBucketAsHistogramQuantileDoes) {
  Latency l;
  l.bounds = {0.01, 0.1, 1};
  l.buckets = {50, 40, 10, 0};
  EXPECT_DOUBLE_EQ(*l.percentile(0.5), 0.01);             // rank 50: the top of bucket 1
  EXPECT_DOUBLE_EQ(*l.percentile(0.7), 0.01 + 0.09 / 2);  // rank 70: half into bucket 2
  EXPECT_DOUBLE_EQ(*l.percentile(0.95), 0.1 + 0.9 / 2);   // rank 95: half into bucket 3
  l.buckets = {0, 0, 0, 3};
  EXPECT_DOUBLE_EQ(*l.percentile(0.5), 1.0);  // +Inf: the highest finite bound
  l.buckets = {0, 0, 0, 0};
  EXPECT_FALSE(l.percentile(0.5).has_value());
  // Different bounds are not added up.
  Latency a = l, b;
  a.buckets = {1, 0, 0, 0};
  b.bounds = {0.5};
  b.buckets = {1, 1};
  b.count = 2;
  a.add(b);
  EXPECT_TRUE(a.mixed);
  EXPECT_EQ(a.buckets, (std::vector<uint64_t>{1, 0, 0, 0}));
}

TEST_F(StatsStoreTest, SeriesSumEachStepOverGatewaysFromMemoryAndStore) {
  post("gw-a1", kT0 + 1'000, snapshot("a", 10, 1, latency(8, 2, 0, 0), 4));
  post("gw-a1", kT0 + 31'000, snapshot("a", 20, 0, latency(10, 10, 0, 0), 7));
  post("gw-b1", kT0 + 5'000, snapshot("b", 5, 5, latency(0, 0, 5, 0), 2));
  post("gw-a1", kT0 + 2 * kMinuteMs + 1'000, snapshot("a", 3, 0, latency(3, 0, 0, 0)));
  // The first minute is written to the store; the third stays in memory.
  stats_.flush(kT0 + kMinuteMs + options_.rollup_grace_ms, false);
  ASSERT_EQ(store_->rollup_rows(kT0, kT0 + 10 * kMinuteMs).size(), 2u);

  SeriesQuery q;
  q.by = Dimension::kService;
  q.key = "accounts";
  q.from_ms = kT0;
  q.to_ms = kT0 + 3 * kMinuteMs;
  auto series = stats_.series(q);
  ASSERT_EQ(series.size(), 1u);
  const Series& s = series[0];
  EXPECT_EQ(s.key, "accounts");
  ASSERT_EQ(s.points.size(), 3u);
  EXPECT_EQ(s.points[0].at_ms, kT0);
  EXPECT_EQ(s.points[0].requests, 35u);  // both gateways
  EXPECT_EQ(s.points[0].errors, 6u);
  EXPECT_EQ(s.points[0].concurrency_max, 7);  // a gauge: the maximum, not the sum
  EXPECT_EQ(s.points[0].latency.buckets, (std::vector<uint64_t>{18, 12, 5, 0}));
  EXPECT_EQ(s.points[1].requests, 0u);  // no data: zero, not missing
  EXPECT_EQ(s.points[2].at_ms, kT0 + 2 * kMinuteMs);
  EXPECT_EQ(s.points[2].requests, 3u);

  const Summary sum = summarize(s, q.from_ms, q.to_ms);
  EXPECT_EQ(sum.requests, 38u);
  EXPECT_EQ(sum.errors, 6u);
  EXPECT_DOUBLE_EQ(sum.rate_per_second, 38.0 / 180.0);
  EXPECT_DOUBLE_EQ(sum.error_ratio, 6.0 / 38.0);
  ASSERT_TRUE(sum.p50.has_value());
  EXPECT_DOUBLE_EQ(*sum.p50, 0.01 * 19 / 21);  // rank 19 of 21 in the first bucket
  EXPECT_EQ(sum.concurrency_max, 7);

  // The same from the store alone (another control plane, or after a restart).
  StatsStore fresh{*store_, options_};
  auto stored = fresh.series(q);
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].points[0].requests, 35u);
  EXPECT_EQ(stored[0].points[0].latency.buckets, (std::vector<uint64_t>{18, 12, 5, 0}));
  EXPECT_EQ(stored[0].points[2].requests, 0u);  // not written yet

  // One gateway, one city, a coarser step.
  q.gateway = "gw-b1";
  EXPECT_EQ(stats_.series(q)[0].points[0].requests, 5u);
  q.gateway.clear();
  q.city = "a";
  q.step_ms = 3 * kMinuteMs;
  series = stats_.series(q);
  ASSERT_EQ(series[0].points.size(), 1u);
  EXPECT_EQ(series[0].points[0].requests, 33u);
}

TEST_F(StatsStoreTest, EveryKeyOfADimensionWhenNoneIsNamed) {
  post("gw-a1", kT0 + 1'000, snapshot("a", 10, 1, latency(1, 0, 0, 0)));
  SeriesQuery q;
  q.from_ms = kT0;
  q.to_ms = kT0 + kMinuteMs;
  std::vector<std::string> keys;
  for (const Series& s : stats_.series(q)) keys.push_back(s.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"accounts", "cards"}));
  q.by = Dimension::kRoute;
  EXPECT_EQ(stats_.series(q).at(0).points.at(0).requests, 10u);
  q.by = Dimension::kChannel;
  EXPECT_EQ(stats_.series(q).at(0).key, "mobile");
  q.by = Dimension::kEndpoint;  // not reported: nothing
  EXPECT_TRUE(stats_.series(q).empty());
  q.key = "accounts/10.0.0.1:80";  // named: listed, all zero
  auto named = stats_.series(q);
  ASSERT_EQ(named.size(), 1u);
  EXPECT_EQ(named[0].points[0].requests, 0u);
}

TEST_F(StatsStoreTest, MalformedDataFromAGatewayCountsAsNothing) {
  Json bad = {{"services",
               {{"accounts",
                 {{"requests", -5},
                  {"errors", "many"},
                  {"latency", {{"le", "0.1 x"}, {"buckets", {1, 2, 3}}, {"count", 3}}}}}}}};
  post("gw-a1", kT0 + 1'000, bad);
  SeriesQuery q;
  q.key = "accounts";
  q.from_ms = kT0;
  q.to_ms = kT0 + kMinuteMs;
  const auto series = stats_.series(q);
  const Point& p = series.at(0).points.at(0);
  EXPECT_EQ(p.requests, 0u);
  EXPECT_EQ(p.errors, 0u);
  EXPECT_TRUE(p.latency.buckets.empty());
  EXPECT_EQ(p.latency.count, 3u);
}

TEST_F(StatsStoreTest, BadOrUnboundedQueriesAreRefused) {
  SeriesQuery q;
  q.from_ms = kT0;
  q.to_ms = kT0 + kMinuteMs;
  q.step_ms = 30'000;
  EXPECT_THAT(check(q).value_or(""), HasSubstr("step_ms: must be a positive multiple of 60000"));
  q.step_ms = kMinuteMs;
  q.to_ms = q.from_ms;
  EXPECT_THAT(check(q).value_or(""), HasSubstr("expected 0 <= from < to"));
  q.to_ms = kT0 + (kMaxPoints + 1) * kMinuteMs;
  EXPECT_THAT(check(q).value_or(""), HasSubstr("at most 10080 per query"));
  EXPECT_THROW(stats_.series(q), std::invalid_argument);
  // Many keys times many steps: bounded in all.
  Json many = Json::object();
  for (int i = 0; i < 30; ++i) many["s" + std::to_string(i)] = {{"requests", 1}};
  post("gw-a1", kT0 + 1'000, {{"services", many}});
  q.to_ms = kT0 + kMaxPoints * kMinuteMs;
  try {
    stats_.series(q);
    FAIL() << "an answer of 30 x 10080 points was built";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("more than 200000 points"));
  }
}

TEST(Dimensions, NamesAndSections) {
  const std::pair<std::string_view, std::string_view> names[] = {{"route", "routes"},
                                                                 {"service", "services"},
                                                                 {"endpoint", "endpoints"},
                                                                 {"city", "cities"},
                                                                 {"channel", "channels"}};
  for (auto [name, section] : names) {
    auto d = parse_dimension(name);
    ASSERT_TRUE(d.has_value()) << name;
    EXPECT_EQ(section_of(*d), section);
  }
  EXPECT_FALSE(parse_dimension("tenant").has_value());
}

}  // namespace
}  // namespace sluice::control::stats
