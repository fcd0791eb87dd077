#include "control/cmdb/impact.h"

#include <gtest/gtest.h>

#include "unit/control/cmdb/cmdb_fixture.h"

namespace sluice::control::cmdb {
namespace {

using testing::CmdbFixture;
using testing::kT0;
using V = std::vector<std::string>;

class CmdbImpact : public CmdbFixture, public ::testing::Test {
 protected:
  void SetUp() override {
    declare_model();
    declare_edges();
    observe(kT0);
  }
  Impact of(std::string_view type, std::string_view key, std::int64_t now = kT0) {
    auto c = g.find(type, key);
    EXPECT_TRUE(c) << type << "/" << key;
    return impact(g, Policy(g.schema(), options), *c, now);
  }
};

TEST_F(CmdbImpact, HostListsItsInstancesServicesRoutesChannelsAndBusinessSystems) {
  Impact i = of("host", "h1");
  EXPECT_EQ(i.subject, "host/h1");
  EXPECT_EQ(i.hosts, (V{"h1"}));
  EXPECT_EQ(i.instances, (V{"a1", "l1"}));
  EXPECT_EQ(i.services, (V{"accounts", "ledger"}));
  EXPECT_EQ(i.routes, (V{"r-accounts", "r-ledger"}));
  EXPECT_EQ(i.channels, (V{"mobile"}));
  EXPECT_EQ(i.applications, (V{"pay-app"}));
  EXPECT_EQ(i.business_systems, (V{"payments"}));
  EXPECT_TRUE(i.gateways.empty());
  // accounts keeps b1 in city b; ledger has no instance left.
  ASSERT_EQ(i.capacity.size(), 2u);
  EXPECT_EQ(i.capacity[0].service, "accounts");
  EXPECT_EQ(i.capacity[0].cities.at("a").total, 1);
  EXPECT_EQ(i.capacity[0].cities.at("a").lost, 1);
  EXPECT_EQ(i.capacity[0].cities.at("b").total, 1);
  EXPECT_EQ(i.capacity[0].cities.at("b").lost, 0);
  EXPECT_EQ(i.capacity[1].service, "ledger");
  EXPECT_EQ(i.capacity[1].cities.size(), 1u);
  EXPECT_EQ(i.capacity[1].cities.at("a").lost, 1);
}

TEST_F(CmdbImpact, DependenciesPointOneWay) {
  // Losing b1 (on h2) touches accounts, not ledger: accounts depends_on ledger, not the reverse.
  Impact i = of("host", "h2");
  EXPECT_EQ(i.instances, (V{"b1"}));
  EXPECT_EQ(i.services, (V{"accounts"}));
  EXPECT_EQ(i.routes, (V{"r-accounts"}));
  EXPECT_EQ(i.channels, (V{"mobile"}));
  EXPECT_EQ(i.business_systems, (V{"payments"}));
  // A service losing ledger takes its callers with it.
  Impact l = of("service", "ledger");
  EXPECT_EQ(l.instances, (V{"l1"}));
  EXPECT_EQ(l.services, (V{"accounts", "ledger"}));
  EXPECT_EQ(l.routes, (V{"r-accounts", "r-ledger"}));
}

TEST_F(CmdbImpact, CityTakesItsZonesHostsAndInstances) {
  Impact i = of("city", "a");
  EXPECT_EQ(i.hosts, (V{"h1"}));
  EXPECT_EQ(i.instances, (V{"a1", "l1"}));
  EXPECT_EQ(i.services, (V{"accounts", "ledger"}));
  Impact b = of("city", "b");
  EXPECT_EQ(b.hosts, (V{"h2"}));
  EXPECT_EQ(b.instances, (V{"b1"}));
  ASSERT_EQ(b.capacity.size(), 1u);
  EXPECT_EQ(b.capacity[0].cities.at("a").total - b.capacity[0].cities.at("a").lost, 1);
}

TEST_F(CmdbImpact, DatabaseAndGateway) {
  declare("database", "ledger-db");
  relate("service", "ledger", RelationKind::kDependsOn, "database", "ledger-db");
  Impact d = of("database", "ledger-db");
  EXPECT_EQ(d.databases, (V{"ledger-db"}));
  EXPECT_EQ(d.services, (V{"accounts", "ledger"}));
  EXPECT_EQ(d.business_systems, (V{"payments"}));
  EXPECT_TRUE(d.instances.empty());
  EXPECT_TRUE(d.capacity.empty());

  Impact gw = of("gateway", "gw-a");
  EXPECT_EQ(gw.gateways, (V{"gw-a"}));
  EXPECT_EQ(gw.routes, (V{"r-accounts", "r-ledger"}));
  EXPECT_EQ(gw.channels, (V{"mobile"}));
  EXPECT_TRUE(gw.services.empty());
}

TEST_F(CmdbImpact, ObservedEdgesOutsideTheirWindowAreNotFollowed) {
  options.window_ms = 1'000;
  // x1 ran on h1 once (observed only), long ago.
  relate("instance", "x1", RelationKind::kRunsOn, "host", "h1", Source::kAgent, kT0 - 5'000);
  relate("instance", "x1", RelationKind::kBelongsTo, "service", "ledger", Source::kRegistry,
         kT0 - 5'000);
  Impact i = of("host", "h1");
  EXPECT_EQ(i.instances, (V{"a1", "l1"}));
  // x1 is not live: not in ledger's capacity either.
  ASSERT_EQ(i.capacity.size(), 2u);
  EXPECT_EQ(i.capacity[1].cities.at("a").total, 1);
}

TEST_F(CmdbImpact, JsonNamesEverySection) {
  auto j = to_json(of("host", "h1"));
  EXPECT_EQ(j["subject"], "host/h1");
  EXPECT_EQ(j["lost"]["instances"], nlohmann::json({"a1", "l1"}));
  EXPECT_EQ(j["routes"], nlohmann::json({"r-accounts", "r-ledger"}));
  EXPECT_EQ(j["capacity"][0]["cities"]["b"]["remaining"], 1);
  EXPECT_EQ(j["capacity"][0]["cities"]["a"]["remaining"], 0);
}

}  // namespace
}  // namespace sluice::control::cmdb
