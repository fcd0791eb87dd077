#include "control/stats/stats_service.h"

#include <fmt/format.h>

#include "control/rest.h"
#include "control/stats/observed.h"
#include "control/validate.h"
#include "core/duration.h"
#include "core/log.h"

namespace sluice::control::stats {
namespace {

using Json = nlohmann::json;

constexpr int64_t kMaxListLimit = 1000;
constexpr int64_t kDefaultEventsLimit = 100;
constexpr size_t kMaxEventsPerPost = 1000;
// Snapshots timed this far from the control plane's clock are filed under "now" instead: a
// gateway with a broken clock must not rewrite old rollups or create future ones.
constexpr int64_t kMaxSnapshotAgeMs = 5 * kMinuteMs;
constexpr int64_t kMaxSnapshotAheadMs = kMinuteMs;

constexpr int64_t kDefaultObservedWindowMs = 3'600'000;

// The range of an observed-traffic query: `window` (a duration up to now, default 1h) or
// `from` and `to` (milliseconds since the epoch).
std::optional<std::pair<int64_t, int64_t>> observed_range(const Call& c,
                                                          std::vector<std::string>& errors) {
  auto window = query_param(c.req.query, "window");
  if (window && (query_param(c.req.query, "from") || query_param(c.req.query, "to"))) {
    errors.push_back("window: give either window or from and to");
    return std::nullopt;
  }
  if (window) {
    auto d = core::parse_duration(*window);
    const int64_t ms =
        d ? std::chrono::duration_cast<std::chrono::milliseconds>(*d).count() : int64_t{0};
    if (!d || ms < 1 || ms > kMaxPoints * kMinuteMs) {
      errors.push_back(fmt::format(
          "window: expected a duration such as 15m or 24h (at most 168h), got '{}'", *window));
      return std::nullopt;
    }
    return std::pair{c.now + 1 - ms, c.now + 1};
  }
  auto from = int_param(c.req, "from", c.now + 1 - kDefaultObservedWindowMs, 0, INT64_MAX, errors);
  auto to = int_param(c.req, "to", c.now + 1, 0, INT64_MAX, errors);
  if (!from || !to) return std::nullopt;
  return std::pair{*from, *to};
}

void totals_json(Json& j, const ObservedTotals& t) {
  j["requests"] = t.requests;
  j["errors"] = t.errors;
  j["first_seen_ms"] = t.first_seen_ms;
  j["last_seen_ms"] = t.last_seen_ms;
  j["first_seen"] = iso_time(t.first_seen_ms);
  j["last_seen"] = iso_time(t.last_seen_ms);
  j["gateways"] = t.gateways;
  j["cities"] = t.cities;
}

Json event_json(const Event& e) {
  return Json{{"id", e.id},         {"at_ms", e.at_ms}, {"at", iso_time(e.at_ms)},
              {"source", e.source}, {"kind", e.kind},   {"subject", e.subject},
              {"detail", e.detail}};
}

}  // namespace

std::unique_ptr<Service> make_service(ServiceContext& ctx) {
  return std::make_unique<StatsService>(ctx);
}

StatsService::StatsService(ServiceContext& ctx) : ctx_(ctx), stats_(ctx.store, ctx.options) {
  snapshots_ = &ctx.metrics.counter("sluice_control_stats_snapshots_total",
                                    "Stats snapshots received from gateways");
  events_received_ =
      &ctx.metrics.counter("sluice_control_events_received_total", "Events received from gateways");
  ctx.events = this;
  ctx.stats = &stats_;
  ctx.observed = &stats_;
}

std::vector<Route> StatsService::routes() {
  auto bind = [this](auto fn) { return member_route(this, fn); };
  using S = StatsService;
  return {
      {"POST", {"v1", "stats"}, Role::kOperator, bind(&S::post_stats)},
      {"GET", {"v1", "stats"}, Role::kViewer, bind(&S::get_stats)},
      {"GET", {"v1", "stats", "edges"}, Role::kViewer, bind(&S::get_edges)},
      {"GET", {"v1", "stats", "channels"}, Role::kViewer, bind(&S::get_channels)},
      {"POST", {"v1", "events"}, Role::kOperator, bind(&S::post_events)},
      {"GET", {"v1", "events"}, Role::kViewer, bind(&S::get_events)},
  };
}

HttpResponse StatsService::post_stats(const Call& c) {
  HttpResponse bad;
  auto body = parse_body(c.req.body, bad);
  if (!body) return bad;
  std::vector<std::string> errors;
  if (!body->is_object()) return error_response(400, "expected a JSON object");
  // Other keys are kept: gateways may report more than this build knows about.
  std::string gateway;
  auto g = body->find("gateway");
  if (g == body->end() || !g->is_string() || !is_valid_name(g->get<std::string>())) {
    errors.push_back("gateway: required, letters, digits, '_', '.' and '-'");
  } else {
    gateway = g->get<std::string>();
  }
  int64_t at = c.now;
  if (auto a = body->find("at_ms"); a != body->end()) {
    if (!a->is_number_integer()) {
      errors.push_back("at_ms: expected an integer (milliseconds since the epoch)");
    } else if (int64_t t = a->get<int64_t>();
               t >= c.now - kMaxSnapshotAgeMs && t <= c.now + kMaxSnapshotAheadMs) {
      at = t;
    }
  }
  for (const char* section : {"routes", "services", "endpoints", "cities"}) {
    auto s = body->find(section);
    if (s != body->end() && !s->is_object() && !s->is_null())
      errors.push_back(fmt::format("{}: expected an object, got {}", section, describe_json(*s)));
  }
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  snapshots_->inc();
  Json data = *body;
  data["at_ms"] = at;
  Json sections = Json::object();
  // `versions` are states, not counters: kept for GET /v1/gateways, not added up in rollups.
  int64_t local_version = -1, units_version = -1;
  if (auto v = body->find("versions"); v != body->end() && v->is_object()) {
    auto number = [&](const char* key) -> int64_t {
      auto n = v->find(key);
      return n != v->end() && n->is_number_integer() && n->get<int64_t>() >= 0 ? n->get<int64_t>()
                                                                               : -1;
    };
    local_version = number("local_version");
    units_version = number("units_version");
  }
  for (auto it = body->begin(); it != body->end(); ++it) {
    if (it.key() != "gateway" && it.key() != "at_ms" && it.key() != "versions")
      sections[it.key()] = it.value();
  }
  stamp_observed(sections, at);
  stats_.add(gateway, at, c.now, std::move(data), sections);
  ctx_.sightings->heard_from(gateway, c.now, local_version, units_version);
  return json_response(200, {{"gateway", gateway}, {"at_ms", at}});
}

HttpResponse StatsService::get_stats(const Call& c) {
  std::vector<std::string> errors;
  const std::string gateway = query_param(c.req.query, "gateway").value_or("");
  auto from = int_param(c.req, "from", c.now - 3'600'000, 0, INT64_MAX, errors);
  auto to = int_param(c.req, "to", c.now + 1, 0, INT64_MAX, errors);
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  Json recent = Json::array();
  for (Json& s : stats_.recent(*from, *to, gateway)) recent.push_back(std::move(s));
  Json rollups = Json::array();
  for (const Rollup& r : stats_.rollups(*from, *to, gateway)) {
    rollups.push_back({{"minute_ms", r.minute_ms}, {"gateway", r.gateway}, {"data", r.data}});
  }
  return json_response(200, {{"recent", std::move(recent)}, {"rollups", std::move(rollups)}});
}

HttpResponse StatsService::post_events(const Call& c) {
  HttpResponse bad;
  auto body = parse_body(c.req.body, bad);
  if (!body) return bad;
  Json list = body->is_array() ? *body : Json::array({*body});
  std::vector<std::string> errors;
  if (list.size() > kMaxEventsPerPost)
    return error_response(400, fmt::format("at most {} events per request", kMaxEventsPerPost));
  const std::string source = query_param(c.req.query, "gateway").value_or(c.who.name);
  std::vector<Event> events;
  for (size_t i = 0; i < list.size(); ++i) {
    Fields f(list[i], fmt::format("[{}].", i), errors,
             {"kind", "subject", "detail", "at_ms", "source"});
    if (!list[i].is_object()) continue;
    Event e;
    e.kind = f.string("kind", true).value_or("");
    if (e.kind.empty() && f.get("kind") != nullptr && f.get("kind")->is_string())
      f.error("kind", "must not be empty");
    e.subject = f.string("subject", false).value_or("");
    e.source = f.string("source", false).value_or(source);
    e.at_ms = f.integer("at_ms", 0, INT64_MAX).value_or(c.now);
    if (const Json* d = f.get("detail")) e.detail = *d;
    events.push_back(std::move(e));
  }
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  Json ids = Json::array();
  for (const Event& e : events) ids.push_back(ctx_.store.append_event(e));
  events_received_->inc(events.size());
  return json_response(200, {{"ids", std::move(ids)}});
}

HttpResponse StatsService::get_events(const Call& c) {
  std::vector<std::string> errors;
  auto after = int_param(c.req, "after", 0, 0, INT64_MAX, errors);
  auto limit = int_param(c.req, "limit", kDefaultEventsLimit, 1, kMaxListLimit, errors);
  if (!errors.empty()) return error_response(400, errors.front(), std::move(errors));
  Json out = Json::array();
  for (const Event& e : ctx_.store.events(*after, *limit)) out.push_back(event_json(e));
  return json_response(200, out);
}

HttpResponse StatsService::get_edges(const Call& c) {
  std::vector<std::string> errors;
  auto range = observed_range(c, errors);
  if (!range) return error_response(400, errors.front(), std::move(errors));
  const std::string caller = query_param(c.req.query, "caller").value_or("");
  const std::string callee = query_param(c.req.query, "callee").value_or("");
  std::vector<ObservedEdge> edges;
  try {
    edges = stats_.edges(range->first, range->second);
  } catch (const std::invalid_argument& e) {
    return error_response(400, e.what());
  }
  Json list = Json::array();
  for (const ObservedEdge& e : edges) {
    if ((!caller.empty() && e.caller != caller) || (!callee.empty() && e.callee != callee))
      continue;
    Json j = {{"caller", e.caller}, {"callee", e.callee}};
    totals_json(j, e);
    list.push_back(std::move(j));
  }
  return json_response(
      200, {{"from_ms", range->first}, {"to_ms", range->second}, {"edges", std::move(list)}});
}

HttpResponse StatsService::get_channels(const Call& c) {
  std::vector<std::string> errors;
  auto range = observed_range(c, errors);
  if (!range) return error_response(400, errors.front(), std::move(errors));
  std::vector<ObservedChannel> channels;
  try {
    channels = stats_.channels(range->first, range->second);
  } catch (const std::invalid_argument& e) {
    return error_response(400, e.what());
  }
  Json list = Json::array();
  for (const ObservedChannel& ch : channels) {
    Json j = {{"channel", ch.channel}};
    totals_json(j, ch);
    list.push_back(std::move(j));
  }
  return json_response(
      200, {{"from_ms", range->first}, {"to_ms", range->second}, {"channels", std::move(list)}});
}

void StatsService::tick(int64_t now) {
  ctx_.guarded("stats rollups", [&] { stats_.flush(now, false); });
  if (now >= next_prune_ms_) {
    next_prune_ms_ = now + ctx_.options.prune_interval_ms;
    ctx_.guarded("retention", [&] {
      stats_.prune(now);
      ctx_.store.prune_events(now - ctx_.options.events_retention_ms);
    });
  }
}

void StatsService::shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  try {
    stats_.flush(ctx_.now_ms(), true);
  } catch (const std::exception& e) {
    core::log_warn("control: stats rollups not written at shutdown: {}", e.what());
  }
}

}  // namespace sluice::control::stats
