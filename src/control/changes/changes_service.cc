#include "control/changes/changes_service.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "control/changes/affected.h"
#include "control/changes/freeze.h"
#include "control/changes/policy.h"
#include "control/changes/states.h"
#include "control/resources/resources_service.h"
#include "control/rest.h"
#include "control/validate.h"
#include "core/log.h"

namespace sluice::control::changes {
namespace {

using Json = nlohmann::json;

constexpr int64_t kDefaultListLimit = 100;
constexpr int64_t kMaxListLimit = 1000;
constexpr int64_t kDayMs = 86'400'000;
constexpr int64_t kMaxWindowMs = 366 * kDayMs;
constexpr int64_t kMetricsWindowMs = 30 * kDayMs;
constexpr int64_t kFiguresCacheMs = 1'000;
constexpr int64_t kSweepMs = 1'000;
constexpr int kCommitAttempts = 20;
// Held changes the tick looks at in one sweep (oldest first within it is not needed: each is
// independent).
constexpr int64_t kSweepBatch = 100;
constexpr const char* kSystemActor = "control-plane";
// How often the rollout driver follows the stored state and checks its stage clock: a failed
// analysis is acted on within this of the interval's end.
constexpr int64_t kDriveMs = 200;

bool has_stages(const Effective& e) {
  if (!e.rollout.is_object()) return false;
  auto it = e.rollout.find("stages");
  return it != e.rollout.end() && it->is_array() && !it->empty();
}

Json transition_json(const ChangeTransition& t) {
  return Json{{"from", t.from},     {"to", t.to},       {"actor", t.actor},
              {"reason", t.reason}, {"at_ms", t.at_ms}, {"at", iso_time(t.at_ms)}};
}

Json approval_json(const ChangeApproval& a) {
  return Json{{"approver", a.approver},
              {"role", a.role},
              {"reason", a.reason},
              {"at_ms", a.at_ms},
              {"at", iso_time(a.at_ms)}};
}

Json change_json(const ChangeRecord& c, bool full) {
  const Effective eff = Effective::from_json(c.policy);
  Json j{{"id", c.id},
         {"operation", c.operation},
         {"author", c.author},
         {"reason", c.reason},
         {"state", c.state},
         {"emergency", c.emergency},
         {"review_required", c.review_required},
         {"base_version", c.base_version},
         {"version", c.version},
         {"proposed_ms", c.proposed_ms},
         {"proposed", iso_time(c.proposed_ms)},
         {"updated_ms", c.updated_ms},
         {"approvals_required", eff.approvals},
         {"affected", c.affected},
         {"policy", c.policy}};
  if (c.target_version > 0) j["target_version"] = c.target_version;
  if (full) {
    j["diff"] = c.diff;
    Json t = Json::array(), a = Json::array();
    for (const ChangeTransition& x : c.transitions) t.push_back(transition_json(x));
    for (const ChangeApproval& x : c.approvals) a.push_back(approval_json(x));
    j["transitions"] = std::move(t);
    j["approvals"] = std::move(a);
  }
  return j;
}

// "30d", "12h", "90m" -> ms.
std::optional<int64_t> parse_window(const std::string& s) {
  if (s.size() < 2) return std::nullopt;
  auto n = parse_int(std::string_view(s).substr(0, s.size() - 1));
  if (!n || *n <= 0 || *n > 100'000) return std::nullopt;
  switch (s.back()) {
    case 'd':
      return *n * kDayMs;
    case 'h':
      return *n * 3'600'000;
    case 'm':
      return *n * 60'000;
    default:
      return std::nullopt;
  }
}

// The reason every change action requires, as the other writes read it.
std::optional<std::string> read_reason(const Call& c, HttpResponse& bad) {
  auto body = parse_body(c.req.body.empty() ? "{}" : c.req.body, bad);
  if (!body) return std::nullopt;
  std::vector<std::string> errors;
  Fields f(*body, "", errors, {"reason"});
  auto reason = f.string("reason", true);
  if (reason && is_blank(*reason)) f.error("reason", "must not be empty or only blanks");
  if (reason && has_control_chars(*reason)) f.error("reason", kControlCharsError);
  if (!errors.empty()) {
    bad = error_response(400, errors.front(), errors);
    return std::nullopt;
  }
  return reason;
}

std::string policy_names(const Effective& e) {
  std::vector<std::string> named;
  for (const std::string& p : e.policies) named.push_back("change_policy/" + p);
  return fmt::format("{}", fmt::join(named, ", "));
}

std::string freeze_text(const Freeze& f) {
  return fmt::format("freeze_window/{}{} is in force until {} ({})", f.window,
                     f.reason.empty() ? "" : " (" + f.reason + ")", f.until_local,
                     iso_time(f.until_ms));
}

HttpResponse freeze_refusal(const Freeze& f, const Effective& e, const std::string& what) {
  return json_response(
      409, {{"error", fmt::format("{} refused: {}; {} does not allow changes during a freeze "
                                  "(on_freeze: refuse); nothing was applied",
                                  what, freeze_text(f), policy_names(e))},
            {"window", f.window},
            {"until_ms", f.until_ms},
            {"until", iso_time(f.until_ms)},
            {"until_local", f.until_local}});
}

const std::string& state_after(const ChangeUpdate& u, const std::string& expected) {
  return u.transitions.empty() ? expected : u.transitions.back().to;
}

HttpResponse moved(int64_t id) {
  return error_response(409, fmt::format("change {} moved meanwhile (another control plane acted "
                                         "on it); read it and retry",
                                         id));
}

}  // namespace

std::unique_ptr<Service> make_service(ServiceContext& ctx) {
  return std::make_unique<ChangesService>(ctx);
}

ChangesService::ChangesService(ServiceContext& ctx) : ctx_(ctx), driver_(ctx) {
  ctx_.changes = this;
  ctx_.versions = &driver_.plan();
  // Services are made before the server listens: a rollout under way is in the plan from the
  // first poll on.
  ctx_.guarded("rollout driver", [&] { driver_.recover(); });
  auto& m = ctx.metrics;
  proposed_ = &m.counter("sluice_control_changes_held_total",
                         "Config writes held as proposed changes (approval or freeze)");
  committed_ = &m.counter("sluice_control_changes_committed_total",
                          "Changes committed as config versions through this control plane");
  emergency_ = &m.counter("sluice_control_changes_emergency_total",
                          "Emergency changes committed through this control plane");
  const observability::Labels window{{"window", "30d"}};
  auto figure = [this](double (*pick)(const Figures&)) {
    return [this, pick] { return pick(cached_figures(ctx_.now_ms())); };
  };
  m.gauge_fn("sluice_control_change_deployments", "Changes that reached done in the window",
             figure([](const Figures& f) { return static_cast<double>(f.deployments); }), window);
  m.gauge_fn("sluice_control_change_deployment_frequency_per_day",
             "Changes that reached done in the window, per day",
             figure([](const Figures& f) { return f.per_day; }), window);
  m.gauge_fn("sluice_control_change_lead_time_p50_seconds",
             "Median time from proposed to done of the window's deployments (0 without any)",
             figure([](const Figures& f) { return f.lead_p50_s.value_or(0); }), window);
  m.gauge_fn("sluice_control_change_lead_time_p90_seconds",
             "90th percentile time from proposed to done of the window's deployments",
             figure([](const Figures& f) { return f.lead_p90_s.value_or(0); }), window);
  m.gauge_fn("sluice_control_change_failure_ratio",
             "Failed changes (rolled back, aborted after approval) over attempts in the window",
             figure([](const Figures& f) { return f.failure_rate; }), window);
  m.gauge_fn("sluice_control_change_restore_time_p50_seconds",
             "Median time from done to rolled back of the window's failed deployments",
             figure([](const Figures& f) { return f.restore_p50_s.value_or(0); }), window);
  m.gauge_fn("sluice_control_change_rollback_failure_ratio",
             "Failed rollback changes over rollback changes in the window",
             figure([](const Figures& f) { return f.rollback_failure_rate; }), window);
  m.gauge_fn(
      "sluice_control_change_reviews_pending", "Emergency changes of the window not reviewed yet",
      figure([](const Figures& f) { return static_cast<double>(f.review_pending); }), window);
}

std::vector<Route> ChangesService::routes() {
  auto bind = [this](auto fn) { return member_route(this, fn); };
  using S = ChangesService;
  // metrics before {}: the first matching pattern wins.
  return {
      {"GET", {"v1", "changes"}, Role::kViewer, bind(&S::get_changes)},
      {"GET", {"v1", "changes", "metrics"}, Role::kViewer, bind(&S::get_metrics)},
      {"GET", {"v1", "changes", "{}"}, Role::kViewer, bind(&S::get_change)},
      {"POST", {"v1", "changes", "{}", "approve"}, Role::kOperator, bind(&S::post_approve)},
      {"POST", {"v1", "changes", "{}", "reject"}, Role::kOperator, bind(&S::post_reject)},
      {"POST", {"v1", "changes", "{}", "abort"}, Role::kOperator, bind(&S::post_abort)},
      {"POST", {"v1", "changes", "{}", "review"}, Role::kOperator, bind(&S::post_review)},
      {"GET", {"v1", "changes", "{}", "rollout"}, Role::kViewer, bind(&S::get_rollout)},
  };
}

// ------------------------------------------------------------------------------ the gate

ChangeGate::Verdict ChangesService::review(const ChangeRequest& r, int64_t now) {
  Verdict out;
  const Effective eff = strictest(*r.current, touched(*r.diff));
  ChangeRecord& c = out.change;
  c.operation = r.operation;
  c.author = r.author;
  c.reason = r.reason;
  c.emergency = r.emergency;
  c.review_required = r.emergency;
  c.base_version = r.base;
  c.target_version = r.target_version;
  c.proposed_ms = now;
  c.diff = *r.diff;
  c.affected = affected(*r.current, *r.next, *r.diff, ctx_.store.instances());
  c.policy = eff.to_json();
  c.transitions.push_back({now, "", std::string(kProposed), r.author, r.reason});

  std::optional<Freeze> frozen;
  if (eff.any() && !r.emergency && !eff.freeze_allowed) frozen = frozen_at(*r.current, now);
  if (frozen && eff.refuse_in_freeze) {
    out.answer = freeze_refusal(*frozen, eff, "change");
    return out;
  }
  if (auto rolling = driver_.rolling()) {
    out.answer = busy(*rolling);
    return out;
  }
  if (!eff.any() || r.emergency || (eff.approvals == 0 && !frozen)) {
    const std::string why = r.emergency  ? "emergency: approval skipped, review required"
                            : !eff.any() ? "no change_policy matches"
                                         : fmt::format("{} needs no approval", policy_names(eff));
    c.transitions.push_back({now, std::string(kProposed), std::string(kApproved), r.author, why});
    c.transitions.push_back({now, std::string(kApproved), std::string(kRollingOut), r.author,
                             fmt::format("committing on version {}", r.base)});
    if (has_stages(eff) && !r.emergency) {
      // Staged: the change stays rolling_out; the driver reaches stage 1 once it is committed.
      driver_.prepare(r.base, now);
      c.state = kRollingOut;
    } else {
      c.transitions.push_back({now, std::string(kRollingOut), std::string(kDone), r.author,
                               "committed; every gateway is served it"});
      c.state = kDone;
    }
    out.rolled_back = {
        now, "", "", r.author,
        fmt::format("undone by a rollback to version {} ({})", r.target_version, r.reason)};
    return out;
  }
  Json body{{"state", kProposed},
            {"version", r.base},
            {"diff", *r.diff},
            {"approvals", 0},
            {"approvals_required", eff.approvals},
            {"role", role_name(eff.role)},
            {"policies", eff.policies}};
  std::string message;
  if (eff.approvals == 0) {
    // Frozen, on_freeze: wait: approved at once, committed when the freeze ends.
    c.transitions.push_back({now, std::string(kProposed), std::string(kApproved), r.author,
                             fmt::format("{} needs no approval; waiting: {}", policy_names(eff),
                                         freeze_text(*frozen))});
    body["state"] = kApproved;
    body["waiting_until"] = iso_time(frozen->until_ms);
    body["waiting_until_ms"] = frozen->until_ms;
    body["window"] = frozen->window;
    message = fmt::format("held: {}; it commits when the freeze ends", freeze_text(*frozen));
  } else {
    message = fmt::format(
        "held for approval: {} requires {} approval{} (role {} or higher) by "
        "someone other than {}; nothing was applied yet",
        policy_names(eff), eff.approvals, eff.approvals == 1 ? "" : "s", role_name(eff.role),
        r.author);
  }
  c.state = c.transitions.back().to;
  c.updated_ms = now;
  c.id = ctx_.store.add_change(c);
  proposed_->inc();
  core::log_info("control: change {} by {} held ({}): {}", c.id, r.author, c.state, r.reason);
  body["change"] = c.id;
  body["message"] = fmt::format("change {} {}", c.id, message);
  out.answer = json_response(202, body);
  return out;
}

void ChangesService::committed(const ChangeRecord& c) {
  if (c.state == kRollingOut) driver_.started(c, ctx_.now_ms());
  committed_->inc();
  if (c.emergency) emergency_->inc();
  {
    std::lock_guard lock(figures_mu_);
    figures_at_ms_ = -1;
  }
  core::log_info("control: change {} ({} by {}) {} as version {}{}", c.id, c.operation, c.author,
                 c.state, c.version, c.emergency ? ", emergency: review required" : "");
}

HttpResponse ChangesService::busy(int64_t rolling) const {
  return json_response(
      409, {{"error", fmt::format("change {} is rolling out in stages; one rollout runs at a time: "
                                  "wait for it to end (GET /v1/changes/{}/rollout) or abort it "
                                  "(POST /v1/changes/{}/abort); nothing was applied",
                                  rolling, rolling, rolling)},
            {"rolling_change", rolling}});
}

HttpResponse ChangesService::commit_held(ChangeRecord ch, const std::string& expected_state,
                                         ChangeUpdate u, const std::string& actor, int64_t now,
                                         Deferred* after) {
  Store& store = ctx_.store;
  const Effective eff = Effective::from_json(ch.policy);
  const size_t given = u.transitions.size();
  for (int attempt = 0; attempt < kCommitAttempts; ++attempt) {
    u.transitions.resize(given);
    const int64_t latest = store.latest_version();
    const std::vector<Resource> current =
        latest > 0 ? store.resources(latest) : std::vector<Resource>{};
    if (!ch.emergency && !eff.freeze_allowed) {
      if (auto f = frozen_at(current, now)) {
        if (eff.refuse_in_freeze)
          return freeze_refusal(*f, eff, fmt::format("committing change {}", ch.id));
        if (given > 0 || u.approval) {
          if (!store.update_change(ch.id, expected_state, u, now)) return moved(ch.id);
        }
        return json_response(
            202, {{"change", ch.id},
                  {"state", state_after(u, expected_state)},
                  {"window", f->window},
                  {"waiting_until", iso_time(f->until_ms)},
                  {"waiting_until_ms", f->until_ms},
                  {"message", fmt::format("change {} is approved and waits: {}; it commits when "
                                          "the freeze ends",
                                          ch.id, freeze_text(*f))}});
      }
    }
    // Re-apply the change's diff on the latest config, if what it touches is as it was.
    std::map<std::pair<std::string, std::string>, const Resource*> by_key;
    for (const Resource& r : current) by_key[{r.kind, r.name}] = &r;
    std::string stale;
    std::vector<Resource> next = current;
    for (const Json& d : ch.diff) {
      const std::string kind = d.at("kind"), name = d.at("name"), op = d.at("op");
      auto it = by_key.find({kind, name});
      const bool present = it != by_key.end();
      if (op == "add" ? present : (!present || it->second->spec != d.at("before"))) {
        stale = fmt::format("{}/{} was {} after it was proposed on version {} (the latest is {})",
                            kind, name, present ? "changed" : "removed", ch.base_version, latest);
        break;
      }
      auto pos = std::find_if(next.begin(), next.end(),
                              [&](const Resource& r) { return r.kind == kind && r.name == name; });
      if (op == "remove") {
        next.erase(pos);
      } else if (op == "add") {
        next.push_back(Resource{kind, name, d.at("after")});
      } else {
        pos->spec = d.at("after");
      }
    }
    if (stale.empty()) {
      std::sort(next.begin(), next.end(), [](const Resource& a, const Resource& b) {
        return std::tie(a.kind, a.name) < std::tie(b.kind, b.name);
      });
      std::vector<std::string> errors = validate_resources(next);
      if (!errors.empty())
        stale = fmt::format("on the latest version {} it would make an invalid config: {}", latest,
                            errors.front());
    }
    const std::string from = state_after(u, expected_state);
    if (!stale.empty()) {
      u.transitions.push_back({now, from, std::string(kRejected), actor, "stale: " + stale});
      if (!store.update_change(ch.id, expected_state, u, now)) return moved(ch.id);
      core::log_info("control: change {} rejected as stale: {}", ch.id, stale);
      return json_response(
          409, {{"error", fmt::format("change {} is stale and was rejected: {}; propose it again",
                                      ch.id, stale)},
                {"change", ch.id},
                {"state", kRejected}});
    }
    const Json diff = resource_diff(current, next);
    const bool staged = has_stages(eff) && !ch.emergency && !diff.empty();
    // Any commit, staged or not: a rollback would otherwise take it away with the rolling change.
    if (auto rolling = driver_.rolling(); rolling && !diff.empty()) return busy(*rolling);
    u.transitions.push_back({now, from, std::string(kRollingOut), actor,
                             fmt::format("committing on version {}", latest)});
    if (!staged)
      u.transitions.push_back({now, std::string(kRollingOut), std::string(kDone), actor,
                               diff.empty() ? "already in effect: nothing to commit"
                                            : "committed; every gateway is served it"});
    if (diff.empty()) {
      if (!store.update_change(ch.id, expected_state, u, now)) return moved(ch.id);
      return json_response(200, {{"change", ch.id}, {"state", kDone}, {"version", latest}});
    }
    const ChangeTransition rb{
        now, "", "", actor,
        fmt::format("undone by change {}, a rollback to version {}", ch.id, ch.target_version)};
    if (staged) driver_.prepare(latest, now);
    const int64_t v = store.commit_change(next, diff, latest, now, ch, expected_state, u, rb);
    if (v == 0) continue;  // another writer committed first: look again
    ch.state = staged ? kRollingOut : kDone;
    ctx_.feed->changed(after);
    committed(ch);
    return json_response(200,
                         {{"change", ch.id}, {"state", ch.state}, {"version", v}, {"diff", diff}});
  }
  return error_response(409, fmt::format("change {}: lost the race with other writers {} times; "
                                         "it stays {}, retry",
                                         ch.id, kCommitAttempts, expected_state));
}

void ChangesService::tick(int64_t now) {
  if (now - last_drive_ms_ >= kDriveMs || now < last_drive_ms_) {
    last_drive_ms_ = now;
    std::lock_guard lock(mu_);
    ctx_.guarded("rollout driver", [&] { driver_.tick(now); });
  }
  if (now - last_sweep_ms_ < kSweepMs) return;
  last_sweep_ms_ = now;
  std::lock_guard lock(mu_);
  for (ChangeRecord& ch : ctx_.store.changes(std::string(kApproved), 0, kSweepBatch, true)) {
    const int64_t id = ch.id;
    HttpResponse r =
        commit_held(std::move(ch), std::string(kApproved), {}, kSystemActor, now, nullptr);
    if (r.status != 202) core::log_info("control: held change {}: {}", id, r.body);
  }
}

// ------------------------------------------------------------------------------ routes

HttpResponse ChangesService::get_changes(const Call& c) {
  std::vector<std::string> errors;
  auto limit = int_param(c.req, "limit", kDefaultListLimit, 1, kMaxListLimit, errors);
  auto since = int_param(c.req, "since", 0, 0, INT64_MAX, errors);
  std::string state = query_param(c.req.query, "state").value_or("");
  if (!state.empty() && !known_state(state))
    errors.push_back(
        fmt::format("state: expected proposed, approved, rolling_out, done, "
                    "rolled_back, rejected or aborted, got '{}'",
                    state));
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  Json out = Json::array();
  for (const ChangeRecord& ch : ctx_.store.changes(state, *since, *limit, false))
    out.push_back(change_json(ch, false));
  return json_response(200, out);
}

HttpResponse ChangesService::get_change(const Call& c) {
  auto id = parse_int(c.params[0]);
  if (!id || *id <= 0)
    return error_response(
        400, fmt::format("change: expected a positive integer, got '{}'", c.params[0]));
  auto ch = ctx_.store.change(*id);
  if (!ch) return error_response(404, fmt::format("no change {}", *id));
  return json_response(200, change_json(*ch, true));
}

const Figures& ChangesService::cached_figures(int64_t now) {
  std::lock_guard lock(figures_mu_);
  if (figures_at_ms_ < 0 || now - figures_at_ms_ >= kFiguresCacheMs || now < figures_at_ms_) {
    // [now + 1 - window, now + 1): exactly the window, now included.
    const int64_t from = now + 1 - kMetricsWindowMs;
    try {
      figures_ = figures(ctx_.store.changes_active_since(from), from, now + 1);
    } catch (const StoreError& e) {
      // /metrics must answer while the store is away: the last figures stay, the error counts.
      if (ctx_.store_errors != nullptr) ctx_.store_errors->inc();
      core::log_warn("control: change figures: {}", e.what());
    }
    figures_at_ms_ = now;
  }
  return figures_;
}

HttpResponse ChangesService::get_metrics(const Call& c) {
  const std::string w = query_param(c.req.query, "window").value_or("30d");
  auto window = parse_window(w);
  if (!window || *window > kMaxWindowMs)
    return error_response(400,
                          fmt::format("window: expected a duration such as 30d, 24h or 90m "
                                      "(at most 366d), got '{}'",
                                      w),
                          {fmt::format("window: expected a duration such as 30d, 24h or 90m "
                                       "(at most 366d), got '{}'",
                                       w)});
  const int64_t from = c.now + 1 - *window;
  Json j = figures(ctx_.store.changes_active_since(from), from, c.now + 1).to_json();
  j["window"] = w;
  return json_response(200, j);
}

HttpResponse ChangesService::post_approve(const Call& c) {
  HttpResponse bad;
  auto reason = read_reason(c, bad);
  if (!reason) return bad;
  auto id = parse_int(c.params[0]);
  if (!id || *id <= 0)
    return error_response(
        400, fmt::format("change: expected a positive integer, got '{}'", c.params[0]));
  std::lock_guard lock(mu_);
  auto ch = ctx_.store.change(*id);
  if (!ch) return error_response(404, fmt::format("no change {}", *id));
  if (ch->state != kProposed)
    return error_response(409, fmt::format("change {} is {}: only a proposed change can be "
                                           "approved",
                                           *id, ch->state));
  const Effective eff = Effective::from_json(ch->policy);
  if (c.who.role < eff.role)
    return error_response(
        403, fmt::format("approving change {} needs role {} ({}); this token's "
                         "role is {}",
                         *id, role_name(eff.role), policy_names(eff), role_name(c.who.role)));
  if (c.who.name == ch->author)
    return error_response(403, fmt::format("{} proposed change {} and cannot approve it: another "
                                           "operator must",
                                           ch->author, *id));
  for (const ChangeApproval& a : ch->approvals) {
    if (a.approver == c.who.name)
      return error_response(409, fmt::format("{} approved change {} already (each approver "
                                             "counts once)",
                                             c.who.name, *id));
  }
  ChangeUpdate u;
  u.approval = ChangeApproval{c.who.name, std::string(role_name(c.who.role)), *reason, c.now};
  const int have = static_cast<int>(ch->approvals.size()) + 1;
  if (have < eff.approvals) {
    if (!ctx_.store.update_change(*id, std::string(kProposed), u, c.now)) return moved(*id);
    return json_response(200, {{"change", *id},
                               {"state", kProposed},
                               {"approvals", have},
                               {"approvals_required", eff.approvals}});
  }
  u.transitions.push_back(
      {c.now, std::string(kProposed), std::string(kApproved), c.who.name,
       fmt::format("approved by {} ({} of {}): {}", c.who.name, have, eff.approvals, *reason)});
  return commit_held(std::move(*ch), std::string(kProposed), std::move(u), c.who.name, c.now,
                     c.after);
}

HttpResponse ChangesService::post_reject(const Call& c) {
  HttpResponse bad;
  auto reason = read_reason(c, bad);
  if (!reason) return bad;
  auto id = parse_int(c.params[0]);
  if (!id || *id <= 0)
    return error_response(
        400, fmt::format("change: expected a positive integer, got '{}'", c.params[0]));
  std::lock_guard lock(mu_);
  auto ch = ctx_.store.change(*id);
  if (!ch) return error_response(404, fmt::format("no change {}", *id));
  if (!may_move(ch->state, kRejected))
    return error_response(409, fmt::format("change {} is {}: only a proposed or approved change "
                                           "can be rejected",
                                           *id, ch->state));
  const Effective eff = Effective::from_json(ch->policy);
  if (c.who.role < eff.role)
    return error_response(403, fmt::format("rejecting change {} needs role {}; this token's role "
                                           "is {}",
                                           *id, role_name(eff.role), role_name(c.who.role)));
  if (c.who.name == ch->author)
    return error_response(403, fmt::format("{} proposed change {}: the author aborts it (POST "
                                           "/v1/changes/{}/abort) rather than rejecting it",
                                           ch->author, *id, *id));
  ChangeUpdate u;
  u.transitions.push_back({c.now, ch->state, std::string(kRejected), c.who.name, *reason});
  if (!ctx_.store.update_change(*id, ch->state, u, c.now)) return moved(*id);
  return json_response(200, {{"change", *id}, {"state", kRejected}});
}

HttpResponse ChangesService::post_abort(const Call& c) {
  HttpResponse bad;
  auto reason = read_reason(c, bad);
  if (!reason) return bad;
  auto id = parse_int(c.params[0]);
  if (!id || *id <= 0)
    return error_response(
        400, fmt::format("change: expected a positive integer, got '{}'", c.params[0]));
  std::lock_guard lock(mu_);
  auto ch = ctx_.store.change(*id);
  if (!ch) return error_response(404, fmt::format("no change {}", *id));
  if (ch->state == kRollingOut) {
    // A staged rollout: every gateway back on the base version, the change rolled_back.
    if (std::string err = driver_.abort(*id, c.who.name, *reason, c.now); !err.empty())
      return error_response(409, err);
    {
      std::lock_guard figures_lock(figures_mu_);
      figures_at_ms_ = -1;
    }
    return json_response(200, {{"change", *id}, {"state", kRolledBack}});
  }
  if (!may_move(ch->state, kAborted))
    return error_response(409, fmt::format("change {} is {}: only a proposed, approved or "
                                           "rolling_out change can be aborted (a done one is "
                                           "rolled back)",
                                           *id, ch->state));
  const Effective eff = Effective::from_json(ch->policy);
  if (c.who.name != ch->author && c.who.role < eff.role)
    return error_response(403, fmt::format("aborting change {} takes its author or role {}", *id,
                                           role_name(eff.role)));
  ChangeUpdate u;
  u.transitions.push_back({c.now, ch->state, std::string(kAborted), c.who.name, *reason});
  if (!ctx_.store.update_change(*id, ch->state, u, c.now)) return moved(*id);
  {
    std::lock_guard figures_lock(figures_mu_);
    figures_at_ms_ = -1;
  }
  return json_response(200, {{"change", *id}, {"state", kAborted}});
}

HttpResponse ChangesService::get_rollout(const Call& c) {
  auto id = parse_int(c.params[0]);
  if (!id || *id <= 0)
    return error_response(
        400, fmt::format("change: expected a positive integer, got '{}'", c.params[0]));
  if (!ctx_.store.change(*id)) return error_response(404, fmt::format("no change {}", *id));
  auto st = driver_.status(*id, c.now);
  if (!st)
    return error_response(404, fmt::format("change {} has no staged rollout (its policy has no "
                                           "rollout stages, or it never committed)",
                                           *id));
  return json_response(200, *st);
}

HttpResponse ChangesService::post_review(const Call& c) {
  HttpResponse bad;
  auto reason = read_reason(c, bad);
  if (!reason) return bad;
  auto id = parse_int(c.params[0]);
  if (!id || *id <= 0)
    return error_response(
        400, fmt::format("change: expected a positive integer, got '{}'", c.params[0]));
  std::lock_guard lock(mu_);
  auto ch = ctx_.store.change(*id);
  if (!ch) return error_response(404, fmt::format("no change {}", *id));
  if (!ch->review_required)
    return error_response(409, fmt::format("change {} needs no review (only emergency changes "
                                           "do, once)",
                                           *id));
  if (c.who.name == ch->author)
    return error_response(403, fmt::format("{} made emergency change {} and cannot review it: "
                                           "another operator must",
                                           ch->author, *id));
  ChangeUpdate u;
  u.transitions.push_back({c.now, ch->state, ch->state, c.who.name, "reviewed: " + *reason});
  u.review_required = false;
  if (!ctx_.store.update_change(*id, ch->state, u, c.now)) return moved(*id);
  {
    std::lock_guard figures_lock(figures_mu_);
    figures_at_ms_ = -1;
  }
  return json_response(200, {{"change", *id}, {"state", ch->state}, {"review_required", false}});
}

}  // namespace sluice::control::changes
