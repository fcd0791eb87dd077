#include "gateway/gateway.h"

#include <nlohmann/json.hpp>

#include <asio/post.hpp>

#include "config/reader.h"
#include "core/json.h"
#include "core/log.h"
#include "gateway/admin.h"
#include "gateway/worker.h"

namespace sluice::gateway {

namespace {

constexpr const char* kRejectNames[] = {
    "bad_request",  "header_too_large", "uri_too_long",         "body_too_large", "header_timeout",
    "idle_timeout", "unsupported",      "too_many_connections", "body_timeout",   "bad_path"};
static_assert(std::size(kRejectNames) == static_cast<size_t>(RejectReason::kCount));

uint64_t sum(const CodeCounters& c) {
  uint64_t n = 0;
  for (auto* k : c.by_class) n += k->value();
  return n;
}

}  // namespace

Gateway::Gateway(std::string config_path, std::shared_ptr<const config::GatewayConfig> config,
                 std::string local_text, std::optional<Bootstrap> boot)
    : config_path_(std::move(config_path)),
      local_text_(std::move(local_text)),
      config_(boot && boot->config ? boot->config : std::move(config)),
      control_plane_(config_->control_plane.enabled),
      boot_(std::move(boot)),
      signals_(io_),
      drain_timer_(io_),
      tick_timer_(io_) {
  shared_.listeners = config_->listeners;
  shared_.workers = config_->workers;
  shared_.io_backend = config_->io_backend == "epoll"      ? IoBackend::kEpoll
                       : config_->io_backend == "io_uring" ? IoBackend::kUring
                                                           : IoBackend::kAuto;
  shared_.max_connections = config_->limits.max_connections;
  shared_.node_id = config_->node.id;
  declare_metrics();
  shared_.registry.register_process_metrics();
  std::string error;
  shared_.access_sink =
      observability::AccessLogSink::open(config_->access_log, error, &shared_.registry);
  if (!shared_.access_sink) throw std::runtime_error(error);
  governance_ = std::make_unique<Governance>(shared_.registry, config_->node.id);
  std::vector<std::string> errors;
  // From here on, series belong to the config version that declares them (sweep_metrics).
  shared_.registry.set_epoch(version_.load());
  snapshot_ = build_snapshot(config_, version_.load(), shared_.registry, *governance_, errors);
  if (!snapshot_) {
    std::string all;
    for (const auto& e : errors) all += (all.empty() ? "" : "\n") + e;
    throw std::runtime_error(all);
  }
  config_version_->set(static_cast<int64_t>(version_.load()));
  if (config_->units.enabled) {
    units_ = router::UnitTable::from_config(config_->units, 1);
    units_version_->set(1);
  }
  if (boot_ && boot_->pushed) {
    pushed_ = boot_->pushed;
    has_pushed_ = true;
  }
}

Gateway::~Gateway() {
  if (link_) link_->stop();
  for (auto& w : workers_) w->stop();
  for (auto& w : workers_) w->join();
  governance_->stop();
}

void Gateway::schedule_tick() {
  tick_timer_.expires_after(std::chrono::seconds(1));
  tick_timer_.async_wait([this](const asio::error_code& ec) {
    if (ec) return;
    governance_->tick();
    sweep_metrics();
    schedule_tick();
  });
}

void Gateway::declare_metrics() {
  auto& reg = shared_.registry;
  for (const auto& l : shared_.listeners) {
    ListenerMetrics m;
    m.active = &reg.gauge("sluice_downstream_connections_active", "Open client connections.",
                          {{"listener", l.name}});
    m.total = &reg.counter("sluice_downstream_connections_total", "Client connections accepted.",
                           {{"listener", l.name}});
    shared_.listener_metrics.push_back(m);
  }
  for (size_t i = 0; i < static_cast<size_t>(RejectReason::kCount); ++i) {
    shared_.rejected[i] = &reg.counter("sluice_downstream_rejected_total",
                                       "Requests or connections refused before routing.",
                                       {{"reason", kRejectNames[i]}});
  }
  shared_.paths_normalized =
      &reg.counter("sluice_request_paths_normalized_total",
                   "Requests whose path was rewritten to its normal form before routing.");
  reload_ok_ = &reg.counter("sluice_config_reloads_total", "Config reloads by result.",
                            {{"result", "success"}});
  reload_failed_ = &reg.counter("sluice_config_reloads_total", "Config reloads by result.",
                                {{"result", "failure"}});
  config_version_ =
      &reg.gauge("sluice_config_version", "Version of the config in use (1 at start).");
  units_version_ = &reg.gauge("sluice_units_version",
                              "Version of the shard ownership table in use (0 = no units).");
  unit_switches_ = &reg.counter("sluice_unit_switches_total",
                                "Changes of shard ownership applied through POST /units/switch.");
  // Pools are per worker and keyed by endpoint address (shared by the services that name it), so
  // these are per gateway; the workers are created before the admin API can scrape.
  for (size_t i = 0; i < static_cast<size_t>(PoolCloseReason::kCount); ++i) {
    auto reason = static_cast<PoolCloseReason>(i);
    reg.counter_fn("sluice_upstream_pool_closed_total",
                   "Pooled upstream connections the gateway closed instead of reusing, by reason.",
                   [this, reason] {
                     uint64_t n = 0;
                     for (const auto& w : workers_) n += w->pool_closed(reason);
                     return static_cast<double>(n);
                   },
                   {{"reason", to_string(reason)}});
  }
  reg.gauge_fn("sluice_upstream_idle_connections",
               "Idle pooled upstream connections (all workers).", [this] {
                 size_t n = 0;
                 for (const auto& w : workers_) n += w->idle_upstream_count();
                 return static_cast<double>(n);
               });
}

std::shared_ptr<const Snapshot> Gateway::snapshot() const {
  std::lock_guard lock(snapshot_mu_);
  return snapshot_;
}

int Gateway::run() {
  started_at_ = std::chrono::steady_clock::now();
  try {
    for (unsigned i = 0; i < config_->workers; ++i) {
      workers_.push_back(std::make_unique<Worker>(shared_, i));
      workers_.back()->open_listeners();
    }
    if (config_->admin.enabled) {
      admin_ = std::make_unique<AdminServer>(io_, *this, config_->admin.address);
    }
  } catch (const std::exception& e) {
    core::log_error("cannot start: {}", e.what());
    return 1;
  }
  if (control_plane_) {
    try {
      link_ = std::make_unique<ControlLink>(*this, *config_);
    } catch (const std::exception& e) {
      core::log_error("cannot start: {}", e.what());
      return 1;
    }
  }
  governance_->start();
  for (auto& w : workers_) w->apply_units(units_);
  for (auto& w : workers_) w->start(snapshot_);
  if (admin_) admin_->start();
  schedule_tick();
  watch_signals();
  started_ = true;
  std::string addrs;
  for (const auto& l : config_->listeners) addrs += " " + l.name + "=" + l.address.to_string();
  const EventLoop& loop = workers_.front()->loop();
  core::log_info(
      "sluice gateway {} started: {} worker(s) on {}{}, listeners:{}{}", config_->node.id,
      config_->workers, to_string(loop.backend()),
      loop.fallback_reason().empty() ? ""
                                     : " (io_uring unavailable: " + loop.fallback_reason() + ")",
      addrs, config_->admin.enabled ? ", admin=" + config_->admin.address.to_string() : "");
  if (link_) {
    core::log_info("control plane {}: {}", config_->control_plane.address,
                   pushed_ ? "config " + pushed_->version + " from " + boot_->source
                           : std::string("no config yet"));
    link_->start(pushed_ ? pushed_->version : "", boot_->refused, boot_->refused_errors);
    boot_.reset();  // its config (perhaps replaced since) is not needed any more
  }
  io_.run();
  if (link_) link_->stop();
  for (auto& w : workers_) w->stop();
  for (auto& w : workers_) w->join();
  core::log_info("sluice gateway stopped");
  return exit_code_;
}

void Gateway::watch_signals() {
  signals_.add(SIGHUP);
  signals_.add(SIGTERM);
  signals_.add(SIGINT);
  signals_.add(SIGUSR1);
  signals_.async_wait([this](const asio::error_code& ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      ReloadResult r = reload();
      (void)r;
    } else if (sig == SIGUSR1) {
      std::string error;
      if (!shared_.access_sink->reopen(error)) core::log_error("access log reopen: {}", error);
    } else if (draining_) {
      core::log_warn("second stop signal: exiting without waiting for in-flight requests");
      io_.stop();
      return;
    } else {
      begin_drain(sig == SIGTERM ? "SIGTERM" : "SIGINT");
    }
    watch_signals();
  });
}

