// The two tests against values computed independently, and their work bounded for counts up to
// 1e8 and beyond (the number of terms summed is checked, not the time taken).
#include "control/analysis/statistics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace sluice::control::analysis {
namespace {

// Relative closeness, for p-values that span many orders of magnitude.
void expect_close(double got, double want, double rel = 1e-9) {
  EXPECT_NEAR(got, want, std::abs(want) * rel) << "got " << got << " want " << want;
}

// Reference p-values by exact enumeration over the hypergeometric distribution with Python's
// integers (no floating point until the final division), /tmp-free one-liner equivalent:
//   from math import comb
//   def p(a, na, b, nb):
//       N, K = na + nb, a + b
//       return sum(comb(K, x) * comb(N - K, na - x) for x in range(a, min(na, K) + 1)) / comb(N,
//       na)
TEST(Fisher, MatchesExactEnumeration) {
  expect_close(fisher_greater(3, 4, 1, 4).p, 0.24285714285714285);  // the lady tasting tea: 17/70
  expect_close(fisher_greater(3, 10, 0, 10).p, 0.10526315789473684);
  expect_close(fisher_greater(7, 200, 0, 200).p, 0.007406481321436423);
  expect_close(fisher_greater(60, 5000, 35, 5000).p, 0.006472591692948634);
  expect_close(fisher_greater(130, 20000, 100, 20000).p, 0.027456020432615098);
  expect_close(fisher_greater(1, 200, 0, 10000).p, 0.0196078431372549);
  expect_close(fisher_greater(41, 1000, 10, 5000).p, 1.4396742342571978e-23, 1e-8);
  // Below the mode: one minus the lower tail.
  expect_close(fisher_greater(5, 1000, 10, 1000).p, 0.9414533957119401);
  expect_close(fisher_greater(2, 50, 40, 2000).p, 0.2732937572115589);
}

TEST(Fisher, TrivialTablesHaveNoEvidence) {
  EXPECT_EQ(fisher_greater(0, 100, 5, 100).p, 1.0);  // no candidate events
  EXPECT_EQ(fisher_greater(0, 100, 0, 100).p, 1.0);
  EXPECT_EQ(fisher_greater(5, 100, 0, 0).p, 1.0);  // no baseline: X is always 5
  EXPECT_EQ(fisher_greater(5, 0, 0, 100).p, 1.0);  // events without requests are clamped to 0
  // Every request of both groups failed: the table is fixed.
  EXPECT_EQ(fisher_greater(10, 10, 10, 10).p, 1.0);
  // Events above their total are clamped: 300 of 200 is 200 of 200.
  EXPECT_EQ(fisher_greater(300, 200, 0, 200).p, fisher_greater(200, 200, 0, 200).p);
}

TEST(Fisher, TinyPValuesStayFiniteAndPositiveWhereRepresentable) {
  // All 100 candidate requests failed, none of 100 baseline ones: p = 1 / C(200, 100).
  const double p = fisher_greater(100, 100, 0, 100).p;
  EXPECT_GT(p, 0.0);
  EXPECT_NEAR(std::log(p), -(std::lgamma(201.0) - 2 * std::lgamma(101.0)), 1e-6);
  // 1e4 of 1e4 vs 0 of 1e4: far below the smallest double, reported as 0, not NaN.
  const double q = fisher_greater(10'000, 10'000, 0, 10'000).p;
  EXPECT_FALSE(std::isnan(q));
  EXPECT_EQ(q, 0.0);
}

TEST(Fisher, CountsOf1e7And1e8AreFiniteWithBoundedWork) {
  // 1e7 requests a side, 0.102% vs 0.100% errors: the normal approximation of the same
  // distribution gives z = (10200 - 0.5 - 10100) / 71.06 = 1.40, p = 0.081.
  FisherResult r = fisher_greater(10'200, 10'000'000, 10'000, 10'000'000);
  EXPECT_FALSE(r.approx);
  EXPECT_NEAR(r.p, 0.081, 0.003);
  EXPECT_LE(r.terms, 2'000u);  // ~9 standard deviations of 71
  // A clear regression at 1e8 a side: p underflows towards 0, never NaN.
  r = fisher_greater(2'000'000, 100'000'000, 1'000'000, 100'000'000);
  EXPECT_FALSE(r.approx);
  EXPECT_FALSE(std::isnan(r.p));
  EXPECT_LT(r.p, 1e-300);
  EXPECT_LE(r.terms, 100u);  // 577 sd out, each term about half the one before
  // Half of all requests failed on both sides, 1e8 each, the observed value at the mode: the
  // worst case for the number of terms (sd = sqrt(N)/4 ~ 3536).
  r = fisher_greater(50'000'000, 100'000'000, 50'000'000, 100'000'000);
  EXPECT_FALSE(r.approx);
  EXPECT_NEAR(r.p, 0.5, 0.001);
  EXPECT_LE(r.terms, 10 * 3536u);
  // The largest exact size: N = 2^32, at the mode.
  const uint64_t half = kFisherExactMax / 2;
  r = fisher_greater(half / 2, half, half / 2, half);
  EXPECT_FALSE(r.approx);
  EXPECT_NEAR(r.p, 0.5, 0.001);
  EXPECT_LE(r.terms, 10 * 16384u);
}

TEST(Fisher, AboveTheExactSizeTheNormalApproximationAgreesWithTheExactSum) {
  // Just under and just over the limit, the same ratios: the same p within the approximation's
  // error (z = 2; with 4.3e6 events the distribution is all but symmetric).
  const uint64_t n = kFisherExactMax / 2 - 1;
  const uint64_t m = kFisherExactMax / 2 + 1;
  const FisherResult exact = fisher_greater(n / 1000 + 4'200, n, n / 1000, n);
  const FisherResult approx = fisher_greater(m / 1000 + 4'200, m, m / 1000, m);
  EXPECT_FALSE(exact.approx);
  EXPECT_TRUE(approx.approx);
  EXPECT_EQ(approx.terms, 0u);
  EXPECT_GT(exact.p, 0.0);
  EXPECT_NEAR(approx.p / exact.p, 1.0, 0.05);
  // Counts near 2^64 neither overflow nor hang.
  const FisherResult huge = fisher_greater(UINT64_MAX / 2, UINT64_MAX, UINT64_MAX / 4, UINT64_MAX);
  EXPECT_TRUE(huge.approx);
  EXPECT_FALSE(std::isnan(huge.p));
  EXPECT_LT(huge.p, 1e-300);
}

// Reference values: the observations expanded (value = bucket index), average ranks of the
// individual observations sorted in Python, U = R1 - n1(n1+1)/2, tie term sum(t^3 - t) over
// the groups of equal values, z = (U - n1 n2 / 2 - 0.5) / sigma, p = erfc(z / sqrt 2) / 2 (what
// scipy.stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic") computes).
TEST(MannWhitney, MatchesRanksOfTheExpandedObservations) {
  auto check = [](std::vector<uint64_t> a, std::vector<uint64_t> b, double u, double z, double p) {
    auto r = mann_whitney_greater(a, b);
    ASSERT_TRUE(r.has_value());
    EXPECT_DOUBLE_EQ(r->u, u);
    expect_close(r->z, z, 1e-12);
    expect_close(r->p, p, 1e-9);
  };
  check({1, 2, 3, 4}, {4, 3, 2, 1}, 75.0, 1.9103716915825568, 0.02804268651621672);
  check({0, 5, 10, 5}, {5, 10, 5, 0}, 325.0, 3.5674249890686673, 0.00018025326562271405);
  check({10, 20, 30, 40, 5}, {12, 25, 30, 30, 3}, 5882.5, 1.5492326487420938, 0.06066290183748435);
  check({50, 40, 9, 1, 0}, {20, 40, 30, 8, 2}, 2869.0, -5.534129086793487, 0.9999999843610718);
}

TEST(MannWhitney, RefusesWhatCannotBeRanked) {
  EXPECT_FALSE(mann_whitney_greater(std::vector<uint64_t>{1, 2}, std::vector<uint64_t>{1, 2, 3}));
  EXPECT_FALSE(mann_whitney_greater(std::vector<uint64_t>{0, 0}, std::vector<uint64_t>{1, 2}));
  // Everything in one bucket: every pair tied, no evidence.
  auto r = mann_whitney_greater(std::vector<uint64_t>{0, 7, 0}, std::vector<uint64_t>{0, 9, 0});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->p, 0.5);
}

TEST(MannWhitney, CountsOf1e8AreFinite) {
  std::vector<uint64_t> a = {20'000'000, 50'000'000, 29'000'000, 1'000'000};
  std::vector<uint64_t> b = {20'000'000, 50'000'000, 29'900'000, 100'000};
  auto r = mann_whitney_greater(a, b);
  ASSERT_TRUE(r);
  EXPECT_TRUE(std::isfinite(r->z));
  // 900,000 more of a's requests in the slowest bucket; Python, the same bucket formula in
  // double precision: z = 36.04900057299452, p = 7.1488e-285.
  expect_close(r->z, 36.04900057299452, 1e-9);
  expect_close(r->p, 7.148800928140608e-285, 1e-6);
  // And the other way round: no evidence that b is slower.
  r = mann_whitney_greater(b, a);
  ASSERT_TRUE(r);
  EXPECT_GT(r->p, 0.999);
}

}  // namespace
}  // namespace sluice::control::analysis
