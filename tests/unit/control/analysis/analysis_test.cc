// The judgement: low traffic is inconclusive, a clear regression fails with a sentence that
// says why, equal groups pass (false failures counted over seeded random trials), a p99
// regression read from histograms fails, lost traffic fails, and what the driver does next.
#include "control/analysis/analysis.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "control/analysis/statistics.h"

namespace sluice::control::analysis {
namespace {

using ::testing::HasSubstr;

// The gateways' histogram bounds (seconds), as in a real snapshot.
const std::vector<double> kBounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                     0.1,    0.25,  0.5,    1,     2.5,  5,     10};

stats::Latency histogram(std::vector<uint64_t> head) {
  stats::Latency l;
  l.bounds = kBounds;
  head.resize(kBounds.size() + 1, 0);
  l.buckets = head;
  for (uint64_t b : l.buckets) l.count += b;
  return l;
}

void observe(stats::Latency& l, double seconds) {
  const size_t i = std::lower_bound(l.bounds.begin(), l.bounds.end(), seconds) - l.bounds.begin();
  ++l.buckets[i];
  ++l.count;
}

Sample sample(uint64_t requests, uint64_t errors, stats::Latency latency = {}) {
  Sample s;
  s.requests = requests;
  s.errors = errors;
  s.latency = std::move(latency);
  s.throttled_reported = true;
  return s;
}

Settings only(std::vector<Measure> m) {
  Settings s;
  s.measurements = std::move(m);
  return s;
}

const Measurement& find(const Result& r, Measure m) {
  for (const Measurement& x : r.measurements) {
    if (x.measure == m) return x;
  }
  throw std::out_of_range("measurement not in the result");
}

Result one(const Sample& candidate, const Sample& baseline, const Settings& s,
           double expected_ratio = 0) {
  const std::vector<Comparison> c = {{"unchanged gateways", candidate, baseline, expected_ratio}};
  return analyze(c, s);
}

TEST(Analysis, ClearErrorRegressionFailsWithItsFigures) {
  const Result r = one(sample(1000, 41), sample(5000, 10), only({Measure::kErrorRatio}));
  EXPECT_EQ(r.verdict, Status::kFail);
  const Measurement& m = find(r, Measure::kErrorRatio);
  EXPECT_EQ(m.status, Status::kFail);
  EXPECT_DOUBLE_EQ(m.candidate, 0.041);
  EXPECT_DOUBLE_EQ(m.baseline, 0.002);
  ASSERT_TRUE(m.p);
  EXPECT_LT(*m.p, 1e-20);
  // p by exact enumeration in Python (math.comb, as in statistics_test.cc): 1.4e-23.
  EXPECT_EQ(m.summary, "error ratio 4.10% vs 0.20% (p=1.4e-23) exceeds +0.10%");
  EXPECT_THAT(r.summary, HasSubstr("fail: error_ratio vs unchanged gateways: error ratio 4.10%"));
  EXPECT_EQ(next_step(r, Settings{}, 0), Step::kRollBack);
}

TEST(Analysis, SignificantButSmallAndLargeButNotSignificantBothPass) {
  Settings s = only({Measure::kErrorRatio});
  // 0.13% vs 0.10% over 1e7 requests a side: significant, but within +0.10 points.
  Result r = one(sample(10'000'000, 13'000), sample(10'000'000, 10'000), s);
  EXPECT_LT(*find(r, Measure::kErrorRatio).p, 1e-9);
  EXPECT_EQ(r.verdict, Status::kPass);
  EXPECT_THAT(r.measurements[0].summary, HasSubstr("within +0.10%"));
  // 1 error in 200 vs none in 200: +0.5 points, but p = 0.5.
  r = one(sample(200, 1), sample(200, 0), s);
  EXPECT_EQ(r.verdict, Status::kPass);
  EXPECT_THAT(r.measurements[0].summary, HasSubstr("not significant at alpha 0.01"));
  // Fewer errors than the baseline is no regression.
  r = one(sample(1000, 0), sample(1000, 50), s);
  EXPECT_EQ(r.verdict, Status::kPass);
}

TEST(Analysis, LowTrafficIsInconclusiveNotPass) {
  const Settings s = only({Measure::kErrorRatio, Measure::kP99, Measure::kBreakerOpens});
  const Result r =
      one(sample(150, 0, histogram({0, 0, 150})), sample(180, 0, histogram({0, 0, 180})), s);
  EXPECT_EQ(r.verdict, Status::kInconclusive);
  for (const Measurement& m : r.measurements) {
    EXPECT_EQ(m.status, Status::kInconclusive) << m.summary;
  }
  EXPECT_THAT(find(r, Measure::kErrorRatio).summary,
              HasSubstr("too little traffic: 150 requests from the candidate, 180 from the "
                        "baseline; at least 200 each"));
  EXPECT_THAT(r.summary, HasSubstr("inconclusive: error_ratio vs unchanged gateways: too little"));
  // One group enough, the other not: still inconclusive.
  EXPECT_EQ(one(sample(150, 0), sample(100'000, 0), only({Measure::kErrorRatio})).verdict,
            Status::kInconclusive);
  // ... unless the little traffic already shows a failure: errors win over waiting.
  Sample c = sample(150, 0);
  c.breaker_opens = 1;
  EXPECT_EQ(one(c, sample(180, 0), s).verdict, Status::kFail);
}

TEST(Analysis, NoTrafficAtTheCandidateWhenTrafficWasExpectedFails) {
  const Settings s = only({Measure::kErrorRatio, Measure::kP99});
  Result r = one(sample(0, 0), sample(5000, 5), s);
  EXPECT_EQ(r.verdict, Status::kFail);
  EXPECT_THAT(r.measurements[0].summary,
              HasSubstr("no requests from the candidate while the baseline had 5000"));
  // A 1% canary expects 50 requests for the stable side's 5000: too few to miss.
  r = one(sample(0, 0), sample(5000, 5), s, 0.01);
  EXPECT_EQ(r.verdict, Status::kInconclusive);
  // 10% expects 500.
  r = one(sample(0, 0), sample(5000, 5), s, 0.1);
  EXPECT_EQ(r.verdict, Status::kFail);
  EXPECT_THAT(r.measurements[0].summary, HasSubstr("(about 500 expected)"));
  // Neither group has traffic: inconclusive.
  EXPECT_EQ(one(sample(0, 0), sample(0, 0), s).verdict, Status::kInconclusive);
  EXPECT_EQ(one(sample(0, 0), sample(150, 0), s).verdict, Status::kInconclusive);
}

TEST(Analysis, P99RegressionFromHistograms) {
  const Settings s = only({Measure::kP99});
  // Baseline: most requests 2.5-5 ms; candidate: the same shape shifted to 25-50 ms.
  const Sample base = sample(1000, 0, histogram({0, 0, 100, 880, 20}));
  const Sample slow = sample(1000, 0, histogram({0, 0, 0, 0, 0, 100, 880, 20}));
  Result r = one(slow, base, s);
  EXPECT_EQ(r.verdict, Status::kFail);
  const Measurement& m = find(r, Measure::kP99);
  // p99 by histogram_quantile: rank 990 of 1000 in the 5-10 ms bucket (20 there, 980 below):
  // 5 + 5 * 10/20 = 7.5 ms; the candidate's 50 + 50 * 10/20 = 75 ms.
  EXPECT_NEAR(m.baseline, 0.0075, 1e-12);
  EXPECT_NEAR(m.candidate, 0.075, 1e-12);
  EXPECT_LT(*m.p, 1e-100);
  EXPECT_THAT(m.summary,
              ::testing::MatchesRegex(
                  R"(p99 75\.0ms vs 7\.5ms \(p[<=][0-9.e-]+\) exceeds \+20% and \+10ms)"));
  // Past the relative tolerance but not the absolute one (7.5 ms -> 9.17 ms: +22%, +1.7 ms),
  // significant or not: pass.
  const Sample bit_slower = sample(1000, 0, histogram({0, 0, 100, 840, 60}));
  r = one(bit_slower, base, s);
  EXPECT_EQ(r.verdict, Status::kPass) << r.summary;
  EXPECT_THAT(r.measurements[0].summary, HasSubstr("within +20% and +10ms"));
  // Faster is never a regression.
  EXPECT_EQ(one(base, slow, s).verdict, Status::kPass);
  // Histograms that cannot be compared: inconclusive, with the reason.
  Sample other = slow;
  other.latency.bounds[0] = 0.0001;
  r = one(other, base, s);
  EXPECT_EQ(r.verdict, Status::kInconclusive);
  EXPECT_THAT(r.measurements[0].summary, HasSubstr("different bucket bounds"));
  other = slow;
  other.latency.mixed = true;
  EXPECT_EQ(one(other, base, s).verdict, Status::kInconclusive);
}

TEST(Analysis, P99RegressionInTheTailOnly) {
  const Settings s = only({Measure::kP99});
  // 2% of the candidate's 2,000 requests take a second, the rest as the baseline's: p99 jumps
  // from 7.5 ms to 750 ms. Mann-Whitney hardly sees it (a shift of 2% of the mass: p ~ 0.1);
  // the tail test does: 40 of the candidate's requests above the baseline's p99 bucket, none of
  // the baseline's (Fisher p ~ 1e-12).
  Sample base = sample(2000, 0, histogram({0, 0, 200, 1760, 40}));
  Sample tail = sample(2000, 0, histogram({0, 0, 200, 1720, 40, 0, 0, 0, 0, 0, 40}));
  const auto mw = mann_whitney_greater(tail.latency.buckets, base.latency.buckets);
  ASSERT_TRUE(mw);
  EXPECT_GT(mw->p, s.alpha);
  Result r = one(tail, base, s);
  const Measurement& m = find(r, Measure::kP99);
  EXPECT_NEAR(m.baseline, 0.0075, 1e-12);
  EXPECT_NEAR(m.candidate, 0.75, 1e-12);
  EXPECT_LT(*m.p, 1e-9);
  EXPECT_EQ(r.verdict, Status::kFail) << r.summary;
  // The same shape over 300 requests (6 slow): neither test is sure (tail: p = 0.015, doubled
  // 0.03): pass, and the sentence says why.
  base = sample(300, 0, histogram({0, 0, 30, 264, 6}));
  tail = sample(300, 0, histogram({0, 0, 30, 258, 6, 0, 0, 0, 0, 0, 6}));
  r = one(tail, base, s);
  EXPECT_GT(r.measurements[0].candidate - r.measurements[0].baseline, 0.1);
  EXPECT_GT(*r.measurements[0].p, s.alpha);
  EXPECT_EQ(r.verdict, Status::kPass);
  EXPECT_THAT(r.measurements[0].summary, HasSubstr("not significant at alpha 0.01"));
}

TEST(Analysis, FourTwentyNines) {
  const Settings s = only({Measure::k429s});
  Sample c = sample(1000, 0), b = sample(1000, 0);
  c.throttled = 80;
  b.throttled = 10;
  Result r = one(c, b, s);
  EXPECT_EQ(r.verdict, Status::kFail);
  EXPECT_THAT(r.measurements[0].summary, HasSubstr("429 share 8.00% vs 1.00%"));
  EXPECT_THAT(r.measurements[0].summary, HasSubstr("exceeds +1.00%"));
  // Nobody reported 429s: never a pass on zeros nobody counted.
  c.throttled_reported = false;
  r = one(c, b, s);
  EXPECT_EQ(r.verdict, Status::kInconclusive);
  EXPECT_THAT(r.measurements[0].summary,
              HasSubstr("429s not reported by the candidate's gateways (stats key `throttled`)"));
}

TEST(Analysis, BreakerOpens) {
  const Settings s = only({Measure::kBreakerOpens});
  Sample c = sample(1000, 0), b = sample(5000, 0);
  EXPECT_EQ(one(c, b, s).verdict, Status::kPass);
  c.breaker_opens = 1;
  Result r = one(c, b, s);
  EXPECT_EQ(r.verdict, Status::kFail);
  EXPECT_THAT(r.measurements[0].summary,
              HasSubstr("1 breaker opens in 1000 requests vs 0 in 5000: more than 0"));
  // The upstream trips the breaker as often on the baseline: not the change's doing.
  b.breaker_opens = 5;
  EXPECT_EQ(one(c, b, s).verdict, Status::kPass);
  // Allowed opens.
  b.breaker_opens = 0;
  Settings lenient = s;
  lenient.max_breaker_opens = 1;
  EXPECT_EQ(one(c, b, lenient).verdict, Status::kPass);
}

TEST(Analysis, VerdictOverComparisons) {
  // Against the unchanged gateways all is well, against the hour before errors went up.
  const Settings s = only({Measure::kErrorRatio});
  std::vector<Comparison> c = {{"unchanged gateways", sample(1000, 1), sample(1000, 1), 1},
                               {"the hour before", sample(1000, 30), sample(60'000, 60), 0}};
  Result r = analyze(c, s);
  EXPECT_EQ(r.verdict, Status::kFail);
  ASSERT_EQ(r.measurements.size(), 2u);
  EXPECT_EQ(r.measurements[0].against, "unchanged gateways");
  EXPECT_EQ(r.measurements[0].status, Status::kPass);
  EXPECT_EQ(r.measurements[1].against, "the hour before");
  EXPECT_EQ(r.measurements[1].status, Status::kFail);
  EXPECT_THAT(r.summary, HasSubstr("fail: error_ratio vs the hour before: error ratio 3.00%"));
  // All pass.
  c[1].candidate = sample(1000, 1);
  r = analyze(c, s);
  EXPECT_EQ(r.verdict, Status::kPass);
  EXPECT_EQ(r.summary, "pass: all 2 measurements passed");
  // A pass and an inconclusive: inconclusive.
  c[1].baseline = sample(10, 0);
  EXPECT_EQ(analyze(c, s).verdict, Status::kInconclusive);
  // Nothing to compare is no pass either.
  r = analyze({}, s);
  EXPECT_EQ(r.verdict, Status::kInconclusive);
  EXPECT_EQ(r.summary, "inconclusive: nothing to compare");
}

// "The hour before" (docs/analysis.md): the changed gateways now against themselves over the
// history before the change, expected ratio interval / history. Gateways that were already as bad
// before the change do not fail it; gateways that got worse do. Once every gateway has the change
// this is the only baseline. While some gateways are unchanged, the driver gives the comparison
// with them its history (Comparison::before): changed gateways that were already worse than the
// unchanged ones before the change, and are no worse now, are not failed against them (this
// test pinned the opposite, "fail if any fails", before the rule changed).
TEST(Analysis, TheHourBeforeDoesNotBlameAChangeForWhatWasThereBeforeIt) {
  const Settings s = only({Measure::kErrorRatio});
  const double ratio = 60.0 / 3600.0;            // a minute's interval against an hour's history
  const Sample before = sample(120'000, 6'000);  // 5% errors for the hour before the change
  // As bad as before: pass.
  std::vector<Comparison> c = {{"the hour before", sample(2'000, 100), before, ratio}};
  Result r = analyze(c, s);
  EXPECT_EQ(r.verdict, Status::kPass) << r.summary;
  EXPECT_THAT(r.measurements[0].summary, HasSubstr("error ratio 5.00% vs 5.00%"));
  // A little better or noisily worse, within what chance gives: pass.
  c[0].candidate = sample(2'000, 112);
  EXPECT_EQ(analyze(c, s).verdict, Status::kPass) << analyze(c, s).summary;
  // Worse than before (5% -> 8%): fail, naming the hour before.
  c[0].candidate = sample(2'000, 160);
  r = analyze(c, s);
  EXPECT_EQ(r.verdict, Status::kFail);
  EXPECT_THAT(r.summary, HasSubstr("error_ratio vs the hour before: error ratio 8.00% vs 5.00%"));
  // Too little history is no evidence either way: inconclusive, not a pass.
  c[0].candidate = sample(2'000, 100);
  c[0].baseline = sample(150, 8);
  EXPECT_EQ(analyze(c, s).verdict, Status::kInconclusive);
  // The same already-bad gateways while others are still unchanged and clean (0.1%, and 0.1%
  // before the change too): the comparison with the unchanged gateways fails by itself, but the
  // changed gateways are no worse than before the change, so the failure is excused and the
  // verdict passes.
  c = {{"unchanged gateways", sample(2'000, 100), sample(2'000, 2), 1,
        Before{"the hour before", before, sample(120'000, 120), ratio}}};
  r = analyze(c, s);
  ASSERT_EQ(r.measurements.size(), 2u);
  EXPECT_EQ(r.measurements[0].against, "unchanged gateways");
  EXPECT_EQ(r.measurements[0].status, Status::kPass);
  EXPECT_THAT(r.measurements[0].summary, HasSubstr("error ratio 5.00% vs 0.10%"));
  EXPECT_THAT(r.measurements[0].excused,
              HasSubstr("the changed gateways are no worse than the hour before (error ratio "
                        "5.00% vs 5.00%"));
  EXPECT_EQ(r.measurements[1].against, "the hour before");
  EXPECT_EQ(r.measurements[1].status, Status::kPass);
  EXPECT_EQ(r.verdict, Status::kPass) << r.summary;
  EXPECT_THAT(r.summary, HasSubstr("pass: all 2 measurements passed; not the change's doing: "
                                   "error_ratio vs unchanged gateways: the changed gateways"));
  // Without its history the same comparison fails: the rule above is what excuses it.
  c[0].before.reset();
  EXPECT_EQ(analyze(c, s).verdict, Status::kFail);
}

// The four groups of a rollout in two unlike cities: city a (changed first) and city b
// (unchanged) over a minute's interval now, and over the hour before the change.
struct Cities {
  Sample a_now, a_before, b_now, b_before;
  Result analyze(const Settings& s) const {
    const std::vector<Comparison> c = {{"unchanged gateways", a_now, b_now, 1,
                                        Before{"the hour before", a_before, b_before, 1 / 60.0}}};
    return analysis::analyze(c, s);
  }
};

// (1) City a had 0.5% errors before the change, city b 0.1%; the change alters neither. Against
// city b, city a fails (20,000 requests a side: p < 1e-12, +0.40 points); against its own hour
// before it passes, so the difference predates the change: no rollback.
TEST(Analysis, AsymmetricCitiesAreNotBlamedOnTheChange) {
  const Settings s = only({Measure::kErrorRatio});
  const Cities x{sample(20'000, 100), sample(1'200'000, 6'000), sample(20'000, 20),
                 sample(1'200'000, 1'200)};
  const Result r = x.analyze(s);
  EXPECT_EQ(r.verdict, Status::kPass) << r.summary;
  EXPECT_EQ(r.measurements[0].summary,
            "error ratio 0.50% vs 0.10% (p=2.5e-14) exceeds +0.10%; not the change's doing: the "
            "changed gateways are no worse than the hour before (error ratio 0.50% vs 0.50% "
            "(p=0.51) within +0.10%)");
  EXPECT_EQ(next_step(r, s, 0), Step::kProceed);
  const Measurement& cross = r.measurements[0];
  EXPECT_EQ(cross.status, Status::kPass);
  EXPECT_THAT(cross.summary, HasSubstr("error ratio 0.50% vs 0.10%"));
  EXPECT_THAT(cross.summary, HasSubstr("exceeds +0.10%; not the change's doing"));
  ASSERT_TRUE(cross.p);
  EXPECT_LT(*cross.p, 1e-9);  // the difference is real; it is only older than the change
  EXPECT_FALSE(cross.excused.empty());
  EXPECT_EQ(to_json(r)["measurements"][0]["excused"], cross.excused);
  EXPECT_EQ(to_json(r)["measurements"][1]["excused"], nullptr);
  // Mirrored (the changed city is the clean one): nothing fails to begin with.
  const Cities y{x.b_now, x.b_before, x.a_now, x.a_before};
  EXPECT_EQ(y.analyze(s).verdict, Status::kPass) << y.analyze(s).summary;
}

// (2) A real regression on top of that asymmetric baseline: errors that start with the change on
// city a (0.5% -> 3%) fail against both baselines and roll back. And its mirror: the changed city
// was the clean one (0.1%) and the change adds 0.3 points (to 0.4%): still better than city b's
// 0.5%, but worse than itself before while city b did not move: rolled back.
TEST(Analysis, ARegressionOnAnAsymmetricBaselineIsBlamed) {
  const Settings s = only({Measure::kErrorRatio});
  Cities x{sample(20'000, 600), sample(1'200'000, 6'000), sample(20'000, 20),
           sample(1'200'000, 1'200)};
  Result r = x.analyze(s);
  EXPECT_EQ(r.verdict, Status::kFail) << r.summary;
  EXPECT_EQ(next_step(r, s, 0), Step::kRollBack);
  EXPECT_EQ(r.measurements[0].status, Status::kFail);
  EXPECT_EQ(r.measurements[1].status, Status::kFail);
  EXPECT_TRUE(r.measurements[0].excused.empty());
  EXPECT_THAT(r.summary, HasSubstr("error_ratio vs the hour before: error ratio 3.00% vs 0.50%"));
  x = {sample(20'000, 80), sample(1'200'000, 1'200), sample(20'000, 100), sample(1'200'000, 6'000)};
  r = x.analyze(s);
  EXPECT_EQ(r.measurements[0].status, Status::kPass);  // 0.40% vs city b's 0.50%
  EXPECT_EQ(r.measurements[1].status, Status::kFail);  // 0.40% vs its own 0.10%
  EXPECT_EQ(r.verdict, Status::kFail) << r.summary;
}

// What every gateway went through at the same time is not the change's either: a shared
// upstream that starts failing (0.1% -> 2% on both cities) excuses the hour before, because the
// unchanged gateways got as much worse; a regression on top of it (city a to 5%) does not.
TEST(Analysis, WhatEveryGatewayWentThroughIsNotBlamedOnTheChange) {
  const Settings s = only({Measure::kErrorRatio});
  Cities x{sample(20'000, 400), sample(1'200'000, 1'200), sample(20'000, 410),
           sample(1'200'000, 1'200)};
  Result r = x.analyze(s);
  EXPECT_EQ(r.verdict, Status::kPass) << r.summary;
  EXPECT_EQ(r.summary,
            "pass: all 2 measurements passed; not the change's doing: error_ratio vs the hour "
            "before: the unchanged gateways got as much worse over the same time (error ratio on "
            "the changed gateways 0.10% -> 2.00%, on the unchanged 0.10% -> 2.05%: the change's "
            "own share -0.05% (p=0.64) within +0.10%)");
  EXPECT_EQ(r.measurements[1].status, Status::kPass);
  EXPECT_THAT(r.measurements[1].excused,
              HasSubstr("the unchanged gateways got as much worse over the same time (error "
                        "ratio on the changed gateways 0.10% -> 2.00%, on the unchanged 0.10% "
                        "-> 2.05%: the change's own share -0.05%"));
  x.a_now = sample(20'000, 1'000);
  r = x.analyze(s);
  EXPECT_EQ(r.verdict, Status::kFail) << r.summary;
  EXPECT_EQ(r.measurements[1].status, Status::kFail);
  EXPECT_TRUE(r.measurements[1].excused.empty());
  // The excuse needs the unchanged gateways to have got worse themselves (significantly, past
  // the threshold): city b steady at 0.1% while city a goes to 2% is the change's doing.
  x.b_now = sample(20'000, 20);
  x.a_now = sample(20'000, 400);
  EXPECT_EQ(x.analyze(s).verdict, Status::kFail);
  // Lost traffic is never excused.
  x.a_now = sample(0, 0);
  x.b_now = sample(20'000, 410);
  r = x.analyze(s);
  EXPECT_EQ(r.verdict, Status::kFail);
  EXPECT_THAT(r.summary, HasSubstr("no requests from the candidate"));
}

// (3) A regression with no history before the change (a fresh system, or too little traffic in
// the hour before): the unchanged gateways decide alone, as before, and it rolls back.
TEST(Analysis, ARegressionWithoutHistoryFailsAgainstTheUnchangedGateways) {
  const Settings s = only({Measure::kErrorRatio});
  Cities x{sample(2'000, 60), sample(150, 0), sample(2'000, 2), sample(9'000, 9)};
  Result r = x.analyze(s);
  EXPECT_EQ(r.measurements[0].status, Status::kFail);
  EXPECT_EQ(r.measurements[1].status, Status::kInconclusive);  // 150 requests before: too few
  EXPECT_EQ(r.verdict, Status::kFail) << r.summary;
  EXPECT_EQ(next_step(r, s, 0), Step::kRollBack);
  EXPECT_THAT(r.summary,
              HasSubstr("error_ratio vs unchanged gateways: error ratio 3.00% vs 0.10%"));
  // The driver leaves the history out when the hour before holds fewer than min_requests: the
  // plain comparison, the same verdict.
  EXPECT_EQ(one(x.a_now, x.b_now, s, 1).verdict, Status::kFail);
}

// (4) Latency: city a's p99 was 75 ms before the change and is now, city b's 7.5 ms: the slower
// city is not blamed. A change that makes city a (7.5 ms before, like city b) ten times slower
// is, and so is one that makes the slow city slower still.
TEST(Analysis, ASlowerCityIsNotBlamedButAddedLatencyIs) {
  const Settings s = only({Measure::kP99});
  auto fast = [](uint64_t n) {
    return sample(n, 0, histogram({0, 0, n / 10, n * 88 / 100, n / 50}));  // p99 7.5 ms
  };
  auto slow = [](uint64_t n) {  // the same shape three buckets up: p99 75 ms
    return sample(n, 0, histogram({0, 0, 0, 0, 0, n / 10, n * 88 / 100, n / 50}));
  };
  Cities x{slow(2'000), slow(120'000), fast(2'000), fast(120'000)};
  Result r = x.analyze(s);
  EXPECT_EQ(r.verdict, Status::kPass) << r.summary;
  EXPECT_THAT(r.measurements[0].summary, HasSubstr("p99 75.0ms vs 7.5ms"));
  EXPECT_THAT(r.measurements[0].excused, HasSubstr("no worse than the hour before (p99 75.0ms "
                                                   "vs 75.0ms"));
  // The change adds latency to the fast city.
  x = {slow(2'000), fast(120'000), fast(2'000), fast(120'000)};
  r = x.analyze(s);
  EXPECT_EQ(r.verdict, Status::kFail) << r.summary;
  EXPECT_THAT(r.summary, HasSubstr("p99 vs the hour before: p99 75.0ms vs 7.5ms"));
  // The slow city gets slower still (75 ms -> 750 ms): fails against both.
  const auto slower = sample(2'000, 0, histogram({0, 0, 0, 0, 0, 0, 0, 0, 200, 1760, 40}));
  x = {slower, slow(120'000), fast(2'000), fast(120'000)};
  r = x.analyze(s);
  EXPECT_EQ(r.verdict, Status::kFail) << r.summary;
  EXPECT_EQ(r.measurements[0].status, Status::kFail);
  EXPECT_EQ(r.measurements[1].status, Status::kFail);
  // Every gateway slower at once (a shared upstream): the change's own share is within the
  // tolerance and the hour before is excused.
  x = {slow(2'000), fast(120'000), slow(2'000), fast(120'000)};
  r = x.analyze(s);
  EXPECT_EQ(r.verdict, Status::kPass) << r.summary;
  EXPECT_THAT(r.measurements[1].excused,
              HasSubstr("p99 on the changed gateways 7.5ms -> 75.0ms, on the unchanged 7.5ms -> "
                        "75.0ms: the change's own share +0.0ms within 10.0ms"));
}

// 429s and breaker opens follow the same rule. City a throttles 3% (a tighter limit there) and
// its upstream's breaker opens about once a minute, before the change and after; city b
// neither: no rollback. A change that doubles city a's 429s, or its breaker opens, is blamed.
TEST(Analysis, UnlikeCitiesIn429sAndBreakerOpens) {
  const Settings s = only({Measure::k429s, Measure::kBreakerOpens});
  auto city = [](uint64_t n, uint64_t throttled, uint64_t opens) {
    Sample x = sample(n, 0);
    x.throttled = throttled;
    x.breaker_opens = opens;
    return x;
  };
  Cities x{city(20'000, 600, 1), city(1'200'000, 36'000, 60), city(20'000, 100, 0),
           city(1'200'000, 6'000, 0)};
  Result r = x.analyze(s);
  EXPECT_EQ(r.verdict, Status::kPass) << r.summary;
  EXPECT_THAT(find(r, Measure::k429s).summary, HasSubstr("429 share 3.00% vs 0.50%"));
  EXPECT_FALSE(find(r, Measure::k429s).excused.empty());
  EXPECT_THAT(find(r, Measure::kBreakerOpens).summary,
              HasSubstr("1 breaker opens in 20000 requests vs 0 in 20000"));
  EXPECT_FALSE(find(r, Measure::kBreakerOpens).excused.empty());
  // Twice the 429s: blamed.
  x.a_now.throttled = 1'200;
  r = x.analyze(s);
  EXPECT_EQ(r.verdict, Status::kFail) << r.summary;
  EXPECT_THAT(r.summary, HasSubstr("429s vs the hour before: 429 share 6.00% vs 3.00%"));
  // Five breaker opens in the minute where one a minute was usual: blamed.
  x.a_now.throttled = 600;
  x.a_now.breaker_opens = 5;
  r = x.analyze(s);
  EXPECT_EQ(r.verdict, Status::kFail) << r.summary;
  EXPECT_THAT(r.summary, HasSubstr("breaker_opens vs the hour before: 5 breaker opens"));
}

// Unlike cities that nothing changes, many times over: the history keeps the false rollbacks of
// "fail if any fails" away. City a 0.5% errors, city b 0.1%, 20,000 requests a minute each and
// 60 times that before; without the history every trial fails against city b.
TEST(Analysis, AsymmetricCitiesPassOverSeededTrials) {
  const Settings s = only({Measure::kErrorRatio});
  std::mt19937_64 rng(14);
  std::binomial_distribution<uint64_t> a_now(20'000, 0.005), b_now(20'000, 0.001),
      a_before(1'200'000, 0.005), b_before(1'200'000, 0.001);
  constexpr int kTrials = 400;
  int failed = 0, failed_without = 0;
  for (int t = 0; t < kTrials; ++t) {
    const Cities x{sample(20'000, a_now(rng)), sample(1'200'000, a_before(rng)),
                   sample(20'000, b_now(rng)), sample(1'200'000, b_before(rng))};
    failed += x.analyze(s).verdict == Status::kFail;
    failed_without += one(x.a_now, x.b_now, s, 1).verdict == Status::kFail;
  }
  EXPECT_LE(failed, kTrials * 2 / 100);
  EXPECT_GE(failed_without, kTrials * 95 / 100);
  std::printf("asymmetric cities: %d of %d trials failed (%d without the history)\n", failed,
              kTrials, failed_without);
}

TEST(Analysis, NextStep) {
  Result pass, fail, unsure;
  pass.verdict = Status::kPass;
  fail.verdict = Status::kFail;
  unsure.verdict = Status::kInconclusive;
  Settings s;  // wait, at most 10m
  EXPECT_EQ(next_step(pass, s, 0), Step::kProceed);
  EXPECT_EQ(next_step(fail, s, 0), Step::kRollBack);
  EXPECT_EQ(next_step(unsure, s, 0), Step::kWait);
  EXPECT_EQ(next_step(unsure, s, 599'999), Step::kWait);
  EXPECT_EQ(next_step(unsure, s, 600'000), Step::kRollBack);  // never measured: a failure
  s.on_inconclusive = OnInconclusive::kProceed;
  EXPECT_EQ(next_step(unsure, s, 0), Step::kProceed);
  s.on_inconclusive = OnInconclusive::kFail;
  EXPECT_EQ(next_step(unsure, s, 0), Step::kRollBack);
  EXPECT_EQ(step_name(Step::kRollBack), "roll_back");
}

// Equal groups, many times over: the default settings may not fail a healthy change more often
// than alpha allows. Each trial draws two groups of 2,000 requests from the same service (1%
// errors, 2% 429s, log-normal latency around 4 ms) and analyses all four measurements. Three of
// them test at alpha 0.01, so at most 3% of trials may fail (the union bound); the one-sided
// Fisher test's exact size at 1% errors and 2,000 a side is 0.68% (summed over every pair of
// error counts in Python), so about 1.5% are expected.
TEST(Analysis, EqualGroupsPassOverSeededTrials) {
  const Settings s =
      only({Measure::kErrorRatio, Measure::kP99, Measure::k429s, Measure::kBreakerOpens});
  std::mt19937_64 rng(20261207);
  std::bernoulli_distribution error(0.01), throttled(0.02);
  std::lognormal_distribution<double> latency(std::log(0.004), 0.5);
  constexpr int kTrials = 2000;
  int failed = 0, inconclusive = 0;
  for (int t = 0; t < kTrials; ++t) {
    Sample g[2];
    for (Sample& x : g) {
      x = sample(2000, 0, histogram({}));
      for (int i = 0; i < 2000; ++i) {
        x.errors += error(rng);
        x.throttled += throttled(rng);
        observe(x.latency, latency(rng));
      }
    }
    const Result r = one(g[0], g[1], s, 1);
    failed += r.verdict == Status::kFail;
    inconclusive += r.verdict == Status::kInconclusive;
  }
  EXPECT_LE(failed, kTrials * 3 / 100);
  EXPECT_EQ(inconclusive, 0);
  std::printf("equal groups: %d of %d trials failed\n", failed, kTrials);
}

// And the same trials with a real regression (1% -> 3% errors) fail nearly always.
TEST(Analysis, RegressionFailsOverSeededTrials) {
  const Settings s = only({Measure::kErrorRatio});
  std::mt19937_64 rng(7);
  std::binomial_distribution<uint64_t> good(2000, 0.01), bad(2000, 0.03);
  constexpr int kTrials = 400;
  int failed = 0;
  for (int t = 0; t < kTrials; ++t)
    failed += one(sample(2000, bad(rng)), sample(2000, good(rng)), s).verdict == Status::kFail;
  EXPECT_GE(failed, kTrials * 95 / 100);
  std::printf("regressions: %d of %d trials failed\n", failed, kTrials);
}

TEST(Analysis, Json) {
  const Result r = one(sample(1000, 41), sample(5000, 10), only({Measure::kErrorRatio}));
  const nlohmann::json j = to_json(r);
  EXPECT_EQ(j["verdict"], "fail");
  EXPECT_EQ(j["measurements"][0]["measure"], "error_ratio");
  EXPECT_EQ(j["measurements"][0]["against"], "unchanged gateways");
  EXPECT_EQ(j["measurements"][0]["status"], "fail");
  EXPECT_EQ(j["measurements"][0]["candidate_n"], 1000);
  EXPECT_TRUE(j["measurements"][0]["p"].is_number());
  EXPECT_EQ(to_json(one(sample(1, 0), sample(1, 0),
                        only({Measure::kErrorRatio})))["measurements"][0]["p"],
            nullptr);
}

}  // namespace
}  // namespace sluice::control::analysis
