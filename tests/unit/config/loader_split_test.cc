// routes[].services (weighted split) and routes[].split: what loads, what is refused and how, and
// that to_json loads back to the same route.
#include <gtest/gtest.h>

#include <string>

#include "config/loader.h"

namespace sluice::config {
namespace {

std::string dump(const LoadResult& r) {
  std::string out;
  for (const auto& e : r.errors) out += "  " + e.to_string() + "\n";
  return out;
}

constexpr std::string_view kServices = R"(listeners: [{name: public, address: 127.0.0.1:8080}]
services:
  - {name: stable, endpoints: [{address: 10.0.0.1:80}]}
  - {name: canary, endpoints: [{address: 10.0.0.2:80}]}
  - {name: other, endpoints: [{address: 10.0.0.3:80}]}
)";

// The three services above plus `routes` (from line 6 on).
LoadResult load_routes(std::string_view routes) {
  return load_string(std::string(kServices) + std::string(routes), "test.yaml");
}

::testing::AssertionResult Rejects(std::string_view routes, int line, std::string_view path,
                                   std::string_view text) {
  LoadResult r = load_routes(routes);
  if (r.ok() || r.config) return ::testing::AssertionFailure() << "accepted:\n" << routes;
  for (const auto& e : r.errors) {
    if (e.line == line && e.path == path && e.message.find(text) != std::string::npos)
      return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "wanted " << line << ": " << path << ": ..." << text << "... in\n"
         << dump(r);
}

TEST(Split, LoadsServicesWeightsCanaryAndSplitSettings) {
  LoadResult r = load_routes(R"(routes:
  - name: api
    services:
      - {name: stable, weight: 95}
      - {name: canary, weight: 5, canary: true}
    split: {sticky_header: X-Customer-Id, sticky_cookie: sid, override_header: X-Tester}
)");
  ASSERT_TRUE(r.ok()) << dump(r);
  const Route& route = r.config->routes[0];
  EXPECT_TRUE(route.service.empty());
  ASSERT_EQ(route.services.size(), 2u);
  EXPECT_EQ(route.services[0], (SplitService{"stable", 95, false, 0}));
  EXPECT_EQ(route.services[1], (SplitService{"canary", 5, true, 1}));
  EXPECT_EQ(route.service_index, 0u);                     // the first service of the split
  EXPECT_EQ(route.split.sticky_header, "x-customer-id");  // header names are lower-cased
  EXPECT_EQ(route.split.sticky_cookie, "sid");            // cookie names are not
  EXPECT_EQ(route.split.override_header, "x-tester");
}

TEST(Split, DefaultsWithoutASplitSection) {
  LoadResult r = load_routes(R"(routes:
  - {name: api, services: [{name: other, weight: 1}]}
)");
  ASSERT_TRUE(r.ok()) << dump(r);
  const Route& route = r.config->routes[0];
  EXPECT_EQ(route.services[0].service_index, 2u);
  EXPECT_EQ(route.service_index, 2u);
  EXPECT_EQ(route.split, Split{});
  EXPECT_EQ(route.split.override_header, "x-canary");
  EXPECT_TRUE(route.split.sticky_header.empty());
}

TEST(Split, WeightZeroAndTheMaximumAreAccepted) {
  LoadResult r = load_routes(R"(routes:
  - name: api
    services: [{name: stable, weight: 10000}, {name: canary, weight: 0, canary: true}]
    split: {override_header: ""}
)");
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_EQ(r.config->routes[0].services[0].weight, kMaxSplitWeight);
  EXPECT_EQ(r.config->routes[0].services[1].weight, 0u);
  EXPECT_TRUE(r.config->routes[0].split.override_header.empty());  // "" = no override
}

// load -> to_json -> load gives the same routes (structs, not text), and to_json is stable.
TEST(Split, RoundTrip) {
  LoadResult first = load_routes(R"(routes:
  - name: api
    match: {path_prefix: /api}
    services:
      - {name: stable, weight: 75}
      - {name: other, weight: 0}
      - {name: canary, weight: 25, canary: true}
    split: {sticky_header: x-customer-id, sticky_cookie: SID}
  - {name: plain, service: other}
  - name: bare
    services: [{name: canary, weight: 3}]
)");
  ASSERT_TRUE(first.ok()) << dump(first);
  const std::string json = to_json(*first.config);
  LoadResult second = load_string(json, "effective.json");
  ASSERT_TRUE(second.ok()) << dump(second) << json;
  EXPECT_EQ(first.config->routes, second.config->routes) << json;
  EXPECT_EQ(to_json(*second.config), json);
  // A route with one service keeps `service` and gets no split keys.
  EXPECT_NE(json.find("\"service\": \"other\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"override_header\": \"x-canary\""), std::string::npos) << json;
}

TEST(Split, ServiceOrServicesExactlyOne) {
  EXPECT_TRUE(Rejects(R"(routes:
  - name: api
    service: stable
    services: [{name: stable, weight: 1}]
)",
                      9, "routes[0].services", "use either 'service' or 'services'"));
  EXPECT_TRUE(Rejects("routes: [{name: api}]\n", 6, "routes[0].service",
                      "required (or 'services' for a weighted split)"));
}

TEST(Split, EveryServiceMustExist) {
  EXPECT_TRUE(Rejects(R"(routes:
  - name: api
    services:
      - {name: stable, weight: 90}
      - {name: canery, weight: 10}
)",
                      10, "routes[0].services[1].name",
                      "no service named 'canery' (did you mean 'canary'?)"));
}

