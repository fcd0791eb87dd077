// Observed traffic in the stats: edges and channels posted by gateways, checked, stamped, summed
// over minutes and gateways; GET /v1/stats/edges and /v1/stats/channels and their bounds.
#include "control/stats/observed.h"
#include "control/stats/stats_store.h"

#include "unit/control/api_fixture.h"

namespace sluice::control::test {
namespace {

Json snapshot(const std::string& gateway, const std::string& city, int64_t at, Json edges,
              Json channels = Json::object()) {
  return Json{{"gateway", gateway},
              {"city", city},
              {"at_ms", at},
              {"edges", std::move(edges)},
              {"channels", std::move(channels)}};
}

TEST(ObservedStamp, KeepsWellFormedEntriesAndStampsThem) {
  Json sections = {
      {"edges",
       {{"ledger",
         {{"accounts", {{"requests", 3}, {"errors", 1}}},
          {"bad name", {{"requests", 1}}},          // not a name
          {"minus", {{"requests", -1}}},            // not a count
          {"text", {{"requests", "3"}}},            // idem
          {"scalar", 4}}},                          // not an object
        {"no/callee", {{"x", {{"requests", 1}}}}},  // callee not a name
        {"flat", 7}}},
      {"channels", {{"mobile", {{"requests", 2}}}, {std::string(200, 'm'), {{"requests", 1}}}}}};
  stats::stamp_observed(sections, 1234);
  EXPECT_EQ(
      sections["edges"],
      Json({{"ledger", {{"accounts", {{"requests", 3}, {"errors", 1}, {"seen_ms_max", 1234}}}}}}));
  EXPECT_EQ(sections["channels"], Json({{"mobile", {{"requests", 2}, {"seen_ms_max", 1234}}}}));

  Json not_objects = {{"edges", "x"}, {"channels", Json::array()}};
  stats::stamp_observed(not_objects, 1);
  EXPECT_EQ(not_objects, Json({{"edges", Json::object()}, {"channels", Json::object()}}));
}

TEST(ObservedStamp, BoundsEntriesPerSnapshot) {
  Json edges = Json::object();
  for (size_t i = 0; i < stats::kMaxEdgesPerSnapshot + 5; ++i)
    edges["svc" + std::to_string(i)]["caller"] = {{"requests", 1}};
  Json sections = {{"edges", edges}};
  stats::stamp_observed(sections, 1);
  size_t n = 0;
  for (const auto& callee : sections["edges"]) n += callee.size();
  EXPECT_EQ(n, stats::kMaxEdgesPerSnapshot);
}

TEST(ObservedSums, AddUpMinutesAndGateways) {
  stats::MinuteRollups minutes;
  minutes[{60'000, "gw-a1"}] = {
      {"city", "a"},
      {"edges",
       {{"ledger", {{"accounts", {{"requests", 2}, {"errors", 1}, {"seen_ms_max", 70'000}}}}}}}};
  minutes[{120'000, "gw-b1"}] = {
      {"city", "b"},
      {"edges",
       {{"ledger", {{"accounts", {{"requests", 5}, {"seen_ms_max", 150'000}}}}},
        {"cards", {{"web", {{"requests", 0}}}}}}},  // nothing counted: left out
      {"channels", {{"mobile", {{"requests", 4}, {"errors", 2}, {"seen_ms_max", 150'000}}}}}};
  auto edges = stats::observed_edges(minutes);
  ASSERT_EQ(edges.size(), 1u);
  EXPECT_EQ(edges[0].caller, "accounts");
  EXPECT_EQ(edges[0].callee, "ledger");
  EXPECT_EQ(edges[0].requests, 7u);
  EXPECT_EQ(edges[0].errors, 1u);
  EXPECT_EQ(edges[0].first_seen_ms, 60'000);
  EXPECT_EQ(edges[0].last_seen_ms, 150'000);
  EXPECT_EQ(edges[0].gateways, (std::vector<std::string>{"gw-a1", "gw-b1"}));
  EXPECT_EQ(edges[0].cities, (std::vector<std::string>{"a", "b"}));
  auto channels = stats::observed_channels(minutes);
  ASSERT_EQ(channels.size(), 1u);
  EXPECT_EQ(channels[0].channel, "mobile");
  EXPECT_EQ(channels[0].requests, 4u);
  EXPECT_EQ(channels[0].errors, 2u);
  EXPECT_EQ(channels[0].gateways, (std::vector<std::string>{"gw-b1"}));
}

TEST(ObservedSums, AnswerIsBounded) {
  stats::MinuteRollups minutes;
  Json edges = Json::object();
  for (size_t i = 0; i < stats::kMaxObservedAnswer + 3; ++i)
    edges["callee"]["c" + std::to_string(i)] = {{"requests", 1}};
  minutes[{0, "gw"}] = {{"edges", edges}};
  bool truncated = false;
  EXPECT_EQ(stats::observed_edges(minutes, &truncated).size(), stats::kMaxObservedAnswer);
  EXPECT_TRUE(truncated);
}

TEST_F(ApiTest, EdgesAndChannelsFromGatewaySnapshots) {
  ASSERT_EQ(call("POST", "/v1/stats",
                 snapshot("gw-a1", "a", now_, {{"ledger", {{"accounts", {{"requests", 3}}}}}},
                          {{"mobile", {{"requests", 3}}}}))
                .status(),
            200);
  advance(61'000);  // the next minute, another gateway
  ASSERT_EQ(call("POST", "/v1/stats",
                 snapshot("gw-b1", "b", now_,
                          {{"ledger", {{"accounts", {{"requests", 2}, {"errors", 2}}}}},
                           {"accounts", {{"other", {{"requests", 9}}}}}}))
                .status(),
            200);
  api_.tick();  // writes the first minute: the answer reads the store and memory alike

  Json edges = call("GET", "/v1/stats/edges?window=1h", nullptr, "viewer").json();
  ASSERT_EQ(edges["edges"].size(), 2u) << edges.dump();
  const Json& e = edges["edges"][0];  // sorted by caller: accounts, other
  EXPECT_EQ(e["caller"], "accounts");
  EXPECT_EQ(e["callee"], "ledger");
  EXPECT_EQ(e["requests"], 5);
  EXPECT_EQ(e["errors"], 2);
  EXPECT_EQ(e["first_seen_ms"], kStart - kStart % 60'000);
  EXPECT_EQ(e["last_seen_ms"], now_);
  EXPECT_EQ(e["gateways"], Json({"gw-a1", "gw-b1"}));
  EXPECT_EQ(e["cities"], Json({"a", "b"}));
  EXPECT_EQ(edges["edges"][1]["caller"], "other");

  Json only = call("GET", "/v1/stats/edges?callee=accounts", nullptr, "viewer").json();
  ASSERT_EQ(only["edges"].size(), 1u);
  EXPECT_EQ(only["edges"][0]["requests"], 9);

  Json channels = call("GET", "/v1/stats/channels?window=1h", nullptr, "viewer").json();
  ASSERT_EQ(channels["channels"].size(), 1u);
  EXPECT_EQ(channels["channels"][0]["channel"], "mobile");
  EXPECT_EQ(channels["channels"][0]["requests"], 3);

  // The C++ interface the CMDB reads.
  auto direct = api_.observed().edges(now_ - 3'600'000, now_ + 1);
  ASSERT_EQ(direct.size(), 2u);
  EXPECT_EQ(direct[0].requests, 5u);
  // A window that holds no minute with traffic.
  EXPECT_TRUE(api_.observed().edges(now_ - 7'200'000, now_ - 3'600'000).empty());

  // Per-channel series come out of the same section.
  stats::SeriesQuery q;
  q.by = stats::Dimension::kChannel;
  q.from_ms = now_ - 3'600'000;
  q.to_ms = now_ + 1;
  auto series = api_.stats().series(q);
  ASSERT_EQ(series.size(), 1u);
  EXPECT_EQ(stats::summarize(series[0], q.from_ms, q.to_ms).requests, 3u);
}

TEST_F(ApiTest, ObservedQueriesRefuseBadRanges) {
  for (const char* q :
       {"window=abc", "window=0s", "window=169h", "window=1h&from=1", "from=x", "from=10&to=5"}) {
    Pending r = call("GET", std::string("/v1/stats/edges?") + q, nullptr, "viewer");
    EXPECT_EQ(r.status(), 400) << q << " " << r.get().body;
    EXPECT_EQ(call("GET", std::string("/v1/stats/channels?") + q, nullptr, "viewer").status(), 400)
        << q;
  }
  EXPECT_EQ(call("GET", "/v1/stats/edges", nullptr, "").status(), 401);  // a viewer token at least
}

}  // namespace
}  // namespace sluice::control::test
