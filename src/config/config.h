// The gateway's configuration as typed, validated values. Built only by the loader (loader.h);
// everything downstream may assume every field is within its documented bounds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "config/request_input.h"
#include "core/address.h"
#include "core/duration.h"
#include "http/path.h"

namespace sluice::config {

using core::Duration;
using namespace std::chrono_literals;

struct Node {
  std::string id = "sluice";
  std::string city;
  std::string zone;
  bool operator==(const Node&) const = default;
};

struct Listener {
  std::string name;
  core::HostPort address;
  bool operator==(const Listener&) const = default;
};

struct Admin {
  core::HostPort address;  // port 0 = no admin listener
  bool enabled = false;
  // Bearer token for writes and for the GETs that reveal config or state (docs/operations.md).
  // Empty = no token: allowed only on a loopback address. `token` is the secret read from
  // `token_file` at load (and so again on every reload); it is never serialized.
  std::string token_file;
  std::string token;
  // Host names (lower case, "name" or "name:port") a Host or Origin header may carry besides the
  // address the request came in on (and localhost on loopback): DNS rebinding protection.
  std::vector<std::string> allowed_hosts;
  bool operator==(const Admin&) const = default;
};

struct Limits {
  size_t max_header_bytes = 65536;   // request line + headers; 431 beyond
  size_t max_uri_bytes = 8192;       // 414 beyond
  size_t max_body_bytes = 10485760;  // 413 beyond (Content-Length checked up front)
  size_t max_headers = 100;          // 431 beyond
  Duration header_timeout = 10s;     // 408 when the head has not arrived in time
  Duration idle_timeout = 60s;       // keep-alive connections closed after this
  Duration drain_timeout = 30s;      // SIGTERM / POST /drain: in-flight requests get this long
  size_t max_connections = 100000;   // per gateway; accept pauses beyond
  // Request bodies (mod_reqtimeout's body=20,MinRate=500): the body must be complete within
  // body_timeout after the head, extended by one second for every min_body_rate bytes received.
  // 408 when it is not (before a response started). min_body_rate 0 = no extension.
  Duration body_timeout = 20s;
  uint64_t min_body_rate = 500;  // bytes per second; 0..1GiB
  // A body up to this size is read whole before an upstream connection is chosen and taken, so a
  // slow client cannot pin a connection to the service; larger bodies stream. 0 = always stream.
  size_t request_buffer_bytes = 65536;
  // Memory the idle pooled upstream connections of the whole gateway may take (shared equally by
  // the workers; kIdleUpstreamConnectionBytes each): bounds a pool that follows demand.
  size_t max_idle_upstream_bytes = 64 * 1024 * 1024;
  bool operator==(const Limits&) const = default;
};

// How the gateway reads requests before routing them.
struct Http {
  http::PathOptions path;  // normalize_path, merge_slashes, escaped_slashes, path_parameters
  bool operator==(const Http&) const = default;
};

// What one idle pooled upstream connection costs, for limits.max_idle_upstream_bytes: its 16 KiB
// read buffer, the connection object and the kernel's socket (measured: docs/config.md).
inline constexpr size_t kIdleUpstreamConnectionBytes = 20 * 1024;

struct AccessLog {
  std::string path = "stdout";  // stdout | off | FILE
  std::string format = "json";
  bool operator==(const AccessLog&) const = default;
};

struct Endpoint {
  core::HostPort address;
  std::string city;
  std::string zone;
  uint32_t weight = 1;  // 1..1000

  bool operator==(const Endpoint&) const = default;
};

enum class LbPolicy { kRoundRobin, kLeastRequest, kRingHash };

struct LoadBalancer {
  LbPolicy policy = LbPolicy::kRoundRobin;
  // ring_hash only: header:NAME, query:NAME, client_ip or path; kNone otherwise.
  RequestInput hash_on;
  bool operator==(const LoadBalancer&) const = default;
};

struct Timeouts {
  Duration connect = 1s;
  Duration request = 5s;  // first response byte must arrive within this after the request
  Duration idle = 60s;    // pooled upstream connections closed after this idle time
  // Overall deadline from the request's first byte to the response head, over every try; 0 = none.
  // A retry is not started when less than a tenth of `request` (at least 5 ms) is left, and
  // each try's connect and request timeouts are cut to what is left. 504 when it runs out.
  Duration total = 0s;

