#include "control/analysis/statistics.h"

#include <algorithm>
#include <cmath>

namespace sluice::control::analysis {
namespace {

// Relative size under which a term no longer changes the sum of a double.
constexpr double kNegligible = 1e-17;

double log_choose(double n, double k) {
  return std::lgamma(n + 1) - std::lgamma(k + 1) - std::lgamma(n - k + 1);
}

// P(Z >= z) for a standard normal Z.
double upper_normal(double z) {
  return 0.5 * std::erfc(z / std::sqrt(2.0));
}

// Hypergeometric P(X >= x): population n_pop, k successes, n draws, by its normal approximation.
double hypergeometric_upper_normal(double x, double n, double k, double n_pop) {
  const double mean = n * k / n_pop;
  const double var = n * k * (n_pop - k) * (n_pop - n) / (n_pop * n_pop * (n_pop - 1));
  if (!(var > 0)) return x > mean ? 0.0 : 1.0;
  return upper_normal((x - 0.5 - mean) / std::sqrt(var));
}

}  // namespace

FisherResult fisher_greater(uint64_t a_events, uint64_t a_total, uint64_t b_events,
                            uint64_t b_total) {
  FisherResult r;
  const uint64_t a = std::min(a_events, a_total);
  const uint64_t b = std::min(b_events, b_total);
  // Totals near 2^64 cannot be added; such counts are far past the exact range anyway.
  const long double n_pop_ld = static_cast<long double>(a_total) + b_total;
  if (a == 0 || b_total == 0) return r;  // P(X >= 0) = 1; without b, X is always a
  const double n = static_cast<double>(a_total);
  const double k = static_cast<double>(a) + static_cast<double>(b);
  const double n_pop = static_cast<double>(n_pop_ld);
  const double x0 = static_cast<double>(a);
  const double lo = std::max(0.0, n + k - n_pop);
  const double hi = std::min(n, k);
  if (x0 <= lo) return r;

  auto approximate = [&] {
    r.approx = true;
    r.terms = 0;
    r.p = hypergeometric_upper_normal(x0, n, k, n_pop);
    return r;
  };
  if (n_pop_ld > static_cast<long double>(kFisherExactMax)) return approximate();

  const double log_total = log_choose(n_pop, n);
  auto log_pmf = [&](double x) {
    return log_choose(k, x) + log_choose(n_pop - k, n - x) - log_total;
  };
  const double mode = std::floor((n + 1) * (k + 1) / (n_pop + 2));
  const double others = n_pop - k - n;  // may be negative; x + others + 1 > 0 for x >= lo

  double sum = 1.0, term = 1.0;
  uint64_t terms = 1;
  if (x0 > mode) {
    // Upper tail: terms fall from x0 on.
    for (double x = x0; x < hi; x += 1) {
      term *= (k - x) * (n - x) / ((x + 1) * (others + x + 1));
      sum += term;
      if (++terms > kFisherMaxTerms) return approximate();
      if (term < kNegligible * sum) break;
    }
    r.p = std::exp(log_pmf(x0) + std::log(sum));
  } else {
    // One minus the lower tail P(X <= x0 - 1): terms fall from x0 - 1 down.
    for (double x = x0 - 1; x > lo; x -= 1) {
      term *= x * (others + x) / ((k - x + 1) * (n - x + 1));
      sum += term;
      if (++terms > kFisherMaxTerms) return approximate();
      if (term < kNegligible * sum) break;
    }
    r.p = 1.0 - std::exp(log_pmf(x0 - 1) + std::log(sum));
  }
  r.p = std::clamp(r.p, 0.0, 1.0);
  r.terms = terms;
  return r;
}

std::optional<MannWhitney> mann_whitney_greater(std::span<const uint64_t> a,
                                                std::span<const uint64_t> b) {
  if (a.size() != b.size()) return std::nullopt;
  long double n_a = 0, n_b = 0;
  for (uint64_t v : a) n_a += v;
  for (uint64_t v : b) n_b += v;
  if (n_a == 0 || n_b == 0) return std::nullopt;
  // U counted as pairs (a larger, plus half the ties) rather than from rank sums: no
  // cancellation between two sums near n_a * N when the counts are large.
  long double u = 0, b_below = 0, ties = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const long double ai = a[i], bi = b[i], t = ai + bi;
    u += ai * (b_below + bi / 2);
    ties += t * t * t - t;
    b_below += bi;
  }
  const long double n = n_a + n_b;
  const long double var = n_a * n_b / 12 * ((n + 1) - ties / (n * (n - 1)));
  MannWhitney r;
  r.u = static_cast<double>(u);
  if (!(var > 0)) return r;  // every observation tied: no evidence either way
  r.z = static_cast<double>((u - n_a * n_b / 2 - 0.5L) / std::sqrt(var));
  r.p = upper_normal(r.z);
  return r;
}

}  // namespace sluice::control::analysis
