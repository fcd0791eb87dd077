#include "control/fleet/fleet_service.h"

#include <algorithm>
#include <charconv>
#include <chrono>

#include <fmt/format.h>

#include "control/rest.h"
#include "control/validate.h"
#include "core/duration.h"
#include "core/log.h"

namespace sluice::control::fleet {

using Json = nlohmann::json;

std::string version_string(Revision r) {
  return fmt::format("{}.{}", r.config, r.registry);
}

namespace {

std::optional<Revision> parse_version_string(std::string_view s) {
  size_t dot = s.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  Revision r;
  auto a = std::from_chars(s.data(), s.data() + dot, r.config);
  auto b = std::from_chars(s.data() + dot + 1, s.data() + s.size(), r.registry);
  if (a.ec != std::errc() || a.ptr != s.data() + dot || b.ec != std::errc() ||
      b.ptr != s.data() + s.size())
    return std::nullopt;
  return r;
}

}  // namespace

std::unique_ptr<Service> make_service(ServiceContext& ctx) {
  return std::make_unique<FleetService>(ctx);
}

FleetService::FleetService(ServiceContext& ctx) : ctx_(ctx) {
  auto& m = ctx.metrics;
  polls_answered_ = &m.counter("sluice_control_config_polls_answered_total",
                               "Gateway config polls answered with a config");
  polls_timed_out_ = &m.counter("sluice_control_config_polls_timed_out_total",
                                "Gateway config polls answered 304 after waiting");
  m.gauge_fn("sluice_control_config_polls_waiting", "Gateway config long polls parked",
             [this] { return static_cast<double>(waiting_.load()); });
  m.gauge_fn("sluice_control_config_version", "Latest config version known",
             [this] { return static_cast<double>(config_version_.load()); });
  m.gauge_fn("sluice_control_registry_revision", "Registry revision known",
             [this] { return static_cast<double>(registry_revision_.load()); });
  try {
    rev_ = ctx.store.revision();
  } catch (const StoreError& e) {
    core::log_warn("control: cannot read the store's revision yet: {}", e.what());
  }
  config_version_ = rev_.config;
  registry_revision_ = rev_.registry;
  ctx.feed = this;
  ctx.sightings = this;
  ctx.directory = this;
}

FleetService::~FleetService() {
  shutdown();
}

std::vector<Route> FleetService::routes() {
  auto bind = [this](auto fn) { return member_route(this, fn); };
  using S = FleetService;
  return {
      {"GET", {"ready"}, std::nullopt, bind(&S::get_ready)},
      {"GET",
       {"v1", "gateway-config"},
       Role::kViewer,
       [this](const Call& c) { return get_gateway_config(c); }},
      {"GET", {"v1", "gateways"}, Role::kViewer, bind(&S::get_gateways)},
      {"POST", {"v1", "gateways", "{}", "status"}, Role::kOperator, bind(&S::post_gateway_status)},
  };
}

Revision FleetService::current() const {
  std::lock_guard lock(mu_);
  return rev_;
}

Revision FleetService::answer_for(const std::string& gateway, const std::string& city,
                                  Revision latest) const {
  const VersionPlan* plan = ctx_.versions;
  if (plan == nullptr) return latest;
  // Never newer than the newest known (a plan ahead of this control plane waits for its poll),
  // never below 0 (the empty config).
  int64_t v = plan->version_for(gateway, city, latest.config);
  return Revision{std::clamp<int64_t>(v, 0, latest.config), latest.registry};
}

int64_t FleetService::plan_generation() const {
  const VersionPlan* plan = ctx_.versions;
  return plan == nullptr ? -1 : plan->generation();
}

void FleetService::plan_changed(Deferred* after) {
  update_revision(current(), after);
}

HttpResponse FleetService::get_ready(const Call& c) {
  try {
    Revision r = ctx_.store.revision();
    update_revision(r, c.after);
    return json_response(
        200,
        {{"status", "ready"}, {"version", version_string(r)}, {"store", ctx_.store.location()}});
  } catch (const StoreError& e) {
    ctx_.store_errors->inc();
    return json_response(503, {{"status", "store unavailable"}, {"error", e.what()}});
  }
}

std::optional<HttpResponse> FleetService::get_gateway_config(const Call& c) {
  const ApiOptions& options = ctx_.options;
  const std::string gateway = query_param(c.req.query, "gateway").value_or("");
  const std::string after = query_param(c.req.query, "after").value_or("");
  std::vector<std::string> errors;
  if (!gateway.empty() && !is_valid_name(gateway))
    errors.push_back("gateway: must be letters, digits, '_', '.' and '-'");
  int64_t wait_ms = options.default_wait_ms;
  if (auto w = query_param(c.req.query, "wait")) {
    if (auto d = core::parse_duration(*w)) {
      wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(*d).count();
    } else if (auto n = parse_int(*w); n && *n >= 0) {
      wait_ms = std::min(*n, options.max_wait_ms / 1000 + 1) * 1000;  // plain seconds
    } else {
      errors.push_back(fmt::format("wait: expected a duration such as 30s, got '{}'", *w));
    }
  }
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  wait_ms = std::clamp<int64_t>(wait_ms, 0, options.max_wait_ms);
  if (!gateway.empty()) {
    note_gateway(gateway, query_param(c.req.query, "city").value_or(""),
                 query_param(c.req.query, "zone").value_or(""), c.now);
  }

  // A gateway ahead of us saw a write through another control plane that our poll has not
  // picked up yet: catch up now rather than hand it an older config.
  if (auto seen = parse_version_string(after)) {
    Revision mine = current();
    if (seen->config > mine.config || seen->registry > mine.registry) refresh_revision(c.after);
  }

  Revision rev;
  {
    std::lock_guard lock(mu_);
    if (shut_down_) return error_response(503, "control plane shutting down; poll another one");
    std::string city = query_param(c.req.query, "city").value_or("");
    if (city.empty() && !gateway.empty()) {
      if (auto it = gateways_.find(gateway); it != gateways_.end()) city = it->second.city;
    }
    rev = answer_for(gateway, city, rev_);
    if (version_string(rev) == after) {
      if (wait_ms == 0) {
        polls_timed_out_->inc();
        HttpResponse r;
        r.status = 304;
        r.headers.emplace_back("X-Sluice-Version", after);
        return r;
      }
      waiters_.push_back(
          Waiter{std::move(*c.respond), after, rev, gateway, std::move(city), c.now + wait_ms});
      waiting_ = waiters_.size();
      return std::nullopt;
    }
  }
  auto body = config_body(rev);
  polls_answered_->inc();
  HttpResponse r;
  r.shared_body = std::move(body);
  r.headers.emplace_back("X-Sluice-Version", version_string(rev));
  return r;
}

std::shared_ptr<const std::string> FleetService::config_body(Revision r) {
  {
    std::lock_guard lock(mu_);
    for (const auto& [rev, body] : bodies_)
      if (rev == r) return body;
  }
  // Built once per revision and shared by every watcher.
  std::vector<Resource> resources =
      r.config > 0 ? ctx_.store.resources(r.config) : std::vector<Resource>{};
  std::vector<Instance> instances = ctx_.store.instances();
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  j["version"] = version_string(r);
  j["config_version"] = r.config;
  j["registry_revision"] = r.registry;
  j["config"] = gateway_sections(resources, instances);
  auto body = std::make_shared<const std::string>(j.dump() + "\n");
  std::lock_guard lock(mu_);
  // Without a plan only the newest answer is ever asked for again; under one, every config
  // version the plan serves is, with the newest registry revision.
  const bool planned = ctx_.versions != nullptr;
  for (const auto& [rev, cached] : bodies_) {
    if (rev == r) return cached;  // built meanwhile by another thread: share that one
    if (rev.registry > r.registry || (!planned && rev.config > r.config)) return body;  // stale
  }
  if (planned) {
    std::erase_if(bodies_, [&r](const auto& e) { return e.first.registry < r.registry; });
  } else {
    bodies_.clear();
  }
  constexpr size_t kMaxBodies = 8;
  if (bodies_.size() >= kMaxBodies) bodies_.erase(bodies_.begin());
  bodies_.emplace_back(r, body);
  return body;
}

void FleetService::refresh_revision(Deferred* after) {
  update_revision(ctx_.store.revision(), after);
}

void FleetService::update_revision(Revision r, Deferred* after) {
  std::vector<Waiter> wake;
  Revision now_rev;
  // Read before the waiters are checked: a plan write after this read moves the generation
  // again, and the next check (its plan_changed, or the tick) sees it.
  const int64_t generation = plan_generation();
  {
    std::lock_guard lock(mu_);
    // Both parts only grow; a read that raced with a newer one must not move us back.
    Revision merged{std::max(rev_.config, r.config), std::max(rev_.registry, r.registry)};
    if (merged == rev_ && generation == plan_generation_) return;
    rev_ = merged;
    plan_generation_ = generation;
    now_rev = merged;
    config_version_ = merged.config;
    registry_revision_ = merged.registry;
    auto keep =
        ctx_.versions == nullptr
            ? std::partition(waiters_.begin(), waiters_.end(),
                             [&merged](const Waiter& w) { return w.after_rev == merged; })
            : std::partition(waiters_.begin(), waiters_.end(), [this, &merged](const Waiter& w) {
                return answer_for(w.gateway, w.city, merged) == w.after_rev;
              });
    std::move(keep, waiters_.end(), std::back_inserter(wake));
    waiters_.erase(keep, waiters_.end());
    waiting_ = waiters_.size();
  }
  if (wake.empty()) return;
  if (after != nullptr) {
    after->push_back(
        [this, now_rev, wake = std::move(wake)]() mutable { answer_waiters(now_rev, wake); });
    return;
  }
  answer_waiters(now_rev, wake);
}

void FleetService::answer_waiters(Revision rev, std::vector<Waiter>& waiters) {
  if (waiters.empty()) return;
  // A later revision may have been learned meanwhile (a deferred wake-up): answer with the
  // newest, which every one of these waiters has not seen either.
  {
    std::lock_guard lock(mu_);
    rev = Revision{std::max(rev.config, rev_.config), std::max(rev.registry, rev_.registry)};
  }
  // Each waiter's answer under the plan as it is now; without a plan, `rev` for all. Usually one
  // or two distinct answers, each built once and shared.
  struct Answer {
    Revision rev;
    std::shared_ptr<const std::string> body;
    std::string version;
  };
  std::vector<Answer> answers;
  std::vector<Waiter> repark;
  try {
    for (Waiter& w : waiters) {
      Revision mine = answer_for(w.gateway, w.city, rev);
      if (mine == w.after_rev) {
        // The plan moved back before this deferred wake-up ran: nothing new for it.
        repark.push_back(std::move(w));
        w.respond = nullptr;
        continue;
      }
      auto a = std::find_if(answers.begin(), answers.end(),
                            [&mine](const Answer& x) { return x.rev == mine; });
      if (a == answers.end()) {
        answers.push_back(Answer{mine, config_body(mine), version_string(mine)});
        a = answers.end() - 1;
      }
      polls_answered_->inc();
      HttpResponse resp;
      resp.shared_body = a->body;  // one text for every waiter given this answer
      resp.headers.emplace_back("X-Sluice-Version", a->version);
      w.respond(std::move(resp));
      w.respond = nullptr;
    }
  } catch (const StoreError& e) {
    ctx_.store_errors->inc();
    for (Waiter& w : waiters) {
      if (w.respond) w.respond(error_response(503, std::string("store unavailable: ") + e.what()));
    }
  }
  if (repark.empty()) return;
  // Parked again only if the answer is still the same under the lock: a plan move since the
  // check above has already gone through the waiters without these.
  std::vector<Waiter> again;
  bool shut = false;
  {
    std::lock_guard lock(mu_);
    shut = shut_down_;
    rev = rev_;
    for (Waiter& w : repark) {
      if (!shut && answer_for(w.gateway, w.city, rev_) == w.after_rev) {
        waiters_.push_back(std::move(w));
      } else {
        again.push_back(std::move(w));
      }
    }
    waiting_ = waiters_.size();
  }
  if (shut) {
    for (Waiter& w : again)
      w.respond(error_response(503, "control plane shutting down; poll another one"));
    return;
  }
  answer_waiters(rev, again);
}

void FleetService::note_gateway(const std::string& id, const std::string& city,
                                const std::string& zone, int64_t now) {
  bool known = false;
  {
    std::lock_guard lock(mu_);
    GatewaySeen& g = gateways_[id];
    if (!city.empty()) g.city = city;
    if (!zone.empty()) g.zone = zone;
    g.seen_ms = std::max(g.seen_ms, now);
    known = stored_gateways_.count(id) > 0;
  }
  if (known) return;
  // First contact (from this control plane's point of view): make sure the store lists it.
  std::vector<GatewayRecord> all = ctx_.store.gateways();
  bool present = false;
  {
    std::lock_guard lock(mu_);
    for (const GatewayRecord& g : all) {
      stored_gateways_.insert(g.id);
      present = present || g.id == id;
    }
  }
  if (present) return;
  GatewayRecord rec;
  rec.id = id;
  rec.city = city;
  rec.zone = zone;
  rec.status = "connected";
  rec.seen_ms = now;
  ctx_.store.upsert_gateway(rec);
  std::lock_guard lock(mu_);
  stored_gateways_.insert(id);
}

void FleetService::heard_from(const std::string& gateway, int64_t now, int64_t local_version,
                              int64_t units_version) {
  std::lock_guard lock(mu_);
  GatewaySeen& seen = gateways_[gateway];
  seen.seen_ms = std::max(seen.seen_ms, now);
  if (local_version >= 0) seen.local_version = local_version;
  if (units_version >= 0) seen.units_version = units_version;
}

HttpResponse FleetService::post_gateway_status(const Call& c) {
  const std::string& id = c.params[0];
  if (!is_valid_name(id))
    return error_response(400, "gateway id: must be letters, digits, '_', '.' and '-'");
  HttpResponse bad;
  auto body = parse_body(c.req.body, bad);
  if (!body) return bad;
  std::vector<std::string> errors;
  Fields f(*body, "", errors, {"city", "zone", "applied_version", "status", "error"});
  GatewayRecord rec;
  rec.id = id;
  rec.city = f.string("city", false).value_or("");
  rec.zone = f.string("zone", false).value_or("");
  rec.error = f.string("error", false).value_or("");
  std::string applied;
  if (const Json* v = f.get("applied_version")) {
    if (v->is_string()) {
      applied = v->get<std::string>();
      auto parsed = parse_version_string(applied);
      auto plain = parse_int(applied);
      if (parsed) {
        rec.applied_version = parsed->config;
      } else if (plain && *plain >= 0) {
        rec.applied_version = *plain;
      } else {
        f.error("applied_version", fmt::format("expected \"N.R\" or N, got '{}'", applied));
      }
    } else if (v->is_number_integer() && v->get<int64_t>() >= 0) {
      rec.applied_version = v->get<int64_t>();
      applied = std::to_string(rec.applied_version);
    } else {
      f.error("applied_version", "expected \"N.R\" or N, got " + describe_json(*v));
    }
  }
  if (auto s = f.string("status", true)) {
    // draining and exited: the gateway is leaving (it says so on its way out); they replace the
    // config status it reported before.
    if (*s != "applied" && *s != "refused" && *s != "draining" && *s != "exited") {
      f.error("status", fmt::format("expected applied, refused, draining or exited, got '{}'", *s));
    }
    rec.status = *s;
  }
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  rec.seen_ms = c.now;
  {
    std::lock_guard lock(mu_);
    GatewaySeen& g = gateways_[id];
    if (rec.city.empty()) rec.city = g.city;
    if (rec.zone.empty()) rec.zone = g.zone;
    g.city = rec.city;
    g.zone = rec.zone;
    g.seen_ms = std::max(g.seen_ms, c.now);
    g.applied = applied;
  }
  if (rec.city.empty() || rec.zone.empty()) {
    for (const GatewayRecord& old : ctx_.store.gateways()) {
      if (old.id != id) continue;
      if (rec.city.empty()) rec.city = old.city;
      if (rec.zone.empty()) rec.zone = old.zone;
    }
  }
  ctx_.store.upsert_gateway(rec);
  {
    std::lock_guard lock(mu_);
    stored_gateways_.insert(id);
  }
  if (rec.status == "refused") {
    Event e;
    e.at_ms = c.now;
    e.source = id;
    e.kind = "config_refused";
    e.subject = applied.empty() ? "config" : "version " + applied;
    e.detail = {{"error", rec.error}};
    ctx_.events->append(e);
    core::log_warn("control: gateway {} refused config {}: {}", id, applied, rec.error);
  }
  return json_response(
      200, {{"id", id}, {"status", rec.status}, {"applied_version", rec.applied_version}});
}

std::vector<GatewayView> FleetService::gateways(int64_t now) {
  const int64_t latest = ctx_.store.latest_version();
  const std::vector<GatewayRecord> stored = ctx_.store.gateways();
  std::vector<GatewayView> out;
  out.reserve(stored.size());
  std::lock_guard lock(mu_);
  for (const GatewayRecord& g : stored) {
    int64_t seen = g.seen_ms;
    auto it = gateways_.find(g.id);
    if (it != gateways_.end()) seen = std::max(seen, it->second.seen_ms);
    // What this control plane serves it (its own rev_ may lag the store's by one poll).
    const int64_t served = answer_for(g.id, g.city, Revision{latest, 0}).config;
    std::string health = "ok";
    if (g.status == "exited" && seen <= g.seen_ms) {
      // Said so on its way out; heard from since (a poll or a snapshot) means it is back.
      health = "exited";
    } else if (now - seen > ctx_.options.gateway_stale_ms) {
      health = "stale";
    } else if (g.status == "draining") {
      health = "draining";
    } else if (g.status == "exited") {
      health = "pending";  // a new process that has not reported a config yet
    } else if (g.status == "refused") {
      health = "refused";
    } else if (g.status != "applied") {
      health = "pending";
    } else if (g.applied_version < served ||
               (ctx_.versions != nullptr && g.applied_version != served)) {
      // Under a plan a gateway ahead of what it is served (a rollback on its way) is not on
      // its version either.
      health = "behind";
    }
    out.push_back(GatewayView{g.id, g.city, g.zone, g.status, g.error, std::move(health),
                              g.applied_version, served, seen});
  }
  return out;
}

std::map<int64_t, std::vector<std::string>> FleetService::gateways_on_versions(int64_t now) {
  std::map<int64_t, std::vector<std::string>> out;
  for (GatewayView& g : gateways(now)) {
    if (g.health == "exited" || g.health == "stale") continue;
    out[g.status == "applied" ? g.applied_version : -1].push_back(std::move(g.id));
  }
  for (auto& [version, ids] : out) std::sort(ids.begin(), ids.end());
  return out;
}

HttpResponse FleetService::get_gateways(const Call& c) {
  const std::vector<GatewayView> views = gateways(c.now);
  Json out = Json::array();
  std::lock_guard lock(mu_);
  for (const GatewayView& g : views) {
    std::string applied;
    int64_t local_version = -1, units_version = -1;
    if (auto it = gateways_.find(g.id); it != gateways_.end()) {
      applied = it->second.applied;
      local_version = it->second.local_version;
      units_version = it->second.units_version;
    }
    Json j = {{"id", g.id},           {"city", g.city},
              {"zone", g.zone},       {"applied_version", g.applied_version},
              {"status", g.status},   {"error", g.error},
              {"seen_ms", g.seen_ms}, {"seen", iso_time(g.seen_ms)},
              {"health", g.health}};
    if (!applied.empty()) j["applied"] = applied;
    // The four version numbers under the names the gateway's /ready and /stats use
    // (docs/operations.md, "Version numbers").
    j["config_version"] = g.applied_version;
    if (!applied.empty()) j["control_plane_version"] = applied;
    if (local_version >= 0) j["local_version"] = local_version;
    if (units_version >= 0) j["units_version"] = units_version;
    // The config version this control plane serves it: the latest, or under a staged rollout
    // the plan's version for it (docs/rollout.md).
    j["served_version"] = g.served_version;
    out.push_back(std::move(j));
  }
  return json_response(200, out);
}

void FleetService::tick(int64_t now) {
  if (now >= next_poll_ms_) {
    next_poll_ms_ = now + ctx_.options.revision_poll_ms;
    ctx_.guarded("revision poll", [&] { refresh_revision(nullptr); });
  }
  // A plan writer that did not call plan_changed is still served within a tick.
  if (ctx_.versions != nullptr) {
    bool moved = false;
    {
      std::lock_guard lock(mu_);
      moved = plan_generation_ != ctx_.versions->generation();
    }
    if (moved) plan_changed(nullptr);
  }
  std::vector<Waiter> expired;
  {
    std::lock_guard lock(mu_);
    auto keep = std::partition(waiters_.begin(), waiters_.end(),
                               [now](const Waiter& w) { return w.deadline_ms > now; });
    std::move(keep, waiters_.end(), std::back_inserter(expired));
    waiters_.erase(keep, waiters_.end());
    waiting_ = waiters_.size();
  }
  for (Waiter& w : expired) {
    polls_timed_out_->inc();
    HttpResponse r;
    r.status = 304;
    r.headers.emplace_back("X-Sluice-Version", w.after);
    w.respond(std::move(r));
  }
}

void FleetService::shutdown() {
  std::vector<Waiter> all;
  {
    std::lock_guard lock(mu_);
    if (shut_down_) return;
    shut_down_ = true;
    all.swap(waiters_);
    waiting_ = 0;
  }
  for (Waiter& w : all)
    w.respond(error_response(503, "control plane shutting down; poll another one"));
}

}  // namespace sluice::control::fleet
