#include "control/validate.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/loader.h"

namespace sluice::control {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using Json = nlohmann::json;

Resource service(const std::string& name, Json spec = Json::object()) {
  return Resource{"service", name, std::move(spec)};
}
Resource route(const std::string& name, Json spec) {
  return Resource{"route", name, std::move(spec)};
}

Json endpoints(std::initializer_list<const char*> addresses) {
  Json list = Json::array();
  for (const char* a : addresses) list.push_back({{"address", a}});
  return list;
}

std::vector<Resource> valid_set() {
  return {
      service("accounts", {{"endpoints", endpoints({"127.0.0.1:9101"})},
                           {"retry", {{"attempts", 2}}},
                           {"timeouts", {{"connect", "1s"}, {"request", "5s"}}}}),
      service("payments"),  // endpoints from the registry
      route("accounts-api",
            {{"match", {{"path_prefix", "/api/accounts"}}}, {"service", "accounts"}}),
      route("payments-api",
            {{"match", {{"path_prefix", "/api/payments"}}}, {"service", "payments"}}),
      Resource{"rate_limit",
               "per-app",
               {{"key", {"header:x-app-id"}},
                {"limit", {{"requests", 100}, {"per", "1s"}}},
                {"scope", "cluster"}}},
      Resource{"units",
               "units",
               {{"key", "header:x-customer-id"},
                {"shards", 100},
                {"owners", {{"a", "0-49"}, {"b", "50-99"}}}}},
  };
}

TEST(ValidateResources, AcceptsAValidSetIncludingRegistryServices) {
  EXPECT_THAT(validate_resources(valid_set()), IsEmpty());
}

TEST(ValidateResources, AcceptsTheEmptySet) {
  EXPECT_THAT(validate_resources({}), IsEmpty());
}

TEST(ValidateResources, MapsKeyPathsBackToResources) {
  auto set = valid_set();
  set[0].spec["retry"]["attempts"] = 11;
  EXPECT_THAT(validate_resources(set),
              ElementsAre("service/accounts: spec.retry.attempts: must be 0..10, got 11"));
}

TEST(ValidateResources, ListsEveryErrorAtOnce) {
  auto set = valid_set();
  set[0].spec["retires"] = Json::object();          // typo
  set[1].spec["timeouts"] = {{"connect", "soon"}};  // bad duration
  set[3].spec["service"] = "paymentz";              // unknown service
  set[5].spec["shards"] = 0;                        // units bound
  std::vector<std::string> errors = validate_resources(set);
  EXPECT_THAT(errors,
              UnorderedElementsAre(
                  "service/accounts: spec.retires: unknown key 'retires' (did you mean 'retry'?)",
                  HasSubstr("service/payments: spec.timeouts.connect: expected a duration"),
                  "route/payments-api: spec.service: no service named 'paymentz' (did you mean "
                  "'payments'?)",
                  HasSubstr("units/units: spec.shards: must be 1..100000")));
}

TEST(ValidateResources, CrossResourceRules) {
  // A route naming a service that does not exist (deleted, or never applied).
  std::vector<Resource> set = {
      route("orphan", {{"match", {{"path_prefix", "/x"}}}, {"service", "gone"}})};
  EXPECT_THAT(validate_resources(set),
              ElementsAre("route/orphan: spec.service: no service named 'gone'"));
}

TEST(ValidateResources, ResourceLevelProblems) {
  std::vector<Resource> set = {
      Resource{"service", "bad name", Json::object()},
      Resource{"units", "other", Json::object()},
      Resource{"service", "x", Json::array()},
      Resource{"service", "y", {{"name", "z"}}},
      Resource{"route", "r", {{"service", "y"}, {"order", "first"}}},
      Resource{"widget", "w", Json::object()},
  };
  std::vector<std::string> errors = validate_resources(set);
  std::vector<testing::Matcher<std::string>> expected = {
      HasSubstr("service/bad name: name: must be 1..128 characters"),
      testing::Eq("units/other: name: the units resource is always named 'units'"),
      testing::Eq("service/x: spec: expected an object, got a list"),
      testing::Eq("service/y: spec.name: 'z' differs from the resource name 'y' (leave it out)"),
      HasSubstr("route/r: spec.order: must be an integer"),
      HasSubstr("widget/w: kind: unknown kind 'widget'"),
  };
  EXPECT_THAT(errors, testing::IsSupersetOf(expected));
  // The bad name is reported once, not again by the gateway's loader.
  EXPECT_EQ(std::count_if(errors.begin(), errors.end(),
                          [](const std::string& e) {
                            return e.find("bad name") == 0 || e.find("service/bad name") == 0;
                          }),
            1);
}

TEST(ValidateResources, SpecNameEqualToTheResourceNameIsAllowed) {
  std::vector<Resource> set = {
      service("a", {{"name", "a"}, {"endpoints", endpoints({"10.0.0.1:80"})}})};
  EXPECT_THAT(validate_resources(set), IsEmpty());
}

TEST(ValidateResources, ExplicitEmptyEndpointsMeanTheRegistry) {
  std::vector<Resource> set = {service("a", {{"endpoints", Json::array()}})};
  EXPECT_THAT(validate_resources(set), IsEmpty());
  EXPECT_TRUE(uses_registry(set[0].spec));
  EXPECT_FALSE(uses_registry(Json{{"endpoints", endpoints({"10.0.0.1:80"})}}));
}

Instance instance(const std::string& service, const std::string& id, const std::string& address,
                  int64_t heartbeat_ms = 0) {
  Instance i;
  i.service = service;
  i.id = id;
  i.address = address;
  i.city = "a";
  i.zone = "a1";
  i.weight = 2;
  i.heartbeat_ms = heartbeat_ms;
  return i;
}

TEST(GatewaySections, FillsRegistryServicesAndKeepsStaticOnes) {
  std::vector<Instance> live = {instance("payments", "p2", "127.0.0.1:9202"),
                                instance("payments", "p1", "127.0.0.1:9201"),
                                instance("accounts", "ignored", "127.0.0.1:9999")};
  auto j = gateway_sections(valid_set(), live);
  ASSERT_EQ(j["services"].size(), 2u);
  EXPECT_EQ(j["services"][0]["name"], "accounts");
  EXPECT_EQ(j["services"][0]["endpoints"], endpoints({"127.0.0.1:9101"}));
  EXPECT_EQ(j["services"][1]["name"], "payments");
  EXPECT_EQ(j["services"][1]["endpoints"].dump(),
            R"([{"address":"127.0.0.1:9201","city":"a","zone":"a1","weight":2},)"
            R"({"address":"127.0.0.1:9202","city":"a","zone":"a1","weight":2}])");
  EXPECT_TRUE(j.contains("units"));
  EXPECT_EQ(j["rate_limits"][0]["name"], "per-app");
}

TEST(GatewaySections, NoEndpointsWhileNoInstanceIsAlive) {
  auto j = gateway_sections(valid_set(), {});
  EXPECT_TRUE(j["services"][1]["endpoints"].is_array());
  EXPECT_TRUE(j["services"][1]["endpoints"].empty());
}

TEST(GatewaySections, DuplicateAddressesKeepTheFreshestInstance) {
  std::vector<Instance> live = {instance("payments", "old", "127.0.0.1:9201", 1000),
                                instance("payments", "new", "127.0.0.1:9201", 2000)};
  auto j = gateway_sections(valid_set(), live);
  ASSERT_EQ(j["services"][1]["endpoints"].size(), 1u);
}

TEST(GatewaySections, RoutesFollowSpecOrderThenName) {
  std::vector<Resource> set = {
      service("s", {{"endpoints", endpoints({"10.0.0.1:80"})}}),
      route("b-catch-all", {{"match", {{"path_prefix", "/"}}}, {"service", "s"}, {"order", 100}}),
      route("c", {{"match", {{"path", "/c"}}}, {"service", "s"}}),
      route("a", {{"match", {{"path", "/a"}}}, {"service", "s"}}),
      route("first", {{"match", {{"path", "/f"}}}, {"service", "s"}, {"order", -5}}),
  };
  ASSERT_THAT(validate_resources(set), IsEmpty());
  auto j = gateway_sections(set, {});
  std::vector<std::string> names;
  for (const auto& r : j["routes"]) {
    names.push_back(r["name"]);
    EXPECT_FALSE(r.contains("order"));
  }
  EXPECT_THAT(names, ElementsAre("first", "a", "c", "b-catch-all"));
}

TEST(GatewaySections, LoadsInTheGatewayWithItsLocalSections) {
  std::vector<Instance> live = {instance("payments", "p1", "127.0.0.1:9201")};
  nlohmann::ordered_json doc = {
      {"node", {{"id", "gw-a1"}, {"city", "a"}}},
      {"listeners",
       nlohmann::ordered_json::array({{{"name", "public"}, {"address", "127.0.0.1:8080"}}})},
      {"redis", {{"address", "127.0.0.1:6379"}}},
  };
  auto sections = gateway_sections(valid_set(), live);
  for (auto it = sections.begin(); it != sections.end(); ++it) doc[it.key()] = it.value();
  config::LoadResult loaded = config::load_string(doc.dump(), "pushed");
  ASSERT_TRUE(loaded.ok()) << loaded.errors[0].to_string();
  EXPECT_EQ(loaded.config->services[1].endpoints[0].address.port, 9201);
  EXPECT_EQ(loaded.config->services[1].endpoints[0].weight, 2u);
}

TEST(IsValidName, FollowsTheGatewayRule) {
  EXPECT_TRUE(is_valid_name("accounts-v2.eu_1"));
  EXPECT_FALSE(is_valid_name(""));
  EXPECT_FALSE(is_valid_name("a/b"));
  EXPECT_FALSE(is_valid_name(std::string(129, 'a')));
}

}  // namespace
}  // namespace sluice::control
