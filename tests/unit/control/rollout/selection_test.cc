// Which gateways the stages reached put on the new version: deterministic, cumulative, percent
// rounded up, live gateways only, newcomers left on the base until a stage picks them.
#include "control/rollout/selection.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include <fmt/format.h>

namespace sluice::control::rollout {
namespace {

Selector sel(const std::string& text) {
  std::vector<std::string> errors;
  auto s = parse_selector(text, "t", errors);
  EXPECT_TRUE(s) << ::testing::PrintToString(errors);
  return s.value_or(Selector{});
}
Selector percent(int p) {
  Selector s;
  s.kind = Selector::Kind::kPercent;
  s.percent = p;
  return s;
}
Selector city(const std::string& c) {
  Selector s;
  s.kind = Selector::Kind::kCity;
  s.city = c;
  return s;
}
Selector all() {
  return Selector{};
}

// Two cities, two zones each, `per_zone` gateways per zone.
std::vector<Candidate> fleet(int per_zone) {
  std::vector<Candidate> out;
  for (std::string c : {"a", "b"}) {
    for (int z = 1; z <= 2; ++z) {
      for (int i = 0; i < per_zone; ++i) {
        std::string zone = fmt::format("{}{}", c, z);
        out.push_back({fmt::format("gw-{}-{}", zone, i), c, zone, true});
      }
    }
  }
  return out;
}

size_t count_city(const Selection& s, const std::vector<Candidate>& known, const std::string& c) {
  size_t n = 0;
  for (const Candidate& g : known) n += (g.city == c && s.ids.count(g.id)) ? 1 : 0;
  return n;
}

TEST(RolloutSelection, SameInputsSameSetWhateverTheOrderGiven) {
  std::vector<Candidate> known = fleet(5);
  std::vector<Stage> stages = {{sel("city=a,count=1")}, {percent(50)}};
  Selection first = select(stages, 2, known, "chg-42");
  std::mt19937 rng(7);
  for (int i = 0; i < 20; ++i) {
    std::shuffle(known.begin(), known.end(), rng);
    EXPECT_EQ(select(stages, 2, known, "chg-42").ids, first.ids);
  }
  // The order is the change's own: another change starts elsewhere (with 20 gateways the
  // chance that two changes pick the same first gateway of city a is 1 in 10).
  std::set<std::string> firsts;
  for (int c = 0; c < 8; ++c)
    firsts.insert(*select(stages, 1, known, fmt::format("chg-{}", c)).ids.begin());
  EXPECT_GT(firsts.size(), 1u);
  // Pinned: FNV-1a 64 of "c" NUL "g" never changes between builds or processes.
  EXPECT_EQ(order_key("c", "g"), 0xf72608190df731a3ULL) << std::hex << order_key("c", "g");
}

TEST(RolloutSelection, CumulativeStages) {
  std::vector<Candidate> known = fleet(5);  // 20 gateways, 10 per city
  std::vector<Stage> stages = {
      {sel("city=a,count=1")}, {percent(25)}, {city("b")}, {percent(90)}, {all()}};
  Selection s0 = select(stages, 0, known, "chg");
  EXPECT_TRUE(s0.ids.empty());
  EXPECT_FALSE(s0.all);
  Selection s1 = select(stages, 1, known, "chg");
  ASSERT_EQ(s1.ids.size(), 1u);
  EXPECT_EQ(count_city(s1, known, "a"), 1u);
  Selection s2 = select(stages, 2, known, "chg");
  EXPECT_EQ(s2.ids.size(), 5u);  // topped up to 25% of 20
  EXPECT_TRUE(std::includes(s2.ids.begin(), s2.ids.end(), s1.ids.begin(), s1.ids.end()));
  Selection s3 = select(stages, 3, known, "chg");
  EXPECT_EQ(count_city(s3, known, "b"), 10u);
  EXPECT_EQ(count_city(s3, known, "a"), count_city(s2, known, "a"));
  EXPECT_TRUE(std::includes(s3.ids.begin(), s3.ids.end(), s2.ids.begin(), s2.ids.end()));
  Selection s4 = select(stages, 4, known, "chg");
  EXPECT_EQ(s4.ids.size(), 18u);
  EXPECT_FALSE(s4.all);
  Selection s5 = select(stages, 5, known, "chg");
  EXPECT_EQ(s5.ids.size(), 20u);
  EXPECT_TRUE(s5.all);
  // Reaching more stages than there are is the whole plan.
  EXPECT_EQ(select(stages, 9, known, "chg").ids, s5.ids);
}

TEST(RolloutSelection, PercentRoundsUpAndIsAtLeastOne) {
  for (auto [n, p, want] : std::vector<std::tuple<int, int, size_t>>{{1, 1, 1},
                                                                     {3, 1, 1},
                                                                     {3, 34, 2},
                                                                     {3, 33, 1},
                                                                     {4, 50, 2},
                                                                     {5, 50, 3},
                                                                     {7, 100, 7},
                                                                     {200, 1, 2},
                                                                     {201, 1, 3},
                                                                     {1000, 10, 100}}) {
    std::vector<Candidate> known;
    for (int i = 0; i < n; ++i) known.push_back({fmt::format("g{}", i), "a", "a1", true});
    EXPECT_EQ(advance({}, percent(p), known, "c").ids.size(), want)
        << n << " gateways " << p << "%";
  }
  EXPECT_TRUE(advance({}, percent(50), {}, "c").ids.empty());  // nobody known: nobody
}

TEST(RolloutSelection, CountTopsUpAmongTheMatching) {
  std::vector<Candidate> known = fleet(3);
  Selection s = advance({}, sel("zone=b2,count=2"), known, "c");
  ASSERT_EQ(s.ids.size(), 2u);
  for (const std::string& id : s.ids) EXPECT_EQ(id.substr(0, 6), "gw-b2-");
  // Already two of zone b2: count=2 adds none; count=3 adds the last one.
  EXPECT_EQ(advance(s, sel("zone=b2,count=2"), known, "c").ids, s.ids);
  EXPECT_EQ(advance(s, sel("zone=b2,count=3"), known, "c").ids.size(), 3u);
  // More than there are: all of them, no error.
  EXPECT_EQ(advance({}, sel("city=a,count=100"), known, "c").ids.size(), 6u);
  // Without count: every match; globs on ids.
  EXPECT_EQ(advance({}, sel("id=gw-?1-*"), known, "c").ids.size(), 6u);
  EXPECT_EQ(advance({}, sel("city=c"), known, "c").ids.size(), 0u);
}

TEST(RolloutSelection, OnlyLiveGatewaysArePickedOrCounted) {
  std::vector<Candidate> known = {{"g1", "a", "a1", true},
                                  {"g2", "a", "a1", false},
                                  {"g3", "a", "a1", false},
                                  {"g4", "a", "a1", true}};
  Selection s = advance({}, percent(50), known, "c");
  EXPECT_EQ(s.ids.size(), 1u);  // half of the 2 live
  EXPECT_EQ(s.ids.count("g2") + s.ids.count("g3"), 0u);
  Selection c = advance({}, city("a"), known, "c");
  EXPECT_EQ(c.ids, (std::set<std::string>{"g1", "g4"}));
  // One selected earlier stays selected when it goes stale, and no longer counts.
  known[0].live = false;
  Selection later = advance(c, percent(100), known, "c");
  EXPECT_EQ(later.ids, (std::set<std::string>{"g1", "g4"}));
}

TEST(RolloutSelection, NewGatewaysMidRolloutWaitForAStage) {
  std::vector<Candidate> known = fleet(2);  // 8
  Selection s = advance({}, percent(50), known, "chg");
  ASSERT_EQ(s.ids.size(), 4u);
  // Four newcomers in city a: the selection the driver holds does not change by itself...
  for (int i = 0; i < 4; ++i) known.push_back({fmt::format("new-{}", i), "a", "a1", true});
  // ...and the next stage picks from everyone known then, keeping what it had.
  Selection next = advance(s, city("a"), known, "chg");
  EXPECT_TRUE(std::includes(next.ids.begin(), next.ids.end(), s.ids.begin(), s.ids.end()));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(next.ids.count(fmt::format("new-{}", i)), 1u);
  EXPECT_EQ(count_city(next, known, "a"), 8u);
}

}  // namespace
}  // namespace sluice::control::rollout
