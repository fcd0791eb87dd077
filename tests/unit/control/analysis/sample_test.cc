// Summing gateways' stats snapshots (and their minute rollups) into a sample: by route, by
// service (never counting a request twice), by gateway set; breaker opens from the state or a
// counter; hostile values.
#include "control/analysis/sample.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace sluice::control::analysis {
namespace {

using ::testing::ElementsAre;
using Json = nlohmann::json;

// Three consecutive POST /v1/stats bodies of one gateway, as GET /v1/stats?gateway=gw-a1 on the
// control plane returned them ("recent"): captured from real processes (sluice control, a
// gateway with `control_plane:` and report_interval 1s, a sample service registered as
// `accounts`; routes acc (/acc) and acc-v2 (/v2/acc) to it; a circuit breaker with
// error_ratio 0.5 and min_requests 5). First 41 requests on acc and 10 on acc-v2, all good;
// then the sample's faults set to error_rate 1.0 and 80 requests on acc: 51 reached the service
// and failed, the breaker opened and answered the other 29 itself (the fast bucket); then a
// snapshot without traffic, the breaker still open.
constexpr const char* kCaptured = R"json(
[
 {
  "at_ms": 1796684308636,
  "cities": {
   "a": {"errors":0,"latency":{"buckets":[0,0,49,2,0,0,0,0,0,0,0,0,0,0,0],"count":51,"le":"0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10","sum_us":111445},"requests":51}
  },
  "city": "a",
  "concurrency": 0,
  "config_version": "1.1",
  "endpoints": {
   "accounts/127.0.0.1:38837": {"address":"127.0.0.1:38837","city":"a","errors":0,"requests":51,"service":"accounts","zone":"a1"}
  },
  "gateway": "gw-a1",
  "routes": {
   "acc": {"errors":0,"latency":{"buckets":[0,0,36,5,0,0,0,0,0,0,0,0,0,0,0],"count":41,"le":"0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10","sum_us":97376},"requests":41,"service":"accounts"},
   "acc-v2": {"errors":0,"latency":{"buckets":[0,0,9,1,0,0,0,0,0,0,0,0,0,0,0],"count":10,"le":"0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10","sum_us":22519},"requests":10,"service":"accounts"}
  },
  "services": {
   "accounts": {"breaker":"closed","concurrency":0,"errors":0,"latency":{"buckets":[0,0,49,2,0,0,0,0,0,0,0,0,0,0,0],"count":51,"le":"0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10","sum_us":111445},"requests":51,"retries":0}
  },
  "versions": {
   "config_version": 1,
   "control_plane_version": "1.1",
   "local_version": 1,
   "units_version": 0
  },
  "zone": "a1"
 },
 {
  "at_ms": 1796684309638,
  "cities": {
   "a": {"errors":51,"latency":{"buckets":[0,0,50,1,0,0,0,0,0,0,0,0,0,0,0],"count":51,"le":"0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10","sum_us":112032},"requests":51}
  },
  "city": "a",
  "concurrency": 0,
  "config_version": "1.1",
  "endpoints": {
   "accounts/127.0.0.1:38837": {"address":"127.0.0.1:38837","city":"a","errors":51,"requests":51,"service":"accounts","zone":"a1"}
  },
  "gateway": "gw-a1",
  "routes": {
   "acc": {"errors":80,"latency":{"buckets":[29,0,43,8,0,0,0,0,0,0,0,0,0,0,0],"count":80,"le":"0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10","sum_us":119355},"requests":80,"service":"accounts"},
   "acc-v2": {"errors":0,"latency":{"buckets":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"count":0,"le":"0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10","sum_us":0},"requests":0,"service":"accounts"}
  },
  "services": {
   "accounts": {"breaker":"open","concurrency":0,"errors":51,"latency":{"buckets":[0,0,50,1,0,0,0,0,0,0,0,0,0,0,0],"count":51,"le":"0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10","sum_us":112032},"requests":51,"retries":0}
  },
  "versions": {
   "config_version": 1,
   "control_plane_version": "1.1",
   "local_version": 1,
   "units_version": 0
  },
  "zone": "a1"
 },
 {
  "at_ms": 1796684310640,
  "cities": {
   "a": {"errors":0,"latency":{"buckets":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"count":0,"le":"0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10","sum_us":0},"requests":0}
  },
  "city": "a",
  "concurrency": 0,
  "config_version": "1.1",
  "endpoints": {
   "accounts/127.0.0.1:38837": {"address":"127.0.0.1:38837","city":"a","errors":0,"requests":0,"service":"accounts","zone":"a1"}
  },
  "gateway": "gw-a1",
  "routes": {
   "acc": {"errors":0,"latency":{"buckets":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"count":0,"le":"0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10","sum_us":0},"requests":0,"service":"accounts"},
   "acc-v2": {"errors":0,"latency":{"buckets":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"count":0,"le":"0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10","sum_us":0},"requests":0,"service":"accounts"}
  },
  "services": {
   "accounts": {"breaker":"open","concurrency":0,"errors":0,"latency":{"buckets":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"count":0,"le":"0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10","sum_us":0},"requests":0,"retries":0}
  },
  "versions": {
   "config_version": 1,
   "control_plane_version": "1.1",
   "local_version": 1,
   "units_version": 0
  },
  "zone": "a1"
 }
]
)json";

