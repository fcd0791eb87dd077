// `slo` and `maintenance_window` specs: the documented shape is accepted, every problem of a bad
// one is named at once, and the alert windows scale with the SLO's window.
#include "control/slo/spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sluice::control::slo {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Json = nlohmann::json;

std::vector<Resource> config() {
  return {{"route", "accounts-api", Json::object()},
          {"service", "accounts", Json::object()},
          {"slo", "accounts-availability", Json::object()}};
}

TEST(SloSpec, AcceptsTheDocumentedShapes) {
  Json availability = {{"target", {{"route", "accounts-api"}}},
                       {"cities", {"a", "b"}},
                       {"sli", "availability"},
                       {"objective", 99.9},
                       {"window", "30d"},
                       {"alerts", {{"page_fast", 14.4}, {"min_requests", 50}}},
                       {"description", "accounts answer"}};
  EXPECT_THAT(check_slo(availability, "slo/x: spec", config()), IsEmpty());
  Json latency = {{"target", {{"service", "accounts"}}},
                  {"sli", "latency"},
                  {"threshold", "300ms"},
                  {"objective", 99}};
  EXPECT_THAT(check_slo(latency, "slo/x: spec", config()), IsEmpty());

  SloSpec s = parse_slo(latency);
  EXPECT_EQ(s.target_kind, "service");
  EXPECT_EQ(s.target, "accounts");
  EXPECT_EQ(s.sli, Sli::kLatency);
  EXPECT_DOUBLE_EQ(s.threshold_s, 0.3);
  EXPECT_NEAR(s.budget(), 0.01, 1e-12);
  EXPECT_EQ(s.window_ms, 30 * kDayMs);  // the default
  EXPECT_EQ(s.alerts, AlertFactors{});
  SloSpec a = parse_slo(availability);
  EXPECT_THAT(a.cities, ElementsAre("a", "b"));
  EXPECT_EQ(a.alerts.min_requests, 50u);
  EXPECT_DOUBLE_EQ(a.alerts.page_slow, 6);
}

TEST(SloSpec, NamesEveryProblemAtOnce) {
  Json bad = {{"target", {{"route", "nope"}}},
              {"sli", "latency"},
              {"objective", 100},
              {"window", "5m"},
              {"alerts", {{"page_fast", 0}, {"ticket", 2000}, {"min_requests", -1}, {"x", 1}}},
              {"colour", "red"}};
  auto errors = check_slo(bad, "slo/x: spec", config());
  EXPECT_THAT(errors,
              ElementsAre("slo/x: spec.colour: unknown key (expected target, cities, sli, "
                          "threshold, objective, window, alerts or description)",
                          "slo/x: spec.target.route: no route named 'nope'",
                          "slo/x: spec.threshold: required with sli latency (e.g. 300ms)",
                          "slo/x: spec.objective: must be a percentage above 0 and below 100 "
                          "(e.g. 99.9), got 100",
                          "slo/x: spec.window: expected a duration 1h..90d (e.g. 30d), got '5m'",
                          HasSubstr("spec.alerts.min_requests: must be an integer"),
                          HasSubstr("spec.alerts.page_fast: must be a burn-rate factor"),
                          HasSubstr("spec.alerts.ticket: must be a burn-rate factor"),
                          HasSubstr("spec.alerts.x: unknown key")));
  EXPECT_THAT(check_slo(Json::object(), "p", {}),
              ElementsAre(HasSubstr("p.target: required"), HasSubstr("p.sli: required"),
                          HasSubstr("p.objective: required")));
  EXPECT_THAT(check_slo(Json::array(), "p", {}), ElementsAre("p: expected an object, got a list"));
}

TEST(SloSpec, RefusesTargetsNotBuiltYetAndOddValues) {
  auto one = [](Json spec) {
    Json full = {
        {"target", {{"route", "accounts-api"}}}, {"sli", "availability"}, {"objective", 99.9}};
    full.update(spec);  // the case's keys over the defaults
    spec = full;
    auto e = check_slo(spec, "s", config());
    return e.size() == 1 ? e[0] : Json(e).dump();
  };
  EXPECT_THAT(one({{"target", {{"channel", "mobile"}}}}),
              HasSubstr("s.target.channel: channel targets are not supported yet"));
  EXPECT_THAT(one({{"target", {{"business_system", "payments"}}}}),
              HasSubstr("business_system targets are not supported yet"));
  EXPECT_EQ(one({{"target", {{"host", "h1"}}}}),
            "s.target.host: unknown target kind (expected route or service)");
  EXPECT_THAT(one({{"target", {{"route", "accounts-api"}, {"service", "accounts"}}}}),
              HasSubstr("s.target: expected an object with one key"));
  EXPECT_EQ(one({{"target", {{"service", "nope"}}}}), "s.target.service: no service named 'nope'");
  EXPECT_EQ(one({{"cities", {"a", "a"}}}), "s.cities[1]: 'a' given twice");
  EXPECT_THAT(one({{"cities", Json::array()}}), HasSubstr("s.cities: expected a list of 1..16"));
  EXPECT_EQ(one({{"threshold", "300ms"}}), "s.threshold: only with sli latency");
  EXPECT_EQ(one({{"objective", 0}}).substr(0, 12), "s.objective:");
  EXPECT_EQ(one({{"objective", "99.9"}}).substr(0, 12), "s.objective:");
  // A factor above 1 / budget can never fire: every request bad burns at 1000 for 99.9%.
  EXPECT_EQ(one({{"alerts", {{"page_fast", 1001}}}}).substr(0, 26), "s.alerts.page_fast: must b");
  EXPECT_EQ(one({{"objective", 90}, {"alerts", {{"page_fast", 14.4}}}}),
            "s.alerts.page_fast: 14.4 can never fire: the highest burn rate of a 90% objective "
            "is 10");
  EXPECT_THAT(one({{"sli", "speed"}}), HasSubstr("s.sli: expected availability or latency"));
}

