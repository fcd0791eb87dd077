// The reconciler's routes and loop through the real Api (auth, router, CMDB service and store),
// with the registry as the observed side and a manual clock.
#include "control/cmdb/reconcile_service.h"

#include "unit/control/api_fixture.h"

namespace sluice::control::test {
namespace {

constexpr const char* kModel = R"(
cis:
  - {type: business_system, name: payments, owner: team-pay}
  - {type: application, name: pay-app, relations: {belongs_to: business_system/payments}}
  - {type: service, name: accounts, relations: {belongs_to: application/pay-app}}
  - type: instance
    id: a1
    service: accounts
    address: "127.0.0.1:9001"
    city: a
    zone: a1
    relations: {belongs_to: service/accounts}
  - type: instance
    id: b1
    service: accounts
    address: "127.0.0.1:9002"
    city: b
    zone: b1
    relations: {belongs_to: service/accounts}
)";

class CmdbReconcileApi : public ApiTest {
 protected:
  void SetUp() override {
    Pending imp = call("POST", "/v1/cmdb/import",
                       {{"format", "yaml"}, {"data", kModel}, {"reason", "the declared model"}});
    ASSERT_EQ(imp.status(), 200) << imp.body();
    reg("a1", "127.0.0.1:9001", "a", "a1");
    reg("b1", "127.0.0.1:9002", "b", "b1");
    api_.tick();
  }
  void reg(const std::string& id, const std::string& address, const std::string& city,
           const std::string& zone) {
    Json i = {{"service", "accounts"}, {"id", id},     {"address", address},
              {"city", city},          {"zone", zone}, {"ttl_ms", 3'600'000}};
    ASSERT_EQ(call("POST", "/v1/instances", i).status(), 200);
  }
  Json findings(const std::string& query = "") {
    Pending p = call("GET", "/v1/cmdb/findings" + query, nullptr, "viewer");
    EXPECT_EQ(p.status(), 200) << p.body();
    return p.json();
  }
  Json accuracy() { return call("GET", "/v1/cmdb/accuracy", nullptr, "viewer").json(); }
  Pending fix(const std::string& id, const std::string& reason = "the registry is right") {
    return call("POST", "/v1/cmdb/findings/" + id + "/fix", {{"reason", reason}});
  }
};

TEST_F(CmdbReconcileApi, DeclaredModelMatchingTheRegistryIsAllCorrect) {
  Json f = findings();
  EXPECT_TRUE(f["findings"].empty()) << f.dump(1);
  EXPECT_GE(f["passes"].get<int>(), 1);
  Json a = accuracy();
  EXPECT_DOUBLE_EQ(a["score"].get<double>(), 1.0) << a.dump(1);
  // Two instances x (service, address, city, zone, belongs_to service).
  EXPECT_EQ(a["overall"]["correctness"]["num"], 10);
  EXPECT_EQ(a["overall"]["correctness"]["den"], 10);
  EXPECT_EQ(a["types"]["instance"]["freshness"]["den"], 2);
}

TEST_F(CmdbReconcileApi, UndeclaredInstanceIsFoundOnTheNextTickAndFixBringsItBack) {
  reg("a2", "127.0.0.1:9003", "a", "a1");
  api_.tick();  // the registry's revision moved: a pass at once
  Json f = findings();
  ASSERT_EQ(f["findings"].size(), 1u) << f.dump(1);
  EXPECT_EQ(f["findings"][0]["kind"], "missing");
  EXPECT_EQ(f["findings"][0]["subject"], "instance/a2");
  EXPECT_EQ(f["counts"]["missing"], 1);
  // Required slots: instances 2 x (id, belongs_to service), service, application and business
  // system names: 7, all declared; a2 adds two that are not: 7 of 9.
  Json a = accuracy();
  EXPECT_EQ(a["overall"]["completeness"]["num"], 7) << a.dump(1);
  EXPECT_EQ(a["overall"]["completeness"]["den"], 9);
  EXPECT_DOUBLE_EQ(a["score"].get<double>(), (4.0 + 7.0 / 9.0) / 5.0);

  const std::string id = f["findings"][0]["id"];
  Pending p = fix(id);
  ASSERT_EQ(p.status(), 200) << p.body();
  EXPECT_EQ(p.json()["fixed"]["subject"], "instance/a2");
  EXPECT_TRUE(findings()["findings"].empty()) << findings().dump(1);
  EXPECT_DOUBLE_EQ(accuracy()["score"].get<double>(), 1.0);
  // Fixed once: the id is no longer open.
  EXPECT_EQ(fix(id).status(), 404);
}

TEST_F(CmdbReconcileApi, MovedZoneIsAMismatchUntilFixed) {
  reg("b1", "127.0.0.1:9002", "b", "b2");
  api_.tick();
  Json f = findings("?kind=mismatch");
  ASSERT_EQ(f["findings"].size(), 1u) << f.dump(1);
  EXPECT_EQ(f["findings"][0]["attribute"], "zone");
  EXPECT_EQ(f["findings"][0]["declared"], "b1");
  EXPECT_EQ(f["findings"][0]["observed"], "b2");
  EXPECT_EQ(accuracy()["overall"]["correctness"]["num"], 9);
  ASSERT_EQ(fix(f["findings"][0]["id"]).status(), 200);
  EXPECT_EQ(accuracy()["overall"]["correctness"]["num"], 10);
  // History records the fix as a declared change with its reason (the CMDB's history route).
  Pending h = call("GET", "/v1/cmdb/history/instance/b1", nullptr, "viewer");
  ASSERT_EQ(h.status(), 200) << h.body();
  EXPECT_THAT(h.body(), HasSubstr("the registry is right"));
}

TEST_F(CmdbReconcileApi, KilledInstanceIsStaleAfterTheWindow) {
  ASSERT_EQ(call("DELETE", "/v1/instances/accounts/b1").status(), 200);
  api_.tick();
  EXPECT_TRUE(findings()["findings"].empty());  // still within the 30 s window
  advance(30'001);
  api_.tick();
  Json f = findings();
  ASSERT_EQ(f["findings"].size(), 1u) << f.dump(1);
  EXPECT_EQ(f["findings"][0]["kind"], "stale");
  EXPECT_EQ(f["findings"][0]["subject"], "instance/b1");
  EXPECT_EQ(accuracy()["types"]["instance"]["freshness"]["num"], 1);
}

TEST_F(CmdbReconcileApi, RefusalsChangeNothing) {
  reg("a2", "127.0.0.1:9003", "a", "a1");
  api_.tick();
  const std::string id = findings()["findings"][0]["id"];
  EXPECT_EQ(fix(id, "").status(), 400);
  EXPECT_EQ(fix(id, "   ").status(), 400);
  EXPECT_EQ(fix(id, std::string(2000, 'x')).status(), 400);
  EXPECT_EQ(fix(id, "a\x01b").status(), 400);
  EXPECT_EQ(call("POST", "/v1/cmdb/findings/" + id + "/fix", nullptr).status(), 400);
  EXPECT_EQ(send("POST", "/v1/cmdb/findings/" + id + "/fix", "{\"reason\":").status(), 400);
  EXPECT_EQ(
      call("POST", "/v1/cmdb/findings/" + id + "/fix", {{"reason", "x"}, {"extra", 1}}).status(),
      400);
  EXPECT_EQ(fix("0123456789abcdef").status(), 404);
  EXPECT_EQ(call("POST", "/v1/cmdb/findings/" + id + "/fix", {{"reason", "r"}}, "viewer").status(),
            403);
  EXPECT_EQ(call("GET", "/v1/cmdb/findings?kind=bogus", nullptr, "viewer").status(), 400);
  EXPECT_EQ(call("GET", "/v1/cmdb/findings?ignored=maybe", nullptr, "viewer").status(), 400);
  EXPECT_EQ(findings()["findings"].size(), 1u);  // all of that changed nothing

  // An unowned service cannot be fixed from observed data.
  Pending imp = call("POST", "/v1/cmdb/import",
                     {{"format", "yaml"}, {"data", "cis:\n  - {type: service, name: orphan}\n"}});
  ASSERT_EQ(imp.status(), 200) << imp.body();
  api_.tick();
  Json u = findings("?kind=unowned");
  ASSERT_EQ(u["findings"].size(), 2u) << u.dump(1);
  Pending p = fix(u["findings"][0]["id"]);
  EXPECT_EQ(p.status(), 409) << p.body();
}

TEST_F(CmdbReconcileApi, IgnoreHidesAFindingAndCountsIt) {
  reg("a2", "127.0.0.1:9003", "a", "a1");
  api_.tick();
  const std::string id = findings()["findings"][0]["id"];
  Pending p = call("POST", "/v1/cmdb/findings/" + id + "/ignore", {{"reason", "a test box"}});
  ASSERT_EQ(p.status(), 200) << p.body();
  EXPECT_EQ(p.json()["ignored"]["by"], "deployer");
  Json f = findings();
  EXPECT_TRUE(f["findings"].empty()) << f.dump(1);
  EXPECT_EQ(f["ignored"], 1);
  EXPECT_EQ(f["counts"]["missing"], 0);
  Json all = findings("?ignored=true");
  ASSERT_EQ(all["findings"].size(), 1u);
  EXPECT_EQ(all["findings"][0]["ignored"]["reason"], "a test box");
  EXPECT_EQ(call("POST", "/v1/cmdb/findings/0123456789abcdef/ignore").status(), 404);
  // Still ignored after another pass.
  advance(10'000);
  api_.tick();
  EXPECT_TRUE(findings()["findings"].empty());
}

TEST_F(CmdbReconcileApi, ImpactOfAServiceAndRefusals) {
  Pending p = call("GET", "/v1/cmdb/impact/service/accounts", nullptr, "viewer");
  ASSERT_EQ(p.status(), 200) << p.body();
  Json j = p.json();
  EXPECT_EQ(j["lost"]["instances"], Json({"a1", "b1"}));
  EXPECT_EQ(j["business_systems"], Json({"payments"}));
  EXPECT_EQ(j["capacity"][0]["cities"]["a"]["lost"], 1);
  EXPECT_EQ(call("GET", "/v1/cmdb/impact/service/nope", nullptr, "viewer").status(), 404);
  EXPECT_EQ(call("GET", "/v1/cmdb/impact/widget/x", nullptr, "viewer").status(), 404);
}

TEST_F(CmdbReconcileApi, HostFactsAndGatewayCallEdgesBecomeObservedFacts) {
  Json i = {{"service", "accounts"},
            {"id", "a1"},
            {"address", "127.0.0.1:9001"},
            {"city", "a"},
            {"zone", "a1"},
            {"ttl_ms", 3'600'000},
            {"facts",
             {{"hostname", "h1"},
              {"addresses", {"10.0.0.1", "10.0.0.2"}},
              {"cpu_count", 4},
              {"memory_bytes", 1 << 30},
              {"version", "1.2.3"}}}};
  ASSERT_EQ(call("POST", "/v1/instances", i).status(), 200);
  // New facts of a registered instance do not move the registry's revision (gateways do not see
  // them): the next interval's pass records them.
  advance(10'000);
  api_.tick();
  Json f = findings();
  ASSERT_EQ(f["findings"].size(), 1u) << f.dump(1);
  EXPECT_EQ(f["findings"][0]["kind"], "missing");
  EXPECT_EQ(f["findings"][0]["subject"], "host/h1");
  Pending h = call("GET", "/v1/cmdb/cis/host/h1", nullptr, "viewer");
  ASSERT_EQ(h.status(), 200) << h.body();
  EXPECT_THAT(h.body(), HasSubstr("10.0.0.1,10.0.0.2"));
  EXPECT_THAT(h.body(), HasSubstr("1073741824"));
  Json imp = call("GET", "/v1/cmdb/impact/host/h1", nullptr, "viewer").json();
  EXPECT_EQ(imp["lost"]["instances"], Json({"a1"}));
  EXPECT_EQ(imp["services"], Json({"accounts"}));
  EXPECT_EQ(imp["business_systems"], Json({"payments"}));

  // A gateway reports ledger calling accounts (edges: callee -> caller -> counts).
  Json snap = {{"gateway", "gw-a1"},
               {"city", "a"},
               {"at_ms", now_},
               {"edges", {{"accounts", {{"ledger", {{"requests", 3}}}}}}},
               {"channels", Json::object()}};
  ASSERT_EQ(call("POST", "/v1/stats", snap).status(), 200);
  advance(10'000);  // the next interval
  api_.tick();
  Json d = findings("?kind=undeclared_dependency");
  ASSERT_EQ(d["findings"].size(), 1u) << findings().dump(1);
  EXPECT_EQ(d["findings"][0]["subject"], "service/ledger");
  EXPECT_EQ(d["findings"][0]["other"], "service/accounts");
  EXPECT_EQ(d["findings"][0]["observed_source"], "traffic");
  Json a = accuracy();
  EXPECT_EQ(a["overall"]["recall"]["num"], 0) << a.dump(1);
  EXPECT_EQ(a["overall"]["recall"]["den"], 1);
  ASSERT_EQ(fix(d["findings"][0]["id"]).status(), 200);
  EXPECT_EQ(accuracy()["overall"]["recall"]["num"], 1);
  EXPECT_EQ(accuracy()["overall"]["precision"]["den"], 1);
}

TEST_F(CmdbReconcileApi, MetricsCarryAccuracyAndFindings) {
  reg("a2", "127.0.0.1:9003", "a", "a1");
  api_.tick();
  Pending m = call("GET", "/metrics", nullptr, "");
  ASSERT_EQ(m.status(), 200);
  EXPECT_THAT(m.body(), HasSubstr("sluice_control_cmdb_findings{kind=\"missing\"} 1"));
  EXPECT_THAT(m.body(), HasSubstr("sluice_control_cmdb_accuracy{type=\"all\",measure=\"score\"}"));
  EXPECT_THAT(
      m.body(),
      HasSubstr("sluice_control_cmdb_accuracy{type=\"instance\",measure=\"completeness\"}"));
  EXPECT_THAT(m.body(), HasSubstr("sluice_control_cmdb_reconciles_total"));
}

}  // namespace
}  // namespace sluice::control::test
