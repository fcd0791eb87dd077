#include "control/releases/driver.h"

#include <algorithm>

#include <fmt/format.h>

namespace sluice::control::releases {
namespace {

using Json = nlohmann::json;

// The part of one snapshot that is `service`'s share of `route` (a split route's
// routes.R.services.S entry), shaped as a snapshot of a route that sends to `service` alone, so
// that analysis::sum_snapshots reads it like any route (its breaker opens included).
std::optional<Json> share_of(const Json& snap, const std::string& route,
                             const std::string& service) {
  if (!snap.is_object()) return std::nullopt;
  auto gw = snap.find("gateway");
  auto routes = snap.find("routes");
  if (gw == snap.end() || !gw->is_string() || routes == snap.end() || !routes->is_object())
    return std::nullopt;
  auto r = routes->find(route);
  if (r == routes->end() || !r->is_object()) return std::nullopt;
  Json entry;
  if (auto split = r->find("services"); split != r->end() && split->is_object()) {
    auto e = split->find(service);
    if (e == split->end() || !e->is_object()) return std::nullopt;
    entry = *e;
  } else if (auto one = r->find("service"); one != r->end() && *one == service) {
    entry = *r;  // the whole route went to this service in that snapshot
  } else {
    return std::nullopt;
  }
  entry.erase("services");
  entry["service"] = service;
  Json out = {{"gateway", *gw}, {"routes", {{route, std::move(entry)}}}};
  if (auto services = snap.find("services"); services != snap.end() && services->is_object()) {
    if (auto s = services->find(service); s != services->end() && s->is_object()) {
      // Only what the breaker measurement reads: the requests are the route's share above.
      Json b = Json::object();
      if (auto st = s->find("breaker"); st != s->end()) b["breaker"] = *st;
      if (auto n = s->find("breaker_opens"); n != s->end()) b["breaker_opens"] = *n;
      out["services"] = {{service, std::move(b)}};
    }
  }
  return out;
}

analysis::Sample sample_of(std::span<const Json> snapshots, const std::string& route,
                           const std::string& service) {
  std::vector<Json> shares;
  shares.reserve(snapshots.size());
  for (const Json& s : snapshots)
    if (auto v = share_of(s, route, service)) shares.push_back(std::move(*v));
  return analysis::sum_snapshots(shares, analysis::Scope{{}, {route}, {}});
}

}  // namespace

bool ReleaseState::is_final() const {
  return state == kPromoted || state == kRolledBack || state == kAborted;
}

Json ReleaseState::to_json() const {
  return Json{{"state", state},
              {"step", step},
              {"percent", percent},
              {"started_ms", started_ms},
              {"step_started_ms", step_started_ms},
              {"window_from_ms", window_from_ms},
              {"next_analysis_ms", next_analysis_ms},
              {"inconclusive_since_ms", inconclusive_since_ms},
              {"updated_ms", updated_ms},
              {"retry_at_ms", retry_at_ms},
              {"reason", reason},
              {"failed", failed},
              {"last_error", last_error},
              {"rollback_reason", rollback_reason},
              {"rollback_abort", rollback_abort},
              {"spec", spec},
              {"analyses", analyses}};
}

ReleaseState ReleaseState::from_json(const Json& j) {
  ReleaseState s;
  if (!j.is_object()) return s;
  auto str = [&](const char* k, std::string& out) {
    if (auto it = j.find(k); it != j.end() && it->is_string()) out = it->get<std::string>();
  };
  auto num = [&](const char* k, auto& out) {
    if (auto it = j.find(k); it != j.end() && it->is_number_integer())
      out = it->get<std::remove_reference_t<decltype(out)>>();
  };
  str("state", s.state);
  num("step", s.step);
  num("percent", s.percent);
  num("started_ms", s.started_ms);
  num("step_started_ms", s.step_started_ms);
  num("window_from_ms", s.window_from_ms);
  num("next_analysis_ms", s.next_analysis_ms);
  num("inconclusive_since_ms", s.inconclusive_since_ms);
  num("updated_ms", s.updated_ms);
  num("retry_at_ms", s.retry_at_ms);
  str("reason", s.reason);
  str("last_error", s.last_error);
  str("rollback_reason", s.rollback_reason);
  if (auto it = j.find("rollback_abort"); it != j.end() && it->is_boolean())
    s.rollback_abort = it->get<bool>();
  if (auto it = j.find("failed"); it != j.end() && it->is_array())
    for (const Json& f : *it)
      if (f.is_string()) s.failed.push_back(f.get<std::string>());
  if (auto it = j.find("spec"); it != j.end()) s.spec = *it;
  if (auto it = j.find("analyses"); it != j.end() && it->is_array())
    s.analyses.assign(it->begin(), it->end());
  return s;
}

Move due(const ReleaseState& s, const ReleaseSpec& spec, int64_t now) {
  if (now < s.retry_at_ms) return {};
  if (!s.rollback_reason.empty() && !s.is_final())
    return {Move::Kind::kRollBack, 0, s.rollback_reason, s.rollback_abort};
  if (s.state == kPending) return {Move::Kind::kStep, spec.steps.front(), {}, false};
  if (s.state != kStepping) return {};
  if (s.step < 0 || static_cast<size_t>(s.step) >= spec.steps.size())
    return {Move::Kind::kStep, spec.steps.front(), {}, false};
  // The steps may have been edited while stepping: the weights in force are what counts.
  if (s.percent >= 100) return {};
  if (now >= s.next_analysis_ms) return {Move::Kind::kAnalyze, s.percent, {}, false};
  return {};
}

analysis::Comparison compare(std::span<const Json> snapshots, const ReleaseSpec& spec,
                             uint32_t percent) {
  analysis::Comparison c;
  c.against = "stable";
  c.candidate = sample_of(snapshots, spec.route, spec.canary);
  c.baseline = sample_of(snapshots, spec.route, spec.stable);
  if (percent > 0 && percent < 100)
    c.expected_ratio = static_cast<double>(percent) / static_cast<double>(100 - percent);
  return c;
}

Move after_analysis(ReleaseState& s, const ReleaseSpec& spec, const analysis::Result& r,
                    int64_t now) {
  const int64_t inconclusive_for = s.inconclusive_since_ms < 0 ? 0 : now - s.inconclusive_since_ms;
  const analysis::Step step = analysis::next_step(r, spec.analysis, inconclusive_for);
  Json record = analysis::to_json(r);
  record["at_ms"] = now;
  record["step"] = s.step;
  record["percent"] = s.percent;
  record["window_from_ms"] = s.window_from_ms;
  record["next"] = analysis::step_name(step);
  s.analyses.push_back(std::move(record));
  if (s.analyses.size() > kMaxAnalysesKept)
    s.analyses.erase(
        s.analyses.begin(),
        s.analyses.begin() + static_cast<std::ptrdiff_t>(s.analyses.size() - kMaxAnalysesKept));
  s.updated_ms = now;
  s.next_analysis_ms = now + spec.analysis.interval_ms;
  if (r.verdict == analysis::Status::kInconclusive) {
    if (s.inconclusive_since_ms < 0) s.inconclusive_since_ms = now;
  } else {
    s.inconclusive_since_ms = -1;
  }
  switch (step) {
    case analysis::Step::kProceed: {
      auto next = std::upper_bound(spec.steps.begin(), spec.steps.end(), s.percent);
      return {Move::Kind::kStep, next == spec.steps.end() ? 100u : *next, {}, false};
    }
    case analysis::Step::kRollBack: {
      s.failed.clear();
      for (const analysis::Measurement& m : r.measurements)
        if (m.status == analysis::Status::kFail)
          s.failed.push_back(fmt::format("{} vs {}", analysis::measure_name(m.measure), m.against));
      std::string why = r.verdict == analysis::Status::kFail
                            ? r.summary
                            : fmt::format("inconclusive for {}s (max_wait): {}",
                                          inconclusive_for / 1000, r.summary);
      return begin_rollback(s, std::move(why), false, now);
    }
    case analysis::Step::kWait:
      break;
  }
  return {};
}

Move begin_rollback(ReleaseState& s, std::string reason, bool abort, int64_t now) {
  s.rollback_reason = std::move(reason);
  s.rollback_abort = abort;
  s.updated_ms = now;
  s.retry_at_ms = 0;
  return {Move::Kind::kRollBack, 0, s.rollback_reason, abort};
}

void committed(ReleaseState& s, const ReleaseSpec& spec, const Move& m, int64_t now) {
  s.updated_ms = now;
  s.last_error.clear();
  s.retry_at_ms = 0;
  if (m.kind == Move::Kind::kRollBack) {
    s.percent = 0;
    s.state = std::string(m.abort ? kAborted : kRolledBack);
    s.reason = m.reason;
    s.rollback_reason.clear();
    s.rollback_abort = false;
    return;
  }
  if (m.kind != Move::Kind::kStep) return;
  if (s.started_ms == 0) s.started_ms = now;
  s.percent = m.percent;
  auto it = std::find(spec.steps.begin(), spec.steps.end(), m.percent);
  s.step = it == spec.steps.end() ? static_cast<int>(spec.steps.size()) - 1
                                  : static_cast<int>(it - spec.steps.begin());
  s.step_started_ms = now;
  s.window_from_ms = now;
  s.next_analysis_ms = now + spec.analysis.interval_ms;
  s.inconclusive_since_ms = -1;
  if (m.percent >= 100) {
    s.state = std::string(kPromoted);
    s.reason = "every step passed its analysis; the route is on the canary";
  } else {
    s.state = std::string(kStepping);
  }
}

void write_failed(ReleaseState& s, const Move& m, const std::string& error, int64_t now) {
  s.updated_ms = now;
  s.last_error = error;
  // A rollback is retried soon; a step waits a second so that a refused write does not become
  // a loop of refusals.
  s.retry_at_ms = now + (m.kind == Move::Kind::kRollBack ? 200 : 1'000);
}

}  // namespace sluice::control::releases