TEST(SloSpec, AlertWindowsScaleWithTheWindow) {
  SloSpec s;
  EXPECT_EQ(s.window(k5m), 5 * kMinuteMs);
  EXPECT_EQ(s.window(k3d), 3 * kDayMs);
  s.window_ms = 4 * kHourMs;  // 1/180 of 30d
  EXPECT_EQ(s.window(k1h), 20'000);
  EXPECT_EQ(s.window(k5m), 1'666);
  EXPECT_EQ(s.window(k6h), 120'000);
  EXPECT_EQ(s.window(k3d), 1'440'000);
  s.window_ms = 7 * kDayMs;
  EXPECT_EQ(s.window(k1h), 840'000);  // 1h * 7/30
}

TEST(SloSpec, SpansAndInstants) {
  EXPECT_EQ(parse_span_ms("30d"), 30 * kDayMs);
  EXPECT_EQ(parse_span_ms("1.5h"), 90 * kMinuteMs);
  EXPECT_EQ(parse_span_ms("300ms"), 300);
  EXPECT_EQ(parse_span_ms("d"), std::nullopt);
  EXPECT_EQ(parse_span_ms("-1d"), std::nullopt);
  EXPECT_EQ(parse_span_ms("0s"), std::nullopt);
  EXPECT_EQ(parse_span_ms(30), std::nullopt);
  EXPECT_EQ(parse_instant_ms("1970-01-02T00:00Z"), kDayMs);
  EXPECT_EQ(parse_instant_ms("2026-12-08T03:00:05Z"), 1'796'698'805'000);
  EXPECT_EQ(parse_instant_ms(12345), 12345);
  EXPECT_EQ(parse_instant_ms("2026-02-30T03:00:00Z"), std::nullopt);
  EXPECT_EQ(parse_instant_ms("2026-12-08 03:00:00Z"), std::nullopt);
  EXPECT_EQ(parse_instant_ms("2026-12-08T03:00:00+08:00"), std::nullopt);
  EXPECT_EQ(parse_instant_ms(-1), std::nullopt);
}

TEST(MaintenanceSpec, CheckedAndCovering) {
  Json m = {{"start", "2026-12-08T03:00:00Z"},
            {"end", "2026-12-08T04:00:00Z"},
            {"cities", {"a"}},
            {"slos", {"accounts-availability"}},
            {"reason", "switchover drill"}};
  EXPECT_THAT(check_maintenance(m, "maintenance_window/d: spec", config()), IsEmpty());
  MaintenanceSpec w = parse_maintenance(m);
  const int64_t start = *parse_instant_ms("2026-12-08T03:00:00Z");
  EXPECT_TRUE(w.covers("accounts-availability", "a", start));
  EXPECT_TRUE(w.covers("accounts-availability", "a", start + kHourMs - 1));
  EXPECT_FALSE(w.covers("accounts-availability", "a", start + kHourMs));  // [start, end)
  EXPECT_FALSE(w.covers("accounts-availability", "a", start - 1));
  EXPECT_FALSE(w.covers("accounts-availability", "b", start));
  EXPECT_FALSE(w.covers("other", "a", start));
  w.cities.clear();
  w.slos.clear();
  EXPECT_TRUE(w.covers("other", "b", start));

  Json bad = {{"start", "2026-12-08T04:00:00Z"},
              {"end", "2026-12-08T03:00:00Z"},
              {"slos", {"nope"}},
              {"when", "now"}};
  EXPECT_THAT(check_maintenance(bad, "p", config()),
              ElementsAre(HasSubstr("p.when: unknown key"), "p.end: must be after start",
                          "p.slos: no slo named 'nope'"));
  EXPECT_THAT(check_maintenance({{"start", "tomorrow"}}, "p", config()),
              ElementsAre(HasSubstr("p.start: expected a UTC time"), HasSubstr("p.end: required")));
}

}  // namespace
}  // namespace sluice::control::slo
