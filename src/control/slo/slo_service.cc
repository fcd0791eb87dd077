#include "control/slo/slo_service.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "control/rest.h"
#include "control/stats/stats_store.h"
#include "core/log.h"

namespace sluice::control::slo {
namespace {

using Json = nlohmann::json;

double round6(double v) {
  return std::isfinite(v) ? std::round(v * 1e6) / 1e6 : 0;
}

Json counts_json(const Counts& c) {
  return {{"requests", round6(c.total)}, {"bad", round6(c.bad)}};
}

Json figures_json(const Figures& f, const SloSpec& s) {
  Json burn = Json::object(), windows = Json::object();
  for (int w = 0; w < 6; ++w) {
    burn[kWindowNames[w]] = round6(f.burn[w]);
    windows[kWindowNames[w]] = counts_json(f.windows[w]);
  }
  const double allowed = f.budget_counts.total * s.budget();
  return {{"burn_rate", std::move(burn)},
          {"windows", std::move(windows)},
          {"error_budget", round6(allowed)},  // bad requests the objective allows in the window
          {"error_budget_spent", round6(f.budget_counts.bad)},
          {"error_budget_remaining", round6(f.budget_remaining)},
          {"sli", f.budget_counts.total > 0
                      ? Json(round6(100.0 * (1 - f.budget_counts.bad / f.budget_counts.total)))
                      : Json()},
          {"requests", round6(f.budget_counts.total)}};
}

Json alert_json(const Alert& a) {
  Json j = {{"slo", a.slo},
            {"city", a.city},
            {"severity", severity_name(a.severity)},
            {"rule", a.rule},
            {"state", a.resolved_ms == 0 ? "firing" : "resolved"},
            {"since_ms", a.since_ms},
            {"since", iso_time(a.since_ms)},
            {"burn_long", round6(a.burn_long)},
            {"burn_short", round6(a.burn_short)},
            {"factor", a.factor}};
  if (a.resolved_ms != 0) {
    j["resolved_ms"] = a.resolved_ms;
    j["resolved"] = iso_time(a.resolved_ms);
  }
  return j;
}

// A gauge series whose value the evaluation sets and a scrape reads (the registry's gauges hold
// integers: the value lives in the service, shared with the scrape function).
using Value = std::shared_ptr<std::atomic<double>>;

}  // namespace

std::span<const Migration> migrations(std::string_view) {
  return {};  // nothing stored: alert transitions are events, figures are rebuilt from stats
}

std::unique_ptr<Service> make_service(ServiceContext& ctx) {
  return std::make_unique<SloService>(ctx);
}

SloService::SloService(ServiceContext& ctx) : ctx_(ctx) {
  auto& m = ctx.metrics;
  evaluations_ = &m.counter("sluice_control_slo_evaluations_total",
                            "SLO evaluations (every SLO at once) by this control plane");
  fired_ = &m.counter("sluice_control_slo_alerts_fired_total", "SLO alerts that started firing");
  resolved_ =
      &m.counter("sluice_control_slo_alerts_resolved_total", "SLO alerts that stopped firing");
  // Scrape functions read atomics only: a scrape holds the registry's lock, and an evaluation
  // holds mu_ while it registers new series, so a scrape must never wait for mu_.
  for (Severity sev : {Severity::kPage, Severity::kTicket}) {
    m.gauge_fn("sluice_control_slo_alerts_firing", "SLO alerts firing now, by severity",
               [v = firing_count_[static_cast<int>(sev)]] { return v->load(); },
               {{"severity", severity_name(sev)}});
  }
  m.gauge_fn("sluice_control_slo_evaluation_seconds",
             "Wall time of the last SLO evaluation (every SLO), in seconds",
             [v = eval_seconds_] { return v->load(); });
  m.gauge_fn("sluice_control_slos", "SLOs evaluated", [v = slo_count_] { return v->load(); });
}

std::vector<Route> SloService::routes() {
  auto bind = [this](auto fn) { return member_route(this, fn); };
  using S = SloService;
  return {
      {"GET", {"v1", "slos"}, Role::kViewer, bind(&S::get_slos)},
      {"GET", {"v1", "slos", "{}"}, Role::kViewer, bind(&S::get_slo)},
      {"GET", {"v1", "alerts"}, Role::kViewer, bind(&S::get_alerts)},
  };
}

void SloService::tick(int64_t now) {
  if (now - last_eval_ms_ < ctx_.options.slo_interval_ms) return;
  last_eval_ms_ = now;
  ctx_.guarded("slo evaluation", [&] { evaluate(now); });
}

void SloService::evaluate(int64_t now) {
  const auto started = std::chrono::steady_clock::now();
  std::vector<Transition> transitions;
  {
    std::lock_guard lock(mu_);
    reload_locked(now);
    ingest_locked(now);
    transitions = engine_.evaluate(now);
    evaluated_ms_ = now;
    publish_locked(transitions, now);
  }
  // Events after the lock: the event log belongs to another service.
  for (const Transition& t : transitions) {
    Event e;
    e.at_ms = now;
    e.source = "control";
    e.kind = t.fired ? "slo_alert_fired" : "slo_alert_resolved";
    e.subject = "slo/" + t.alert.slo;
    e.detail = alert_json(t.alert);
    ctx_.events->append(e);
    (t.fired ? fired_ : resolved_)->inc();
    core::log_info("control: slo {} city {}: {} alert {} (rule {}, burn {:.2f}/{:.2f})",
                   t.alert.slo, t.alert.city, severity_name(t.alert.severity),
                   t.fired ? "fired" : "resolved", t.alert.rule, t.alert.burn_long,
                   t.alert.burn_short);
  }
  evaluations_->inc();
  eval_seconds_->store(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
}

void SloService::reload_locked(int64_t now) {
  // The resource set is read again only when a version was written (one cheap query).
  const int64_t version = ctx_.store.latest_version();
  if (version == version_) return;
  std::map<std::string, Json> slos;
  std::map<std::string, MaintenanceSpec> windows;
  if (version != 0) {
    for (Resource& r : ctx_.store.resources(0)) {
      if (r.kind == "slo") slos[r.name] = std::move(r.spec);
      if (r.kind == "maintenance_window") {
        try {
          windows[r.name] = parse_maintenance(r.spec);
        } catch (const std::exception&) {
          // checked on apply
        }
      }
    }
  }
  version_ = version;
  std::vector<std::string> fresh = engine_.set_slos(slos);
  engine_.set_maintenance(windows);
  if (!fresh.empty()) backfill_locked(fresh, now);
}

void SloService::backfill_locked(const std::vector<std::string>& fresh, int64_t now) {
  const std::set<std::string> only(fresh.begin(), fresh.end());
  // Snapshots in memory from `cut` on; stored minute rollups before it (a minute's rollup is the
  // sum of exactly the snapshots taken in that minute, so the two never overlap).
  const int64_t horizon = now - ctx_.options.recent_stats_ms + 1'000;
  const int64_t cut = horizon - ((horizon % kMinuteMs) + kMinuteMs) % kMinuteMs + kMinuteMs;
  const int64_t longest =
      std::min(engine_.longest_window_ms(), ctx_.options.stats_retention_ms) + kMinuteMs;
  if (now - longest < cut) {
    for (const Rollup& r : ctx_.stats->rollups(now - longest, cut, "")) {
      Json snap = r.data;
      if (!snap.is_object()) continue;
      // A minute's counts are placed at its middle, so windows cut minutes in half on average.
      snap["at_ms"] = r.minute_ms + kMinuteMs / 2;
      engine_.ingest(snap, &only);
    }
  }
  // Only snapshots already counted for the other SLOs: the others come with the next read.
  for (const Json& snap : ctx_.stats->recent(cut, INT64_MAX, "")) {
    auto g = seen_.find(snap.value("gateway", std::string()));
    const int64_t at = snap.value("at_ms", int64_t{0});
    if (g == seen_.end() || !g->second.contains(at)) continue;
    engine_.ingest(snap, &only);
  }
}

void SloService::ingest_locked(int64_t now) {
  int64_t from = read_to_ms_ - kLateSnapshotMs;
  if (read_to_ms_ == 0) {
    // The first read: what backfill_locked did not take from the rollups.
    const int64_t horizon = now - ctx_.options.recent_stats_ms + 1'000;
    from = horizon - ((horizon % kMinuteMs) + kMinuteMs) % kMinuteMs + kMinuteMs;
  }
  for (const Json& snap : ctx_.stats->recent(from, INT64_MAX, "")) {
    const std::string gateway = snap.value("gateway", std::string());
    const int64_t at = snap.value("at_ms", int64_t{0});
    if (!seen_[gateway].insert(at).second) continue;
    engine_.ingest(snap);
  }
  read_to_ms_ = now;
  // Forget what can no longer be read again (backfill_locked reads what is in memory: keep that).
  const int64_t keep = std::min(from, now - ctx_.options.recent_stats_ms) - kLateSnapshotMs;
  for (auto it = seen_.begin(); it != seen_.end();) {
    auto& set = it->second;
    set.erase(set.begin(), set.lower_bound(keep));
    it = set.empty() ? seen_.erase(it) : std::next(it);
  }
}

void SloService::publish_locked(const std::vector<Transition>&, int64_t) {
  auto& m = ctx_.metrics;
  auto& values = values_;
  std::set<std::string> live;
  auto set = [&](const std::string& slo, const std::string& city, const char* window, double v) {
    const std::string key = slo + "\n" + city + "\n" + window;
    live.insert(key);
    auto it = values.find(key);
    if (it == values.end()) {
      Value value = std::make_shared<std::atomic<double>>(v);
      it = values.emplace(key, value).first;
      if (std::string_view(window) == "budget") {
        m.gauge_fn("sluice_control_slo_error_budget_remaining",
                   "Share of the error budget left over the SLO window (1 = untouched, below 0 = "
                   "overspent), per SLO and city (all = every city)",
                   [value] { return value->load(); }, {{"slo", slo}, {"city", city}});
      } else {
        m.gauge_fn(
            "sluice_control_slo_burn_rate",
            "Error-budget burn rate per SLO, city (all = every city) and alert window (named for "
            "a 30d SLO; scaled with the SLO's window)",
            [value] { return value->load(); }, {{"slo", slo}, {"city", city}, {"window", window}});
      }
    }
    it->second->store(round6(v));
  };
  for (const SloStatus& s : engine_.status()) {
    auto put = [&](const std::string& city, const Figures& f) {
      for (int w = 0; w < 6; ++w) set(s.name, city, kWindowNames[w], f.burn[w]);
      set(s.name, city, "budget", f.budget_remaining);
    };
    put("all", s.overall);
    for (const CityStatus& c : s.cities) put(c.city, c.figures);
  }
  double pages = 0, tickets = 0;
  for (const auto& [_, a] : engine_.firing())
    (a.severity == Severity::kPage ? pages : tickets) += 1;
  firing_count_[0]->store(pages);
  firing_count_[1]->store(tickets);
  slo_count_->store(static_cast<double>(engine_.slo_count()));
  // Series of SLOs (or cities) no longer evaluated: NaN, which Prometheus reads as no value.
  for (auto& [key, value] : values)
    if (!live.contains(key)) value->store(std::numeric_limits<double>::quiet_NaN());
}

Json SloService::slo_json(const SloStatus& s, bool full) const {
  Json windows = Json::object();
  for (int w = 0; w < 6; ++w) windows[kWindowNames[w]] = s.spec.window(static_cast<Window>(w));
  Json cities = Json::array();
  for (const CityStatus& c : s.cities) {
    Json j = figures_json(c.figures, s.spec);
    j["city"] = c.city;
    j["alert"] = c.page() ? "page" : c.ticket() ? "ticket" : "none";
    if (!c.maintenance.empty()) j["maintenance"] = c.maintenance;
    if (c.rule.guarded_page || c.rule.guarded_ticket) j["guarded"] = true;
    cities.push_back(std::move(j));
  }
  Json j = {{"name", s.name},
            {"target", {{s.spec.target_kind, s.spec.target}}},
            {"sli", s.spec.sli == Sli::kLatency ? "latency" : "availability"},
            {"objective", s.spec.objective},
            {"window_ms", s.spec.window_ms},
            {"alert_windows_ms", std::move(windows)},
            {"overall", figures_json(s.overall, s.spec)},
            {"cities", std::move(cities)}};
  if (s.spec.sli == Sli::kLatency) j["threshold_s"] = s.spec.threshold_s;
  if (full) j["spec"] = s.raw;
  return j;
}

HttpResponse SloService::get_slos(const Call&) {
  std::lock_guard lock(mu_);
  Json list = Json::array();
  for (const SloStatus& s : engine_.status()) list.push_back(slo_json(s, false));
  return json_response(200, {{"slos", std::move(list)},
                             {"evaluated_ms", evaluated_ms_},
                             {"interval_ms", ctx_.options.slo_interval_ms}});
}

HttpResponse SloService::get_slo(const Call& c) {
  std::lock_guard lock(mu_);
  for (const SloStatus& s : engine_.status()) {
    if (s.name != c.params[0]) continue;
    Json j = slo_json(s, true);
    j["evaluated_ms"] = evaluated_ms_;
    return json_response(200, j);
  }
  return error_response(404, fmt::format("no slo named '{}' (evaluated)", c.params[0]));
}

HttpResponse SloService::get_alerts(const Call& c) {
  std::vector<std::string> errors;
  const std::string state = query_param(c.req.query, "state").value_or("firing");
  if (state != "firing" && state != "all")
    errors.push_back(fmt::format("state: expected firing or all, got '{}'", state));
  if (!errors.empty()) return error_response(400, errors.front(), errors);
  std::lock_guard lock(mu_);
  Json list = Json::array();
  for (const auto& [_, a] : engine_.firing()) list.push_back(alert_json(a));
  if (state == "all") {
    for (auto it = engine_.resolved().rbegin(); it != engine_.resolved().rend(); ++it)
      list.push_back(alert_json(*it));
  }
  return json_response(200, {{"alerts", std::move(list)}, {"evaluated_ms", evaluated_ms_}});
}

}  // namespace sluice::control::slo