ReloadResult Gateway::reload() {
  config::LoadResult loaded;
  std::optional<std::string> text = config::read_config_file(config_path_, loaded.errors);
  if (text) {
    loaded = pushed_ ? config::load_with_pushed(*text, config_path_, pushed_->json,
                                                "control plane config " + pushed_->version)
                     : config::load_string(*text, config_path_);
  }
  ReloadResult result = install(std::move(loaded), config_path_);
  if (result.ok && text) local_text_ = std::move(*text);
  return result;
}

ReloadResult Gateway::apply_pushed(const PushedConfig& pushed) {
  const std::string what = "control plane config " + pushed.version;
  ReloadResult result =
      install(config::load_with_pushed(local_text_, config_path_, pushed.json, what), what);
  if (result.ok) {
    std::lock_guard lock(snapshot_mu_);
    pushed_ = pushed;
    has_pushed_ = true;
  }
  return result;
}

ReloadResult Gateway::install(config::LoadResult loaded, const std::string& what) {
  ReloadResult result;
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) result.errors.push_back(e.to_string());
  } else {
    result.errors = config::restart_only_changes(*config_, *loaded.config);
  }
  std::shared_ptr<const Snapshot> snap;
  if (result.errors.empty()) {
    shared_.registry.set_epoch(version_.load() + 1);
    snap = build_snapshot(loaded.config, version_.load() + 1, shared_.registry, *governance_,
                          result.errors);
  }
  if (!snap) {
    reload_failed_->inc();
    core::log_error("reload of {} refused, keeping version {}: {} error(s)", what, version_.load(),
                    result.errors.size());
    for (const auto& e : result.errors) core::log_error("  {}", e);
    result.version = version_.load();
    return result;
  }
  // Shard ownership changed at run time survives a reload that leaves the units section alone.
  bool units_changed = !(loaded.config->units == config_->units);
  {
    std::lock_guard lock(snapshot_mu_);
    retired_.push_back(snapshot_);
    snapshot_ = snap;
    config_ = loaded.config;
  }
  version_ = snap->version;
  for (auto& w : workers_) w->apply(snap);
  if (units_changed) {
    uint64_t next = units_ ? units_->version() + 1 : 1;
    push_units(loaded.config->units.enabled
                   ? router::UnitTable::from_config(loaded.config->units, next)
                   : nullptr);
  }
  reload_ok_->inc();
  config_version_->set(static_cast<int64_t>(snap->version));
  core::log_info("reloaded {}: now version {}", what, snap->version);
  result.ok = true;
  result.version = snap->version;
  return result;
}