  bool operator==(const Timeouts&) const = default;
};

// What a retry may be triggered by.
enum RetryOn : uint32_t {
  kRetryConnectFailure = 1u << 0,
  kRetryReset = 1u << 1,    // connection reset / closed before a response
  kRetryTimeout = 1u << 2,  // request timeout before any response byte
  kRetry502 = 1u << 3,
  kRetry503 = 1u << 4,
  kRetry504 = 1u << 5,
};

struct Retry {
  uint32_t attempts = 1;  // retries after the first try; 0..10
  uint32_t on = kRetryConnectFailure | kRetryReset;
  uint32_t budget_percent = 20;        // retries in flight <= this % of requests in flight
  uint32_t min_retry_concurrency = 3;  // retries always allowed up to this many in flight
  bool non_idempotent = false;         // also retry POST/PATCH (unsafe; off by default)
  bool operator==(const Retry&) const = default;
};

enum class ServiceKind { kGlobal, kUnit };

// Active HTTP health checks of every endpoint of a service, run once per gateway process.
struct HealthCheck {
  bool enabled = false;              // present in the file
  std::string path = "/healthz";     // GET; 2xx/3xx = pass
  std::string host;                  // Host header; empty = the endpoint address
  Duration interval = 1s;            // 10ms..1h
  Duration timeout = 500ms;          // 1ms..interval
  Duration jitter = 100ms;           // each check waits interval + random [0, jitter); < interval
  uint32_t healthy_threshold = 2;    // consecutive passes to become healthy; 1..100
  uint32_t unhealthy_threshold = 3;  // consecutive failures to become unhealthy; 1..100

  bool operator==(const HealthCheck&) const = default;
};

// Passive per-endpoint ejection (Envoy's consecutive errors flavour).
struct OutlierDetection {
  bool enabled = false;
  uint32_t consecutive_errors = 5;     // 5xx, connect failures, resets, timeouts; 1..10000
  Duration base_ejection_time = 10s;   // n-th ejection lasts n * base, capped at max_ejection_time
  Duration max_ejection_time = 300s;   // >= base_ejection_time
  uint32_t max_ejection_percent = 50;  // 0..100; at least one endpoint always stays in

  bool operator==(const OutlierDetection&) const = default;
};

// Per-service circuit breaker over a sliding time window, plus concurrency caps.
struct CircuitBreaker {
  bool enabled = false;              // the state machine (window/ratios/open); caps work without it
  Duration window = 10s;             // 1s..1h, kept as 10 buckets
  uint32_t min_requests = 20;        // calls in the window before ratios are judged; 1..1e6
  double error_ratio = 0.5;          // (0, 1]
  Duration slow_call_duration = 1s;  // a call slower than this is slow
  double slow_call_ratio = 1.0;      // (0, 1]; 1.0 = only when every call is slow
  Duration open_duration = 5s;       // first open period; doubles after a failed probe round
  Duration max_open_duration = 60s;  // cap of the backoff; >= open_duration
  uint32_t half_open_probes = 5;     // calls let through while half-open; all must succeed; 1..1000
  uint32_t max_concurrent = 0;       // in-flight requests to the service; 0 = no cap
  uint32_t max_pending = 0;          // requests waiting for an upstream connection; 0 = no cap

  bool operator==(const CircuitBreaker&) const = default;
};

// The response served instead of forwarding while the breaker is open.
struct Fallback {
  bool enabled = false;
  int status = 503;  // 200..599
  std::string body;
  std::string content_type = "application/json";

  bool operator==(const Fallback&) const = default;
};

enum class Mode { kEnforce, kShadow };

// Which endpoints of a service a gateway prefers, by its own node.city / node.zone.
struct Locality {
  enum class Prefer { kNone, kSameCity, kSameZone };
  Prefer prefer = Prefer::kSameCity;  // none: all endpoints alike; same_zone: zone, then city
  // While this share (by weight) of the preferred tier is available, all traffic stays there;
  // below it, tier k keeps available_share/threshold of the traffic and the rest spills on
  // (Envoy's priority levels with overprovisioning factor 1/threshold). (0, 1]
  double failover_threshold = 0.7;
  // When less than this share of all endpoints is available, health is ignored and every
  // endpoint may be picked (better some errors than none served). [0, 1)
  double panic_threshold = 0.25;

