#include "control/releases/releases_service.h"

#include <algorithm>

#include <fmt/format.h>

#include "control/rest.h"
#include "control/stats/stats_store.h"
#include "core/log.h"

namespace sluice::control::releases {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxReasonBytes = 1024;

std::string describe(const Move& m, const std::string& name, const ReleaseState& s) {
  if (m.kind == Move::Kind::kRollBack)
    return fmt::format("release {}: {} to 0% ({})", name, m.abort ? "aborted" : "rolled back",
                       m.reason);
  if (m.percent >= 100) return fmt::format("release {}: promoted (canary at 100%)", name);
  if (s.step < 0) return fmt::format("release {}: first step, canary at {}%", name, m.percent);
  return fmt::format("release {}: analysis passed at {}%, canary at {}%", name, s.percent,
                     m.percent);
}

}  // namespace

std::unique_ptr<Service> make_service(ServiceContext& ctx) {
  return std::make_unique<ReleasesService>(ctx);
}

ReleasesService::ReleasesService(ServiceContext& ctx) : ctx_(ctx) {
  auto& m = ctx.metrics;
  steps_ = &m.counter("sluice_control_release_steps_total",
                      "Release steps committed (a canary weight moved up) by this control plane");
  promoted_ = &m.counter("sluice_control_releases_promoted_total",
                         "Releases promoted (the route on the canary alone)");
  rolled_back_ = &m.counter("sluice_control_releases_rolled_back_total",
                            "Releases rolled back to 0% by their analysis");
  aborted_ = &m.counter("sluice_control_releases_aborted_total",
                        "Releases aborted by an operator (the canary back to 0%)");
  write_refused_ = &m.counter("sluice_control_release_writes_refused_total",
                              "Release steps whose config write did not commit (retried)");
  for (std::string_view v : {"pass", "fail", "inconclusive"})
    analyses_[std::string(v)] =
        &m.counter("sluice_control_release_analyses_total",
                   "Analyses between release steps, by verdict", {{"verdict", std::string(v)}});
  m.gauge_fn("sluice_control_releases_active", "Releases pending, stepping or paused", [this] {
    std::lock_guard lock(mu_);
    return static_cast<double>(std::count_if(states_.begin(), states_.end(),
                                             [](const auto& kv) { return !kv.second.is_final(); }));
  });
}

std::vector<Route> ReleasesService::routes() {
  auto bind = [this](auto fn) { return member_route(this, fn); };
  auto action = [this](std::string_view a) -> RouteFn {
    return [this, a](const Call& c) -> std::optional<HttpResponse> { return post_action(c, a); };
  };
  using S = ReleasesService;
  return {
      {"GET", {"v1", "releases"}, Role::kViewer, bind(&S::get_releases)},
      {"GET", {"v1", "releases", "{}"}, Role::kViewer, bind(&S::get_release)},
      {"POST", {"v1", "releases", "{}", "abort"}, Role::kOperator, action("abort")},
      {"POST", {"v1", "releases", "{}", "pause"}, Role::kOperator, action("pause")},
      {"POST", {"v1", "releases", "{}", "resume"}, Role::kOperator, action("resume")},
  };
}

std::map<std::string, Json> ReleasesService::release_resources() {
  std::map<std::string, Json> out;
  if (ctx_.store.latest_version() == 0) return out;
  for (Resource& r : ctx_.store.resources(0))
    if (r.kind == "release") out[r.name] = std::move(r.spec);
  return out;
}

void ReleasesService::follow_locked() {
  for (const auto& [name, seq] : ctx_.store.release_seqs()) {
    auto it = seqs_.find(name);
    if (it == seqs_.end() || it->second != seq) adopt_locked(name);
  }
}

void ReleasesService::adopt_locked(const std::string& name) {
  auto row = ctx_.store.release_row(name);
  if (!row) return;
  ReleaseState& s = states_[name];
  s = ReleaseState::from_json(row->state);
  seqs_[name] = row->seq;
  publish_locked(name, s);
}

bool ReleasesService::save_locked(const std::string& name, const ReleaseState& s, int64_t now) {
  auto it = seqs_.find(name);
  const int64_t seq = it == seqs_.end() ? 0 : it->second;
  if (!ctx_.store.put_release_state_if(name, seq, s.to_json(), now)) {
    core::log_info("control: release {} moved meanwhile (another control plane); following it",
                   name);
    adopt_locked(name);
    return false;
  }
  seqs_[name] = seq + 1;
  publish_locked(name, s);
  return true;
}