void Gateway::sweep_metrics() {
  uint64_t keep_from = version_.load();
  std::erase_if(retired_, [](const std::weak_ptr<const Snapshot>& w) { return w.expired(); });
  for (const auto& w : retired_) {
    if (auto s = w.lock()) keep_from = std::min(keep_from, s->version);
  }
  if (keep_from <= swept_below_) return;
  // A removed endpoint's, route's or rule's series (and the state its gauges read) go with the
  // last snapshot that used them; those of a version that failed to build were never used.
  size_t removed = shared_.registry.sweep(keep_from);
  swept_below_ = keep_from;
  if (removed > 0) {
    core::log_info("metrics: {} series of config versions before {} removed", removed, keep_from);
  }
}

void Gateway::begin_drain(const char* why) {
  if (draining_.exchange(true)) return;
  auto timeout = config_->limits.drain_timeout;
  core::log_info("draining ({}): up to {} for in-flight requests", why,
                 core::format_duration(timeout));
  drain_deadline_ = std::chrono::steady_clock::now() + timeout;
  // Stop accepting on every worker at once, here, rather than when each worker's loop gets to
  // its drain (a busy one could accept and serve new connections meanwhile, with keep-alive).
  shared_.draining.store(true, std::memory_order_relaxed);
  for (auto& w : workers_) w->stop_accepting();
  for (auto& w : workers_) w->begin_drain();
  if (link_) link_->draining();
  poll_drain();
}

