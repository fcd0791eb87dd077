// The gateway fleet through the router: the config long poll (woken by writes of other
// services through ConfigFeed), gateway status and health, versions from stats snapshots.
#include "unit/control/api_fixture.h"

namespace sluice::control::test {
namespace {

TEST_F(ApiTest, GatewayConfigAnswersAtOnceWhenBehind) {
  ASSERT_EQ(apply({service("payments"), route("pay", "/pay", "payments")}).status(), 200);
  Pending r = call("GET", "/v1/gateway-config?gateway=gw-a1&city=a&zone=a1", nullptr, "viewer");
  ASSERT_EQ(r.status(), 200);
  Json j = r.json();
  EXPECT_EQ(j["version"], "1.0");
  // No instance yet: no endpoints (the gateway answers 503 until one registers).
  EXPECT_EQ(j["config"]["services"][0]["endpoints"], Json::array());
  EXPECT_EQ(j["config"]["routes"][0]["service"], "payments");
  EXPECT_FALSE(j["config"].contains("node"));
}

TEST_F(ApiTest, LongPollWakesOnRegistryAndConfigChanges) {
  ASSERT_EQ(apply({service("payments"), route("pay", "/pay", "payments")}).status(), 200);
  const std::string v1 = api_.current_version();
  ASSERT_EQ(v1, "1.0");

  Pending parked =
      send("GET", "/v1/gateway-config?gateway=gw-a1&after=" + v1 + "&wait=30s", {}, "viewer");
  EXPECT_FALSE(parked.answered());
  EXPECT_EQ(api_.waiting(), 1u);

  // An instance registers: the registry revision moves and the waiter gets its endpoint.
  ASSERT_EQ(call("POST", "/v1/instances", instance("payments", "p1", "127.0.0.1:9201")).status(),
            200);
  ASSERT_TRUE(parked.answered());
  Json j = parked.json();
  EXPECT_EQ(j["version"], "1.1");
  EXPECT_EQ(j["config"]["services"][0]["endpoints"][0]["address"], "127.0.0.1:9201");
  EXPECT_EQ(api_.waiting(), 0u);

  // A config write wakes the next one.
  Pending second = send("GET", "/v1/gateway-config?after=1.1&wait=30s", {}, "viewer");
  EXPECT_FALSE(second.answered());
  ASSERT_EQ(apply({route("pay2", "/pay2", "payments")}).status(), 200);
  ASSERT_TRUE(second.answered());
  EXPECT_EQ(second.json()["version"], "2.1");
  EXPECT_EQ(second.json()["config"]["routes"].size(), 2u);

  // The TTL expiry of the only instance is a registry change too.
  Pending third = send("GET", "/v1/gateway-config?after=2.1&wait=30s", {}, "viewer");
  advance(3500);
  api_.tick();
  ASSERT_TRUE(third.answered());
  EXPECT_EQ(third.json()["version"], "2.2");
  EXPECT_EQ(third.json()["config"]["services"][0]["endpoints"], Json::array());
}

// A write's own answer goes out before the long polls it wakes (with a server they run on its
// thread pool afterwards), so 1,000 watching gateways do not delay the writer.
TEST_F(ApiTest, AWriteIsAnsweredBeforeTheWatchersItWakes) {
  std::vector<std::function<void()>> deferred;
  api_.set_runner([&](std::function<void()> fn) { deferred.push_back(std::move(fn)); });
  ASSERT_EQ(apply({static_service("payments", "127.0.0.1:9201")}).status(), 200);
  for (auto& fn : deferred) fn();
  deferred.clear();
  const std::string v = api_.current_version();
  Pending parked = send("GET", "/v1/gateway-config?after=" + v + "&wait=30s", {}, "viewer");
  ASSERT_FALSE(parked.answered());
  Pending write = apply({route("pay", "/pay", "payments")});
  ASSERT_TRUE(write.answered());
  EXPECT_EQ(write.status(), 200);
  EXPECT_FALSE(parked.answered());  // not yet: handed to the runner
  ASSERT_FALSE(deferred.empty());
  for (auto& fn : deferred) fn();
  ASSERT_TRUE(parked.answered());
  EXPECT_EQ(parked.json()["config_version"], 2);
}

// Every waiter woken by one change is answered with the same text, not a copy each (the config
// of a large registry is hundreds of KB, and a control plane has 1,000 gateways parked).
TEST_F(ApiTest, WokenWaitersShareOneBody) {
  ASSERT_EQ(apply({static_service("payments", "127.0.0.1:9201")}).status(), 200);
  const std::string v = api_.current_version();
  Pending a = send("GET", "/v1/gateway-config?gateway=a&after=" + v + "&wait=30s", {}, "viewer");
  Pending b = send("GET", "/v1/gateway-config?gateway=b&after=" + v + "&wait=30s", {}, "viewer");
  ASSERT_EQ(apply({route("pay", "/pay", "payments")}).status(), 200);
  ASSERT_TRUE(a.answered() && b.answered());
  ASSERT_TRUE(a.get().shared_body && b.get().shared_body);
  EXPECT_EQ(a.get().shared_body.get(), b.get().shared_body.get());
  EXPECT_EQ(a.json()["config"]["routes"][0]["name"], "pay");
}

TEST_F(ApiTest, LongPollTimesOutWith304) {
  const std::string v = api_.current_version();
  Pending parked = send("GET", "/v1/gateway-config?after=" + v + "&wait=2s", {}, "viewer");
  EXPECT_FALSE(parked.answered());
  advance(1000);
  api_.tick();
  EXPECT_FALSE(parked.answered());
  advance(1001);
  api_.tick();
  ASSERT_TRUE(parked.answered());
  EXPECT_EQ(parked.status(), 304);
  EXPECT_TRUE(parked.get().body.empty());
  // wait=0 answers at once.
  EXPECT_EQ(call("GET", "/v1/gateway-config?after=" + v + "&wait=0", nullptr, "viewer").status(),
            304);
  EXPECT_EQ(call("GET", "/v1/gateway-config?after=" + v + "&wait=soon", nullptr, "viewer").status(),
            400);
}

TEST_F(ApiTest, HeartbeatsDoNotWakeWatchers) {
  ASSERT_EQ(call("POST", "/v1/instances", instance("payments", "p1", "127.0.0.1:9201")).status(),
            200);
  const std::string v = api_.current_version();
  Pending parked = send("GET", "/v1/gateway-config?after=" + v, {}, "viewer");
  ASSERT_EQ(call("PUT", "/v1/instances/payments/p1/heartbeat").status(), 200);
  // Re-registering the same instance unchanged does not either.
  ASSERT_EQ(call("POST", "/v1/instances", instance("payments", "p1", "127.0.0.1:9201")).status(),
            200);
  api_.tick();
  EXPECT_FALSE(parked.answered());
}

TEST_F(ApiTest, ShutdownAnswersParkedPolls) {
  Pending parked = send("GET", "/v1/gateway-config?after=" + api_.current_version(), {}, "viewer");
  api_.shutdown();
  ASSERT_TRUE(parked.answered());
  EXPECT_EQ(parked.status(), 503);
}

TEST_F(ApiTest, GatewayStatusAndHealth) {
  ASSERT_EQ(apply({static_service("a", "127.0.0.1:1000")}).status(), 200);
  call("GET", "/v1/gateway-config?gateway=gw-a1&city=a&zone=a1&wait=0", nullptr, "viewer");
  Json list = call("GET", "/v1/gateways", nullptr, "viewer").json();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["id"], "gw-a1");
  EXPECT_EQ(list[0]["health"], "pending");