std::vector<Json> captured() {
  std::vector<Json> out;
  for (const Json& s : Json::parse(kCaptured)) out.push_back(s);
  return out;
}

std::vector<uint64_t> buckets(std::initializer_list<uint64_t> head) {
  std::vector<uint64_t> b(head);
  b.resize(15, 0);
  return b;
}

TEST(SumSnapshots, ByRouteFromRealSnapshots) {
  const std::vector<Json> snaps = captured();
  Sample s = sum_snapshots(snaps, {.routes = {"acc"}});
  EXPECT_EQ(s.snapshots, 3u);
  EXPECT_EQ(s.requests, 121u);  // 41 + 80 + 0
  EXPECT_EQ(s.errors, 80u);     // the 51 failures and the breaker's 29 answers
  EXPECT_EQ(s.latency.bounds.size(), 14u);
  EXPECT_EQ(s.latency.bounds.back(), 10.0);
  EXPECT_EQ(s.latency.buckets, buckets({29, 0, 36 + 43, 5 + 8}));
  EXPECT_FALSE(s.latency.mixed);
  EXPECT_EQ(s.breaker_opens, 1u);  // accounts, the route's service: closed, open, open
  EXPECT_EQ(s.throttled, 0u);
  EXPECT_FALSE(s.throttled_reported);  // this build's gateways do not report 429s

  s = sum_snapshots(snaps, {.routes = {"acc-v2"}});
  EXPECT_EQ(s.requests, 10u);
  EXPECT_EQ(s.errors, 0u);
  EXPECT_EQ(s.latency.buckets, buckets({0, 0, 9, 1}));

  // No route or service named: every route, each request once.
  s = sum_snapshots(snaps, {});
  EXPECT_EQ(s.requests, 131u);
  EXPECT_EQ(s.errors, 80u);
  EXPECT_EQ(s.breaker_opens, 1u);
}

