// The gateway's configuration as typed, validated values. Built only by the loader (loader.h);
// everything downstream may assume every field is within its documented bounds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/address.h"
#include "core/duration.h"

namespace sluice::config {

using core::Duration;
using namespace std::chrono_literals;

struct Node {
  std::string id = "sluice";
  std::string city;
  std::string zone;
};

struct Listener {
  std::string name;
  core::HostPort address;
};

struct Admin {
  core::HostPort address;  // port 0 = no admin listener
  bool enabled = false;
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
};

struct AccessLog {
  std::string path = "stdout";  // stdout | off | FILE
  std::string format = "json";
};

struct Endpoint {
  core::HostPort address;
  std::string city;
  std::string zone;
  uint32_t weight = 1;  // 1..1000
};

enum class LbPolicy { kRoundRobin, kLeastRequest, kRingHash };

// Where a hash key comes from ("header:x-customer-id", "query:id", "client_ip", "path").
struct HashKey {
  enum class Source { kNone, kHeader, kQuery, kClientIp, kPath };
  Source source = Source::kNone;
  std::string name;  // lower-case header name, or query parameter name
};

struct LoadBalancer {
  LbPolicy policy = LbPolicy::kRoundRobin;
  HashKey hash_on;  // ring_hash only
};

struct Timeouts {
  Duration connect = 1s;
  Duration request = 5s;  // first response byte must arrive within this after the request
  Duration idle = 60s;    // pooled upstream connections closed after this idle time
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
};

enum class ServiceKind { kGlobal, kUnit };

struct Service {
  std::string name;
  std::vector<Endpoint> endpoints;
  LoadBalancer load_balancer;
  Timeouts timeouts;
  Retry retry;
  ServiceKind kind = ServiceKind::kGlobal;
  uint32_t max_idle_connections = 64;  // per worker per endpoint
};

struct HeaderMatch {
  std::string name;   // lower-case
  std::string value;  // exact match; empty with present_only = true means "header present"
  bool present_only = false;
};

struct RouteMatch {
  std::vector<std::string> hosts;    // exact "api.example.com" or "*.example.com"; empty = any
  std::string path;                  // exact path; empty = not used
  std::string path_prefix;           // prefix; empty (and path empty) = "/"
  std::vector<std::string> methods;  // upper-case; empty = any
  std::vector<HeaderMatch> headers;
};

struct Route {
  std::string name;
  RouteMatch match;
  std::string service;
  size_t service_index = 0;  // resolved by validation
  std::string strip_prefix;
  std::string prefix_rewrite;  // replaces strip_prefix (or nothing) after stripping
};

// Where a config value came from, for errors found after loading.
struct SourceMark {
  std::string file;
  int line = 0;
};

struct GatewayConfig {
  std::string source_file;
  Node node;
  uint32_t workers = 1;  // 0 in the file = one per core, resolved at load
  std::vector<Listener> listeners;
  Admin admin;
  Limits limits;
  AccessLog access_log;
  std::vector<Service> services;
  std::vector<Route> routes;
};

}  // namespace sluice::config
