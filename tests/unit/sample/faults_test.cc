#include "sample/faults.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace sluice::sample {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

TEST(FaultUpdate, AcceptsEveryField) {
  std::string error;
  auto u =
      parse_fault_update(R"({"error_rate": 0.25, "latency_ms": 12, "healthy": false})", &error);
  ASSERT_TRUE(u) << error;
  EXPECT_DOUBLE_EQ(*u->error_rate, 0.25);
  EXPECT_EQ(*u->latency, milliseconds(12));
  EXPECT_FALSE(*u->healthy);
}

TEST(FaultUpdate, AcceptsAnySubset) {
  std::string error;
  auto u = parse_fault_update(R"({"healthy": true})", &error);
  ASSERT_TRUE(u) << error;
  EXPECT_FALSE(u->error_rate);
  EXPECT_FALSE(u->latency);
  EXPECT_TRUE(*u->healthy);
  auto empty = parse_fault_update("{}", &error);
  ASSERT_TRUE(empty);
  EXPECT_FALSE(empty->error_rate || empty->latency || empty->healthy);
}

TEST(FaultUpdate, FractionalLatency) {
  auto u = parse_fault_update(R"({"latency_ms": 0.5})", nullptr);
  ASSERT_TRUE(u);
  EXPECT_EQ(*u->latency, nanoseconds(500'000));
}

TEST(FaultUpdate, BoundsAreInclusive) {
  EXPECT_TRUE(parse_fault_update(R"({"error_rate": 0})", nullptr));
  EXPECT_TRUE(parse_fault_update(R"({"error_rate": 1})", nullptr));
  EXPECT_TRUE(parse_fault_update(R"({"latency_ms": 3600000})", nullptr));
}

TEST(FaultUpdate, RejectsBadValues) {
  const char* bad[] = {
      R"({"error_rate": 1.01})",
      R"({"error_rate": -0.1})",
      R"({"error_rate": "0.5"})",
      R"({"latency_ms": -1})",
      R"({"latency_ms": 3600001})",
      R"({"latency_ms": null})",
      R"({"healthy": 1})",
      R"({"healthy": "true"})",
      R"({"unknown": 1})",
      R"([])",
      R"(0.5)",
      R"({"error_rate": 0.5)",
      "",
  };
  for (const char* text : bad) {
    std::string error;
    EXPECT_FALSE(parse_fault_update(text, &error)) << text;
    EXPECT_FALSE(error.empty()) << text;
  }
}

TEST(FaultUpdate, ReportsEveryProblemAndAppliesNothing) {
  std::string error;
  auto u = parse_fault_update(R"({"error_rate": 2, "healthy": "no", "latency": 5})", &error);
  EXPECT_FALSE(u);
  EXPECT_NE(error.find("error_rate: must be 0..1"), std::string::npos) << error;
  EXPECT_NE(error.find("healthy: must be true or false"), std::string::npos) << error;
  EXPECT_NE(error.find("unknown key 'latency'"), std::string::npos) << error;
}

TEST(Faults, ApplyChangesOnlyGivenFields) {
  Faults f(FaultSnapshot{0.1, milliseconds(2), true});
  FaultUpdate u;
  u.healthy = false;
  f.apply(u);
  EXPECT_DOUBLE_EQ(f.error_rate(), 0.1);
  EXPECT_EQ(f.latency(), milliseconds(2));
  EXPECT_FALSE(f.healthy());
  u = {};
  u.error_rate = 0.75;
  u.latency = nanoseconds(0);
  f.apply(u);
  EXPECT_DOUBLE_EQ(f.error_rate(), 0.75);
  EXPECT_EQ(f.latency(), nanoseconds(0));
  EXPECT_FALSE(f.healthy());
}

TEST(FaultsJson, RendersCurrentValues) {
  auto j = nlohmann::json::parse(faults_json(FaultSnapshot{0.5, milliseconds(3), false}));
  EXPECT_DOUBLE_EQ(j["error_rate"].get<double>(), 0.5);
  EXPECT_TRUE(j["latency_ms"].is_number_integer());
  EXPECT_EQ(j["latency_ms"].get<int>(), 3);
  EXPECT_FALSE(j["healthy"].get<bool>());
  auto frac = nlohmann::json::parse(faults_json(FaultSnapshot{0, nanoseconds(1'500'000), true}));
  EXPECT_DOUBLE_EQ(frac["latency_ms"].get<double>(), 1.5);
}

TEST(FaultsJson, RoundTripsThroughTheParser) {
  FaultSnapshot s{0.125, nanoseconds(2'250'000), false};
  auto u = parse_fault_update(faults_json(s), nullptr);
  ASSERT_TRUE(u);
  EXPECT_DOUBLE_EQ(*u->error_rate, s.error_rate);
  EXPECT_EQ(*u->latency, s.latency);
  EXPECT_EQ(*u->healthy, s.healthy);
}

}  // namespace
}  // namespace sluice::sample