TEST(SumSnapshots, ByServiceAndNeverTwice) {
  const std::vector<Json> snaps = captured();
  Sample s = sum_snapshots(snaps, {.services = {"accounts"}});
  EXPECT_EQ(s.requests, 102u);  // what reached the service: 51 + 51
  EXPECT_EQ(s.errors, 51u);
  EXPECT_EQ(s.latency.buckets, buckets({0, 0, 49 + 50, 2 + 1}));
  EXPECT_EQ(s.breaker_opens, 1u);
  // A route and its own service: the route's count only.
  s = sum_snapshots(snaps, {.routes = {"acc"}, .services = {"accounts"}});
  EXPECT_EQ(s.requests, 121u);
  EXPECT_EQ(s.errors, 80u);
  EXPECT_EQ(s.breaker_opens, 1u);
  // Names that are not in the snapshots: an empty sample, not an error.
  s = sum_snapshots(snaps, {.routes = {"nope"}, .services = {"cards"}});
  EXPECT_EQ(s.requests, 0u);
  EXPECT_EQ(s.snapshots, 3u);
  EXPECT_TRUE(s.latency.buckets.empty());
}

TEST(SumSnapshots, ByGatewaySet) {
  std::vector<Json> snaps = captured();
  // A second gateway in city b with the first snapshot's traffic twice over.
  Json b = snaps[0];
  b["gateway"] = "gw-b1";
  b["city"] = "b";
  b["routes"]["acc"]["requests"] = 82;
  b["routes"]["acc"]["errors"] = 2;
  snaps.insert(snaps.begin() + 1, b);
  EXPECT_EQ(sum_snapshots(snaps, {.gateways = {"gw-a1"}, .routes = {"acc"}}).requests, 121u);
  EXPECT_EQ(sum_snapshots(snaps, {.gateways = {"gw-b1"}, .routes = {"acc"}}).requests, 82u);
  EXPECT_EQ(sum_snapshots(snaps, {.gateways = {"gw-b1"}, .routes = {"acc"}}).errors, 2u);
  const Sample both = sum_snapshots(snaps, {.gateways = {"gw-a1", "gw-b1"}, .routes = {"acc"}});
  EXPECT_EQ(both.requests, 203u);
  EXPECT_EQ(both.snapshots, 4u);
  EXPECT_EQ(sum_snapshots(snaps, {.routes = {"acc"}}).requests, 203u);  // every gateway
  EXPECT_EQ(sum_snapshots(snaps, {.gateways = {"gw-c1"}, .routes = {"acc"}}).snapshots, 0u);
  // The breaker states are followed per gateway: gw-b1's one closed snapshot between gw-a1's
  // does not make gw-a1's later "open" a new open.
  EXPECT_EQ(sum_snapshots(snaps, {.services = {"accounts"}}).breaker_opens, 1u);
  // Adding samples is adding their snapshots.
  Sample a = sum_snapshots(snaps, {.gateways = {"gw-a1"}, .routes = {"acc"}});
  a.add(sum_snapshots(snaps, {.gateways = {"gw-b1"}, .routes = {"acc"}}));
  EXPECT_EQ(a.requests, both.requests);
  EXPECT_EQ(a.latency.buckets, both.latency.buckets);
}

TEST(SumSnapshots, BreakerOpensAndThrottledWhenGatewaysReportThem) {
  std::vector<Json> snaps = captured();
  // A counter, when present, is taken over the state.
  snaps[1]["services"]["accounts"]["breaker_opens"] = 3;
  snaps[1]["routes"]["acc"]["throttled"] = 7;
  snaps[2]["routes"]["acc"]["throttled"] = 1;
  Sample s = sum_snapshots(snaps, {.routes = {"acc"}});
  EXPECT_EQ(s.breaker_opens, 3u);
  EXPECT_EQ(s.throttled, 8u);
  EXPECT_TRUE(s.throttled_reported);
  // Open, closed, open again: two opens.
  snaps = captured();
  snaps[1]["services"]["accounts"]["breaker"] = "open";
  snaps[2]["services"]["accounts"]["breaker"] = "half_open";
  Json again = snaps[2];
  again["services"]["accounts"]["breaker"] = "open";
  snaps.push_back(again);
  EXPECT_EQ(sum_snapshots(snaps, {.services = {"accounts"}}).breaker_opens, 2u);
  // A window that starts while the breaker is open counts that open.
  snaps = captured();
  snaps.erase(snaps.begin());
  EXPECT_EQ(sum_snapshots(snaps, {.services = {"accounts"}}).breaker_opens, 1u);
  // A route-only scope leaves other services' breakers out.
  snaps = captured();
  snaps[1]["services"]["cards"] = {{"breaker", "open"}, {"requests", 5}};
  EXPECT_EQ(sum_snapshots(snaps, {.routes = {"acc"}}).breaker_opens, 1u);
  EXPECT_EQ(sum_snapshots(snaps, {.services = {"cards"}}).breaker_opens, 1u);
  EXPECT_EQ(sum_snapshots(snaps, {.services = {"cards"}}).requests, 5u);
}

