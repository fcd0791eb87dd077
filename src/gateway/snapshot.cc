#include "gateway/snapshot.h"

#include <algorithm>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

namespace sluice::gateway {

namespace {

constexpr const char* kClassNames[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
constexpr const char* kErrorKinds[] = {"connect_failure", "reset", "timeout", "protocol"};
constexpr const char* kUnitResults[] = {"local",  "forwarded", "loop",         "not_owned",
                                        "no_key", "held",      "hold_timeout", "direct"};
static_assert(std::size(kUnitResults) == static_cast<size_t>(UnitResult::kCount));
constexpr const char* kProtocolErrors[] = {"invalid_response", "unexpected_101",
                                           "bytes_after_response", "early_response"};
static_assert(std::size(kProtocolErrors) == static_cast<size_t>(UpstreamProtocolError::kCount));

// The config with one synthetic service per peer city (its gateway), so cross-city forwards use
// the same pooled connections, timeouts, retries and metrics as any service.
std::shared_ptr<const config::GatewayConfig> with_peer_services(
    std::shared_ptr<const config::GatewayConfig> config) {
  const config::Units& u = config->units;
  if (!u.enabled || u.peers.empty()) return config;
  auto copy = std::make_shared<config::GatewayConfig>(*config);
  for (const auto& peer : u.peers) {
    if (peer.city == config->node.city) continue;
    config::Service s;
    s.name = "peer:" + peer.city;
    s.endpoints.push_back(config::Endpoint{peer.address, peer.city, "", 1});
    s.timeouts = u.peer_timeouts;
    s.retry.attempts = 1;
    s.retry.on = config::kRetryConnectFailure;
    s.locality.prefer = config::Locality::Prefer::kNone;
    s.locality.panic_threshold = 0;
    copy->services.push_back(std::move(s));
  }
  return copy;
}

CodeCounters make_code_counters(observability::Registry& reg, std::string_view name,
                                std::string_view help, const observability::Labels& base) {
  CodeCounters c;
  for (size_t i = 0; i < 5; ++i) {
    observability::Labels labels = base;
    labels.emplace_back("code", kClassNames[i]);
    c.by_class[i] = &reg.counter(name, help, labels);
  }
  return c;
}

}  // namespace

const char* to_string(UpstreamProtocolError e) {
  auto i = static_cast<size_t>(e);
  return i < std::size(kProtocolErrors) ? kProtocolErrors[i] : "unknown";
}

std::shared_ptr<const Snapshot> build_snapshot(std::shared_ptr<const config::GatewayConfig> config,
                                               uint64_t version, observability::Registry& reg,
                                               Governance& governance,
                                               std::vector<std::string>& errors) {
  const size_t configured_services = config->services.size();
  config = with_peer_services(std::move(config));
  auto snap = std::make_shared<Snapshot>();
  snap->version = version;
  snap->config = config;
  snap->router = std::make_unique<router::Router>(*config);

  asio::io_context resolver_io;
  asio::ip::tcp::resolver resolver(resolver_io);
  for (const auto& svc : config->services) {
    ServiceInfo si;
    si.cfg = &svc;
    si.retries = &reg.counter("sluice_upstream_retries_total", "Retries sent to upstream services.",
                              {{"service", svc.name}});
    si.no_endpoint = &reg.counter("sluice_upstream_no_endpoint_total",
                                  "Requests answered 503 because no endpoint was available.",
                                  {{"service", svc.name}});
    for (size_t k = 0; k < si.protocol_errors.size(); ++k) {
      si.protocol_errors[k] = &reg.counter(
          "sluice_upstream_protocol_errors_total",
          "Upstream responses that broke HTTP/1.1 framing or came unasked; the connection was "
          "closed, never reused.",
          {{"service", svc.name}, {"kind", kProtocolErrors[k]}});
    }
    for (const auto& ep : svc.endpoints) {
      EndpointInfo ei;
      ei.cfg = ep;
      ei.address = ep.address.to_string();
      asio::error_code ec;
      auto results = resolver.resolve(ep.address.host, std::to_string(ep.address.port), ec);
      if (ec || results.empty()) {
        errors.push_back("services." + svc.name + ".endpoints: cannot resolve " + ei.address +
                         ": " + (ec ? ec.message() : std::string("no address")));
        continue;
      }
      ei.resolved = results.begin()->endpoint();
      observability::Labels labels{{"service", svc.name}, {"endpoint", ei.address}};
      ei.requests = make_code_counters(reg, "sluice_upstream_requests_total",
                                       "Responses received from upstream endpoints.", labels);
      for (size_t k = 0; k < 4; ++k) {
        observability::Labels l = labels;
        l.emplace_back("kind", kErrorKinds[k]);
        ei.errors[k] = &reg.counter("sluice_upstream_errors_total",
                                    "Upstream attempts that failed without a response.", l);
      }
      ei.connections_opened =
          &reg.counter("sluice_upstream_connections_opened_total",
                       "New connections established to upstream endpoints.", labels);
      ei.pool_hits =
          &reg.counter("sluice_upstream_pool_hits_total",
                       "Attempts sent on a pooled (reused) upstream connection.", labels);
      ei.duration = &reg.histogram(
          "sluice_upstream_request_duration_seconds",
          "Time from sending a request upstream to the end of its response.", labels);
      if (!config->node.city.empty() && ep.city != config->node.city) {
        ei.cross_city = &reg.counter(
            "sluice_cross_city_requests_total",
            "Attempts sent to another city: spill-over of a service, or a unit forward.",
            {{"service", svc.name}, {"city", ep.city}});
      }
      si.endpoints.push_back(std::move(ei));
    }
    si.peer = snap->services.size() >= configured_services;
    if (si.peer)
      snap->peer_services.emplace_back(svc.endpoints.front().city, snap->services.size());
    si.locality = std::make_unique<upstream::LocalityPlan>(svc.locality, config->node.city,
                                                           config->node.zone, svc.endpoints);
    snap->services.push_back(std::move(si));
  }
  if (!errors.empty()) return nullptr;

  for (const auto& listener : config->listeners) {
    std::vector<RouteMetrics> row;
    auto add = [&](const std::string& route, const std::string& service) {
      observability::Labels labels{
          {"listener", listener.name}, {"route", route}, {"service", service}};
      RouteMetrics m;
      m.requests = make_code_counters(reg, "sluice_requests_total",
                                      "Requests answered by the gateway.", labels);
      m.throttled = &reg.counter("sluice_requests_throttled_total",
                                 "Requests answered 429 Too Many Requests (rate limits, overload "
                                 "protection, or the upstream's own).",
                                 labels);
      m.duration =
          &reg.histogram("sluice_request_duration_seconds",
                         "Time from the first byte of a request to the end of its response.",
                         {{"route", route}, {"service", service}});
      row.push_back(m);
    };
    snap->route_slots.clear();
    for (const auto& route : config->routes) {
      snap->route_slots.push_back(static_cast<uint32_t>(row.size()));
      if (route.services.empty()) add(route.name, route.service);
      for (const auto& s : route.services) add(route.name, s.name);
    }
    add("", "");  // requests that matched no route or failed before routing
    snap->route_metrics.push_back(std::move(row));
  }
  {
    // One row of counts per worker and one shared (observed.h).
    const unsigned rows = std::min<unsigned>(config->workers, observability::kSharedSlot) + 1;
    size_t slots = 0;
    for (const auto& route : config->routes)
      slots += route.services.empty() ? 1 : route.services.size();
    snap->observed.reserve(slots);
    for (size_t i = 0; i < slots; ++i)
      snap->observed.push_back(std::make_shared<RouteObserved>(rows));
  }
  if (config->units.enabled) {
    for (size_t i = 0; i < snap->unit_results.size(); ++i) {
      snap->unit_results[i] = &reg.counter("sluice_unit_requests_total",
                                           "Requests for unit (sharded) services by outcome.",
                                           {{"result", kUnitResults[i]}});
    }
  }
  try {
    snap->governance = governance.build(*config, snap->services);
  } catch (const std::exception& e) {
    errors.push_back(e.what());
    return nullptr;
  }
  return snap;
}

}  // namespace sluice::gateway
