// The slo domain through the router, on an in-memory store with a manual clock: specs refused
// with every error, figures and alerts from snapshots posted to /v1/stats, fired and resolved
// events, Prometheus series, and an SLO applied later seeing the earlier traffic once (minute
// rollups before the snapshots in memory, never both).
#include <set>

#include "unit/control/api_fixture.h"

namespace sluice::control::test {
namespace {

class SloServiceTest : public ApiTest {
 protected:
  void SetUp() override {
    ASSERT_EQ(
        apply({static_service("pay", "127.0.0.1:9001"), route("pay", "/pay", "pay")}).status(),
        200);
  }

  static Json slo(const std::string& name, Json extra = Json::object()) {
    Json spec = {{"target", {{"route", "pay"}}},
                 {"sli", "availability"},
                 {"objective", 99.9},
                 {"alerts", {{"min_requests", 100}}}};
    spec.update(extra);
    return {{"kind", "slo"}, {"name", name}, {"spec", spec}};
  }

  // One minute: a snapshot of `requests` with `errors` on route pay in city a, then a tick.
  void minute_of(int requests, int errors) {
    advance(60'000);
    Json snap = {{"gateway", "gw-a1"},
                 {"city", "a"},
                 {"at_ms", now_},
                 {"routes", {{"pay", {{"requests", requests}, {"errors", errors}}}}}};
    ASSERT_EQ(call("POST", "/v1/stats", snap).status(), 200);
    api_.tick();
  }

  std::vector<Json> events_of(const std::string& kind) {
    std::vector<Json> out;
    Json events = call("GET", "/v1/events", nullptr, "viewer").json();
    for (const Json& e : events.is_array() ? events : events.value("events", Json::array()))
      if (e.value("kind", "") == kind) out.push_back(e);
    return out;
  }
};

TEST_F(SloServiceTest, BadSpecsAreRefusedWithEveryErrorAndNothingChanges) {
  const int64_t before = store_->latest_version();
  Json bad = slo("pay-availability", {{"target", {{"route", "nope"}}}, {"objective", 120}});
  Json maint = {{"kind", "maintenance_window"},
                {"name", "drill"},
                {"spec", {{"start", "2026-12-08T04:00:00Z"}, {"end", "yesterday"}}}};
  Pending r = apply({bad, maint, slo("ok")});
  ASSERT_EQ(r.status(), 400);
  Json errors = r.json()["errors"];
  EXPECT_THAT(errors.dump(), HasSubstr("slo/pay-availability: spec.target.route: no route named "
                                       "'nope'"));
  EXPECT_THAT(errors.dump(), HasSubstr("slo/pay-availability: spec.objective: must be a "
                                       "percentage above 0 and below 100"));
  EXPECT_THAT(errors.dump(), HasSubstr("maintenance_window/drill: spec.end: expected a UTC time"));
  EXPECT_EQ(errors.size(), 3u) << errors.dump();
  EXPECT_EQ(store_->latest_version(), before);
  // A channel target is refused with what to do instead.
  r = apply({slo("mobile", {{"target", {{"channel", "mobile"}}}})});
  ASSERT_EQ(r.status(), 400);
  EXPECT_THAT(r.json()["errors"][0].get<std::string>(),
              HasSubstr("slo/mobile: spec.target.channel: channel targets are not supported yet"));
  // Deleting the route an SLO names is refused too (the set would not validate).
  ASSERT_EQ(apply({slo("pay-availability")}).status(), 200);
  r = call("DELETE", "/v1/resources/route/pay?reason=x", nullptr, "op");
  EXPECT_EQ(r.status(), 400) << r.body();
  EXPECT_THAT(r.body(), HasSubstr("no route named 'pay'"));
}

TEST_F(SloServiceTest, AFastBurnPagesWithAnEventAndResolves) {
  ASSERT_EQ(apply({slo("pay-availability")}).status(), 200);
  api_.tick();
  Json list = call("GET", "/v1/slos", nullptr, "viewer").json();
  ASSERT_EQ(list["slos"].size(), 1u);
  EXPECT_EQ(list["slos"][0]["overall"]["error_budget_remaining"], 1.0);  // no traffic yet
  EXPECT_EQ(call("GET", "/v1/alerts", nullptr, "viewer").json()["alerts"].size(), 0u);

  // 10% errors: burn 100 over every window, 1,000 requests a minute (over min_requests).
  minute_of(1000, 100);
  Json s = call("GET", "/v1/slos/pay-availability", nullptr, "viewer").json();
  ASSERT_EQ(s["cities"].size(), 1u) << s.dump();
  EXPECT_EQ(s["cities"][0]["city"], "a");
  EXPECT_EQ(s["cities"][0]["alert"], "page");
  EXPECT_NEAR(s["overall"]["burn_rate"]["5m"].get<double>(), 100, 1e-6);
  EXPECT_NEAR(s["overall"]["burn_rate"]["3d"].get<double>(), 100, 1e-6);
  EXPECT_NEAR(s["overall"]["error_budget_remaining"].get<double>(), -99, 1e-6);  // 1 - 100/1
  EXPECT_NEAR(s["overall"]["sli"].get<double>(), 90, 1e-6);
  EXPECT_EQ(s["spec"]["objective"], 99.9);
  Json alerts = call("GET", "/v1/alerts", nullptr, "viewer").json()["alerts"];
  ASSERT_EQ(alerts.size(), 2u) << alerts.dump();  // the page and the ticket
  EXPECT_EQ(alerts[0]["severity"], "page");
  EXPECT_EQ(alerts[0]["rule"], "1h+5m");
  EXPECT_EQ(alerts[0]["state"], "firing");
  auto fired = events_of("slo_alert_fired");
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_EQ(fired[0]["subject"], "slo/pay-availability");

  Pending m = call("GET", "/metrics");
  EXPECT_THAT(m.body(), HasSubstr("sluice_control_slo_burn_rate{slo=\"pay-availability\","
                                  "city=\"a\",window=\"5m\"} 100"));
  EXPECT_THAT(m.body(), HasSubstr("sluice_control_slo_alerts_firing{severity=\"page\"} 1"));
  EXPECT_THAT(m.body(), HasSubstr("sluice_control_slo_error_budget_remaining{slo=\"pay-"
                                  "availability\",city=\"all\"} -99"));

  // Clean traffic: the fast rule stops holding after six minutes (the 5m window without the bad
  // minute); the slow one (6h and 30m) while 100 bad of 1,000 * (1 + j) requests burn at 6 or
  // more, up to j = 15 (100/16,000/0.001 = 6.25); at j = 16 (5.88) the page resolves. The ticket
  // (3d and 6h, burn >= 1) stays.
  for (int i = 0; i < 15; ++i) minute_of(1000, 0);
  EXPECT_EQ(call("GET", "/v1/alerts", nullptr, "viewer").json()["alerts"].size(), 2u);
  minute_of(1000, 0);
  alerts = call("GET", "/v1/alerts", nullptr, "viewer").json()["alerts"];
  ASSERT_EQ(alerts.size(), 1u) << alerts.dump();
  EXPECT_EQ(alerts[0]["severity"], "ticket");
  auto resolved = events_of("slo_alert_resolved");
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_EQ(resolved[0]["detail"]["severity"], "page");
  Json all = call("GET", "/v1/alerts?state=all", nullptr, "viewer").json()["alerts"];
  EXPECT_EQ(all.size(), 2u);
  EXPECT_EQ(call("GET", "/v1/alerts?state=maybe", nullptr, "viewer").status(), 400);
  EXPECT_EQ(call("GET", "/v1/slos/nope", nullptr, "viewer").status(), 404);
  EXPECT_EQ(call("GET", "/v1/slos", nullptr, "").status(), 401);
}

TEST_F(SloServiceTest, MaintenanceAndTheGuardKeepPagesAway) {
  const std::string start = "2023-11-14T22:00:00Z";  // before kStart (2023-11-14T22:13:20Z)
  Json maint = {{"kind", "maintenance_window"},
                {"name", "switchover"},
                {"spec",
                 {{"start", start},
                  {"end", "2023-11-14T23:00:00Z"},
                  {"cities", {"a"}},
                  {"slos", {"in-maintenance"}}}}};
  ASSERT_EQ(apply({slo("in-maintenance"), slo("guarded", {{"alerts", {{"min_requests", 5000}}}}),
                   slo("pages"), maint})
                .status(),
            200);
  minute_of(1000, 100);
  Json alerts = call("GET", "/v1/alerts", nullptr, "viewer").json()["alerts"];
  std::set<std::string> paged;
  for (const Json& a : alerts) paged.insert(a["slo"].get<std::string>());
  EXPECT_EQ(paged, std::set<std::string>{"pages"});
  Json s = call("GET", "/v1/slos/in-maintenance", nullptr, "viewer").json();
  EXPECT_EQ(s["cities"][0]["maintenance"], "switchover");
  EXPECT_EQ(s["cities"][0]["alert"], "none");
  s = call("GET", "/v1/slos/guarded", nullptr, "viewer").json();
  EXPECT_EQ(s["cities"][0]["guarded"], true);
  EXPECT_EQ(s["cities"][0]["alert"], "none");
}

TEST_F(SloServiceTest, AnSloAppliedLaterCountsEarlierTrafficOnce) {
  ASSERT_EQ(apply({slo("first")}).status(), 200);
  // Twelve minutes: the first ones are only in the stored rollups by the time "later" comes
  // (snapshots stay in memory five minutes), the last ones only in memory.
  for (int i = 0; i < 12; ++i) minute_of(1000, i < 6 ? 10 : 0);
  ASSERT_EQ(apply({slo("first"), slo("later")}).status(), 200);
  advance(10'000);
  api_.tick();
  Json a = call("GET", "/v1/slos/first", nullptr, "viewer").json()["overall"];
  Json b = call("GET", "/v1/slos/later", nullptr, "viewer").json()["overall"];
  EXPECT_EQ(a["windows"]["1h"]["requests"], 12000) << a.dump();
  EXPECT_EQ(b["windows"]["1h"]["requests"], a["windows"]["1h"]["requests"]) << b.dump();
  EXPECT_EQ(b["windows"]["1h"]["bad"], 60);
  EXPECT_EQ(b["requests"], 12000);
  // And from here on both count the same.
  minute_of(1000, 0);
  a = call("GET", "/v1/slos/first", nullptr, "viewer").json()["overall"];
  b = call("GET", "/v1/slos/later", nullptr, "viewer").json()["overall"];
  EXPECT_EQ(a["windows"]["1h"], b["windows"]["1h"]);
  EXPECT_EQ(b["windows"]["1h"]["requests"], 13000);
}

}  // namespace
}  // namespace sluice::control::test