void ReleasesService::publish_locked(const std::string& name, const ReleaseState& s) {
  if (s.is_final()) {
    ctx_.metrics
        .gauge("sluice_control_release_canary_percent",
               "The canary's weight on the route of each release, in percent", {{"release", name}})
        .set(s.state == kPromoted ? 100 : 0);
  } else {
    ctx_.metrics
        .gauge("sluice_control_release_canary_percent",
               "The canary's weight on the route of each release, in percent", {{"release", name}})
        .set(s.percent);
  }
}

void ReleasesService::tick(int64_t now) {
  if (now - last_drive_ms_ < kDriveIntervalMs) return;
  last_drive_ms_ = now;
  std::lock_guard lock(mu_);
  follow_locked();
  drive_locked(now);
}

void ReleasesService::drive_locked(int64_t now) {
  // The resource set is read again only when a version was written (one cheap query a drive).
  const int64_t version = ctx_.store.latest_version();
  if (version != specs_version_) {
    specs_ = release_resources();
    specs_version_ = version;
  }
  for (auto& [name, spec_json] : specs_) {
    ReleaseSpec spec;
    try {
      spec = parse_release(spec_json);
    } catch (const std::exception& e) {
      continue;  // validated on apply; an older build's spec it cannot read is left alone
    }
    auto it = states_.find(name);
    if (it == states_.end() || (it->second.is_final() && it->second.spec != spec_json)) {
      ReleaseState fresh;
      fresh.spec = spec_json;
      fresh.updated_ms = now;
      it = states_.insert_or_assign(name, std::move(fresh)).first;
      if (!save_locked(name, it->second, now)) continue;  // another control plane started it
      core::log_info("control: release {} pending ({} -> {} on route {})", name, spec.stable,
                     spec.canary, spec.route);
    }
    ReleaseState& s = it->second;
    if (s.is_final() || s.state == kPaused) continue;
    s.spec = spec_json;  // edits while stepping take effect from the next move
    Move m = due(s, spec, now);
    if (m.kind == Move::Kind::kAnalyze) {
      const int64_t from = std::max(s.window_from_ms, now - ctx_.options.recent_stats_ms);
      const std::vector<Json> snaps = ctx_.stats->recent(from, now, "");
      const analysis::Comparison c = compare(snaps, spec, s.percent);
      // Gateways report to the control plane they talk to: one that heard nothing of this
      // route in the window leaves the analysis to one that did, unless nobody has made it for
      // an interval past its time (then no traffic is what there is to judge).
      if (c.candidate.requests == 0 && c.baseline.requests == 0 &&
          now < s.next_analysis_ms + spec.analysis.interval_ms)
        continue;
      const analysis::Result r = analysis::analyze(std::span(&c, 1), spec.analysis);
      m = after_analysis(s, spec, r, now);
      if (m.kind != Move::Kind::kNone) s.retry_at_ms = now + kClaimMs;  // claims the move
      if (!save_locked(name, s, now)) continue;  // another control plane analysed it first
      analyses_[std::string(analysis::status_name(r.verdict))]->inc();
    } else if (m.kind == Move::Kind::kStep || m.kind == Move::Kind::kRollBack) {
      // The first step, a rollback tried again: claimed before the write.
      s.retry_at_ms = now + kClaimMs;
      if (!save_locked(name, s, now)) continue;
    }
    if (m.kind == Move::Kind::kStep || m.kind == Move::Kind::kRollBack)
      perform_locked(name, s, spec, m, now);
  }
}

HttpResponse ReleasesService::write_route(const std::string& name, const ReleaseSpec& spec,
                                          uint32_t percent, const std::string& reason,
                                          bool emergency) {
  ConfigEdit e;
  e.author = "release/" + name;
  e.reason = reason;
  if (e.reason.size() > kMaxReasonBytes) e.reason.resize(kMaxReasonBytes);
  e.emergency = emergency;
  e.missing = fmt::format("no route named '{}'", spec.route);
  e.make_next = [&](const std::vector<Resource>& current) -> std::optional<std::vector<Resource>> {
    std::vector<Resource> next = current;
    for (Resource& r : next) {
      if (r.kind == "route" && r.name == spec.route) {
        r.spec = route_at(r.spec, spec, percent);
        return next;
      }
    }
    return std::nullopt;
  };
  if (ctx_.writer == nullptr) throw std::logic_error("releases: no ConfigWriter in the context");
  return ctx_.writer->write(e, nullptr);
}

