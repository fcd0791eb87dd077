// The stepping of a release: what is due when, and what each verdict leads to, with a manual
// clock and snapshots written here (no sockets).
#include "control/releases/driver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "unit/control/releases/snapshots.h"

namespace sluice::control::releases {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::json;
using test::Traffic;

constexpr int64_t kT0 = 1'700'000'000'000;

ReleaseSpec make_spec() {
  return parse_release({{"route", "pay"},
                        {"stable", "pay-v1"},
                        {"canary", "pay-v2"},
                        {"steps", {10, 50, 100}},
                        {"analysis",
                         {{"interval", "2s"},
                          {"min_requests", 50},
                          {"max_wait", "6s"},
                          {"measurements", {"error_ratio", "p99"}}}}});
}

// A release stepping at `percent` since kT0.
ReleaseState stepping_at(const ReleaseSpec& spec, uint32_t percent) {
  ReleaseState s;
  committed(s, spec, Move{Move::Kind::kStep, percent, {}, false}, kT0);
  return s;
}

analysis::Result judge(const ReleaseSpec& spec, const ReleaseState& s, const Traffic& stable,
                       const Traffic& canary) {
  std::vector<Json> snaps = {
      test::split_snapshot("gw-1", kT0 + 1000, "pay", "pay-v1", stable, "pay-v2", canary)};
  analysis::Comparison c = compare(snaps, spec, s.percent);
  return analysis::analyze(std::span(&c, 1), spec.analysis);
}

TEST(ReleaseDriver, APendingReleaseTakesItsFirstStepAtOnce) {
  const ReleaseSpec spec = make_spec();
  ReleaseState s;
  Move m = due(s, spec, kT0);
  EXPECT_EQ(m.kind, Move::Kind::kStep);
  EXPECT_EQ(m.percent, 10u);
  committed(s, spec, m, kT0);
  EXPECT_EQ(s.state, kStepping);
  EXPECT_EQ(s.step, 0);
  EXPECT_EQ(s.percent, 10u);
}

TEST(ReleaseDriver, AnAnalysisIsDueOneIntervalAfterTheStep) {
  const ReleaseSpec spec = make_spec();
  ReleaseState s = stepping_at(spec, 10);
  EXPECT_EQ(due(s, spec, kT0 + 1999).kind, Move::Kind::kNone);
  EXPECT_EQ(due(s, spec, kT0 + 2000).kind, Move::Kind::kAnalyze);
  s.state = std::string(kPaused);
  EXPECT_EQ(due(s, spec, kT0 + 5000).kind, Move::Kind::kNone);
}

TEST(ReleaseDriver, APassGoesToTheNextStep) {
  const ReleaseSpec spec = make_spec();
  ReleaseState s = stepping_at(spec, 10);
  analysis::Result r = judge(spec, s, {900, 0, 0}, {100, 0, 0});
  ASSERT_EQ(r.verdict, analysis::Status::kPass) << r.summary;
  Move m = after_analysis(s, spec, r, kT0 + 2000);
  EXPECT_EQ(m.kind, Move::Kind::kStep);
  EXPECT_EQ(m.percent, 50u);
  ASSERT_EQ(s.analyses.size(), 1u);
  EXPECT_EQ(s.analyses[0]["verdict"], "pass");
  committed(s, spec, m, kT0 + 2000);
  EXPECT_EQ(s.step, 1);
  EXPECT_EQ(s.window_from_ms, kT0 + 2000);  // the next window starts with the new weights
  EXPECT_EQ(s.next_analysis_ms, kT0 + 4000);
}

TEST(ReleaseDriver, APassAtTheLastStepBeforeOneHundredPromotes) {
  const ReleaseSpec spec = make_spec();
  ReleaseState s = stepping_at(spec, 50);
  Move m = after_analysis(s, spec, judge(spec, s, {500, 0, 0}, {500, 0, 0}), kT0 + 2000);
  ASSERT_EQ(m.kind, Move::Kind::kStep);
  EXPECT_EQ(m.percent, 100u);
  committed(s, spec, m, kT0 + 2000);
  EXPECT_EQ(s.state, kPromoted);
  EXPECT_TRUE(s.is_final());
  EXPECT_EQ(due(s, spec, kT0 + 60'000).kind, Move::Kind::kNone);
}

TEST(ReleaseDriver, ASlowCanaryGoesBackToZeroWithTheP99CheckNamed) {
  const ReleaseSpec spec = make_spec();
  ReleaseState s = stepping_at(spec, 10);
  // Every canary request between 250 and 500 ms, the stable under 5 ms.
  analysis::Result r = judge(spec, s, {900, 0, 0}, {100, 0, 6});
  ASSERT_EQ(r.verdict, analysis::Status::kFail) << r.summary;
  Move m = after_analysis(s, spec, r, kT0 + 2000);
  EXPECT_EQ(m.kind, Move::Kind::kRollBack);
  EXPECT_EQ(m.percent, 0u);
  EXPECT_THAT(s.failed, ElementsAre("p99 vs stable"));
  EXPECT_THAT(m.reason, HasSubstr("p99"));
  // Until its write commits, the rollback is what is due.
  EXPECT_EQ(due(s, spec, kT0 + 2100).kind, Move::Kind::kRollBack);
  committed(s, spec, m, kT0 + 2100);
  EXPECT_EQ(s.state, kRolledBack);
  EXPECT_EQ(s.percent, 0u);
  EXPECT_EQ(due(s, spec, kT0 + 60'000).kind, Move::Kind::kNone);
}

TEST(ReleaseDriver, ErrorsOnTheCanaryFailTheErrorRatioCheck) {
  const ReleaseSpec spec = make_spec();
  ReleaseState s = stepping_at(spec, 50);
  Move m = after_analysis(s, spec, judge(spec, s, {500, 0, 0}, {500, 60, 0}), kT0 + 2000);
  EXPECT_EQ(m.kind, Move::Kind::kRollBack);
  EXPECT_THAT(s.failed, ElementsAre("error_ratio vs stable"));
}

TEST(ReleaseDriver, TooLittleTrafficWaitsThenRollsBackAfterMaxWait) {
  const ReleaseSpec spec = make_spec();
  ReleaseState s = stepping_at(spec, 10);
  analysis::Result few = judge(spec, s, {90, 0, 0}, {10, 0, 0});
  ASSERT_EQ(few.verdict, analysis::Status::kInconclusive) << few.summary;
  Move m = after_analysis(s, spec, few, kT0 + 2000);
  EXPECT_EQ(m.kind, Move::Kind::kNone);
  EXPECT_EQ(s.inconclusive_since_ms, kT0 + 2000);
  EXPECT_EQ(s.window_from_ms, kT0);  // the window keeps growing from the step's start
  EXPECT_EQ(s.next_analysis_ms, kT0 + 4000);
  EXPECT_EQ(after_analysis(s, spec, few, kT0 + 4000).kind, Move::Kind::kNone);
  EXPECT_EQ(after_analysis(s, spec, few, kT0 + 7999).kind, Move::Kind::kNone);
  m = after_analysis(s, spec, few, kT0 + 8000);  // 6 s inconclusive = max_wait
  EXPECT_EQ(m.kind, Move::Kind::kRollBack);
  EXPECT_THAT(m.reason, HasSubstr("inconclusive"));
}

TEST(ReleaseDriver, AWriteThatDidNotCommitIsRetriedLater) {
  const ReleaseSpec spec = make_spec();
  ReleaseState s;
  Move m = due(s, spec, kT0);
  write_failed(s, m, "409: lost", kT0);
  EXPECT_EQ(s.state, kPending);
  EXPECT_EQ(due(s, spec, kT0 + 999).kind, Move::Kind::kNone);
  EXPECT_EQ(due(s, spec, kT0 + 1000).kind, Move::Kind::kStep);
}

TEST(ReleaseDriver, TheStateSurvivesARoundTripThroughItsStoredForm) {
  const ReleaseSpec spec = make_spec();
  ReleaseState s = stepping_at(spec, 10);
  after_analysis(s, spec, judge(spec, s, {90, 0, 0}, {10, 0, 0}), kT0 + 2000);
  s.spec = {{"route", "pay"}};
  ReleaseState back = ReleaseState::from_json(Json::parse(s.to_json().dump()));
  EXPECT_EQ(back.to_json(), s.to_json());
  EXPECT_EQ(due(back, spec, kT0 + 4000).kind, Move::Kind::kAnalyze);
  // Hostile or older rows read as defaults rather than throwing.
  EXPECT_EQ(ReleaseState::from_json(Json::array()).state, kPending);
  EXPECT_EQ(ReleaseState::from_json({{"step", "x"}, {"failed", {1, "a"}}}).failed.size(), 1u);
}

TEST(ReleaseDriver, CompareReadsEachServicesShareOfTheRouteOnly) {
  const ReleaseSpec spec = make_spec();
  std::vector<Json> snaps = {
      test::split_snapshot("gw-1", kT0, "pay", "pay-v1", {90, 1, 0}, "pay-v2", {10, 2, 0}),
      test::split_snapshot("gw-2", kT0, "pay", "pay-v1", {80, 0, 0}, "pay-v2", {20, 0, 0}),
      // Another route to the same services does not count.
      test::split_snapshot("gw-1", kT0, "other", "pay-v1", {1000, 0, 0}, "pay-v2", {1000, 0, 0}),
      // A snapshot taken while the route was plain (before the first step) counts for the
      // service it went to.
      {{"gateway", "gw-1"}, {"routes", {{"pay", {{"service", "pay-v1"}, {"requests", 5}}}}}},
      {{"routes", {{"pay", {{"service", "pay-v1"}, {"requests", 5}}}}}},  // no gateway: ignored
  };
  analysis::Comparison c = compare(snaps, spec, 10);
  EXPECT_EQ(c.candidate.requests, 30u);
  EXPECT_EQ(c.candidate.errors, 2u);
  EXPECT_EQ(c.baseline.requests, 175u);
  EXPECT_EQ(c.baseline.errors, 1u);
  EXPECT_EQ(c.against, "stable");
  EXPECT_DOUBLE_EQ(c.expected_ratio, 10.0 / 90.0);
}

}  // namespace
}  // namespace sluice::control::releases
