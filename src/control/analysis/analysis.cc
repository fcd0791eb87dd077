#include "control/analysis/analysis.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <optional>

#include <fmt/format.h>

#include "control/analysis/statistics.h"

namespace sluice::control::analysis {
namespace {

using Json = nlohmann::json;

double ratio(uint64_t part, uint64_t whole) {
  return whole == 0 ? 0.0 : static_cast<double>(part) / static_cast<double>(whole);
}

std::string percent(double r) {
  return fmt::format("{:.2f}%", 100 * r);
}

std::string p_text(double p) {
  return p < 1e-300 ? "p<1e-300" : fmt::format("p={:.2g}", p);
}

std::string ms_text(double seconds) {
  return fmt::format("{:.1f}ms", 1000 * seconds);
}

uint64_t histogram_n(const stats::Latency& l) {
  uint64_t n = 0;
  for (uint64_t b : l.buckets) n += b;
  return n;
}

std::string too_little(uint64_t c, uint64_t b, uint64_t min, std::string_view what) {
  return fmt::format(
      "too little traffic: {} {} from the candidate, {} from the baseline; at least "
      "{} each",
      c, what, b, min);
}

// Error ratio and 429 share: the same test on a count out of requests.
Measurement proportion(Measure m, std::string_view label, uint64_t c_events, uint64_t b_events,
                       const Comparison& cmp, double max_increase, const Settings& s) {
  Measurement out;
  out.measure = m;
  out.candidate_n = cmp.candidate.requests;
  out.baseline_n = cmp.baseline.requests;
  // Events above the requests they belong to are a gateway's mistake: clamped, never > 100%.
  c_events = std::min(c_events, cmp.candidate.requests);
  b_events = std::min(b_events, cmp.baseline.requests);
  out.candidate = ratio(c_events, cmp.candidate.requests);
  out.baseline = ratio(b_events, cmp.baseline.requests);
  if (out.candidate_n < s.min_requests || out.baseline_n < s.min_requests) {
    out.summary = too_little(out.candidate_n, out.baseline_n, s.min_requests, "requests");
    return out;
  }
  const FisherResult f =
      fisher_greater(c_events, cmp.candidate.requests, b_events, cmp.baseline.requests);
  out.p = f.p;
  const std::string figures = fmt::format("{} {} vs {} ({})", label, percent(out.candidate),
                                          percent(out.baseline), p_text(f.p));
  const bool significant = f.p < s.alpha;
  const bool large = out.candidate - out.baseline > max_increase;
  if (significant && large) {
    out.status = Status::kFail;
    out.summary = fmt::format("{} exceeds +{}", figures, percent(max_increase));
  } else {
    out.status = Status::kPass;
    out.summary = !large ? fmt::format("{} within +{}", figures, percent(max_increase))
                         : fmt::format("{} not significant at alpha {}", figures, s.alpha);
  }
  return out;
}

// One-sided Fisher test of "more of the candidate's observations lie above the bucket that holds
// the baseline's p99 (the bucket where the baseline's cumulative count reaches 99%)".
double tail_test(const stats::Latency& c, const stats::Latency& b, uint64_t b_n) {
  const long double rank = 0.99L * static_cast<long double>(b_n);
  size_t j = 0;
  for (uint64_t below = 0; j < b.buckets.size(); ++j) {
    below += b.buckets[j];
    if (static_cast<long double>(below) >= rank) break;
  }
  uint64_t c_above = 0, b_above = 0, c_n = 0;
  for (size_t k = 0; k < c.buckets.size(); ++k) {
    c_n += c.buckets[k];
    if (k > j) {
      c_above += c.buckets[k];
      b_above += b.buckets[k];
    }
  }
  return fisher_greater(c_above, c_n, b_above, b_n).p;
}

Measurement p99(const Comparison& cmp, const Settings& s) {
  Measurement out;
  out.measure = Measure::kP99;
  const stats::Latency& c = cmp.candidate.latency;
  const stats::Latency& b = cmp.baseline.latency;
  out.candidate_n = histogram_n(c);
  out.baseline_n = histogram_n(b);
  if (out.candidate_n < s.min_requests || out.baseline_n < s.min_requests) {
    out.summary = too_little(out.candidate_n, out.baseline_n, s.min_requests, "latencies");
    return out;
  }
  if (c.mixed || b.mixed || c.bounds != b.bounds) {
    out.summary = "latency histograms with different bucket bounds cannot be compared";
    return out;
  }
  out.candidate = c.percentile(0.99).value_or(0);
  out.baseline = b.percentile(0.99).value_or(0);
  // Two tests, each at alpha/2 (Bonferroni: the smaller p doubled): Mann-Whitney sees a shift
  // of the whole distribution; the tail test sees more of the candidate's requests above the
  // bucket that holds the baseline's p99, which is what a p99 regression is when only the slowest
  // few percent got slower, and which Mann-Whitney hardly notices.
  const auto mw = mann_whitney_greater(c.buckets, b.buckets);
  const double tail = tail_test(c, b, out.baseline_n);
  out.p = std::min(1.0, 2 * std::min(mw ? mw->p : 1.0, tail));
  const double tolerance =
      std::max(out.baseline * s.max_p99_increase, s.max_p99_increase_ms / 1000);
  const std::string figures = fmt::format("p99 {} vs {} ({})", ms_text(out.candidate),
                                          ms_text(out.baseline), p_text(*out.p));
  const std::string limit =
      fmt::format("+{}% and +{}ms", 100 * s.max_p99_increase, s.max_p99_increase_ms);
  const bool significant = *out.p < s.alpha;
  const bool large = out.candidate - out.baseline > tolerance;
  if (significant && large) {
    out.status = Status::kFail;
    out.summary = fmt::format("{} exceeds {}", figures, limit);
  } else {
    out.status = Status::kPass;
    out.summary = !large ? fmt::format("{} within {}", figures, limit)
                         : fmt::format("{} not significant at alpha {}", figures, s.alpha);
  }
  return out;
}

Measurement throttled(const Comparison& cmp, const Settings& s) {
  if (!cmp.candidate.throttled_reported || !cmp.baseline.throttled_reported) {
    Measurement out;
    out.measure = Measure::k429s;
    out.candidate_n = cmp.candidate.requests;
    out.baseline_n = cmp.baseline.requests;
    out.summary = fmt::format("429s not reported by the {} gateways (stats key `throttled`)",
                              !cmp.candidate.throttled_reported ? "candidate's" : "baseline's");
    return out;
  }
  return proportion(Measure::k429s, "429 share", cmp.candidate.throttled, cmp.baseline.throttled,
                    cmp, s.max_429_increase, s);
}

Measurement breaker_opens(const Comparison& cmp, const Settings& s) {
  Measurement out;
  out.measure = Measure::kBreakerOpens;
  out.candidate_n = cmp.candidate.requests;
  out.baseline_n = cmp.baseline.requests;
  out.candidate = static_cast<double>(cmp.candidate.breaker_opens);
  out.baseline = static_cast<double>(cmp.baseline.breaker_opens);
  const std::string figures =
      fmt::format("{} breaker opens in {} requests vs {} in {}", cmp.candidate.breaker_opens,
                  cmp.candidate.requests, cmp.baseline.breaker_opens, cmp.baseline.requests);
  // Opens per request, compared without dividing: c/nc > b/nb <=> c*nb > b*nc.
  const bool more =
      static_cast<long double>(cmp.candidate.breaker_opens) * cmp.baseline.requests >
          static_cast<long double>(cmp.baseline.breaker_opens) * cmp.candidate.requests ||
      (cmp.candidate.breaker_opens > 0 && cmp.baseline.breaker_opens == 0);
  if (cmp.candidate.breaker_opens > s.max_breaker_opens && more) {
    out.status = Status::kFail;
    out.summary = fmt::format("{}: more than {} and more often than the baseline", figures,
                              s.max_breaker_opens);
  } else if (cmp.candidate.requests < s.min_requests) {
    out.summary =
        too_little(cmp.candidate.requests, cmp.baseline.requests, s.min_requests, "requests");
  } else {
    out.status = Status::kPass;
    out.summary = figures;
  }
  return out;
}

bool traffic_gone(const Comparison& cmp, const Settings& s, double* expected) {
  const double base = static_cast<double>(cmp.baseline.requests);
  *expected = cmp.expected_ratio > 0 ? base * cmp.expected_ratio : base;
  return cmp.candidate.requests == 0 && cmp.baseline.requests >= s.min_requests &&
         *expected >= static_cast<double>(s.min_requests);
}

// Every measurement of one comparison, in the settings' order; `gone` says whether they failed
// for lost traffic (never excused).
std::vector<Measurement> judge(const Comparison& cmp, const Settings& settings, bool* gone) {
  std::vector<Measurement> list;
  double expected = 0;
  *gone = traffic_gone(cmp, settings, &expected);
  for (Measure m : settings.measurements) {
    Measurement out;
    if (*gone) {
      out.measure = m;
      out.status = Status::kFail;
      out.baseline_n = cmp.baseline.requests;
      out.summary = fmt::format(
          "no requests from the candidate while the baseline had {} (about {:.0f} expected)",
          cmp.baseline.requests, expected);
    } else {
      switch (m) {
        case Measure::kErrorRatio:
          out = proportion(m, "error ratio", cmp.candidate.errors, cmp.baseline.errors, cmp,
                           settings.max_error_ratio_increase, settings);
          break;
        case Measure::kP99:
          out = p99(cmp, settings);
          break;
        case Measure::k429s:
          out = throttled(cmp, settings);
          break;
        case Measure::kBreakerOpens:
          out = breaker_opens(cmp, settings);
          break;
      }
    }
    out.against = cmp.against;
    list.push_back(std::move(out));
  }
  return list;
}

// The four groups of a staged rollout: changed (c) and unchanged (u) gateways, after (a) the
// change and before (b) it.
struct Groups {
  const Sample& ca;
  const Sample& cb;
  const Sample& ua;
  const Sample& ub;
};

// The change's own share of a measurement's worsening: the difference in differences
// (ca - cb) - (ua - ub). Nullopt when it cannot be said (a group too small, histograms that
// cannot be compared, 429s not reported); else whether it is within what the measurement
// allows, with a sentence.
struct Effect {
  bool within = false;
  std::string text;
};

// Proportions (errors, 429s) of a contrast of four binomials: the one-sided z-test of D > 0
// with Price & Bonett's adjustment for a linear function of m = 4 proportions (add 2/m events
// and 4/m trials to each: p~ = (x + 0.5) / (n + 1)), which keeps the test sane with no events
// in a group; D itself from the plain ratios.
std::optional<Effect> proportion_effect(std::string_view label, const uint64_t (&events)[4],
                                        const uint64_t (&n)[4], double max_increase,
                                        const Settings& s) {
  double raw[4], var = 0, adjusted = 0;
  const double sign[4] = {1, -1, -1, 1};
  for (int i = 0; i < 4; ++i) {
    if (n[i] < s.min_requests) return std::nullopt;
    const uint64_t x = std::min(events[i], n[i]);
    raw[i] = ratio(x, n[i]);
    const double nt = static_cast<double>(n[i]) + 1;
    const double pt = (static_cast<double>(x) + 0.5) / nt;
    adjusted += sign[i] * pt;
    var += pt * (1 - pt) / nt;
  }
  const double d = raw[0] - raw[1] - raw[2] + raw[3];
  const double p = 0.5 * std::erfc(adjusted / std::sqrt(var) / std::sqrt(2.0));
  Effect e;
  e.within = !(p < s.alpha && d > max_increase);
  e.text = fmt::format(
      "{} on the changed gateways {} -> {}, on the unchanged {} -> {}: the change's own share "
      "{}{} ({}) {} +{}",
      label, percent(raw[1]), percent(raw[0]), percent(raw[3]), percent(raw[2]), d < 0 ? "-" : "+",
      percent(std::fabs(d)), p_text(p), e.within ? "within" : "exceeds", percent(max_increase));
  return e;
}

std::optional<Effect> change_effect(Measure m, const Groups& g, const Settings& s) {
  const Sample* all[4] = {&g.ca, &g.cb, &g.ua, &g.ub};
  uint64_t n[4], events[4];
  switch (m) {
    case Measure::kErrorRatio:
      for (int i = 0; i < 4; ++i) {
        n[i] = all[i]->requests;
        events[i] = all[i]->errors;
      }
      return proportion_effect("error ratio", events, n, s.max_error_ratio_increase, s);
    case Measure::k429s:
      for (int i = 0; i < 4; ++i) {
        if (!all[i]->throttled_reported) return std::nullopt;
        n[i] = all[i]->requests;
        events[i] = all[i]->throttled;
      }
      return proportion_effect("429 share", events, n, s.max_429_increase, s);
    case Measure::kP99: {
      double q[4];
      for (int i = 0; i < 4; ++i) {
        const stats::Latency& l = all[i]->latency;
        if (histogram_n(l) < s.min_requests || l.mixed || l.bounds != g.ca.latency.bounds)
          return std::nullopt;
        q[i] = l.percentile(0.99).value_or(0);
      }
      const double d = (q[0] - q[1]) - (q[2] - q[3]);
      const double tolerance = std::max(q[1] * s.max_p99_increase, s.max_p99_increase_ms / 1000);
      Effect e;
      e.within = d <= tolerance;
      e.text = fmt::format(
          "p99 on the changed gateways {} -> {}, on the unchanged {} -> {}: the change's own "
          "share {}{} {} {}",
          ms_text(q[1]), ms_text(q[0]), ms_text(q[3]), ms_text(q[2]), d < 0 ? "-" : "+",
          ms_text(std::fabs(d)), e.within ? "within" : "exceeds", ms_text(tolerance));
      return e;
    }
    case Measure::kBreakerOpens: {
      double rate[4];
      for (int i = 0; i < 4; ++i) {
        if (all[i]->requests < s.min_requests) return std::nullopt;
        rate[i] = static_cast<double>(all[i]->breaker_opens) /
                  static_cast<double>(all[i]->requests) * 1e6;
      }
      const double d = (rate[0] - rate[1]) - (rate[2] - rate[3]);
      Effect e;
      e.within = d <= 0;
      e.text = fmt::format(
          "breaker opens per million requests on the changed gateways {:.1f} -> {:.1f}, on "
          "the unchanged {:.1f} -> {:.1f}: the change's own share {:+.1f}",
          rate[1], rate[0], rate[3], rate[2], d);
      return e;
    }
  }
  return std::nullopt;
}

void excuse(Measurement& m, std::string why) {
  m.status = Status::kPass;
  m.excused = std::move(why);
  m.summary += "; not the change's doing: " + m.excused;
}

// A comparison with its history: CA vs UA and CA vs CB, failures that predate the change
// excused (analysis.h, "Differences that predate the change").
std::vector<Measurement> judge_with_history(const Comparison& cmp, const Settings& s) {
  const Before& b = *cmp.before;
  bool cross_gone = false, own_gone = false, trend_gone = false;
  std::vector<Measurement> cross = judge(cmp, s, &cross_gone);
  std::vector<Measurement> own =
      judge({b.against, cmp.candidate, b.candidate, b.expected_ratio, std::nullopt}, s, &own_gone);
  const std::vector<Measurement> trend =
      judge({"", cmp.baseline, b.baseline, b.expected_ratio, std::nullopt}, s, &trend_gone);
  const Groups g{cmp.candidate, b.candidate, cmp.baseline, b.baseline};
  for (size_t i = 0; i < s.measurements.size(); ++i) {
    if (own[i].status == Status::kFail && !own_gone && trend[i].status == Status::kFail) {
      if (auto e = change_effect(s.measurements[i], g, s); e && e->within)
        excuse(own[i],
               "the unchanged gateways got as much worse over the same time (" + e->text + ")");
    }
    if (cross[i].status == Status::kFail && !cross_gone && own[i].status == Status::kPass) {
      excuse(cross[i], own[i].excused.empty()
                           ? fmt::format("the changed gateways are no worse than {} ({})",
                                         b.against, own[i].summary)
                           : "the difference predates the change: " + own[i].excused);
    }
  }
  cross.insert(cross.end(), std::make_move_iterator(own.begin()),
               std::make_move_iterator(own.end()));
  return cross;
}

}  // namespace

std::string_view status_name(Status s) {
  switch (s) {
    case Status::kPass:
      return "pass";
    case Status::kFail:
      return "fail";
    case Status::kInconclusive:
      return "inconclusive";
  }
  return "inconclusive";
}

std::string_view step_name(Step s) {
  switch (s) {
    case Step::kProceed:
      return "proceed";
    case Step::kWait:
      return "wait";
    case Step::kRollBack:
      return "roll_back";
  }
  return "wait";
}

Result analyze(std::span<const Comparison> comparisons, const Settings& settings) {
  Result r;
  for (const Comparison& cmp : comparisons) {
    bool gone = false;
    std::vector<Measurement> list =
        cmp.before ? judge_with_history(cmp, settings) : judge(cmp, settings, &gone);
    r.measurements.insert(r.measurements.end(), std::make_move_iterator(list.begin()),
                          std::make_move_iterator(list.end()));
  }
  const auto count = [&](Status s) {
    return std::count_if(r.measurements.begin(), r.measurements.end(),
                         [&](const Measurement& m) { return m.status == s; });
  };
  if (count(Status::kFail) > 0) {
    r.verdict = Status::kFail;
  } else if (r.measurements.empty() || count(Status::kInconclusive) > 0) {
    r.verdict = Status::kInconclusive;
  } else {
    r.verdict = Status::kPass;
  }
  r.summary = std::string(status_name(r.verdict));
  if (r.measurements.empty()) {
    r.summary += ": nothing to compare";
  } else if (r.verdict == Status::kPass) {
    r.summary += fmt::format(": all {} measurements passed", r.measurements.size());
    std::string sep = "; not the change's doing: ";
    for (const Measurement& m : r.measurements) {
      if (m.excused.empty()) continue;
      r.summary +=
          fmt::format("{}{} vs {}: {}", sep, measure_name(m.measure), m.against, m.excused);
      sep = "; ";
    }
  } else {
    std::string sep = ": ";
    for (const Measurement& m : r.measurements) {
      if (m.status != r.verdict) continue;
      r.summary +=
          fmt::format("{}{} vs {}: {}", sep, measure_name(m.measure), m.against, m.summary);
      sep = "; ";
    }
  }
  return r;
}

Step next_step(const Result& r, const Settings& settings, int64_t inconclusive_for_ms) {
  switch (r.verdict) {
    case Status::kPass:
      return Step::kProceed;
    case Status::kFail:
      return Step::kRollBack;
    case Status::kInconclusive:
      break;
  }
  switch (settings.on_inconclusive) {
    case OnInconclusive::kProceed:
      return Step::kProceed;
    case OnInconclusive::kFail:
      return Step::kRollBack;
    case OnInconclusive::kWait:
      break;
  }
  return inconclusive_for_ms >= settings.max_wait_ms ? Step::kRollBack : Step::kWait;
}

nlohmann::json to_json(const Measurement& m) {
  Json j = {{"measure", measure_name(m.measure)},
            {"against", m.against},
            {"status", status_name(m.status)},
            {"candidate", m.candidate},
            {"baseline", m.baseline},
            {"candidate_n", m.candidate_n},
            {"baseline_n", m.baseline_n},
            {"summary", m.summary}};
  j["p"] = m.p ? Json(*m.p) : Json(nullptr);
  j["excused"] = m.excused.empty() ? Json(nullptr) : Json(m.excused);
  return j;
}

nlohmann::json to_json(const Result& r) {
  Json list = Json::array();
  for (const Measurement& m : r.measurements) list.push_back(to_json(m));
  return {{"verdict", status_name(r.verdict)},
          {"summary", r.summary},
          {"measurements", std::move(list)}};
}

}  // namespace sluice::control::analysis
