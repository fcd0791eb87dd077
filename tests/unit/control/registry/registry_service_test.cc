// The registry through the router: instances, their validation, leases and expiry.
#include "unit/control/api_fixture.h"

namespace sluice::control::test {
namespace {

TEST_F(ApiTest, RegistryValidatesInstances) {
  Pending r = call("POST", "/v1/instances",
                   {{"service", "bad/name"}, {"address", "nowhere"}, {"weight", 0}, {"x", 1}});
  ASSERT_EQ(r.status(), 400);
  std::vector<std::string> errors = r.json()["errors"];
  EXPECT_EQ(errors.size(), 5u) << r.get().body;  // service, id, address, weight, x
}

TEST_F(ApiTest, InstancesExpireAfterTheirTtl) {
  ASSERT_EQ(call("POST", "/v1/instances", instance("payments", "p1", "127.0.0.1:9201")).status(),
            200);
  ASSERT_EQ(
      call("POST", "/v1/instances", instance("payments", "p2", "127.0.0.1:9202", 10000)).status(),
      200);
  advance(2000);
  EXPECT_EQ(call("PUT", "/v1/instances/payments/p1/heartbeat").status(), 200);
  advance(2500);  // p1 last beat 2.5 s ago, TTL 3 s: still in
  api_.tick();
  EXPECT_EQ(call("GET", "/v1/instances?service=payments", nullptr, "viewer").json().size(), 2u);
  advance(1000);  // 3.5 s since the beat
  api_.tick();
  Json left = call("GET", "/v1/instances", nullptr, "viewer").json();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0]["id"], "p2");
  EXPECT_EQ(call("PUT", "/v1/instances/payments/p1/heartbeat").status(), 404);  // register again

  Json events = call("GET", "/v1/events", nullptr, "viewer").json();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["kind"], "instance_expired");
  EXPECT_EQ(events[0]["subject"], "payments/p1");

  EXPECT_EQ(call("DELETE", "/v1/instances/payments/p2").status(), 200);
  EXPECT_EQ(call("DELETE", "/v1/instances/payments/p2").status(), 404);
}

}  // namespace
}  // namespace sluice::control::test
