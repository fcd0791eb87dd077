// A probe's spec: defaults, every problem named at once, hostile values bounded, dotted paths.
#include "control/probes/spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sluice::control::probes {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

Json minimal() {
  return {{"request", {{"path", "/health"}}},
          {"cities", {{"city-a", "http://127.0.0.1:8080"}, {"city-b", "127.0.0.1:8081"}}}};
}

TEST(ProbeSpec, Defaults) {
  ProbeSpec s = parse_probe(minimal());
  EXPECT_EQ(s.method, "GET");
  EXPECT_EQ(s.path, "/health");
  EXPECT_EQ(s.statuses, std::vector<int>{200});
  EXPECT_EQ(s.interval_ms, 10'000);
  EXPECT_EQ(s.timeout_ms, 2'000);
  EXPECT_EQ(s.fail_after, 2);
  ASSERT_EQ(s.cities.size(), 2u);
  EXPECT_EQ(s.cities.at("city-b"), "127.0.0.1:8081");
  EXPECT_TRUE(check_probe(minimal(), "p").empty());
  Json fast = minimal();
  fast["interval"] = "1s";  // the default timeout (2s) shrinks to fit
  EXPECT_EQ(parse_probe(fast).timeout_ms, 1'000);
}

TEST(ProbeSpec, EverythingRead) {
  Json j = minimal();
  j["request"] = {{"method", "POST"},
                  {"path", "/pay?x=1"},
                  {"headers", {{"X-Channel", "mobile"}}},
                  {"body", "{}"},
                  {"host", "pay.bank"}};
  j["expect"] = {{"status", {200, 201}},
                 {"body_contains", "ok"},
                 {"json", {{"path", "data.state"}, {"equals", "up"}}},
                 {"latency_under", "300ms"}};
  j["interval"] = "1s";
  j["timeout"] = "500ms";
  j["fail_after"] = 3;
  ProbeSpec s = parse_probe(j);
  EXPECT_EQ(s.method, "POST");
  EXPECT_EQ(s.headers.at(0), (std::pair<std::string, std::string>{"X-Channel", "mobile"}));
  EXPECT_EQ(s.body, "{}");
  EXPECT_EQ(s.host, "pay.bank");
  EXPECT_EQ(s.statuses, (std::vector<int>{200, 201}));
  EXPECT_EQ(s.json_path, "data.state");
  EXPECT_EQ(s.json_equals, "up");
  EXPECT_EQ(s.latency_under_ms, 300);
  EXPECT_EQ(s.interval_ms, 1'000);
  EXPECT_EQ(s.timeout_ms, 500);
  EXPECT_EQ(s.fail_after, 3);
}

TEST(ProbeSpec, EveryProblemAtOnce) {
  Json j = {
      {"request",
       {{"method", "get me"},
        {"headers", {{"Host", "x"}, {"Bad Name", "v"}, {"X-Ok", "a\r\nInjected: 1"}}}}},
      {"expect", {{"status", 99}, {"json", {{"path", "a..b"}}}, {"latency_under", "forever"}}},
      {"cities", {{"city a", "http://x:1"}, {"city-b", "ftp://x"}}},
      {"interval", "100ms"},
      {"fail_after", 0},
      {"colour", "red"}};
  auto errors = check_probe(j, "probe/p: spec");
  const std::vector<std::string> want = {
      "probe/p: spec.colour: unknown key",
      "spec.request.method: expected an HTTP method",
      "spec.request.path: required",
      "spec.request.headers.Bad Name: not a header name",
      "spec.request.headers.Host: set by the prober itself (use request.host)",
      "spec.request.headers.X-Ok: expected a string of at most 4096 bytes of visible ASCII",
      "spec.expect.status: expected a status 100..599",
      "spec.expect.json.path: expected 1..16 dot-separated keys",
      "spec.expect.json.equals: required",
      "spec.expect.latency_under: must be a duration",
      "spec.cities.city a: not a city name",
      "spec.cities.city-b: not a base URL",
      "spec.interval: must be a duration from 1s to 1h",
      "spec.fail_after: must be an integer 1..10",
  };
  ASSERT_EQ(errors.size(), want.size()) << Json(errors).dump(2);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_THAT(errors[i], HasSubstr(want[i])) << i;
}

TEST(ProbeSpec, RequiredPartsAndCrossFieldRules) {
  auto errors = check_probe(Json::object(), "s");
  ASSERT_EQ(errors.size(), 2u) << Json(errors).dump();
  EXPECT_THAT(errors[0], HasSubstr("s.request: required"));
  EXPECT_THAT(errors[1], HasSubstr("s.cities: required"));
  Json j = minimal();
  j["interval"] = "2s";
  j["timeout"] = "3s";
  EXPECT_THAT(check_probe(j, "s").at(0), HasSubstr("s.timeout: must not exceed the interval"));
  EXPECT_THAT(check_probe(Json::array(), "s").at(0), HasSubstr("s: expected an object"));
  EXPECT_THROW(parse_probe(j), std::invalid_argument);
}

TEST(ProbeSpec, HostileSizesBounded) {
  Json j = minimal();
  j["request"]["path"] = "/" + std::string(kMaxPathBytes, 'a');
  j["request"]["body"] = std::string(kMaxBodyBytes + 1, 'b');
  Json headers = Json::object();
  for (size_t i = 0; i <= kMaxHeaders; ++i) headers["X-" + std::to_string(i)] = "v";
  j["request"]["headers"] = headers;
  Json cities = Json::object();
  for (size_t i = 0; i <= kMaxCities; ++i) cities["c" + std::to_string(i)] = "http://x:1";
  j["cities"] = cities;
  j["expect"] = {{"status", Json(std::vector<int>(kMaxStatuses + 1, 200))},
                 {"body_contains", std::string(kMaxContainsBytes + 1, 'c')}};
  auto errors = check_probe(j, "s");
  ASSERT_EQ(errors.size(), 6u) << Json(errors).dump(2);
  EXPECT_THAT(errors[0], HasSubstr("s.request.path: expected a string of at most 2048 bytes"));
  EXPECT_THAT(errors[1], HasSubstr("s.request.headers: expected an object of at most 32"));
  EXPECT_THAT(errors[2], HasSubstr("s.request.body: expected a string of at most 65536 bytes"));
  EXPECT_THAT(errors[3],
              HasSubstr("s.expect.status: expected a status 100..599 or a list of 1..16"));
  EXPECT_THAT(errors[4], HasSubstr("s.expect.body_contains: expected a string of at most 4096"));
  EXPECT_THAT(errors[5], HasSubstr("s.cities: expected an object of 1..8"));
  // No message repeats the whole hostile value.
  for (const std::string& e : errors) EXPECT_LT(e.size(), 400u) << e;
}

TEST(ProbeSpec, JsonAtWalksObjectsAndArrays) {
  const Json doc = {{"data", {{"items", {{{"state", "up"}}, {{"state", "down"}}}}}}};
  ASSERT_NE(json_at(doc, "data.items.1.state"), nullptr);
  EXPECT_EQ(*json_at(doc, "data.items.1.state"), "down");
  EXPECT_EQ(json_at(doc, "data.items.2.state"), nullptr);
  EXPECT_EQ(json_at(doc, "data.items.x"), nullptr);
  EXPECT_EQ(json_at(doc, "data.items.-1"), nullptr);
  EXPECT_EQ(json_at(doc, "data.missing"), nullptr);
  EXPECT_EQ(json_at(doc, "data.items.0.state.deeper"), nullptr);
}

}  // namespace
}  // namespace sluice::control::probes