TEST(Split, WeightBounds) {
  EXPECT_TRUE(Rejects("routes: [{name: api, services: [{name: stable, weight: 10001}]}]\n", 6,
                      "routes[0].services[0].weight", "must be 0..10000, got 10001"));
  EXPECT_TRUE(Rejects("routes: [{name: api, services: [{name: stable, weight: -1}]}]\n", 6,
                      "routes[0].services[0].weight", "must be 0..10000"));
  EXPECT_TRUE(Rejects("routes: [{name: api, services: [{name: stable, weight: 0.5}]}]\n", 6,
                      "routes[0].services[0].weight", ""));
  EXPECT_TRUE(Rejects("routes: [{name: api, services: [{name: stable}]}]\n", 6,
                      "routes[0].services[0].weight", "required"));
}

TEST(Split, AtLeastOneWeightAboveZero) {
  EXPECT_TRUE(Rejects(
      "routes: [{name: api, services: [{name: stable, weight: 0}, {name: canary, weight: 0}]}]\n",
      6, "routes[0].services", "at least one service needs a weight above 0"));
  // A weight that failed to read is not taken for 0: only its own error.
  LoadResult r = load_routes(
      "routes: [{name: api, services: [{name: stable, weight: 0}, {name: canary, weight: x}]}]\n");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors.size(), 1u) << dump(r);
}

TEST(Split, ListShape) {
  EXPECT_TRUE(Rejects("routes: [{name: api, services: []}]\n", 6, "routes[0].services",
                      "must list 1..16 services, got 0"));
  EXPECT_TRUE(Rejects("routes: [{name: api, services: stable}]\n", 6, "routes[0].services",
                      "expected a list"));
  EXPECT_TRUE(Rejects(R"(routes:
  - name: api
    services: [{name: stable, weight: 1}, {name: stable, weight: 2}]
)",
                      8, "routes[0].services[1].name", "service 'stable' is listed twice"));
  EXPECT_TRUE(Rejects("routes: [{name: api, services: [{name: stable, weight: 1, wieght: 2}]}]\n",
                      6, "routes[0].services[0].wieght", "unknown key"));
}

TEST(Split, OneCanaryAtMost) {
  EXPECT_TRUE(Rejects(R"(routes:
  - name: api
    services:
      - {name: stable, weight: 1, canary: true}
      - {name: canary, weight: 1, canary: true}
)",
                      10, "routes[0].services[1].canary",
                      "only one service of a split may be the canary"));
}

TEST(Split, SplitSectionNeedsServicesAndValidNames) {
  EXPECT_TRUE(Rejects(R"(routes:
  - name: api
    service: stable
    split: {sticky_header: x-customer-id}
)",
                      9, "routes[0].split", "needs 'services'"));
  EXPECT_TRUE(Rejects(R"(routes:
  - name: api
    services: [{name: stable, weight: 1}]
    split: {sticky_header: "x customer"}
)",
                      9, "routes[0].split.sticky_header",
                      "'x customer' is not a valid header name"));
  EXPECT_TRUE(Rejects(R"(routes:
  - name: api
    services: [{name: stable, weight: 1}]
    split: {sticky_cookie: "a=b"}
)",
                      9, "routes[0].split.sticky_cookie", "'a=b' is not a valid cookie name"));
  EXPECT_TRUE(Rejects(R"(routes:
  - name: api
    services: [{name: stable, weight: 1}]
    split: {sticky: x}
)",
                      9, "routes[0].split.sticky", "unknown key"));
}

// The services of a split are all unit or all global, as a customer's home city must not depend
// on the side of the split it lands on.
TEST(Split, KindsMustAgree) {
  LoadResult r = load_string(R"(node: {city: a}
listeners: [{name: public, address: 127.0.0.1:8080}]
services:
  - {name: stable, kind: unit, endpoints: [{address: 10.0.0.1:80}]}
  - {name: canary, endpoints: [{address: 10.0.0.2:80}]}
  - {name: canary-unit, kind: unit, endpoints: [{address: 10.0.0.3:80}]}
units: {key: header:x-customer-id, owners: {a: "0-99"}}
routes:
  - name: mixed
    services: [{name: stable, weight: 1}, {name: canary, weight: 1}]
  - name: units
    services: [{name: stable, weight: 1}, {name: canary-unit, weight: 1}]
)",
                             "test.yaml");
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 1u) << dump(r);
  EXPECT_EQ(r.errors[0].path, "routes[0].services[1].name");
  EXPECT_NE(r.errors[0].message.find("'canary' is global but 'stable' is unit"), std::string::npos)
      << dump(r);
}

// Nothing of a refused file is half-applied: no config at all comes back.
TEST(Split, ErrorsComeAllAtOnceAndNoConfig) {
  LoadResult r = load_routes(R"(routes:
  - name: a
    services: [{name: nope, weight: 1}]
  - name: b
    services: [{name: stable, weight: 0}]
)");
  EXPECT_FALSE(r.config);
  EXPECT_EQ(r.errors.size(), 2u) << dump(r);
}

}  // namespace
}  // namespace sluice::config
