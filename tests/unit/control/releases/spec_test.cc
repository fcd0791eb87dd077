// A release's spec: its checks (every problem named at once) and the route at each percent.
#include "control/releases/spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sluice::control::releases {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

ReleaseSpec make_spec() {
  return parse_release({{"route", "pay"}, {"stable", "pay-v1"}, {"canary", "pay-v2"}});
}

TEST(ReleaseSpecCheck, DefaultsAndEveryProblemAtOnce) {
  ReleaseSpec d = make_spec();
  EXPECT_EQ(d.steps, (std::vector<uint32_t>{1, 5, 25, 50, 100}));
  EXPECT_EQ(d.analysis.interval_ms, 60'000);
  const std::vector<Resource> all = {{"route", "pay", Json::object()},
                                     {"service", "pay-v1", Json::object()}};
  auto errors = check_release({{"route", "pay"},
                               {"stable", "pay-v1"},
                               {"canary", 7},
                               {"steps", {0, 200}},
                               {"split", "x"},
                               {"colour", "red"}},
                              "release/r: spec", all);
  ASSERT_EQ(errors.size(), 4u) << Json(errors).dump();
  EXPECT_THAT(errors[0], HasSubstr("release/r: spec.colour: unknown key"));
  EXPECT_THAT(errors[1], HasSubstr("spec.canary: expected a service name, got 7"));
  EXPECT_THAT(errors[2], HasSubstr("spec.steps[0]: must be an integer 1..100, got 0"));
  EXPECT_THAT(errors[3], HasSubstr("spec.split: expected an object"));
  EXPECT_THAT(
      check_release({{"route", "pay"}, {"stable", "pay-v1"}, {"canary", "pay-v9"}}, "s", all).at(0),
      HasSubstr("s.canary: no service named 'pay-v9'"));
  EXPECT_THAT(check_release(Json::array(), "s", all).at(0), HasSubstr("expected an object"));
  Json many = Json::array();
  for (int i = 1; i <= 21; ++i) many.push_back(i);
  auto two = check_release(
      {{"route", "pay"}, {"stable", "pay-v1"}, {"canary", "pay-v1"}, {"steps", many}}, "s", all);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_THAT(two[0], HasSubstr("s.canary: must differ"));
  EXPECT_THAT(two[1], HasSubstr("s.steps: expected a list of 1..20 percentages"));
  EXPECT_THROW(parse_release({{"route", "pay"}}), std::invalid_argument);
}

TEST(ReleaseSpecRoute, TheRouteAtEachPercent) {
  ReleaseSpec spec = make_spec();
  spec.split = {{"sticky_header", "x-customer-id"}};
  const Json route = {{"match", {{"path_prefix", "/pay"}}}, {"service", "pay-v1"}};
  Json at10 = route_at(route, spec, 10);
  EXPECT_FALSE(at10.contains("service"));
  EXPECT_EQ(at10["services"], Json::parse(R"([{"name":"pay-v1","weight":90},
                                              {"name":"pay-v2","weight":10,"canary":true}])"));
  EXPECT_EQ(at10["split"]["sticky_header"], "x-customer-id");
  EXPECT_EQ(at10["match"], route["match"]);
  Json at0 = route_at(at10, spec, 0);
  EXPECT_EQ(at0, route);
  Json at100 = route_at(at10, spec, 100);
  EXPECT_EQ(at100["service"], "pay-v2");
  EXPECT_FALSE(at100.contains("services"));
  EXPECT_FALSE(at100.contains("split"));
}

}  // namespace
}  // namespace sluice::control::releases