TEST(SumSnapshots, WeightedSplitRoutesNameTheirServices) {
  // A route split between a stable and a canary service: both services' traffic is the route's.
  const Json snap = {
      {"gateway", "gw-a1"},
      {"routes",
       {{"pay",
         {{"services", {{{"name", "pay-v1"}, {"weight", 95}}, {{"name", "pay-v2"}, {"weight", 5}}}},
          {"requests", 100}}}}},
      {"services",
       {{"pay-v1", {{"requests", 95}, {"breaker", "closed"}}},
        {"pay-v2", {{"requests", 5}, {"breaker", "open"}}}}}};
  const std::vector<Json> snaps = {snap};
  Sample s = sum_snapshots(snaps, {.routes = {"pay"}, .services = {"pay-v1", "pay-v2"}});
  EXPECT_EQ(s.requests, 100u);
  EXPECT_EQ(s.breaker_opens, 1u);
  // The canary alone, as a release compares it with the stable service.
  EXPECT_EQ(sum_snapshots(snaps, {.services = {"pay-v2"}}).requests, 5u);
}

TEST(SumSnapshots, HostileValuesCountAsNothing) {
  const std::string le = "0.001 0.01";
  std::vector<Json> snaps = {
      "not an object",
      {{"gateway", 7}, {"routes", {{"r", {{"requests", 1000}}}}}},  // no usable gateway name
      {{"gateway", "g"},
       {"routes",
        {{"r",
          {{"requests", -5},
           {"errors", "many"},
           {"throttled", 1.5},
           {"latency", {{"le", le}, {"buckets", {1, -2, 3}}}}}}}}},
      {{"gateway", "g"},
       {"routes",
        {{"r", {{"requests", 10}, {"latency", {{"le", "x y"}, {"buckets", {1, 2, 3}}}}}}}}},
      {{"gateway", "g"},
       {"routes", {{"r", {{"latency", {{"le", "0.01 0.001"}, {"buckets", {1, 2, 3}}}}}}}}},
      {{"gateway", "g"}, {"routes", {{"r", {{"latency", {{"le", le}, {"buckets", {1, 2}}}}}}}}},
      {{"gateway", "g"}, {"routes", "a list?"}, {"services", {{"s", "a string"}}}},
      {{"gateway", "g"}, {"routes", {{"r", {{"requests", UINT64_MAX}, {"errors", UINT64_MAX}}}}}},
      {{"gateway", "g"}, {"routes", {{"r", {{"requests", 2}, {"errors", 1}}}}}},
      {{"gateway", "g"},
       {"routes", {{"r", {{"latency", {{"le", le}, {"buckets", {0, UINT64_MAX, 0}}}}}}}}},
  };
  Json many = {{"le", ""}, {"buckets", Json::array()}};
  for (size_t i = 0; i < kMaxBuckets; ++i) {
    many["le"] = many["le"].get<std::string>() + (i ? " " : "") + std::to_string(i + 1);
    many["buckets"].push_back(1);
  }
  many["buckets"].push_back(1);  // kMaxBuckets + 1 buckets
  snaps.push_back({{"gateway", "g"}, {"routes", {{"r", {{"latency", many}}}}}});
  const Sample s = sum_snapshots(snaps, {.routes = {"r"}});
  EXPECT_EQ(s.snapshots, 9u);
  EXPECT_EQ(s.requests, UINT64_MAX);  // saturated, not wrapped
  EXPECT_EQ(s.errors, UINT64_MAX);
  EXPECT_FALSE(s.throttled_reported);
  // Only the two well-formed histograms (a negative bucket counts as 0, a huge one as
  // kMaxBucketCount).
  EXPECT_THAT(s.latency.bounds, ElementsAre(0.001, 0.01));
  EXPECT_THAT(s.latency.buckets, ElementsAre(1u, kMaxBucketCount, 3u));
  EXPECT_FALSE(s.latency.mixed);
}

