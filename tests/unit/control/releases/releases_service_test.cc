// The releases domain through the router, on an in-memory store with a manual clock: a release
// applied as a resource is stepped by ticks through real config writes (versions by
// "release/NAME"), judged on snapshots posted to /v1/stats, promoted or rolled back, aborted,
// paused, and resumed from its stored state by another control plane on the same store.
#include "unit/control/api_fixture.h"
#include "unit/control/releases/snapshots.h"

namespace sluice::control::test {
namespace {

using releases::test::split_snapshot;
using releases::test::Traffic;

class ReleasesTest : public ApiTest {
 protected:
  void SetUp() override {
    ASSERT_EQ(apply({static_service("pay-v1", "127.0.0.1:9001"),
                     static_service("pay-v2", "127.0.0.1:9002"), route("pay", "/pay", "pay-v1")})
                  .status(),
              200);
  }

  static Json release(Json extra = Json::object()) {
    Json spec = {{"route", "pay"},
                 {"stable", "pay-v1"},
                 {"canary", "pay-v2"},
                 {"steps", {10, 50, 100}},
                 {"analysis",
                  {{"interval", "2s"},
                   {"min_requests", 50},
                   {"max_wait", "10s"},
                   {"measurements", {"error_ratio", "p99"}}}}};
    spec.update(extra);
    return {{"kind", "release"}, {"name", "pay"}, {"spec", spec}};
  }

  Json route_spec() { return call("GET", "/v1/resources/route/pay").json()["spec"]; }
  Json status() { return call("GET", "/v1/releases/pay", nullptr, "viewer").json(); }

  // Ticks past the drive interval.
  void tick_after(int64_t ms) {
    advance(ms);
    api_.tick();
  }

