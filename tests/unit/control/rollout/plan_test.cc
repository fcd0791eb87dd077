// Rollout plans as a change_policy writes them: every stage form, every error at once with its
// path, and nothing accepted that is ambiguous.
#include "control/rollout/plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sluice::control::rollout {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::json;

Plan parse_ok(const Json& j) {
  std::vector<std::string> errors;
  auto plan = parse_plan(j, "rollout", errors);
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
  return plan.value_or(Plan{});
}

TEST(RolloutPlan, ParsesEveryStageForm) {
  Plan p = parse_ok({{"stages",
                      {{{"gateways", "city=a,count=1"}},
                       {{"percent", 50}, {"pause", "5m"}},
                       {{"city", "b"}, {"analysis", Json::object()}},
                       {{"all", true}}}},
                     {"analysis", Json::object()}});
  ASSERT_EQ(p.stages.size(), 4u);
  EXPECT_EQ(p.stages[0].select.kind, Selector::Kind::kGateways);
  EXPECT_EQ(p.stages[0].select.city, "a");
  EXPECT_EQ(p.stages[0].select.count, 1);
  EXPECT_EQ(p.stages[0].select.describe(), "city=a,count=1");
  EXPECT_EQ(p.stages[1].select.kind, Selector::Kind::kPercent);
  EXPECT_EQ(p.stages[1].select.percent, 50);
  EXPECT_EQ(p.stages[1].pause_ms, 300'000);
  EXPECT_EQ(p.stages[2].select.kind, Selector::Kind::kCity);
  EXPECT_EQ(p.stages[2].select.city, "b");
  EXPECT_TRUE(p.stages[2].analysis.has_value());
  EXPECT_FALSE(p.stages[1].analysis.has_value());
  EXPECT_EQ(p.stages[3].select.kind, Selector::Kind::kAll);
  EXPECT_TRUE(p.analysis.has_value());
}

TEST(RolloutPlan, WithoutStagesEveryGatewayAtOnce) {
  Plan p = parse_ok(Json::object());
  ASSERT_EQ(p.stages.size(), 1u);
  EXPECT_EQ(p.stages[0].select.kind, Selector::Kind::kAll);
}

TEST(RolloutPlan, SelectorKeys) {
  std::vector<std::string> errors;
  auto s = parse_selector(" zone=a1 , id=gw-a*, city=a ", "x", errors);
  ASSERT_TRUE(s) << ::testing::PrintToString(errors);
  EXPECT_EQ(s->zone, "a1");
  EXPECT_EQ(s->id_glob, "gw-a*");
  EXPECT_EQ(s->city, "a");
  EXPECT_EQ(s->count, 0);
  EXPECT_TRUE(s->matches("gw-a7", "a", "a1"));
  EXPECT_FALSE(s->matches("gw-a7", "a", "a2"));
  EXPECT_FALSE(s->matches("gw-b7", "a", "a1"));
  EXPECT_FALSE(s->matches("gw-a7", "b", "a1"));
}

TEST(RolloutPlan, EveryErrorAtOnceWithItsPath) {
  std::vector<std::string> e = check_plan({{"stages",
                                            {{{"percent", 0}},
                                             {{"percent", 50}, {"city", "b"}},
                                             {{"pause", "5m"}},
                                             {{"all", false}},
                                             {{"gateways", "city=a,count=0"}},
                                             {{"gateways", "city=a,city=b"}},
                                             {{"gateways", "region=x"}},
                                             {{"gateways", "city"}},
                                             {{"gateways", "id=gw/1"}},
                                             {{"city", "no way"}},
                                             {{"percent", 101}},
                                             {{"percent", 12.5}},
                                             {{"all", true}, {"pause", "soon"}},
                                             {{"all", true}, {"colour", "red"}},
                                             "all"}},
                                           {"extra", 1}},
                                          "rollout");
  EXPECT_THAT(e, ElementsAre(HasSubstr("rollout.extra: unknown key"),
                             HasSubstr("rollout.stages[0].percent: expected an integer 1..100"),
                             HasSubstr("rollout.stages[1]: has 2 selectors"),
                             HasSubstr("rollout.stages[2]: needs one of"),
                             HasSubstr("rollout.stages[3].all: expected true"),
                             HasSubstr("rollout.stages[4].gateways: count: expected an integer"),
                             HasSubstr("rollout.stages[5].gateways: city given twice"),
                             HasSubstr("rollout.stages[6].gateways: unknown key 'region'"),
                             HasSubstr("rollout.stages[7].gateways: expected key=value"),
                             HasSubstr("rollout.stages[8].gateways: id: expected a glob"),
                             HasSubstr("rollout.stages[9].city: expected a city name"),
                             HasSubstr("rollout.stages[10].percent: expected an integer 1..100"),
                             HasSubstr("rollout.stages[11].percent: expected an integer 1..100"),
                             HasSubstr("rollout.stages[12].pause: expected a duration"),
                             HasSubstr("rollout.stages[13].colour: unknown key"),
                             HasSubstr("rollout.stages[14]: expected an object")));
}

TEST(RolloutPlan, ShapeErrors) {
  EXPECT_THAT(check_plan(Json::array(), "p"), ElementsAre(HasSubstr("p: expected an object")));
  EXPECT_THAT(check_plan({{"stages", "all"}}, "p"),
              ElementsAre(HasSubstr("p.stages: expected a list")));
  EXPECT_THAT(check_plan({{"stages", Json::array()}}, "p"),
              ElementsAre(HasSubstr("p.stages: expected 1..32 stages, got 0")));
  Json many = Json::array();
  for (int i = 0; i < 33; ++i) many.push_back({{"percent", 1}});
  EXPECT_THAT(check_plan({{"stages", many}}, "p"), ElementsAre(HasSubstr("got 33")));
  // The analysis sections go to analysis::check_settings, with their paths.
  EXPECT_THAT(check_plan({{"analysis", 3}}, "p"), ElementsAre(HasSubstr("p.analysis")));
  EXPECT_THAT(check_plan({{"stages", {{{"all", true}, {"analysis", 3}}}}}, "p"),
              ElementsAre(HasSubstr("p.stages[0].analysis")));
  // Hostile sizes are refused before they are split.
  std::vector<std::string> errors;
  EXPECT_FALSE(parse_selector(std::string(kMaxSelectorLength + 1, 'a'), "s", errors));
  EXPECT_THAT(errors, ElementsAre(HasSubstr("longer than 512")));
  errors.clear();
  EXPECT_FALSE(parse_selector("count=99999999999999999999", "s", errors));
  EXPECT_FALSE(parse_selector("count=100001", "s", errors));
  EXPECT_FALSE(parse_selector("count=-1", "s", errors));
  EXPECT_FALSE(parse_selector("", "s", errors));
  EXPECT_FALSE(parse_selector("city=a,", "s", errors));
  EXPECT_TRUE(parse_selector("count=100000", "s", errors));
}

TEST(RolloutPlan, GlobMatch) {
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_TRUE(glob_match("gw-*", "gw-a1"));
  EXPECT_TRUE(glob_match("gw-?1", "gw-a1"));
  EXPECT_FALSE(glob_match("gw-?1", "gw-aa1"));
  EXPECT_TRUE(glob_match("*a*b*", "xxaxxbxx"));
  EXPECT_FALSE(glob_match("*a*b", "xxaxxbxxc"));
  EXPECT_TRUE(glob_match("gw-a1", "gw-a1"));
  EXPECT_FALSE(glob_match("gw-a1", "gw-a10"));
  // No exponential backtracking on a hostile pattern.
  EXPECT_FALSE(glob_match("*a*a*a*a*a*a*a*a*a*a*b", std::string(5000, 'a')));
}

}  // namespace
}  // namespace sluice::control::rollout