TEST(SumSnapshots, DifferentBucketBoundsMakeTheSumMixed) {
  const std::vector<Json> snaps = {
      {{"gateway", "g"},
       {"routes", {{"r", {{"latency", {{"le", "0.001 0.01"}, {"buckets", {1, 2, 3}}}}}}}}},
      {{"gateway", "h"},
       {"routes", {{"r", {{"latency", {{"le", "0.005 0.05"}, {"buckets", {1, 2, 3}}}}}}}}}};
  EXPECT_TRUE(sum_snapshots(snaps, {.routes = {"r"}}).latency.mixed);
  EXPECT_FALSE(sum_snapshots(snaps, {.gateways = {"h"}, .routes = {"r"}}).latency.mixed);
}

TEST(SumRollups, TheSameSumsFromTheStatsStoresMinuteRollups) {
  // The captured snapshots filed in a real StatsStore (SQLite in memory) as POST /v1/stats
  // files them, the minute written to the store, and read back as rollups.
  auto store = Store::open("sqlite::memory:");
  ApiOptions options;
  stats::StatsStore stats(*store, options);
  std::vector<Json> snaps = captured();
  Json b = snaps[0];
  b["gateway"] = "gw-b1";
  snaps.push_back(b);
  int64_t first = INT64_MAX;
  for (const Json& snap : snaps) {
    Json sections = snap;
    for (const char* key : {"gateway", "at_ms", "versions"}) sections.erase(key);
    const int64_t at = snap["at_ms"].get<int64_t>();
    first = std::min(first, at);
    stats.add(snap["gateway"].get<std::string>(), at, at, snap, sections);
  }
  stats.flush(first + 10 * stats::kMinuteMs, true);
  const std::vector<Rollup> rollups =
      stats.rollups(first - stats::kMinuteMs, first + stats::kMinuteMs, "");
  ASSERT_EQ(rollups.size(), 2u);  // one minute, two gateways
  for (const Scope& scope : {Scope{.routes = {"acc"}}, Scope{.services = {"accounts"}},
                             Scope{.gateways = {"gw-a1"}}, Scope{.gateways = {"gw-b1"}}}) {
    const Sample from_snapshots = sum_snapshots(snaps, scope);
    const Sample from_rollups = sum_rollups(rollups, scope);
    EXPECT_EQ(from_rollups.requests, from_snapshots.requests);
    EXPECT_EQ(from_rollups.errors, from_snapshots.errors);
    EXPECT_EQ(from_rollups.latency.buckets, from_snapshots.latency.buckets);
    EXPECT_EQ(from_rollups.latency.bounds, from_snapshots.latency.bounds);
  }
  // gw-a1's minute ends open: one open, as from the snapshots; gw-b1's stays closed.
  EXPECT_EQ(sum_rollups(rollups, {.services = {"accounts"}}).breaker_opens, 1u);
  EXPECT_EQ(sum_rollups(rollups, {.gateways = {"gw-a1"}}).requests, 131u);
  EXPECT_EQ(sum_rollups(rollups, {.gateways = {"gw-a1"}}).snapshots, 1u);  // one minute
}

}  // namespace
}  // namespace sluice::control::analysis