  // One interval of traffic at the current weights, then the analysis.
  void interval_of(const Traffic& stable, const Traffic& canary) {
    ASSERT_EQ(call("POST", "/v1/stats",
                   split_snapshot("gw-a1", now_ + 1000, "pay", "pay-v1", stable, "pay-v2", canary))
                  .status(),
              200);
    tick_after(2000);
  }
};

TEST_F(ReleasesTest, AHealthyCanaryIsSteppedThroughToPromotion) {
  ASSERT_EQ(apply({release()}).status(), 200);
  tick_after(1000);
  Json r = route_spec();
  EXPECT_EQ(r["services"][1], Json::parse(R"({"name":"pay-v2","weight":10,"canary":true})"));
  EXPECT_EQ(status()["state"], "stepping");
  // The step is a config version like an apply, by the release.
  Json v = call("GET", "/v1/versions?limit=1", nullptr, "viewer").json()[0];
  EXPECT_EQ(v["author"], "release/pay");
  EXPECT_THAT(v["reason"].get<std::string>(), HasSubstr("canary at 10%"));

  interval_of({900, 0, 0}, {100, 0, 0});
  EXPECT_EQ(route_spec()["services"][1]["weight"], 50);
  EXPECT_EQ(status()["percent"], 50);
  interval_of({500, 0, 0}, {500, 0, 0});
  EXPECT_EQ(route_spec(), Json::parse(R"({"match":{"path_prefix":"/pay"},"service":"pay-v2"})"));
  Json s = status();
  EXPECT_EQ(s["state"], "promoted");
  EXPECT_EQ(s["weights"]["pay-v2"], 100);
  EXPECT_EQ(s["analyses"].size(), 2u);
  // Nothing moves after the end.
  const int64_t latest = store_->latest_version();
  interval_of({500, 0, 0}, {500, 500, 0});
  EXPECT_EQ(store_->latest_version(), latest);
  Json list = call("GET", "/v1/releases", nullptr, "viewer").json()["releases"];
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["state"], "promoted");
}

TEST_F(ReleasesTest, ASlowCanaryIsRolledBackWithTheCheckNamedAndAnEvent) {
  ASSERT_EQ(apply({release()}).status(), 200);
  tick_after(1000);
  interval_of({900, 0, 0}, {100, 0, 6});
  EXPECT_EQ(route_spec()["service"], "pay-v1");
  EXPECT_FALSE(route_spec().contains("services"));
  Json s = status();
  EXPECT_EQ(s["state"], "rolled_back");
  EXPECT_EQ(s["failed"], Json::array({"p99 vs stable"}));
  EXPECT_THAT(s["reason"].get<std::string>(), HasSubstr("p99"));
  Json events = call("GET", "/v1/events", nullptr, "viewer").json();
  bool seen = false;
  for (const Json& e : events.is_array() ? events : events.value("events", Json::array()))
    if (e.value("kind", "") == "release_rolled_back") seen = true;
  EXPECT_TRUE(seen) << events.dump();
}

TEST_F(ReleasesTest, LittleTrafficWaitsAtTheSameStep) {
  ASSERT_EQ(apply({release()}).status(), 200);
  tick_after(1000);
  const int64_t latest = store_->latest_version();
  interval_of({90, 0, 0}, {10, 0, 0});
  EXPECT_EQ(store_->latest_version(), latest);
  Json s = status();
  EXPECT_EQ(s["state"], "stepping");
  EXPECT_EQ(s["percent"], 10);
  EXPECT_EQ(s["analyses"][0]["verdict"], "inconclusive");
  EXPECT_EQ(s["analyses"][0]["next"], "wait");
  // More traffic in the same (growing) window decides it.
  interval_of({900, 0, 0}, {100, 0, 0});
  EXPECT_EQ(status()["percent"], 50);
}

TEST_F(ReleasesTest, AbortPauseAndResume) {
  ASSERT_EQ(apply({release()}).status(), 200);
  tick_after(1000);
  EXPECT_EQ(call("POST", "/v1/releases/pay/pause", nullptr, "viewer").status(), 403);
  EXPECT_EQ(call("POST", "/v1/releases/nope/pause").status(), 404);
  EXPECT_EQ(call("POST", "/v1/releases/pay/resume").status(), 409);
  EXPECT_EQ(call("POST", "/v1/releases/pay/pause", {{"reason", "lunch"}}).status(), 200);
  const int64_t latest = store_->latest_version();
  interval_of({900, 0, 0}, {100, 0, 0});
  EXPECT_EQ(store_->latest_version(), latest);  // paused: no analysis, no step
  EXPECT_EQ(status()["state"], "paused");
  ASSERT_EQ(call("POST", "/v1/releases/pay/resume").status(), 200);
  Pending abort = call("POST", "/v1/releases/pay/abort", {{"reason", "wrong build"}});
  ASSERT_EQ(abort.status(), 200) << abort.body();
  EXPECT_EQ(abort.json()["state"], "aborted");
  EXPECT_EQ(route_spec()["service"], "pay-v1");
  EXPECT_THAT(status()["reason"].get<std::string>(), HasSubstr("wrong build"));
  EXPECT_EQ(call("POST", "/v1/releases/pay/abort").status(), 409);
  EXPECT_EQ(call("POST", "/v1/releases/pay/abort", Json::array()).status(), 400);
}

TEST_F(ReleasesTest, AnotherControlPlaneResumesFromTheStoredState) {
  ASSERT_EQ(apply({release()}).status(), 200);
  tick_after(1000);
  interval_of({900, 0, 0}, {100, 0, 0});
  ASSERT_EQ(status()["percent"], 50);
  const int64_t latest = store_->latest_version();
  // A second control plane on the same database (a restart): it does not start over.
  Api other{*store_, auth_, options_, [this] { return now_; }};
  other.tick();
  EXPECT_EQ(store_->latest_version(), latest);
  HttpRequest req;
  req.method = "GET";
  req.path = "/v1/releases/pay";
  req.authorization = "Bearer " + viewer_;
  std::optional<HttpResponse> out;
  other.handle(std::move(req), [&](HttpResponse r) { out = std::move(r); });
  ASSERT_TRUE(out);
  Json s = Json::parse(out->body);
  EXPECT_EQ(s["state"], "stepping");
  EXPECT_EQ(s["percent"], 50);
  EXPECT_EQ(s["analyses"].size(), 1u);
}

TEST_F(ReleasesTest, AStepHeldForApprovalPausesTheReleaseWithoutProposingItAgain) {
  // The policy comes with the release, so neither is held; from then on every write needs an
  // approval, the release's steps included.
  const Json policy = {{"kind", "change_policy"},
                       {"name", "guard"},
                       {"spec", {{"approvals", {{"count", 1}, {"role", "operator"}}}}}};
  ASSERT_EQ(apply({release(), policy}).status(), 200);
  const int64_t latest = store_->latest_version();
  tick_after(1000);
  EXPECT_EQ(store_->latest_version(), latest);
  Json s = status();
  EXPECT_EQ(s["state"], "paused");
  EXPECT_THAT(s["reason"].get<std::string>(), HasSubstr("was not committed"));
  EXPECT_EQ(route_spec()["service"], "pay-v1");
  // Ticks do not turn the hold into a stream of proposed changes.
  tick_after(5000);
  tick_after(5000);
  EXPECT_EQ(call("GET", "/v1/changes?state=proposed", nullptr, "viewer").json().size(), 1u);
  // It can still be aborted (the route is on the stable service already: nothing to write).
  Pending abort = call("POST", "/v1/releases/pay/abort", {{"reason", "not today"}});
  ASSERT_EQ(abort.status(), 200) << abort.body();
  EXPECT_EQ(abort.json()["state"], "aborted");
}

TEST_F(ReleasesTest, ARollbackDoesNotWaitForApprovals) {
  ASSERT_EQ(apply({release()}).status(), 200);
  tick_after(1000);
  ASSERT_EQ(status()["percent"], 10);
  ASSERT_EQ(apply({{{"kind", "change_policy"},
                    {"name", "guard"},
                    {"spec", {{"approvals", {{"count", 1}, {"role", "operator"}}}}}}})
                .status(),
            200);
  interval_of({900, 0, 0}, {100, 0, 6});
  EXPECT_EQ(status()["state"], "rolled_back");
  EXPECT_EQ(route_spec()["service"], "pay-v1");
  Json latest = call("GET", "/v1/changes", nullptr, "viewer").json()[0];
  EXPECT_EQ(latest["author"], "release/pay");
  EXPECT_EQ(latest["emergency"], true);
  EXPECT_EQ(latest["state"], "done");
}

TEST_F(ReleasesTest, BadReleasesAreRefusedWholeAndNeverReachGateways) {
  Pending bad = apply({release({{"route", "nope"}, {"canary", "pay-v1"}, {"steps", {50, 20}}})});
  ASSERT_EQ(bad.status(), 400);
  const std::string body = bad.body();
  EXPECT_THAT(body, HasSubstr("release/pay: spec.route: no route named 'nope'"));
  EXPECT_THAT(body, HasSubstr("spec.canary: must differ from stable"));
  EXPECT_THAT(body, HasSubstr("spec.steps[1]: must be above the step before"));
  EXPECT_THAT(apply({release({{"steps", {10, 50}}})}).body(),
              HasSubstr("the last step must be 100"));
  EXPECT_THAT(apply({release({{"analysis", {{"alpha", 2}}}})}).body(),
              HasSubstr("spec.analysis.alpha"));
  EXPECT_EQ(call("GET", "/v1/releases", nullptr, "viewer").json()["releases"].size(), 0u);
  ASSERT_EQ(apply({release()}).status(), 200);
  // The route a release drives cannot be deleted from under it.
  EXPECT_EQ(call("DELETE", "/v1/resources/route/pay?reason=x").status(), 400);
  Json sections = gateway_sections(store_->resources(0), {});
  EXPECT_FALSE(sections.dump().find("release") != std::string::npos) << sections.dump();
}

}  // namespace
}  // namespace sluice::control::test