  bool operator==(const Locality&) const = default;
};

// Adaptive concurrency limit per service, driven by measured latency.
struct AdaptiveConcurrency {
  enum class Algorithm { kGradient, kAimd };
  bool enabled = false;
  Algorithm algorithm = Algorithm::kGradient;
  uint32_t initial_limit = 50;         // min_limit..max_limit
  uint32_t min_limit = 5;              // >= 1
  uint32_t max_limit = 1000;           // >= min_limit, <= 1e6
  Duration sample_window = 250ms;      // limit recomputed at most this often; 10ms..1m
  double tolerance = 1.5;              // gradient: latency may grow to tolerance x baseline; 1..10
  Duration latency_threshold = 500ms;  // aimd: a sample slower than this backs off
  double backoff = 0.9;                // aimd multiplicative decrease; (0, 1)
  Mode mode = Mode::kEnforce;

  bool operator==(const AdaptiveConcurrency&) const = default;
};

// Priority classes by channel: who is shed first when the gateway or a service is overloaded.
struct Overload {
  bool enabled = false;
  RequestInput priority_key;            // header:NAME or query:NAME; kNone = no classes
  std::vector<std::string> priorities;  // highest first, e.g. [payment, branch, mobile, web]
  size_t default_priority = 0;          // index used when the key is absent/unknown; default lowest
  double reserve = 0.3;                 // share of a limit kept for higher classes; lowest class
                                        // is shed at (1 - reserve) x limit; 0..0.9
  uint32_t max_in_flight = 0;           // gateway-wide in-flight cap; 0 = none
  Mode mode = Mode::kEnforce;
  bool operator==(const Overload&) const = default;
};

struct Service {
  std::string name;
  std::vector<Endpoint> endpoints;
  LoadBalancer load_balancer;
  Timeouts timeouts;
  Retry retry;
  ServiceKind kind = ServiceKind::kGlobal;
  // Idle pooled connections per worker per endpoint. Set in the file: a hard cap (0 = no
  // pooling). Absent: this is a floor and the cap follows the recent peak of connections in use.
  uint32_t max_idle_connections = 64;
  bool max_idle_connections_set = false;
  HealthCheck health_check;
  OutlierDetection outlier_detection;
  CircuitBreaker circuit_breaker;
  Fallback fallback;
  AdaptiveConcurrency adaptive_concurrency;
  Locality locality;
  bool operator==(const Service&) const = default;
};

struct HeaderMatch {
  std::string name;   // lower-case
  std::string value;  // exact match; empty with present_only = true means "header present"
  bool present_only = false;
  bool operator==(const HeaderMatch&) const = default;
};

struct RouteMatch {
  std::vector<std::string> hosts;    // exact "api.example.com" or "*.example.com"; empty = any
  std::string path;                  // exact path; empty = not used
  std::string path_prefix;           // prefix; empty (and path empty) = "/"
  std::vector<std::string> methods;  // upper-case; empty = any
  std::vector<HeaderMatch> headers;
  bool operator==(const RouteMatch&) const = default;
};

// Weighted split of a route between services (canary releases): routes[].services instead of
// routes[].service. How a request picks one is router/split.h.
inline constexpr uint32_t kMaxSplitWeight = 10000;  // per service: 0.01% steps of a 100% split
inline constexpr size_t kMaxSplitServices = 16;

struct SplitService {
  std::string name;
  uint32_t weight = 0;       // 0..kMaxSplitWeight; 0 = no traffic but the override's
  bool canary = false;       // where split.override_header sends a request; at most one
  size_t service_index = 0;  // resolved by validation
  bool operator==(const SplitService&) const = default;
};

struct Split {
  std::string sticky_header;                 // lower-case; empty = not sticky by header
  std::string sticky_cookie;                 // cookie name; empty = not sticky by cookie
  std::string override_header = "x-canary";  // lower-case; value "1" = the canary service
  bool operator==(const Split&) const = default;
};

struct Route {
  std::string name;
  RouteMatch match;
  std::string service;                 // empty when `services` (a weighted split) is used
  size_t service_index = 0;            // resolved by validation; the first service of a split
  std::vector<SplitService> services;  // weighted split; empty = `service`
  Split split;                         // only with `services`
  std::string strip_prefix;
  std::string prefix_rewrite;  // replaces strip_prefix (or nothing) after stripping
  bool operator==(const Route&) const = default;
};

enum class RateAlgorithm { kTokenBucket, kSlidingWindow, kConcurrency };
enum class RateScope { kNode, kCluster };

struct RateLimitValue {
  uint64_t requests = 0;  // per `per` (token_bucket, sliding_window) or in flight (concurrency)
  Duration per = 1s;      // 1ms..1d; not used by concurrency
  uint64_t burst = 0;     // token_bucket capacity; loaded as `requests` when not given