void Gateway::poll_drain() {
  size_t open = 0;
  for (auto& w : workers_) open += w->connection_count();
  bool timed_out = std::chrono::steady_clock::now() >= drain_deadline_;
  if (open == 0 || timed_out) {
    if (open > 0)
      core::log_warn("drain timeout: closing {} connection(s)", open);
    else
      core::log_info("drained: no connections left");
    if (admin_) admin_->stop();
    signals_.cancel();
    drain_timer_.cancel();
    tick_timer_.cancel();
    io_.stop();
    return;
  }
  drain_timer_.expires_after(std::chrono::milliseconds(20));
  drain_timer_.async_wait([this](const asio::error_code& ec) {
    if (!ec) poll_drain();
  });
}

void Gateway::push_units(std::shared_ptr<const router::UnitTable> table) {
  units_ = std::move(table);
  units_version_->set(units_ ? static_cast<int64_t>(units_->version()) : 0);
  for (auto& w : workers_) w->apply_units(units_);
}

namespace {

nlohmann::json units_body(const router::UnitTable& t, const std::string& city) {
  nlohmann::json owners = nlohmann::json::object();
  for (const auto& o : t.owners()) {
    if (!o.ranges.empty()) owners[o.city] = router::format_shard_ranges(o.ranges);
  }
  std::vector<config::ShardRange> switching = t.switching_ranges();
  return {{"version", t.version()},
          {"city", city},
          {"shards", t.shards()},
          {"owners", owners},
          {"switching", router::format_shard_ranges(switching)}};
}

}  // namespace

std::pair<int, std::string> Gateway::units_json() const {
  if (!units_) {
    return {404, nlohmann::json{{"error", "no units section in the config"}}.dump(2) + "\n"};
  }
  return {200, units_body(*units_, config_->node.city).dump(2) + "\n"};
}

std::pair<int, std::string> Gateway::switch_units(std::string_view body) {
  auto fail = [](int status, const std::string& message) {
    return std::pair<int, std::string>{status, nlohmann::json{{"error", message}}.dump(2) + "\n"};
  };
  if (!units_) return fail(404, "no units section in the config");
  std::string problem;
  auto parsed = core::parse_json(body, &problem);
  if (!parsed) return fail(400, problem);
  const nlohmann::json& j = *parsed;
  if (!j.is_object()) return fail(400, "body must be a JSON object {from, to, shards?, phase?}");
  auto text = [&](const char* key) -> std::optional<std::string> {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
  };
  for (const auto& [key, value] : j.items()) {
    if (key != "from" && key != "to" && key != "shards" && key != "phase") {
      return fail(400, "unknown field '" + key + "' (expected from, to, shards, phase)");
    }
    if (!value.is_string()) return fail(400, "'" + key + "' must be a string");
  }
  std::string phase = text("phase").value_or("apply");
  if (phase != "apply" && phase != "prepare" && phase != "commit" && phase != "abort") {
    return fail(400, "phase must be apply, prepare, commit or abort");
  }
  router::UnitTable::Result result;
  std::string from, to;
  std::vector<config::ShardRange> ranges;
  if (phase == "abort") {
    result = units_->aborted();
  } else {
    auto f = text("from");
    auto t = text("to");
    if (!f || !t) return fail(400, "'from' and 'to' (city names) are required");
    from = *f;
    to = *t;
    if (auto sh = text("shards"); sh && !sh->empty()) {
      std::string error;
      auto parsed = router::parse_shard_ranges(*sh, units_->shards(), &error);
      if (!parsed) return fail(400, "shards: " + error);
      ranges = std::move(*parsed);
    }
    std::vector<std::string> cities;
    for (const auto& o : config_->units.owners) cities.push_back(o.city);
    for (const auto& p : config_->units.peers) cities.push_back(p.city);
    cities.push_back(config_->node.city);
    result = phase == "prepare" ? units_->prepared(from, to, ranges, cities)
                                : units_->with_switch(from, to, ranges, cities);
  }
  if (!result.table) return fail(409, result.error);
  push_units(result.table);
  unit_switches_->inc();
  core::log_warn(
      "units version {}: {} {} -> {} shards [{}]", units_->version(), phase, from, to,
      ranges.empty() ? std::string("all of ") + from : router::format_shard_ranges(ranges));
  return {200, units_body(*units_, config_->node.city).dump(2) + "\n"};
}

