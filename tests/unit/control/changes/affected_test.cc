// What a change affects: routes of a changed service, services of a changed route (a split
// included), routes a rate limit names (all when it names none), cities of the services.
#include "control/changes/affected.h"

#include <gtest/gtest.h>

#include "control/resources/resources_service.h"

namespace sluice::control::changes {
namespace {

using Json = nlohmann::json;

Resource svc(const std::string& name, const std::string& city) {
  return {"service", name, {{"endpoints", {{{"address", "127.0.0.1:1"}, {"city", city}}}}}};
}
Resource rt(const std::string& name, const std::string& service) {
  return {"route", name, {{"match", {{"path_prefix", "/" + name}}}, {"service", service}}};
}

TEST(Affected, ServiceChangeReachesItsRoutesAndCities) {
  std::vector<Resource> before = {svc("pay", "a"), svc("acc", "b"), rt("pay-api", "pay"),
                                  rt("pay-admin", "pay"), rt("acc-api", "acc")};
  std::vector<Resource> after = before;
  after[0] = svc("pay", "b");
  const Json a = affected(before, after, resource_diff(before, after),
                          {Instance{"pay", "i1", "127.0.0.1:2", "c", "c1"}});
  EXPECT_EQ(a["resources"], Json({"service/pay"}));
  EXPECT_EQ(a["routes"], Json({"pay-admin", "pay-api"}));
  EXPECT_EQ(a["services"], Json({"pay"}));
  EXPECT_EQ(a["cities"], Json({"a", "b", "c"}));  // before, after, registered
}

TEST(Affected, RouteChangeReachesItsServicesOnly) {
  std::vector<Resource> before = {svc("pay", "a"), svc("pay2", "b"), rt("pay-api", "pay"),
                                  rt("pay-admin", "pay")};
  std::vector<Resource> after = before;
  after[2].spec["services"] =
      Json::array({{{"name", "pay"}, {"weight", 90}}, {{"name", "pay2"}, {"weight", 10}}});
  const Json a = affected(before, after, resource_diff(before, after), {});
  EXPECT_EQ(a["routes"], Json({"pay-api"}));  // not its sibling pay-admin
  EXPECT_EQ(a["services"], Json({"pay", "pay2"}));
  EXPECT_EQ(a["cities"], Json({"a", "b"}));
}

TEST(Affected, RateLimitsReachTheRoutesTheyName) {
  std::vector<Resource> before = {svc("pay", "a"), rt("r1", "pay"), rt("r2", "pay")};
  std::vector<Resource> after = before;
  after.push_back({"rate_limit", "per-app", {{"match", {{"routes", {"r2"}}}}}});
  EXPECT_EQ(affected(before, after, resource_diff(before, after), {})["routes"], Json({"r2"}));
  after.back().spec = Json::object();  // no match: every route
  EXPECT_EQ(affected(before, after, resource_diff(before, after), {})["routes"],
            Json({"r1", "r2"}));
}

TEST(Affected, PoliciesAndFreezeWindowsAffectNoTraffic) {
  std::vector<Resource> before = {svc("pay", "a"), rt("r1", "pay")};
  std::vector<Resource> after = before;
  after.push_back({"change_policy", "p", Json::object()});
  const Json a = affected(before, after, resource_diff(before, after), {});
  EXPECT_EQ(a["resources"], Json({"change_policy/p"}));
  EXPECT_TRUE(a["routes"].empty());
  EXPECT_TRUE(a["services"].empty());
  EXPECT_TRUE(a["cities"].empty());
}

}  // namespace
}  // namespace sluice::control::changes
