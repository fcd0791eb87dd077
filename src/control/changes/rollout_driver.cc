#include "control/changes/rollout_driver.h"

#include <algorithm>
#include <optional>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "control/analysis/analysis.h"
#include "control/analysis/sample.h"
#include "control/analysis/settings.h"
#include "control/changes/policy.h"
#include "control/changes/states.h"
#include "control/resources/resources_service.h"
#include "control/rest.h"
#include "control/stats/stats_store.h"
#include "core/log.h"

namespace sluice::control::changes {
namespace {

using Json = nlohmann::json;

constexpr const char* kSystemActor = "control-plane";
constexpr int kCommitAttempts = 20;
constexpr int64_t kRollupMinuteMs = 60'000;  // the stats' rollups are per minute since the epoch

std::vector<std::string> names(const Json& affected, const char* key) {
  std::vector<std::string> out;
  if (!affected.is_object()) return out;
  auto it = affected.find(key);
  if (it == affected.end() || !it->is_array()) return out;
  for (const Json& n : *it)
    if (n.is_string()) out.push_back(n.get<std::string>());
  return out;
}

// The settings in force after stage `stage` (1-based): the stage's own, else the plan's.
analysis::Settings settings_after(const rollout::Plan& p, size_t stage) {
  if (stage >= 1 && stage <= p.stages.size() && p.stages[stage - 1].analysis)
    return analysis::parse_settings(*p.stages[stage - 1].analysis);
  return analysis::parse_settings(p.analysis.value_or(Json()));
}

std::optional<rollout::Plan> plan_of(const ChangeRecord& c) {
  const Effective eff = Effective::from_json(c.policy);
  if (!eff.rollout.is_object()) return std::nullopt;
  std::vector<std::string> errors;
  auto p = rollout::parse_plan(eff.rollout, "rollout", errors);
  if (!p || p->stages.empty()) return std::nullopt;
  return p;
}

}  // namespace

RolloutDriver::RolloutDriver(ServiceContext& ctx) : ctx_(ctx) {
  auto& m = ctx.metrics;
  started_ = &m.counter("sluice_control_rollouts_started_total",
                        "Staged rollouts started through this control plane");
  rolled_back_ = &m.counter("sluice_control_rollouts_rolled_back_total",
                            "Staged rollouts rolled back (failed analysis or abort) by this "
                            "control plane");
  done_ = &m.counter("sluice_control_rollouts_done_total",
                     "Staged rollouts that reached every gateway, by this control plane");
  stages_ = &m.counter("sluice_control_rollouts_stages_reached_total",
                       "Rollout stages reached (the first at commit included)");
  analyses_ =
      &m.counter("sluice_control_rollouts_analyses_total", "Analyses run between rollout stages");
  m.gauge_fn("sluice_control_rollouts_stage", "Stage reached by the rollout running now (0: none)",
             [this] {
               std::lock_guard lock(mu_);
               return run_ && run_->phase == kRollingOut ? static_cast<double>(run_->stage) : 0.0;
             });
}

std::optional<int64_t> RolloutDriver::rolling() const {
  std::lock_guard lock(mu_);
  if (run_ && run_->phase == kRollingOut) return run_->change;
  return std::nullopt;
}

void RolloutDriver::prepare(int64_t base, int64_t now) {
  std::lock_guard lock(mu_);
  // The target is not known before the commit; base + 1 is what it will be if it succeeds, and
  // nobody is selected, so every gateway is served `base` until started().
  plan_.start("", base, base + 1);
  prepared_ms_ = now;
}

Json RolloutDriver::to_json(const Run& r) const {
  return Json{{"change", r.change},     {"phase", r.phase},
              {"base_version", r.base}, {"target_version", r.target},
              {"stage", r.stage},       {"started_ms", r.started_ms},
              {"stage_ms", r.stage_ms}, {"inconclusive_since_ms", r.inconclusive_since_ms},
              {"reason", r.reason},     {"analyses", r.analyses},
              {"plan", r.plan}};
}

std::optional<RolloutDriver::Run> RolloutDriver::from_json(int64_t change, int64_t seq,
                                                           const Json& j) {
  try {
    Run r;
    r.change = change;
    r.seq = seq;
    r.phase = j.at("phase").get<std::string>();
    r.base = j.at("base_version").get<int64_t>();
    r.target = j.at("target_version").get<int64_t>();
    r.stage = j.at("stage").get<size_t>();
    r.started_ms = j.at("started_ms").get<int64_t>();
    r.stage_ms = j.at("stage_ms").get<int64_t>();
    r.inconclusive_since_ms = j.at("inconclusive_since_ms").get<int64_t>();
    r.reason = j.value("reason", "");
    r.analyses = j.value("analyses", Json::array());
    r.plan = j.at("plan");
    return r;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

std::vector<rollout::Candidate> RolloutDriver::candidates(int64_t now) {
  std::vector<rollout::Candidate> out;
  if (ctx_.directory == nullptr) return out;
  for (const GatewayView& g : ctx_.directory->gateways(now))
    out.push_back({g.id, g.city, g.zone, g.health != "stale" && g.health != "exited"});
  return out;
}

bool RolloutDriver::store(int64_t now) {
  run_->plan = plan_.to_json();
  if (!ctx_.store.put_rollout_state(run_->change, run_->seq, to_json(*run_), now)) {
    core::log_info(
        "control: rollout of change {} moved meanwhile (another control plane); "
        "following it",
        run_->change);
    run_.reset();  // adopted again on the next tick
    return false;
  }
  ++run_->seq;
  return true;
}

void RolloutDriver::started(const ChangeRecord& c, int64_t now) {
  std::lock_guard lock(mu_);
  start_locked(c, now);
}

void RolloutDriver::start_locked(const ChangeRecord& c, int64_t now) {
  auto p = plan_of(c);
  if (!p) return;
  prepared_ms_ = -1;
  Run r;
  r.change = c.id;
  r.base = c.base_version;
  r.target = c.version;
  r.phase = kRollingOut;
  r.stage = 1;
  r.started_ms = now;
  r.stage_ms = now;
  const std::string id = std::to_string(c.id);
  plan_.start(id, r.base, r.target);
  plan_.reach(1, rollout::advance({}, p->stages[0].select, candidates(now), id));
  run_ = std::move(r);
  if (store(now)) {
    started_->inc();
    stages_->inc();
  }
  ctx_.feed->plan_changed(nullptr);
  core::log_info("control: change {} rolling out: stage 1 of {} ({}) on version {}", c.id,
                 p->stages.size(), p->stages[0].select.describe(), c.version);
}

bool RolloutDriver::adopt(int64_t id) {
  auto stored = ctx_.store.rollout_state(id);
  if (!stored) return false;
  auto r = from_json(id, stored->seq, stored->state);
  if (!r) {
    core::log_warn("control: rollout state of change {} does not read; left alone", id);
    return false;
  }
  if (auto errors = plan_.load(r->plan); !errors.empty()) {
    core::log_warn("control: rollout plan of change {} does not load: {}", id, errors.front());
    return false;
  }
  run_ = std::move(*r);
  prepared_ms_ = -1;
  ctx_.feed->plan_changed(nullptr);
  return true;
}

void RolloutDriver::recover() {
  std::lock_guard lock(mu_);
  std::vector<ChangeRecord> rolling = ctx_.store.changes(std::string(kRollingOut), 0, 1, false);
  if (rolling.empty()) return;
  const ChangeRecord& c = rolling.front();
  if (adopt(c.id)) {
    core::log_info("control: change {} is rolling out: resuming at stage {} ({})", c.id,
                   run_->stage, run_->phase);
    return;
  }
  // Committed but never stored: nobody selected, every gateway on the base until the first tick
  // starts it at stage 1.
  plan_.start("", c.base_version, c.version);
  core::log_info(
      "control: change {} is rolling out without a stored state: stage 1 on the next "
      "tick",
      c.id);
}

void RolloutDriver::tick(int64_t now) {
  std::lock_guard lock(mu_);
  if (prepared_ms_ >= 0 && !run_ && now - prepared_ms_ > kPreparedExpiryMs) {
    // The commit that prepare() pinned the plan for never came: serve the latest again.
    prepared_ms_ = -1;
    plan_.finish();
    ctx_.feed->plan_changed(nullptr);
  }
  std::vector<ChangeRecord> rolling = ctx_.store.changes(std::string(kRollingOut), 0, 1, false);
  if (rolling.empty()) {
    if (run_ && run_->phase == kRollingOut) {
      // Another control plane ended it: take its final state (the plan goes back to latest).
      plan_.finish();
      ctx_.feed->plan_changed(nullptr);
      run_.reset();
    }
    return;
  }
  const ChangeRecord& c = rolling.front();
  if (!run_ || run_->change != c.id) {
    if (!adopt(c.id)) {
      if (prepared_ms_ >= 0) return;  // started() is on its way
      // Committed but never stored (the control plane stopped in between): start it here.
      start_locked(ctx_.store.change(c.id).value_or(c), now);
      return;
    }
  } else if (auto stored = ctx_.store.rollout_state(c.id); stored && stored->seq != run_->seq) {
    adopt(c.id);
  }
  if (run_) drive(c, now);
}

void RolloutDriver::drive(const ChangeRecord& c, int64_t now) {
  auto p = plan_of(c);
  if (!p) return;
  Run& r = *run_;
  if (r.phase == kRolledBack) {
    // Rolled back but not finished (stopped between the plan and the commit): finish it.
    roll_back(c, kSystemActor, r.reason, now);
    return;
  }
  if (r.phase == kDone) {
    finish_done(c, now);
    return;
  }
  const analysis::Settings s = settings_after(*p, r.stage);
  int64_t wait = s.interval_ms;
  if (r.stage >= 1 && r.stage <= p->stages.size() && p->stages[r.stage - 1].pause_ms)
    wait = std::max(wait, *p->stages[r.stage - 1].pause_ms);
  if (now - r.stage_ms < wait) return;

  const rollout::StagedPlan::State ps = plan_.state();
  const std::vector<Json> recent = ctx_.stats != nullptr
                                       ? ctx_.stats->recent(now - s.interval_ms, now, "")
                                       : std::vector<Json>{};
  // Gateways report stats to the control plane they talk to; with several on one database each
  // judges only the gateways it heard from, so that a canary reporting elsewhere is not taken for
  // one whose traffic is gone.
  std::set<std::string> heard;
  for (const Json& snap : recent) {
    auto g = snap.find("gateway");
    if (g != snap.end() && g->is_string()) heard.insert(g->get<std::string>());
  }
  std::vector<std::string> changed, unchanged, changed_all, unchanged_all;
  for (const rollout::Candidate& g : candidates(now)) {
    if (!g.live) continue;
    const bool on_target = ps.selection.all || ps.selection.ids.count(g.id) > 0;
    (on_target ? changed_all : unchanged_all).push_back(g.id);
    if (heard.count(g.id) > 0) (on_target ? changed : unchanged).push_back(g.id);
  }
  if (changed.empty() && !changed_all.empty()) {
    // None of the changed gateways reports here. Another control plane that hears them drives
    // (and moves the stage clock); if none has for two intervals, judge with what is known: no
    // traffic from the changed gateways is then a failure (analysis.md, "traffic gone").
    if (now - r.stage_ms < 2 * wait) return;
    changed = changed_all;
    unchanged = unchanged_all;
  }
  const std::vector<std::string> routes = names(c.affected, "routes");
  const std::vector<std::string> services = names(c.affected, "services");
  const analysis::Scope changed_scope{changed, routes, services};
  const analysis::Scope unchanged_scope{unchanged, routes, services};
  std::vector<analysis::Comparison> comparisons;
  if (ctx_.stats != nullptr && !changed.empty()) {
    const analysis::Sample candidate = analysis::sum_snapshots(recent, changed_scope);
    std::optional<analysis::Before> history;
    if (s.history_ms > 0) {
      // Whole minutes before the change: the rollup of the minute it started in also holds what
      // came after, and a regression would be compared with itself.
      const int64_t before_end = r.started_ms - r.started_ms % kRollupMinuteMs;
      const std::vector<Rollup> rollups =
          ctx_.stats->rollups(before_end - s.history_ms, before_end, "");
      analysis::Before b{.against = "the hour before",
                         .candidate = analysis::sum_rollups(rollups, changed_scope),
                         .baseline = {},
                         .expected_ratio = static_cast<double>(s.interval_ms) / s.history_ms};
      // The hour before counts only when there was one: a fresh system has no history, and
      // an empty baseline would keep every analysis inconclusive.
      if (b.candidate.requests >= s.min_requests) {
        // The unchanged gateways over the same minutes: what they were like before the change
        // tells a difference that predates it from one the change made (analysis.md).
        if (!unchanged.empty()) b.baseline = analysis::sum_rollups(rollups, unchanged_scope);
        history = std::move(b);
      }
    }
    if (!unchanged.empty()) {
      comparisons.push_back({"unchanged gateways", candidate,
                             analysis::sum_snapshots(recent, unchanged_scope),
                             static_cast<double>(changed.size()) / unchanged.size(), history});
    } else if (history) {
      comparisons.push_back(
          {history->against, candidate, history->candidate, history->expected_ratio, std::nullopt});
    }
  }
  analysis::Result result = analysis::analyze(comparisons, s);
  const int64_t inconclusive_for = r.inconclusive_since_ms < 0 ? 0 : now - r.inconclusive_since_ms;
  analysis::Step step = analysis::next_step(result, s, inconclusive_for);
  // Every gateway has the change and there is no history to compare with: nothing is left to
  // judge, and the stages before passed theirs. Waiting would only end in a rollback at max_wait.
  const bool last = r.stage >= p->stages.size();
  if (last && comparisons.empty() && (ps.selection.all || unchanged_all.empty())) {
    step = analysis::Step::kProceed;
    result.summary =
        "no baseline left: every gateway has the change and there is no history "
        "before it with enough requests; the earlier stages passed";
  }
  analyses_->inc();
  Json a = analysis::to_json(result);
  a["stage"] = r.stage;
  a["at_ms"] = now;
  a["at"] = iso_time(now);
  a["step"] = analysis::step_name(step);
  a["changed_gateways"] = changed;
  a["unchanged_gateways"] = unchanged;
  r.analyses.push_back(std::move(a));
  while (r.analyses.size() > kMaxAnalysesKept) r.analyses.erase(r.analyses.begin());
  core::log_info("control: change {} stage {} analysis: {} -> {}", c.id, r.stage, result.summary,
                 analysis::step_name(step));

  switch (step) {
    case analysis::Step::kWait:
      if (r.inconclusive_since_ms < 0) r.inconclusive_since_ms = now;
      r.stage_ms = now;
      store(now);
      return;
    case analysis::Step::kRollBack: {
      std::string failed;
      for (const analysis::Measurement& m : result.measurements)
        if (m.status == analysis::Status::kFail) failed = m.summary;
      const std::string why =
          result.verdict == analysis::Status::kFail
              ? fmt::format("analysis failed at stage {}: {}", r.stage, result.summary)
              : fmt::format("analysis inconclusive for too long at stage {}: {}", r.stage,
                            result.summary);
      r.reason = why;
      roll_back(c, kSystemActor, why, now);
      return;
    }
    case analysis::Step::kProceed:
      break;
  }
  r.inconclusive_since_ms = -1;
  if (r.stage >= p->stages.size()) {
    r.phase = kDone;
    r.reason = "every stage passed its analysis";
    if (!store(now)) return;
    finish_done(c, now);
    return;
  }
  const std::string id = std::to_string(c.id);
  plan_.reach(r.stage + 1,
              rollout::advance(ps.selection, p->stages[r.stage].select, candidates(now), id));
  ++r.stage;
  r.stage_ms = now;
  if (!store(now)) return;
  stages_->inc();
  ctx_.feed->plan_changed(nullptr);
  core::log_info("control: change {} stage {} of {} ({}) reached", c.id, r.stage, p->stages.size(),
                 p->stages[r.stage - 1].select.describe());
}

void RolloutDriver::end_change(const ChangeRecord& c, std::string_view to, const std::string& actor,
                               const std::string& why, int64_t now) {
  ChangeUpdate u;
  u.transitions.push_back({now, std::string(kRollingOut), std::string(to), actor, why});
  if (!ctx_.store.update_change(c.id, std::string(kRollingOut), u, now))
    core::log_info("control: change {} was no longer rolling out when it ended", c.id);
}

void RolloutDriver::finish_done(const ChangeRecord& c, int64_t now) {
  end_change(c, kDone, kSystemActor, "every stage passed its analysis; every gateway is served it",
             now);
  plan_.finish();
  ctx_.feed->plan_changed(nullptr);
  done_->inc();
  run_.reset();
  Event e;
  e.at_ms = now;
  e.source = "control-plane";
  e.kind = "rollout_done";
  e.subject = fmt::format("change {}", c.id);
  e.detail = {{"change", c.id}, {"version", c.version}};
  if (ctx_.events != nullptr) ctx_.events->append(e);
  core::log_info("control: change {} done: every stage passed", c.id);
}

void RolloutDriver::roll_back(const ChangeRecord& c, const std::string& actor,
                              const std::string& why, int64_t now) {
  Run& r = *run_;
  // First every gateway back on base (one poll), then the bookkeeping.
  plan_.rollback();
  ctx_.feed->plan_changed(nullptr);
  if (r.phase != kRolledBack) {
    r.phase = kRolledBack;
    r.reason = why;
    if (!store(now)) return;
  }
  // `latest` must say base again: the base's resources, committed as a system rollback change.
  Store& st = ctx_.store;
  bool committed = false;
  for (int attempt = 0; attempt < kCommitAttempts && !committed; ++attempt) {
    const int64_t latest = st.latest_version();
    const std::vector<Resource> current = st.resources(latest);
    const std::vector<Resource> base = st.resources(r.base);
    const Json diff = resource_diff(current, base);
    if (diff.empty()) break;  // another control plane committed it already
    ChangeRecord rb;
    rb.operation = "rollback";
    rb.author = kSystemActor;
    rb.reason = fmt::format("rollback of change {}: {}", c.id, why);
    rb.base_version = latest;
    rb.target_version = r.base;
    rb.proposed_ms = now;
    rb.updated_ms = now;
    rb.diff = diff;
    rb.affected = c.affected;
    rb.policy = Effective{}.to_json();
    rb.transitions = {
        {now, "", std::string(kProposed), kSystemActor, rb.reason},
        {now, std::string(kProposed), std::string(kApproved), kSystemActor,
         "automatic rollback of a staged rollout"},
        {now, std::string(kApproved), std::string(kRollingOut), kSystemActor,
         fmt::format("committing version {}'s resources on version {}", r.base, latest)},
        {now, std::string(kRollingOut), std::string(kDone), kSystemActor,
         "committed; every gateway is served it"}};
    rb.state = kDone;
    const ChangeTransition undone{
        now, "", "", kSystemActor,
        fmt::format("undone by the rollback of change {} to version {}", c.id, r.base)};
    committed = st.commit_change(base, diff, latest, now, rb, {}, {}, undone) != 0;
  }
  end_change(c, kRolledBack, actor, why, now);
  plan_.finish();
  ctx_.feed->changed(nullptr);
  rolled_back_->inc();
  Event e;
  e.at_ms = now;
  e.source = "control-plane";
  e.kind = "rollout_rolled_back";
  e.subject = fmt::format("change {}", c.id);
  e.detail = {{"change", c.id},
              {"stage", r.stage},
              {"base_version", r.base},
              {"target_version", r.target},
              {"reason", why}};
  if (ctx_.events != nullptr) ctx_.events->append(e);
  core::log_warn("control: change {} rolled back to version {}: {}", c.id, r.base, why);
  run_.reset();
}

std::string RolloutDriver::abort(int64_t id, const std::string& actor, const std::string& reason,
                                 int64_t now) {
  std::lock_guard lock(mu_);
  auto c = ctx_.store.change(id);
  if (!c || c->state != kRollingOut) return fmt::format("change {} is not rolling out", id);
  if ((!run_ || run_->change != id) && !adopt(id))
    return fmt::format("change {} has no stored rollout state yet; retry in a second", id);
  const std::string why = fmt::format("aborted by {} at stage {}: {}", actor, run_->stage, reason);
  run_->reason = why;
  roll_back(*c, actor, why, now);
  return "";
}

std::optional<Json> RolloutDriver::status(int64_t id, int64_t now) {
  auto stored = ctx_.store.rollout_state(id);
  if (!stored) return std::nullopt;
  Json out = stored->state;
  out["seq"] = stored->seq;
  out["updated_ms"] = stored->updated_ms;
  out["stage_since"] = iso_time(out.value("stage_ms", int64_t{0}));
  if (auto c = ctx_.store.change(id); c) {
    out["state"] = c->state;
    if (auto p = plan_of(*c)) {
      out["stages"] = p->stages.size();
      Json st = Json::array();
      for (const rollout::Stage& s : p->stages) st.push_back(s.select.describe());
      out["stage_selectors"] = std::move(st);
      out["settings"] = analysis::to_json(settings_after(*p, out.value("stage", size_t{1})));
    }
  }
  if (ctx_.directory != nullptr) {
    Json on = Json::object();
    for (const auto& [v, ids] : ctx_.directory->gateways_on_versions(now))
      on[std::to_string(v)] = ids;
    out["gateways_on_versions"] = std::move(on);
  }
  return out;
}

}  // namespace sluice::control::changes