  ASSERT_EQ(
      call("POST", "/v1/gateways/gw-a1/status", {{"applied_version", "1.0"}, {"status", "applied"}})
          .status(),
      200);
  list = call("GET", "/v1/gateways", nullptr, "viewer").json();
  EXPECT_EQ(list[0]["applied_version"], 1);
  EXPECT_EQ(list[0]["applied"], "1.0");
  EXPECT_EQ(list[0]["city"], "a");  // remembered from the poll
  EXPECT_EQ(list[0]["health"], "ok");

  ASSERT_EQ(apply({static_service("a", "127.0.0.1:2000")}).status(), 200);
  EXPECT_EQ(call("GET", "/v1/gateways", nullptr, "viewer").json()[0]["health"], "behind");
  ASSERT_EQ(call("POST", "/v1/gateways/gw-a1/status",
                 {{"applied_version", "1.0"}, {"status", "refused"}, {"error", "bad listener"}})
                .status(),
            200);
  list = call("GET", "/v1/gateways", nullptr, "viewer").json();
  EXPECT_EQ(list[0]["health"], "refused");
  EXPECT_EQ(list[0]["error"], "bad listener");
  Json events = call("GET", "/v1/events", nullptr, "viewer").json();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["kind"], "config_refused");
  EXPECT_EQ(events[0]["source"], "gw-a1");