  bool operator==(const RateLimitValue&) const = default;
};

struct RateLimitOverride {
  std::string key;  // the composed key: values of the key parts joined by '|'
  RateLimitValue limit;

  bool operator==(const RateLimitOverride&) const = default;
};

struct RateLimitRule {
  std::string name;
  std::vector<std::string> match_routes;    // empty = every route
  std::vector<std::string> match_services;  // empty = every service
  std::vector<size_t> route_indices;        // resolved from match_routes
  std::vector<size_t> service_indices;      // resolved from match_services
  // Dimensions: client_ip, route, service, method, header:NAME, query:NAME. Empty = one key for
  // all requests.
  std::vector<RequestInput> key;
  RateLimitValue limit;
  RateAlgorithm algorithm = RateAlgorithm::kTokenBucket;
  RateScope scope = RateScope::kNode;
  Mode mode = Mode::kEnforce;
  std::vector<RateLimitOverride> overrides;
  size_t max_keys = 100000;  // tracked keys per rule; 1..10e6
  bool operator==(const RateLimitRule&) const = default;
};

struct Redis {
  bool enabled = false;  // present in the file
  core::HostPort address;
  Duration timeout = 20ms;  // a Redis call slower than this counts as an error
  enum class OnError { kLocalFallback, kAllow, kDeny };
  OnError on_error = OnError::kLocalFallback;
  std::string key_prefix = "sluice:";
  uint32_t gateways = 0;  // gateways sharing cluster limits, for the fallback share; 0 = discovered
  bool operator==(const Redis&) const = default;
};

// Dual-city unit (shard) routing: which city owns which shard of a key space.
struct ShardRange {
  uint32_t first = 0;  // inclusive
  uint32_t last = 0;   // inclusive
  bool operator==(const ShardRange&) const = default;
};

struct UnitOwner {
  std::string city;
  std::vector<ShardRange> ranges;
  bool operator==(const UnitOwner&) const = default;
};

struct UnitPeer {
  std::string city;
  core::HostPort address;  // the gateway (listener) of that city
  bool operator==(const UnitPeer&) const = default;
};

struct Units {
  bool enabled = false;           // present in the file
  RequestInput key;               // header:NAME, query:NAME or path_segment:N
  uint32_t shards = 100;          // 1..100000
  std::vector<UnitOwner> owners;  // every shard owned by exactly one city
  std::vector<UnitPeer> peers;    // optional; a city without a peer cannot be forwarded to
  bool protect = true;            // refuse requests for shards this city does not own (no peer)
  Duration hold_timeout = 2s;     // requests for shards being switched wait at most this
  Timeouts peer_timeouts;         // connect/request timeouts of cross-city forwards
  bool operator==(const Units&) const = default;
};

// Where a config value came from, for errors found after loading.
struct SourceMark {
  std::string file;
  int line = 0;
  bool operator==(const SourceMark&) const = default;
};

// Where services, routes, rate limits and units come from when not from this file: a `sluice
// control` the gateway watches (docs/control-plane.md, "Gateways").
struct ControlPlane {
  bool enabled = false;  // present in the file
  std::string address;   // http://host:port or https://host:port, optionally with a path prefix
  std::string token_file;
  std::string cache_dir;          // the last applied config is kept here (config.json)
  std::string ca_file;            // https: trust these certificates instead of the system's
  Duration poll_wait = 30s;       // how long one long poll may be parked at the control plane
  Duration report_interval = 5s;  // stats snapshots and events
  bool operator==(const ControlPlane&) const = default;
};

struct GatewayConfig {
  std::string source_file;
  Node node;
  uint32_t workers = 1;             // 0 in the file = one per core, resolved at load
  std::string io_backend = "auto";  // auto | io_uring | epoll: what the workers' loops run on
  // The request header whose value names the channel (mobile, web, ...) for the observed
  // traffic counts; "" = channels are not counted.
  std::string channel_header = "x-channel";
  std::vector<Listener> listeners;
  Admin admin;
  Limits limits;
  Http http;
  AccessLog access_log;
  std::vector<Service> services;
  std::vector<Route> routes;
  std::vector<RateLimitRule> rate_limits;
  Redis redis;
  Overload overload;
  Units units;
  ControlPlane control_plane;
  bool operator==(const GatewayConfig&) const = default;
};

}  // namespace sluice::config