std::string Gateway::pushed_version() const {
  std::lock_guard lock(snapshot_mu_);
  return pushed_ ? pushed_->version : std::string();
}

nlohmann::json Gateway::versions_json() const {
  nlohmann::json j = {{"local_version", version_.load()}, {"units_version", units_version()}};
  std::string pushed = pushed_version();
  if (!pushed.empty()) {
    j["control_plane_version"] = pushed;
    // "N.R": N is the control plane's config version, R its registry revision.
    uint64_t n = 0;
    size_t i = 0;
    for (; i < pushed.size() && pushed[i] >= '0' && pushed[i] <= '9' && i < 18; ++i)
      n = n * 10 + static_cast<uint64_t>(pushed[i] - '0');
    if (i > 0) j["config_version"] = n;
  }
  return j;
}

double Gateway::uptime_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
}

std::string Gateway::config_json() const {
  std::shared_ptr<const config::GatewayConfig> cfg;
  {
    std::lock_guard lock(snapshot_mu_);
    cfg = config_;
  }
  auto j = nlohmann::json::parse(config::to_json(*cfg));
  nlohmann::json out = {{"version", version_.load()}, {"source", config_path_}, {"config", j}};
  return out.dump(2) + "\n";
}

std::string Gateway::stats_json() const {
  auto snap = snapshot();
  nlohmann::json j;
  j["node"] = {{"id", snap->config->node.id},
               {"city", snap->config->node.city},
               {"zone", snap->config->node.zone}};
  j["version"] = snap->version;
  j.update(versions_json());
  j["uptime_seconds"] = uptime_seconds();
  j["draining"] = draining_.load();
  j["workers"] = workers_.size();
  if (!workers_.empty()) j["io_backend"] = to_string(workers_.front()->loop().backend());
  size_t conns = 0, idle_up = 0;
  for (const auto& w : workers_) {
    conns += w->connection_count();
    idle_up += w->idle_upstream_count();
  }
  j["connections_active"] = conns;
  j["upstream_idle_connections"] = idle_up;
  nlohmann::json services = nlohmann::json::array();
  for (const auto& si : snap->services) {
    nlohmann::json eps = nlohmann::json::array();
    for (const auto& ep : si.endpoints) {
      uint64_t errors = 0;
      for (auto* c : ep.errors) errors += c->value();
      eps.push_back({{"address", ep.address},
                     {"city", ep.cfg.city},
                     {"zone", ep.cfg.zone},
                     {"weight", ep.cfg.weight},
                     {"responses", sum(ep.requests)},
                     {"responses_5xx", ep.requests.by_class[4]->value()},
                     {"errors", errors}});
    }
    services.push_back({{"name", si.cfg->name},
                        {"retries", si.retries->value()},
                        {"no_endpoint", si.no_endpoint->value()},
                        {"endpoints", eps}});
  }
  j["services"] = services;
  nlohmann::json routes = nlohmann::json::array();
  const auto& cfg = *snap->config;
  for (size_t r = 0; r < cfg.routes.size(); ++r) {
    const config::Route& route = cfg.routes[r];
    uint64_t total = 0, errors5 = 0;
    nlohmann::json split = nlohmann::json::array();
    for (size_t slot = 0; slot < snap->route_slot_count(r); ++slot) {
      uint64_t s_total = 0, s_errors5 = 0;
      for (size_t l = 0; l < snap->route_metrics.size(); ++l) {
        const RouteMetrics& m = snap->route_metrics[l][snap->route_slots[r] + slot];
        s_total += sum(m.requests);
        s_errors5 += m.requests.by_class[4]->value();
      }
      total += s_total;
      errors5 += s_errors5;
      if (route.services.empty()) continue;
      const config::SplitService& sv = route.services[slot];
      split.push_back({{"name", sv.name},
                       {"weight", sv.weight},
                       {"canary", sv.canary},
                       {"requests", s_total},
                       {"responses_5xx", s_errors5}});
    }
    nlohmann::json rj = {{"name", route.name}};
    if (route.services.empty()) {
      rj["service"] = route.service;
    } else {
      rj["services"] = std::move(split);
    }
    rj["requests"] = total;
    rj["responses_5xx"] = errors5;
    // Observed traffic (observed.h): requests by caller and by channel, over the route's slots.
    nlohmann::json callers = nlohmann::json::object(), channels = nlohmann::json::object();
    for (size_t slot = 0; slot < snap->route_slot_count(r); ++slot) {
      const size_t i = snap->route_slots[r] + slot;
      if (i >= snap->observed.size()) break;
      const RouteObserved& o = *snap->observed[i];
      for (uint32_t c = 0; c < ObservedTable::kColumns; ++c) {
        if (std::string_view name = o.callers.name(c); !name.empty()) {
          auto& n = callers[std::string(name)];
          n = n.is_number() ? n.get<uint64_t>() + o.callers.requests(c) : o.callers.requests(c);
        }
        if (std::string_view name = o.channels.name(c); !name.empty()) {
          auto& n = channels[std::string(name)];
          n = n.is_number() ? n.get<uint64_t>() + o.channels.requests(c) : o.channels.requests(c);
        }
      }
    }
    rj["callers"] = std::move(callers);
    rj["channels"] = std::move(channels);
    routes.push_back(std::move(rj));
  }
  j["routes"] = routes;
  j["governance"] =
      nlohmann::json::parse(governance_->stats_json(*snap->governance, snap->services));
  if (link_) j["control_plane"] = nlohmann::json::parse(link_->state_json());
  return j.dump(2) + "\n";
}

