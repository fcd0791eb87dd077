// One immutable, validated view of the configuration with everything the request path needs
// precomputed: the route table, resolved endpoint addresses and metric series handles.
// Workers swap to a new snapshot on reload; requests in flight keep the one they started with.
#pragma once

#include <asio/ip/tcp.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "gateway/governance.h"
#include "gateway/observed.h"
#include "observability/metrics.h"
#include "router/router.h"
#include "upstream/locality.h"

namespace sluice::gateway {

// Index of a status class in per-code counter arrays: 1xx..5xx -> 0..4.
inline unsigned code_class(int status) {
  unsigned c = static_cast<unsigned>(status / 100);
  return c >= 1 && c <= 5 ? c - 1 : 4;
}

struct CodeCounters {
  std::array<observability::Counter*, 5> by_class{};
  void inc(int status) const { by_class[code_class(status)]->inc(); }
};

enum class UpstreamErrorKind { kConnectFailure = 0, kReset = 1, kTimeout = 2, kProtocol = 3 };

// An upstream broke (or bent) HTTP/1.1 on a connection: the connection is never reused after
// one of these (sluice_upstream_protocol_errors_total{kind}, access log `upstream_error`).
enum class UpstreamProtocolError : uint8_t {
  kInvalidResponse = 0,  // unparsable or ambiguous framing (e.g. Content-Length with
                         // Transfer-Encoding, a bad chunk): 502 if nothing was sent yet
  kUnexpected101,        // 101 Switching Protocols to a request that did not ask to upgrade
  kBytesAfterResponse,   // bytes after the end of the response, before the next request
  kEarlyResponse,        // a final response with Connection: close before the request was
                         // fully sent: the rest of the body is not sent (RFC 9112 9.3)
  kCount
};
const char* to_string(UpstreamProtocolError e);

struct EndpointInfo {
  config::Endpoint cfg;
  std::string address;  // "host:port" as configured
  asio::ip::tcp::endpoint resolved;
  CodeCounters requests;
  std::array<observability::Counter*, 4> errors{};  // by UpstreamErrorKind
  observability::Histogram* duration = nullptr;
  observability::Counter* cross_city = nullptr;  // attempts sent here from another city's gateway
  observability::Counter* connections_opened = nullptr;  // new connections established
  observability::Counter* pool_hits = nullptr;           // attempts sent on a pooled connection
};

struct ServiceInfo {
  const config::Service* cfg = nullptr;
  std::vector<EndpointInfo> endpoints;
  std::unique_ptr<upstream::LocalityPlan> locality;
  bool peer = false;  // a peer city's gateway (cross-city forwards), not a configured service
  observability::Counter* retries = nullptr;
  observability::Counter* no_endpoint = nullptr;
  std::array<observability::Counter*, static_cast<size_t>(UpstreamProtocolError::kCount)>
      protocol_errors{};
};

struct RouteMetrics {
  CodeCounters requests;
  // 429s among them, whoever answered it (a rate limit, overload protection or the upstream):
  // what a change's analysis compares (docs/analysis.md).
  observability::Counter* throttled = nullptr;
  observability::Histogram* duration = nullptr;
};

// Outcomes of requests for unit (sharded) services.
enum class UnitResult {
  kLocal = 0,    // the shard is owned by this city
  kForwarded,    // sent to the owner city's gateway
  kLoop,         // already forwarded once and still not owned here: 508
  kNotOwned,     // not owned, no peer, protect: 421
  kNoKey,        // no routing key: served like a global service
  kHeld,         // waited for a switch of its shard to finish
  kHoldTimeout,  // the switch did not finish within hold_timeout: 503
  kDirect,       // the owner city's gateway was unreachable: sent to that city's endpoints
  kCount
};

struct Snapshot {
  uint64_t version = 0;
  std::shared_ptr<const config::GatewayConfig> config;
  std::unique_ptr<router::Router> router;
  std::vector<ServiceInfo> services;
  // [listener][route_slots[route] + slot]: one entry per service a route can send to (its
  // split's slots, or one); the last entry of each listener row is for requests that matched no
  // route.
  std::vector<std::vector<RouteMetrics>> route_metrics;
  std::vector<uint32_t> route_slots;
  // [route_slots[route] + slot]: callers and channels seen on each route slot (observed.h);
  // shared so that the admin API's metric functions can hold a table past a reload.
  std::vector<std::shared_ptr<RouteObserved>> observed;
  std::shared_ptr<const GovernanceSnapshot> governance;
  // Dual-city: the service index of each peer city's gateway, and unit request outcomes.
  std::vector<std::pair<std::string, size_t>> peer_services;
  std::array<observability::Counter*, static_cast<size_t>(UnitResult::kCount)> unit_results{};

  // Index into services of the peer gateway of `city`, or -1.
  int peer_service(std::string_view city) const {
    for (const auto& [c, i] : peer_services) {
      if (c == city) return static_cast<int>(i);
    }
    return -1;
  }

  const RouteMetrics& metrics_for(size_t listener, const router::Route* route,
                                  uint32_t slot = 0) const {
    const auto& row = route_metrics[listener];
    return route ? row[route_slots[route->index] + slot] : row.back();
  }
  // How many entries of a route_metrics row are route r's: its split's size, or 1.
  size_t route_slot_count(size_t r) const {
    return config->routes[r].services.empty() ? 1 : config->routes[r].services.size();
  }
};

// Builds a snapshot; resolves endpoint host names (blocking; called off the request path).
// On failure returns null and appends messages to `errors`.
std::shared_ptr<const Snapshot> build_snapshot(std::shared_ptr<const config::GatewayConfig> config,
                                               uint64_t version, observability::Registry& registry,
                                               Governance& governance,
                                               std::vector<std::string>& errors);

}  // namespace sluice::gateway
