// The two significance tests the analysis rests on: a one-sided Fisher's exact test for counts
// (errors, 429s out of requests) and a one-sided Mann-Whitney U test over latency histograms.
// Pure functions of their counts, bounded work for any input.
//
// Semantics, exactly:
// - fisher_greater(a, n_a, b, n_b): H1 "group a's rate is higher than group b's". p is
//   P(X >= a) for X hypergeometric (population n_a + n_b, successes a + b, draws n_a): the
//   probability, with the margins fixed, of a table at least as extreme as the one observed.
//   Events above their total are clamped to the total.
//   Terms come from std::lgamma once, then from the ratio of consecutive terms; the tail is
//   summed away from the mode (the upper tail when a is above the mode, else one minus the lower
//   tail), stopping when a term falls under 1e-17 of the sum. A hypergeometric distribution's
//   standard deviation is at most sqrt(N)/4 and its terms fall like a normal density's, so the
//   sum ends within about 9 standard deviations: for N = n_a + n_b <= kFisherExactMax (2^32),
//   at most about 150,000 terms (kFisherMaxTerms caps it). Above that size, or should the cap be
//   reached, the normal approximation of the same hypergeometric distribution (mean n_a*K/N, its
//   exact variance, continuity correction 0.5).
// - mann_whitney_greater(a, b): H1 "a's values tend to be larger than b's". The buckets are the
//   same bins for both (the caller checks the bounds); every observation in a bin is tied with
//   every other one in it. U_a = sum over bins of a[k] * (b below bin k + b[k] / 2), the number
//   of pairs where a is larger plus half the ties; z = (U_a - n_a*n_b/2 - 0.5) / sigma with the
//   tie-corrected sigma^2 = n_a*n_b/12 * ((N + 1) - sum(t^3 - t) / (N * (N - 1))); p = P(Z >= z).
//   The formula of scipy.stats.mannwhitneyu(a, b, alternative="greater", method="asymptotic")
//   over the expanded observations. All observations tied (sigma = 0): p = 0.5.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

namespace sluice::control::analysis {

inline constexpr uint64_t kFisherExactMax = uint64_t{1} << 32;
inline constexpr uint64_t kFisherMaxTerms = 1'000'000;

struct FisherResult {
  double p = 1.0;
  uint64_t terms = 0;   // hypergeometric terms summed (0: approximated or trivial)
  bool approx = false;  // the normal approximation was used (N > kFisherExactMax)
};

FisherResult fisher_greater(uint64_t a_events, uint64_t a_total, uint64_t b_events,
                            uint64_t b_total);

struct MannWhitney {
  double u = 0;  // U of group a
  double z = 0;
  double p = 0.5;
};

// Nullopt when the bucket lists differ in length or either group is empty.
std::optional<MannWhitney> mann_whitney_greater(std::span<const uint64_t> a,
                                                std::span<const uint64_t> b);

}  // namespace sluice::control::analysis