  advance(options_.gateway_stale_ms + 1);
  EXPECT_EQ(call("GET", "/v1/gateways", nullptr, "viewer").json()[0]["health"], "stale");
  EXPECT_EQ(call("POST", "/v1/gateways/gw-a1/status", {{"status", "maybe"}}).status(), 400);
  EXPECT_EQ(call("POST", "/v1/gateways/gw-a1/status", {{"status", "applied"}}, "viewer").status(),
            403);
}

TEST_F(ApiTest, GatewayLeavingIsShownAsDrainingThenExitedUntilHeardFromAgain) {
  auto health = [&] {
    Json all = call("GET", "/v1/gateways", nullptr, "viewer").json();
    EXPECT_EQ(all.size(), 1u) << all.dump();
    return all.empty() ? std::string() : all[0]["health"].get<std::string>();
  };
  auto report = [&](const std::string& status) {
    return call("POST", "/v1/gateways/gw-a/status",
                {{"city", "a"}, {"zone", "a1"}, {"applied_version", "0.0"}, {"status", status}});
  };
  ASSERT_EQ(report("applied").status(), 200);
  EXPECT_EQ(health(), "ok");
  ASSERT_EQ(report("draining").status(), 200);
  EXPECT_EQ(health(), "draining");
  ASSERT_EQ(report("exited").status(), 200);
  EXPECT_EQ(health(), "exited");
  // Still exited, not stale, long after: it said it left.
  advance(options_.gateway_stale_ms + 1);
  EXPECT_EQ(health(), "exited");
  // A poll from a new process: back, and pending until it reports its config.
  advance(1);
  Pending poll = send("GET", "/v1/gateway-config?gateway=gw-a&wait=0s", "", "viewer");
  ASSERT_TRUE(poll.answered());
  EXPECT_EQ(health(), "pending");
  ASSERT_EQ(report("applied").status(), 200);
  EXPECT_EQ(health(), "ok");
  // A draining gateway that vanishes without a word goes stale like any other.
  ASSERT_EQ(report("draining").status(), 200);
  advance(options_.gateway_stale_ms + 1);
  EXPECT_EQ(health(), "stale");
  // Anything else is refused and changes nothing.
  Pending bad = report("gone");
  EXPECT_EQ(bad.status(), 400);
  EXPECT_NE(bad.body().find("expected applied, refused, draining or exited"), std::string::npos)
      << bad.body();
  EXPECT_EQ(call("GET", "/v1/gateways", nullptr, "viewer").json()[0]["status"], "draining");
}

TEST_F(ApiTest, GatewayVersionsFromItsSnapshotsAreListedAndNotAddedUp) {
  ASSERT_EQ(apply({static_service("a", "127.0.0.1:1000")}).status(), 200);
  ASSERT_EQ(
      call("POST", "/v1/gateways/gw-a/status", {{"applied_version", "1.0"}, {"status", "applied"}})
          .status(),
      200);
  Json versions = {{"local_version", 7}, {"units_version", 3}};
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(call("POST", "/v1/stats", {{"gateway", "gw-a"}, {"versions", versions}}).status(),
              200);
  }
  Json g = call("GET", "/v1/gateways", nullptr, "viewer").json()[0];
  EXPECT_EQ(g["config_version"], 1);
  EXPECT_EQ(g["applied_version"], 1);
  EXPECT_EQ(g["control_plane_version"], "1.0");
  EXPECT_EQ(g["local_version"], 7);  // the last snapshot's, not 14
  EXPECT_EQ(g["units_version"], 3);
  Json stats = call("GET", "/v1/stats?gateway=gw-a", nullptr, "viewer").json();
  ASSERT_EQ(stats["recent"].size(), 2u);
  EXPECT_EQ(stats["recent"][1]["versions"], versions);  // the snapshot itself is kept whole
}

}  // namespace
}  // namespace sluice::control::test