bool ReleasesService::perform_locked(const std::string& name, ReleaseState& s,
                                     const ReleaseSpec& spec, const Move& m, int64_t now) {
  const uint32_t percent = m.kind == Move::Kind::kRollBack ? 0 : m.percent;
  const std::string reason = describe(m, name, s);
  // Back to safety does not wait for approvals: the release was approved as a whole.
  HttpResponse answer = write_route(name, spec, percent, reason, m.kind == Move::Kind::kRollBack);
  if (answer.status != 200) {
    write_refused_->inc();
    std::string error = fmt::format("{}: {}", answer.status, answer.body.substr(0, 512));
    core::log_warn("control: release {}: the write of {}% did not commit: {}", name, percent,
                   error);
    write_failed(s, m, error, now);
    // A step refused as such (invalid, held for approval, frozen) would be refused again and
    // again: it waits for an operator. Lost races and a store away are retried.
    if (m.kind == Move::Kind::kStep && answer.status != 409 && answer.status < 500) {
      s.state = std::string(kPaused);
      s.reason = fmt::format("paused: the write of {}% was not committed ({}); resume to retry",
                             percent, error);
    }
    save_locked(name, s, now);
    return false;
  }
  const uint32_t from_percent = s.percent;
  committed(s, spec, m, now);
  if (!save_locked(name, s, now)) {
    // Another control plane moved the release while this write was under way (an operator's
    // abort through it): its state is the one in force. If that put the canary back at 0% and
    // this write raised it again, the route goes back to 0%.
    const ReleaseState& cur = states_[name];
    if (m.kind == Move::Kind::kStep && (cur.state == kRolledBack || cur.state == kAborted)) {
      HttpResponse back = write_route(name, spec, 0,
                                      fmt::format("release {}: {} meanwhile: "
                                                  "back to 0%",
                                                  name, cur.state),
                                      true);
      core::log_warn(
          "control: release {} was {} by another control plane during a step; "
          "back to 0%: {}",
          name, cur.state, back.status);
    }
    return false;
  }
  core::log_info("control: {}", reason);
  Json detail = {{"route", spec.route},          {"stable", spec.stable}, {"canary", spec.canary},
                 {"from_percent", from_percent}, {"percent", s.percent},  {"state", s.state}};
  std::string kind = "release_step";
  if (s.state == kPromoted) {
    promoted_->inc();
    kind = "release_promoted";
  } else if (s.state == kRolledBack) {
    rolled_back_->inc();
    kind = "release_rolled_back";
    detail["failed"] = s.failed;
    detail["reason"] = s.reason;
  } else if (s.state == kAborted) {
    aborted_->inc();
    kind = "release_aborted";
    detail["reason"] = s.reason;
  } else {
    steps_->inc();
  }
  if (ctx_.events != nullptr)
    ctx_.events->append(Event{0, now, "control", kind, name, std::move(detail)});
  return true;
}

Json ReleasesService::summary_json(const std::string& name, const ReleaseState& s) const {
  Json j = {{"name", name},
            {"state", s.state},
            {"percent", s.percent},
            {"step", s.step},
            {"updated", s.updated_ms > 0 ? iso_time(s.updated_ms) : ""},
            {"updated_ms", s.updated_ms}};
  if (s.spec.is_object()) {
    for (const char* k : {"route", "stable", "canary"})
      if (auto it = s.spec.find(k); it != s.spec.end()) j[k] = *it;
  }
  if (!s.reason.empty()) j["reason"] = s.reason;
  if (!s.failed.empty()) j["failed"] = s.failed;
  return j;
}

HttpResponse ReleasesService::get_releases(const Call&) {
  std::map<std::string, Json> specs = release_resources();
  std::lock_guard lock(mu_);
  follow_locked();
  Json list = Json::array();
  for (const auto& [name, spec] : specs) {
    auto it = states_.find(name);
    ReleaseState s = it != states_.end() ? it->second : ReleaseState{};
    if (it == states_.end()) s.spec = spec;
    list.push_back(summary_json(name, s));
  }
  // Releases whose resource was deleted keep their record.
  for (const auto& [name, s] : states_) {
    if (specs.contains(name)) continue;
    Json j = summary_json(name, s);
    j["deleted"] = true;
    list.push_back(std::move(j));
  }
  return json_response(200, {{"releases", std::move(list)}});
}

