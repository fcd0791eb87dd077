// Analysis settings: defaults, every field read, every mistake named by its field, all at once,
// and nothing half-applied.
#include "control/analysis/settings.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdexcept>

namespace sluice::control::analysis {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::json;

TEST(Settings, DefaultsWhenLeftOut) {
  for (const Json& j : {Json(nullptr), Json::object()}) {
    const Settings s = parse_settings(j);
    EXPECT_EQ(s.interval_ms, 60'000);
    EXPECT_EQ(s.min_requests, 200u);
    EXPECT_EQ(s.alpha, 0.01);
    EXPECT_EQ(s.max_error_ratio_increase, 0.001);
    EXPECT_EQ(s.max_p99_increase, 0.2);
    EXPECT_EQ(s.max_p99_increase_ms, 10);
    EXPECT_EQ(s.max_429_increase, 0.01);
    EXPECT_EQ(s.max_breaker_opens, 0u);
    EXPECT_THAT(s.measurements,
                ElementsAre(Measure::kErrorRatio, Measure::kP99, Measure::k429s,
                            Measure::kBreakerOpens));
    EXPECT_EQ(s.on_inconclusive, OnInconclusive::kWait);
    EXPECT_EQ(s.max_wait_ms, 600'000);
    EXPECT_EQ(s.history_ms, 3'600'000);
  }
  EXPECT_TRUE(check_settings(Json::object(), "rollout.analysis").empty());
}

TEST(Settings, EveryFieldIsRead) {
  const Json j = {{"interval", "30s"},
                  {"min_requests", 50},
                  {"alpha", 0.05},
                  {"max_error_ratio_increase", 0.02},
                  {"max_p99_increase", 0.5},
                  {"max_p99_increase_ms", 25.5},
                  {"max_429_increase", 0.1},
                  {"max_breaker_opens", 2},
                  {"measurements", {"p99", "error_ratio"}},
                  {"on_inconclusive", "proceed"},
                  {"max_wait", "5m"},
                  {"history", "0s"}};
  EXPECT_TRUE(check_settings(j, "analysis").empty());
  const Settings s = parse_settings(j);
  EXPECT_EQ(s.interval_ms, 30'000);
  EXPECT_EQ(s.min_requests, 50u);
  EXPECT_EQ(s.alpha, 0.05);
  EXPECT_EQ(s.max_error_ratio_increase, 0.02);
  EXPECT_EQ(s.max_p99_increase, 0.5);
  EXPECT_EQ(s.max_p99_increase_ms, 25.5);
  EXPECT_EQ(s.max_429_increase, 0.1);
  EXPECT_EQ(s.max_breaker_opens, 2u);
  EXPECT_THAT(s.measurements, ElementsAre(Measure::kP99, Measure::kErrorRatio));
  EXPECT_TRUE(s.measures(Measure::kP99));
  EXPECT_FALSE(s.measures(Measure::k429s));
  EXPECT_EQ(s.on_inconclusive, OnInconclusive::kProceed);
  EXPECT_EQ(s.max_wait_ms, 300'000);
  EXPECT_EQ(s.history_ms, 0);
  // What to_json writes reads back to the same settings.
  const Settings again = parse_settings(to_json(s));
  EXPECT_EQ(to_json(again), to_json(s));
  EXPECT_EQ(to_json(s)["interval"], "30s");
  EXPECT_EQ(to_json(s)["measurements"], Json({"p99", "error_ratio"}));
}

TEST(Settings, EveryMistakeIsNamedByItsFieldAllAtOnce) {
  const Json j = {{"interval", 30},
                  {"min_requests", 0},
                  {"alpha", 0},
                  {"max_error_ratio_increase", -0.1},
                  {"max_p99_increase", "20%"},
                  {"max_p99_increase_ms", nullptr},  // null = left out
                  {"max_429_increase", 2},
                  {"max_breaker_opens", -1},
                  {"measurements", {"error_ratio", "p95", "error_ratio"}},
                  {"on_inconclusive", "later"},
                  {"max_wait", "soon"},
                  {"history", "1x"},
                  {"intervall", "30s"}};
  EXPECT_THAT(
      check_settings(j, "rollout.analysis"),
      ElementsAre(
          "rollout.analysis.intervall: unknown key; expected one of interval, min_requests, "
          "alpha, max_error_ratio_increase, max_p99_increase, max_p99_increase_ms, "
          "max_429_increase, max_breaker_opens, measurements, on_inconclusive, max_wait, history",
          "rollout.analysis.interval: must be a duration from 1s to 1h (e.g. \"30s\"), got 30",
          "rollout.analysis.min_requests: must be an integer from 1 to 1000000000, got 0",
          "rollout.analysis.alpha: must be a number in (0, 0.5], got 0",
          "rollout.analysis.max_error_ratio_increase: must be a number in [0, 1], got -0.1",
          "rollout.analysis.max_p99_increase: must be a number in [0, 100], got '20%'",
          "rollout.analysis.max_429_increase: must be a number in [0, 1], got 2",
          "rollout.analysis.max_breaker_opens: must be an integer from 0 to 1000000, got -1",
          "rollout.analysis.measurements[1]: must be one of error_ratio, p99, 429s, "
          "breaker_opens, got 'p95'",
          "rollout.analysis.measurements[2]: 'error_ratio' is listed twice",
          "rollout.analysis.on_inconclusive: must be wait, proceed or fail, got 'later'",
          "rollout.analysis.max_wait: must be a duration from 0s to 24h (e.g. \"30s\"), got "
          "'soon'",
          "rollout.analysis.history: must be a duration from 0s to 24h (e.g. \"30s\"), got "
          "'1x'"));
  // parse_settings refuses with the first, and nothing is half-read.
  try {
    parse_settings(j);
    FAIL() << "accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("analysis.intervall: unknown key"));
  }
}

TEST(Settings, ShapesAndBounds) {
  EXPECT_THAT(check_settings(Json::array(), "release.analysis"),
              ElementsAre("release.analysis: expected an object, got a list"));
  EXPECT_THAT(check_settings(Json(nullptr), "release.analysis"),
              ElementsAre("release.analysis: expected an object, got null"));
  EXPECT_THAT(check_settings({{"measurements", Json::array()}}, "a"),
              ElementsAre("a.measurements: must be a non-empty list of error_ratio, p99, 429s, "
                          "breaker_opens, got a list"));
  EXPECT_THAT(check_settings({{"interval", "500ms"}}, "a"),
              ElementsAre(HasSubstr("a.interval: must be a duration from 1s to 1h")));
  EXPECT_THAT(check_settings({{"interval", "2h"}}, "a"),
              ElementsAre(HasSubstr("a.interval: must be a duration from 1s to 1h")));
  EXPECT_THAT(check_settings({{"interval", "1500us"}}, "a"),
              ElementsAre(HasSubstr("a.interval: must be a duration")));
  EXPECT_THAT(check_settings({{"alpha", 0.6}}, "a"),
              ElementsAre("a.alpha: must be a number in (0, 0.5], got 0.6"));
  EXPECT_THAT(check_settings({{"min_requests", 1.5}}, "a"),
              ElementsAre("a.min_requests: must be an integer from 1 to 1000000000, got 1.5"));
  EXPECT_TRUE(
      check_settings({{"alpha", 0.5}, {"interval", "1h"}, {"max_wait", "24h"}}, "a").empty());
}

TEST(Settings, RulesAcrossFields) {
  // Waiting for less than one interval would never see a second analysis.
  EXPECT_THAT(check_settings({{"interval", "2m"}, {"max_wait", "1m"}}, "p"),
              ElementsAre("p.max_wait: must be at least the interval (2m) when on_inconclusive "
                          "is wait, got 1m"));
  EXPECT_TRUE(
      check_settings({{"interval", "2m"}, {"max_wait", "1m"}, {"on_inconclusive", "fail"}}, "p")
          .empty());
  EXPECT_THAT(check_settings({{"interval", "2m"}, {"history", "1m"}}, "p"),
              ElementsAre("p.history: must be 0s (no comparison with the past) or at least the "
                          "interval (2m), got 1m"));
  // The default max_wait (10m) under a longer interval.
  EXPECT_THAT(check_settings({{"interval", "15m"}}, "p"),
              ElementsAre(HasSubstr("p.max_wait: must be at least the interval (15m)")));
}

TEST(Settings, MeasureNamesRoundTrip) {
  for (Measure m : {Measure::kErrorRatio, Measure::kP99, Measure::k429s, Measure::kBreakerOpens})
    EXPECT_EQ(parse_measure(measure_name(m)), m);
  EXPECT_FALSE(parse_measure("P99"));
}

}  // namespace
}  // namespace sluice::control::analysis
