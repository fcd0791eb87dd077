// Whether an answer is good, and the reason given when it is not.
#include "control/probes/judge.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sluice::control::probes {
namespace {

using Json = nlohmann::json;

ProbeSpec spec_with(Json expect) {
  return parse_probe({{"request", {{"path", "/"}}},
                      {"cities", {{"a", "http://127.0.0.1:1"}}},
                      {"expect", std::move(expect)}});
}

Answer answer(int status, std::string body, int64_t latency_ms = 5) {
  Answer a;
  a.status = status;
  a.body = std::move(body);
  a.latency_ms = latency_ms;
  return a;
}

TEST(ProbeJudge, GoodAnswer) {
  ProbeSpec s = spec_with({{"status", {200, 204}},
                           {"body_contains", "\"up\""},
                           {"json", {{"path", "data.state"}, {"equals", "up"}}},
                           {"latency_under", "100ms"}});
  EXPECT_EQ(judge(s, answer(204, R"({"data":{"state":"up"}})", 99)), "");
}

TEST(ProbeJudge, EachExpectationNamesItsReason) {
  ProbeSpec s = spec_with({{"status", {200, 204}},
                           {"body_contains", "state"},
                           {"json", {{"path", "data.n"}, {"equals", 3}}},
                           {"latency_under", "100ms"}});
  Answer none;
  none.error = "connection refused";
  EXPECT_EQ(judge(s, none), "connection refused");
  EXPECT_EQ(judge(s, answer(503, "")), "status 503 (expected 200, 204)");
  EXPECT_EQ(judge(s, answer(200, "{}")), "body does not contain 'state'");
  EXPECT_THAT(judge(s, answer(200, "state: <html>")), ::testing::StartsWith("body is not JSON ("));
  EXPECT_EQ(judge(s, answer(200, R"({"state":1})")), "JSON field data.n is missing");
  EXPECT_EQ(judge(s, answer(200, R"({"state":1,"data":{"n":4}})")),
            "JSON field data.n is 4 (expected 3)");
  EXPECT_EQ(judge(s, answer(200, R"({"state":1,"data":{"n":3}})", 100)),
            "latency 100 ms (expected under 100 ms)");
  EXPECT_EQ(judge(s, answer(200, R"({"state":1,"data":{"n":3}})", 99)), "");
}

TEST(ProbeJudge, DefaultIsStatus200Only) {
  ProbeSpec s = spec_with(Json::object());
  EXPECT_EQ(judge(s, answer(200, "")), "");
  EXPECT_EQ(judge(s, answer(201, "")), "status 201 (expected 200)");
}

}  // namespace
}  // namespace sluice::control::probes