HttpResponse ReleasesService::get_release(const Call& c) {
  const std::string& name = c.params[0];
  std::map<std::string, Json> specs = release_resources();
  std::lock_guard lock(mu_);
  follow_locked();
  auto it = states_.find(name);
  auto spec_it = specs.find(name);
  if (it == states_.end() && spec_it == specs.end())
    return error_response(404, fmt::format("no release named '{}'", name));
  ReleaseState s = it != states_.end() ? it->second : ReleaseState{};
  if (it == states_.end()) s.spec = spec_it->second;
  Json j = s.to_json();
  j["name"] = name;
  j["deleted"] = spec_it == specs.end();
  j["weights"] = Json::object();
  if (s.spec.is_object() && s.spec.contains("stable") && s.spec.contains("canary")) {
    const uint32_t p = s.state == kPromoted ? 100 : s.percent;
    j["weights"] = {
        {s.spec["stable"].is_string() ? s.spec["stable"].get<std::string>() : "stable", 100 - p},
        {s.spec["canary"].is_string() ? s.spec["canary"].get<std::string>() : "canary", p}};
  }
  try {
    const ReleaseSpec spec = parse_release(s.spec);
    j["steps"] = spec.steps;
    j["analysis_settings"] = analysis::to_json(spec.analysis);
  } catch (const std::exception&) {
  }
  return json_response(200, j);
}

HttpResponse ReleasesService::post_action(const Call& c, std::string_view action) {
  const std::string& name = c.params[0];
  std::string reason;
  if (!c.req.body.empty()) {
    HttpResponse bad;
    auto body = parse_body(c.req.body, bad);
    if (!body) return bad;
    std::vector<std::string> errors;
    Fields f(*body, "", errors, {"reason"});
    if (auto r = f.string("reason", false)) reason = *r;
    if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
    if (reason.size() > kMaxReasonBytes)
      return error_response(400, fmt::format("reason: at most {} bytes", kMaxReasonBytes));
  }
  std::map<std::string, Json> specs = release_resources();
  std::lock_guard lock(mu_);
  follow_locked();
  auto spec_it = specs.find(name);
  auto it = states_.find(name);
  if (spec_it == specs.end() || it == states_.end()) {
    if (spec_it == specs.end() && it == states_.end())
      return error_response(404, fmt::format("no release named '{}'", name));
    if (it == states_.end())
      return error_response(409, fmt::format("release '{}' has not started yet; retry", name));
    return error_response(409,
                          fmt::format("release '{}' was deleted; nothing to {}", name, action));
  }
  ReleaseState& s = it->second;
  const int64_t now = c.now;
  const std::string who = c.who.name.empty() ? "operator" : c.who.name;
  // The action is written on the state as stored; if another control plane moves it meanwhile
  // (a step, an analysis), the action is tried again on what it wrote.
  constexpr int kAttempts = 5;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    if (s.is_final())
      return error_response(
          409, fmt::format("release '{}' is {} already; nothing to {}", name, s.state, action));
    if (action == "pause") {
      if (s.state != kStepping)
        return error_response(409, fmt::format("release '{}' is {}; only a stepping release can "
                                               "be paused",
                                               name, s.state));
      s.state = std::string(kPaused);
      s.reason = fmt::format("paused by {}{}{}", who, reason.empty() ? "" : ": ", reason);
      s.updated_ms = now;
      if (!save_locked(name, s, now)) continue;
    } else if (action == "resume") {
      if (s.state != kPaused)
        return error_response(409, fmt::format("release '{}' is {}, not paused", name, s.state));
      ReleaseSpec spec = parse_release(spec_it->second);
      s.state = std::string(kStepping);
      s.reason.clear();
      s.window_from_ms = now;  // what happened while paused is not this step's evidence
      s.next_analysis_ms = now + spec.analysis.interval_ms;
      s.inconclusive_since_ms = -1;
      s.updated_ms = now;
      if (!save_locked(name, s, now)) continue;
    } else {
      ReleaseSpec spec = parse_release(spec_it->second);
      Move m = begin_rollback(
          s, fmt::format("aborted by {}{}{}", who, reason.empty() ? "" : ": ", reason), true, now);
      s.retry_at_ms = now + kClaimMs;  // this control plane writes it; the others wait
      if (!save_locked(name, s, now)) continue;
      if (!perform_locked(name, s, spec, m, now))
        return json_response(503,
                             {{"error", "the rollback to 0% did not commit yet; it is retried"},
                              {"detail", s.last_error},
                              {"release", summary_json(name, s)}});
    }
    return json_response(200, summary_json(name, s));
  }
  return error_response(409, fmt::format("release '{}' moved meanwhile {} times (other control "
                                         "planes); retry",
                                         name, kAttempts));
}

}  // namespace sluice::control::releases