void Gateway::declare_observed_metrics() {
  auto snap = snapshot();
  if (!snap) return;
  const auto& cfg = *snap->config;
  // Re-declared on every scrape: the same name and labels replace the function (with the current
  // snapshot's table) and keep the series in the current config version's epoch. At most
  // ObservedTable::kColumns series per route slot and table.
  auto declare = [&](const std::shared_ptr<RouteObserved>& holder, const ObservedTable& t,
                     const char* name, const char* help, const char* label,
                     const observability::Labels& base) {
    for (uint32_t c = 0; c < ObservedTable::kColumns; ++c) {
      std::string_view value = t.name(c);
      if (value.empty()) continue;
      observability::Labels labels = base;
      labels.emplace_back(label, std::string(value));
      shared_.registry.counter_fn(
          name, help, [holder, &t, c] { return static_cast<double>(t.requests(c)); }, labels);
    }
  };
  for (size_t r = 0; r < cfg.routes.size() && r < snap->route_slots.size(); ++r) {
    const config::Route& route = cfg.routes[r];
    for (size_t slot = 0; slot < snap->route_slot_count(r); ++slot) {
      const size_t i = snap->route_slots[r] + slot;
      if (i >= snap->observed.size()) break;
      const std::shared_ptr<RouteObserved>& o = snap->observed[i];
      const observability::Labels base{
          {"route", route.name},
          {"service", route.services.empty() ? route.service : route.services[slot].name}};
      declare(o, o->callers, "sluice_observed_caller_requests_total",
              "Requests by the calling service (x-sluice-caller; 'other' beyond 32 values, "
              "'invalid' for malformed ones).",
              "caller", base);
      declare(o, o->channels, "sluice_observed_channel_requests_total",
              "Requests by channel (the channel_header; 'other' beyond 32 values, 'invalid' for "
              "malformed ones).",
              "channel", base);
    }
  }
}

}  // namespace sluice::gateway
