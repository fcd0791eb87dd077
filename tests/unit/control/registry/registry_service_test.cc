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

TEST_F(ApiTest, InstancesKeepTheirHostFacts) {
  Json facts = {{"hostname", "host-1.example"},
                {"addresses", {"10.0.0.5", "fe80::1"}},
                {"cpu_count", 8},
                {"memory_bytes", int64_t{16} << 30},
                {"started_ms", now_ - 5000},
                {"version", "0.1.0+abc123"}};
  Json body = instance("payments", "p1", "127.0.0.1:9201");
  body["facts"] = facts;
  ASSERT_EQ(call("POST", "/v1/instances", body).status(), 200);
  // Without facts (an older instance): still registered, facts empty.
  ASSERT_EQ(call("POST", "/v1/instances", instance("payments", "p2", "127.0.0.1:9202")).status(),
            200);
  Json list = call("GET", "/v1/instances", nullptr, "viewer").json();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["facts"], facts);
  EXPECT_EQ(list[1]["facts"], Json::object());
  // A re-registration replaces them.
  body["facts"] = {{"cpu_count", 2}};
  ASSERT_EQ(call("POST", "/v1/instances", body).status(), 200);
  EXPECT_EQ(call("GET", "/v1/instances", nullptr, "viewer").json()[0]["facts"],
            Json({{"cpu_count", 2}}));
}

TEST_F(ApiTest, HostFactsAreBoundedAndAllOrNothing) {
  Json body = instance("payments", "p1", "127.0.0.1:9201");
  body["facts"] = {
      {"hostname", std::string(300, 'h')},
      {"addresses", Json::array({"10.0.0.1", "not-an-ip", 5, std::string("10.0.0.2\0junk", 13)})},
      {"cpu_count", 0},
      {"memory_bytes", -1},
      {"started_ms", now_ + 3'600'000},  // in the future
      {"version", "has space"},
      {"extra", 1}};
  Pending r = call("POST", "/v1/instances", body);
  ASSERT_EQ(r.status(), 400);
  std::vector<std::string> errors = r.json()["errors"];
  EXPECT_EQ(errors.size(), 9u) << r.get().body;
  for (const char* key : {"facts.hostname", "facts.addresses[1]", "facts.addresses[2]",
                          "facts.addresses[3]", "facts.cpu_count", "facts.memory_bytes",
                          "facts.started_ms", "facts.version", "facts.extra"}) {
    bool found = false;
    for (const auto& e : errors) found |= e.rfind(key, 0) == 0;
    EXPECT_TRUE(found) << key << " in " << r.get().body;
  }
  Json many = Json::array();
  for (int i = 0; i < 17; ++i) many.push_back("10.0.0." + std::to_string(i));
  body["facts"] = {{"addresses", many}};
  EXPECT_EQ(call("POST", "/v1/instances", body).status(), 400);
  body["facts"] = "text";
  EXPECT_EQ(call("POST", "/v1/instances", body).status(), 400);
  // Nothing was registered.
  EXPECT_TRUE(call("GET", "/v1/instances", nullptr, "viewer").json().empty());
}

}  // namespace
}  // namespace sluice::control::test
