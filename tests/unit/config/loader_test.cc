#include "config/loader.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <sys/stat.h>
#include <unistd.h>

namespace sluice::config {
namespace {

using namespace std::chrono_literals;

// Test YAML is written as R"(...)" starting on the next line; drop that first newline so that
// line 1 of the text is line 1 of the file.
LoadResult load(std::string_view yaml) {
  if (!yaml.empty() && yaml.front() == '\n') yaml.remove_prefix(1);
  return load_string(yaml, "test.yaml");
}

std::string dump(const LoadResult& r) {
  std::string out;
  for (const auto& e : r.errors) out += "  " + e.to_string() + "\n";
  return out;
}

// True when some error has this line, exactly this path, and a message containing `text`.
::testing::AssertionResult HasError(const LoadResult& r, int line, std::string_view path,
                                    std::string_view text) {
  for (const auto& e : r.errors) {
    if (e.line == line && e.path == path && e.message.find(text) != std::string::npos)
      return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "no error " << line << ": " << path << ": ..." << text << "... in\n"
         << dump(r);
}

// A minimal valid file plus `extra` top-level YAML.
LoadResult load_with(std::string_view extra) {
  std::string yaml = "listeners: [{name: public, address: 127.0.0.1:8080}]\n";
  yaml += extra;
  return load_string(yaml, "test.yaml");
}

// One error expected, on line 2 onwards of load_with(...).
::testing::AssertionResult Rejects(std::string_view extra, std::string_view path,
                                   std::string_view text) {
  LoadResult r = load_with(extra);
  if (r.ok()) return ::testing::AssertionFailure() << "accepted:\n" << extra;
  if (r.config) return ::testing::AssertionFailure() << "config set despite errors";
  for (const auto& e : r.errors) {
    if (e.path == path && e.message.find(text) != std::string::npos && e.file == "test.yaml" &&
        e.line >= 2)
      return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "wanted " << path << ": ..." << text << "... in\n"
                                       << dump(r);
}

::testing::AssertionResult Accepts(std::string_view extra) {
  LoadResult r = load_with(extra);
  if (r.ok() && r.config) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "rejected:\n" << extra << "\n" << dump(r);
}

// Struct equality, naming what differs. A field that to_json leaves out (or writes so that it
// loads back differently) loads back as something else and is named here; comparing to_json's
// own output with itself would not see it.
::testing::AssertionResult SameConfig(const GatewayConfig& want, const GatewayConfig& got) {
  std::vector<std::string> diff;
  auto check = [&](bool same, const std::string& what) {
    if (!same) diff.push_back(what);
  };
  check(want.node == got.node, "node");
  check(want.workers == got.workers, "workers");
  check(want.io_backend == got.io_backend, "io_backend");
  check(want.channel_header == got.channel_header, "channel_header");
  check(want.listeners == got.listeners, "listeners");
  check(want.admin == got.admin, "admin");
  check(want.limits == got.limits, "limits");
  check(want.http == got.http, "http");
  check(want.access_log == got.access_log, "access_log");
  check(want.services.size() == got.services.size(), "services (count)");
  for (size_t i = 0; i < std::min(want.services.size(), got.services.size()); ++i) {
    const Service& a = want.services[i];
    const Service& b = got.services[i];
    const std::string at = "services[" + std::to_string(i) + "].";
    check(a.name == b.name, at + "name");
    check(a.endpoints == b.endpoints, at + "endpoints");
    check(a.load_balancer == b.load_balancer, at + "load_balancer");
    check(a.timeouts == b.timeouts, at + "timeouts");
    check(a.retry == b.retry, at + "retry");
    check(a.kind == b.kind, at + "kind");
    check(a.max_idle_connections == b.max_idle_connections &&
              a.max_idle_connections_set == b.max_idle_connections_set,
          at + "max_idle_connections");
    check(a.health_check == b.health_check, at + "health_check");
    check(a.outlier_detection == b.outlier_detection, at + "outlier_detection");
    check(a.circuit_breaker == b.circuit_breaker, at + "circuit_breaker");
    check(a.fallback == b.fallback, at + "fallback");
    check(a.adaptive_concurrency == b.adaptive_concurrency, at + "adaptive_concurrency");
    check(a.locality == b.locality, at + "locality");
  }
  check(want.routes == got.routes, "routes");
  check(want.rate_limits.size() == got.rate_limits.size(), "rate_limits (count)");
  for (size_t i = 0; i < std::min(want.rate_limits.size(), got.rate_limits.size()); ++i) {
    const RateLimitRule& a = want.rate_limits[i];
    const RateLimitRule& b = got.rate_limits[i];
    const std::string at = "rate_limits[" + std::to_string(i) + "].";
    check(a.name == b.name, at + "name");
    check(a.match_routes == b.match_routes && a.route_indices == b.route_indices,
          at + "match.routes");
    check(a.match_services == b.match_services && a.service_indices == b.service_indices,
          at + "match.services");
    check(a.key == b.key, at + "key");
    check(a.limit == b.limit, at + "limit");
    check(a.algorithm == b.algorithm, at + "algorithm");
    check(a.scope == b.scope, at + "scope");
    check(a.mode == b.mode, at + "mode");
    check(a.overrides == b.overrides, at + "overrides");
    check(a.max_keys == b.max_keys, at + "max_keys");
  }
  check(want.redis == got.redis, "redis");
  check(want.overload == got.overload, "overload");
  check(want.units == got.units, "units");
  check(want.control_plane == got.control_plane, "control_plane");
  // Whatever the list above misses (a section added later) still fails here.
  GatewayConfig renamed = got;
  renamed.source_file = want.source_file;
  if (diff.empty() && !(renamed == want)) diff.push_back("(a field not named in SameConfig)");
  if (diff.empty()) return ::testing::AssertionSuccess();
  std::string names;
  for (const auto& d : diff) names += "  " + d + "\n";
  return ::testing::AssertionFailure() << "loaded back differently:\n" << names;
}

// load -> to_json -> load gives the same structs; returns the JSON for further checks.
std::string ExpectRoundTrip(const LoadResult& first) {
  EXPECT_TRUE(first.ok()) << dump(first);
  if (!first.ok()) return "";
  std::string json = to_json(*first.config);
  LoadResult second = load_string(json, "effective.json");
  EXPECT_TRUE(second.ok()) << dump(second) << json;
  if (!second.ok()) return json;
  EXPECT_TRUE(SameConfig(*first.config, *second.config)) << json;
  EXPECT_EQ(to_json(*second.config), json);
  return json;
}

constexpr std::string_view kFullExample = R"(
node: {id: gw-a1, city: a, zone: a1}
workers: 2
listeners:
  - {name: public, address: 127.0.0.1:8080}
  - name: internal
    address: "[::1]:8081"
admin: {address: 127.0.0.1:9901}
limits:
  max_header_bytes: 32KiB
  max_uri_bytes: 4096
  max_body_bytes: 10MiB
  max_headers: 50
  header_timeout: 5s
  idle_timeout: 30s
  drain_timeout: 1500ms
  max_connections: 5000
access_log: {path: /var/log/sluice/access.log, format: json}
services:
  - name: accounts
    endpoints:
      - {address: 127.0.0.1:9101, city: a, zone: a1, weight: 3}
      - {address: 127.0.0.1:9102, city: b, zone: b1}
    load_balancer: {policy: ring_hash, hash_on: header:X-Customer-Id}
    timeouts: {connect: 250ms, request: 2s, idle: 90s}
    retry:
      attempts: 2
      on: [connect_failure, reset, 502, 503, 504]
      budget_percent: 25
      min_retry_concurrency: 5
      non_idempotent: true
    kind: global
    max_idle_connections: 16
  - name: payments
    endpoints: [{address: localhost:9201}]
    load_balancer: {policy: least_request}
routes:
  - name: accounts-api
    match:
      hosts: [API.Example.com, "*.example.com"]
      path_prefix: /api/accounts
      methods: [GET, POST]
      headers: {X-Channel: mobile, x-app-id: "*"}
    service: accounts
    strip_prefix: /api
    prefix_rewrite: /v2
  - name: pay
    match: {host: pay.example.com, path: /pay}
    service: payments
  - name: default
    service: payments
)";

TEST(Loader, FullExample) {
  LoadResult r = load(kFullExample);
  ASSERT_TRUE(r.ok()) << dump(r);
  ASSERT_TRUE(r.config);
  const GatewayConfig& c = *r.config;
  EXPECT_EQ(c.source_file, "test.yaml");
  EXPECT_EQ(c.node.id, "gw-a1");
  EXPECT_EQ(c.node.city, "a");
  EXPECT_EQ(c.node.zone, "a1");
  EXPECT_EQ(c.workers, 2u);
  ASSERT_EQ(c.listeners.size(), 2u);
  EXPECT_EQ(c.listeners[0].name, "public");
  EXPECT_EQ(c.listeners[0].address.to_string(), "127.0.0.1:8080");
  EXPECT_EQ(c.listeners[1].address.host, "::1");
  EXPECT_EQ(c.listeners[1].address.port, 8081);
  EXPECT_TRUE(c.admin.enabled);
  EXPECT_EQ(c.admin.address.to_string(), "127.0.0.1:9901");
  EXPECT_EQ(c.limits.max_header_bytes, 32768u);
  EXPECT_EQ(c.limits.max_uri_bytes, 4096u);
  EXPECT_EQ(c.limits.max_body_bytes, 10485760u);
  EXPECT_EQ(c.limits.max_headers, 50u);
  EXPECT_EQ(c.limits.header_timeout, 5s);
  EXPECT_EQ(c.limits.idle_timeout, 30s);
  EXPECT_EQ(c.limits.drain_timeout, 1500ms);
  EXPECT_EQ(c.limits.max_connections, 5000u);
  EXPECT_EQ(c.access_log.path, "/var/log/sluice/access.log");
  EXPECT_EQ(c.access_log.format, "json");

  ASSERT_EQ(c.services.size(), 2u);
  const Service& acc = c.services[0];
  EXPECT_EQ(acc.name, "accounts");
  ASSERT_EQ(acc.endpoints.size(), 2u);
  EXPECT_EQ(acc.endpoints[0].address.to_string(), "127.0.0.1:9101");
  EXPECT_EQ(acc.endpoints[0].city, "a");
  EXPECT_EQ(acc.endpoints[0].zone, "a1");
  EXPECT_EQ(acc.endpoints[0].weight, 3u);
  EXPECT_EQ(acc.endpoints[1].city, "b");
  EXPECT_EQ(acc.endpoints[1].weight, 1u);
  EXPECT_EQ(acc.load_balancer.policy, LbPolicy::kRingHash);
  EXPECT_EQ(acc.load_balancer.hash_on.kind, RequestInput::Kind::kHeader);
  EXPECT_EQ(acc.load_balancer.hash_on.name, "x-customer-id");
  EXPECT_EQ(acc.timeouts.connect, 250ms);
  EXPECT_EQ(acc.timeouts.request, 2s);
  EXPECT_EQ(acc.timeouts.idle, 90s);
  EXPECT_EQ(acc.retry.attempts, 2u);
  EXPECT_EQ(acc.retry.on, kRetryConnectFailure | kRetryReset | kRetry502 | kRetry503 | kRetry504);
  EXPECT_EQ(acc.retry.budget_percent, 25u);
  EXPECT_EQ(acc.retry.min_retry_concurrency, 5u);
  EXPECT_TRUE(acc.retry.non_idempotent);
  EXPECT_EQ(acc.kind, ServiceKind::kGlobal);
  EXPECT_EQ(acc.max_idle_connections, 16u);
  EXPECT_TRUE(acc.max_idle_connections_set);  // set in the file: a hard cap
  EXPECT_EQ(c.services[1].endpoints[0].address.host, "localhost");
  EXPECT_EQ(c.services[1].load_balancer.policy, LbPolicy::kLeastRequest);

  ASSERT_EQ(c.routes.size(), 3u);
  const Route& r0 = c.routes[0];
  EXPECT_EQ(r0.name, "accounts-api");
  EXPECT_EQ(r0.match.hosts, (std::vector<std::string>{"api.example.com", "*.example.com"}));
  EXPECT_EQ(r0.match.path_prefix, "/api/accounts");
  EXPECT_EQ(r0.match.path, "");
  EXPECT_EQ(r0.match.methods, (std::vector<std::string>{"GET", "POST"}));
  ASSERT_EQ(r0.match.headers.size(), 2u);
  EXPECT_EQ(r0.match.headers[0].name, "x-channel");
  EXPECT_EQ(r0.match.headers[0].value, "mobile");
  EXPECT_FALSE(r0.match.headers[0].present_only);
  EXPECT_EQ(r0.match.headers[1].name, "x-app-id");
  EXPECT_EQ(r0.match.headers[1].value, "");
  EXPECT_TRUE(r0.match.headers[1].present_only);
  EXPECT_EQ(r0.service, "accounts");
  EXPECT_EQ(r0.service_index, 0u);
  EXPECT_EQ(r0.strip_prefix, "/api");
  EXPECT_EQ(r0.prefix_rewrite, "/v2");
  EXPECT_EQ(c.routes[1].match.hosts, (std::vector<std::string>{"pay.example.com"}));
  EXPECT_EQ(c.routes[1].match.path, "/pay");
  EXPECT_EQ(c.routes[1].match.path_prefix, "");
  EXPECT_EQ(c.routes[1].service_index, 1u);
  // No path at all matches everything.
  EXPECT_EQ(c.routes[2].match.path_prefix, "/");
  EXPECT_EQ(c.routes[2].service_index, 1u);
}

TEST(Loader, Defaults) {
  LoadResult r = load("listeners: [{name: public, address: ':8080'}]\n");
  ASSERT_TRUE(r.ok()) << dump(r);
  const GatewayConfig& c = *r.config;
  GatewayConfig d;  // the defaults as declared in config.h
  EXPECT_EQ(c.node.id, "sluice");
  EXPECT_EQ(c.node.city, "");
  EXPECT_EQ(c.workers, 1u);
  EXPECT_EQ(c.listeners[0].address.to_string(), "0.0.0.0:8080");
  EXPECT_FALSE(c.admin.enabled);
  EXPECT_EQ(c.limits.max_header_bytes, d.limits.max_header_bytes);
  EXPECT_EQ(c.limits.max_uri_bytes, d.limits.max_uri_bytes);
  EXPECT_EQ(c.limits.max_body_bytes, d.limits.max_body_bytes);
  EXPECT_EQ(c.limits.max_headers, d.limits.max_headers);
  EXPECT_EQ(c.limits.header_timeout, 10s);
  EXPECT_EQ(c.limits.idle_timeout, 60s);
  EXPECT_EQ(c.limits.drain_timeout, 30s);
  EXPECT_EQ(c.limits.max_connections, d.limits.max_connections);
  EXPECT_EQ(c.limits.body_timeout, 20s);
  EXPECT_EQ(c.limits.min_body_rate, 500u);
  EXPECT_EQ(c.limits.request_buffer_bytes, 65536u);
  EXPECT_EQ(c.limits.max_idle_upstream_bytes, 64u * 1024 * 1024);
  EXPECT_EQ(c.access_log.path, "stdout");
  EXPECT_EQ(c.access_log.format, "json");
  EXPECT_TRUE(c.services.empty());
  EXPECT_TRUE(c.routes.empty());
}

TEST(Loader, ServiceAndRouteDefaults) {
  LoadResult r = load_with(R"(services: [{name: s, endpoints: [{address: 10.0.0.1:80}]}]
routes: [{name: r, service: s}]
)");
  ASSERT_TRUE(r.ok()) << dump(r);
  const Service& s = r.config->services[0];
  Service d;
  EXPECT_EQ(s.endpoints[0].weight, 1u);
  EXPECT_EQ(s.endpoints[0].city, "");
  EXPECT_EQ(s.load_balancer.policy, LbPolicy::kRoundRobin);
  EXPECT_EQ(s.load_balancer.hash_on.kind, RequestInput::Kind::kNone);
  EXPECT_EQ(s.timeouts.connect, 1s);
  EXPECT_EQ(s.timeouts.request, 5s);
  EXPECT_EQ(s.timeouts.idle, 60s);
  EXPECT_EQ(s.timeouts.total, 0s);
  EXPECT_EQ(s.retry.attempts, d.retry.attempts);
  EXPECT_EQ(s.retry.on, d.retry.on);
  EXPECT_EQ(s.retry.budget_percent, d.retry.budget_percent);
  EXPECT_EQ(s.retry.min_retry_concurrency, d.retry.min_retry_concurrency);
  EXPECT_FALSE(s.retry.non_idempotent);
  EXPECT_EQ(s.kind, ServiceKind::kGlobal);
  EXPECT_EQ(s.max_idle_connections, 64u);
  EXPECT_FALSE(s.max_idle_connections_set);  // absent: the pool follows demand
  const Route& route = r.config->routes[0];
  EXPECT_TRUE(route.match.hosts.empty());
  EXPECT_TRUE(route.match.methods.empty());
  EXPECT_TRUE(route.match.headers.empty());
  EXPECT_EQ(route.match.path_prefix, "/");
  EXPECT_EQ(route.strip_prefix, "");
}

TEST(Loader, EmptySectionsTakeDefaults) {
  EXPECT_TRUE(Accepts("limits:\nnode:\naccess_log: {}\nservices:\nroutes: []\n"));
}

TEST(Loader, WorkersZeroMeansOnePerCore) {
  LoadResult r = load_with("workers: 0\n");
  ASSERT_TRUE(r.ok()) << dump(r);
  unsigned cores = std::thread::hardware_concurrency();
  EXPECT_EQ(r.config->workers, std::clamp(cores, 1u, 64u));
}

// ---- bounds, one field at a time: lowest and highest accepted, one past each ----

TEST(Bounds, Workers) {
  EXPECT_TRUE(Accepts("workers: 64\n"));
  EXPECT_TRUE(Rejects("workers: 65\n", "workers", "must be 0..64"));
  EXPECT_TRUE(Rejects("workers: -1\n", "workers", "must be 0..64"));
  EXPECT_TRUE(Rejects("workers: 99999999999999999999999\n", "workers", "must be 0..64"));
  EXPECT_TRUE(Rejects("workers: two\n", "workers", "expected a number, got 'two'"));
  EXPECT_TRUE(Rejects("workers: 1.5\n", "workers", "expected a number"));
  EXPECT_TRUE(Rejects("workers: [1]\n", "workers", "expected a number, got a list"));
}

TEST(Bounds, IoBackend) {
  for (const char* b : {"auto", "io_uring", "epoll"}) {
    LoadResult r = load_with(std::string("io_backend: ") + b + "\n");
    ASSERT_TRUE(r.ok()) << dump(r);
    EXPECT_EQ(r.config->io_backend, b);
  }
  EXPECT_EQ(load_with("").config->io_backend, "auto");
  EXPECT_TRUE(Rejects("io_backend: kqueue\n", "io_backend",
                      "must be auto, io_uring or epoll, got 'kqueue'"));
  EXPECT_TRUE(Rejects("io_backend: [epoll]\n", "io_backend", "got a list"));
}

TEST(Bounds, ChannelHeader) {
  EXPECT_EQ(load_with("").config->channel_header, "x-channel");
  LoadResult r = load_with("channel_header: X-App-Channel\n");
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_EQ(r.config->channel_header, "x-app-channel");  // header names ignore case
  r = load_with("channel_header: ''\n");
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_EQ(r.config->channel_header, "");  // channels not counted
  EXPECT_TRUE(Rejects("channel_header: 'x channel'\n", "channel_header",
                      "'x channel' is not a valid header name"));
  EXPECT_TRUE(Rejects("channel_header: [a]\n", "channel_header", "got a list"));
}

std::string fmt_limits(const char* key, const char* value) {
  return std::string("limits: {") + key + ": " + value + "}\n";
}

TEST(Bounds, Limits) {
  EXPECT_TRUE(Accepts("limits: {max_header_bytes: 1024, max_uri_bytes: 256}\n"));
  EXPECT_TRUE(Accepts("limits: {max_header_bytes: 1MiB, max_uri_bytes: 1MiB}\n"));
  EXPECT_TRUE(Rejects("limits: {max_header_bytes: 1023}\n", "limits.max_header_bytes",
                      "must be 1KiB..1MiB (1024..1048576 bytes), got 1023"));
  EXPECT_TRUE(
      Rejects("limits: {max_header_bytes: 1048577}\n", "limits.max_header_bytes", "must be"));
  EXPECT_TRUE(Rejects("limits: {max_uri_bytes: 255}\n", "limits.max_uri_bytes", "must be"));
  EXPECT_TRUE(Rejects("limits: {max_header_bytes: 1MiB, max_uri_bytes: 1048577}\n",
                      "limits.max_uri_bytes", "must be"));
  EXPECT_TRUE(Accepts("limits: {max_body_bytes: 1}\n"));
  EXPECT_TRUE(Accepts("limits: {max_body_bytes: 1TiB}\n"));
  EXPECT_TRUE(Rejects("limits: {max_body_bytes: 0}\n", "limits.max_body_bytes", "must be 1..1TiB"));
  EXPECT_TRUE(Rejects("limits: {max_body_bytes: 1099511627777}\n", "limits.max_body_bytes",
                      "must be 1..1TiB"));
  EXPECT_TRUE(Rejects("limits: {max_body_bytes: 99999999999999999999999}\n",
                      "limits.max_body_bytes", "must be 1..1TiB"));
  EXPECT_TRUE(Rejects("limits: {max_body_bytes: 10MB}\n", "limits.max_body_bytes",
                      "expected a size such as 65536, 64KiB or 10MiB, got '10MB'"));
  EXPECT_TRUE(Accepts("limits: {max_headers: 1}\n"));
  EXPECT_TRUE(Accepts("limits: {max_headers: 1000}\n"));
  EXPECT_TRUE(Rejects("limits: {max_headers: 0}\n", "limits.max_headers", "must be 1..1000"));
  EXPECT_TRUE(Rejects("limits: {max_headers: 1001}\n", "limits.max_headers", "must be 1..1000"));
  EXPECT_TRUE(Accepts("limits: {max_idle_upstream_bytes: 0}\n"));
  EXPECT_TRUE(Accepts("limits: {max_idle_upstream_bytes: 1TiB}\n"));
  EXPECT_TRUE(Rejects("limits: {max_idle_upstream_bytes: 2TiB}\n", "limits.max_idle_upstream_bytes",
                      "must be"));
  EXPECT_TRUE(Accepts("limits: {max_connections: 1}\n"));
  EXPECT_TRUE(Accepts("limits: {max_connections: 1000000}\n"));
  EXPECT_TRUE(
      Rejects("limits: {max_connections: 0}\n", "limits.max_connections", "must be 1..1000000"));
  EXPECT_TRUE(Rejects("limits: {max_connections: 1000001}\n", "limits.max_connections",
                      "must be 1..1000000"));
  for (const char* key : {"header_timeout", "idle_timeout", "drain_timeout"}) {
    std::string path = std::string("limits.") + key;
    EXPECT_TRUE(Accepts(fmt_limits(key, "1ns")));
    EXPECT_TRUE(Accepts(fmt_limits(key, "1h")));
    EXPECT_TRUE(Rejects(fmt_limits(key, "0s"), path, "must be > 0 and at most 1h, got 0s"));
    EXPECT_TRUE(Rejects(fmt_limits(key, "3601s"), path, "must be > 0 and at most 1h"));
    EXPECT_TRUE(Rejects(fmt_limits(key, "10"), path,
                        "expected a duration such as 500ms, 2s or 1m, got '10'"));
  }
}

TEST(Bounds, BodyLimits) {
  EXPECT_TRUE(Accepts("limits: {body_timeout: 1ms, min_body_rate: 0, request_buffer_bytes: 0}\n"));
  EXPECT_TRUE(
      Accepts("limits: {body_timeout: 1h, min_body_rate: 1GiB, request_buffer_bytes: 1MiB}\n"));
  EXPECT_TRUE(Rejects("limits: {body_timeout: 0s}\n", "limits.body_timeout", "must be"));
  EXPECT_TRUE(Rejects("limits: {body_timeout: 2h}\n", "limits.body_timeout", "must be"));
  EXPECT_TRUE(Rejects("limits: {min_body_rate: 1073741825}\n", "limits.min_body_rate", "must be"));
  EXPECT_TRUE(Rejects("limits: {request_buffer_bytes: 1048577}\n", "limits.request_buffer_bytes",
                      "must be"));
  LoadResult r =
      load_with("limits: {body_timeout: 5s, min_body_rate: 1KiB, request_buffer_bytes: 8KiB}\n");
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_EQ(r.config->limits.body_timeout, 5s);
  EXPECT_EQ(r.config->limits.min_body_rate, 1024u);
  EXPECT_EQ(r.config->limits.request_buffer_bytes, 8192u);
}

TEST(Bounds, UriLimitWithinHeaderLimit) {
  EXPECT_TRUE(Rejects("limits: {max_header_bytes: 4096, max_uri_bytes: 8192}\n",
                      "limits.max_uri_bytes", "must not exceed limits.max_header_bytes"));
  // The default URI limit (8KiB) counts too.
  EXPECT_TRUE(
      Rejects("limits: {max_header_bytes: 4096}\n", "limits.max_uri_bytes", "must not exceed"));
}

std::string service_with(std::string_view fields) {
  return "services:\n  - name: s\n    endpoints: [{address: 10.0.0.1:80}]\n    " +
         std::string(fields) + "\n";
}

TEST(Bounds, TotalTimeout) {
  EXPECT_TRUE(Accepts(service_with("timeouts: {total: 0s}")));
  EXPECT_TRUE(Accepts(service_with("timeouts: {total: 1h}")));
  EXPECT_TRUE(
      Rejects(service_with("timeouts: {total: 61m}"), "services[0].timeouts.total", "must be"));
  EXPECT_TRUE(Rejects(service_with("timeouts: {total: soon}"), "services[0].timeouts.total",
                      "expected a duration"));
}

TEST(Bounds, Service) {
  EXPECT_TRUE(Accepts(service_with("retry: {attempts: 0, budget_percent: 0}")));
  EXPECT_TRUE(Accepts(service_with("retry: {attempts: 10, budget_percent: 100}")));
  EXPECT_TRUE(Rejects(service_with("retry: {attempts: 11}"), "services[0].retry.attempts",
                      "must be 0..10"));
  EXPECT_TRUE(Rejects(service_with("retry: {budget_percent: 101}"),
                      "services[0].retry.budget_percent", "must be 0..100"));
  EXPECT_TRUE(Accepts(service_with("retry: {min_retry_concurrency: 10000}")));
  EXPECT_TRUE(Rejects(service_with("retry: {min_retry_concurrency: 10001}"),
                      "services[0].retry.min_retry_concurrency", "must be 0..10000"));
  EXPECT_TRUE(Rejects(service_with("retry: {non_idempotent: yes please}"),
                      "services[0].retry.non_idempotent", "expected true or false"));
  EXPECT_TRUE(Accepts(service_with("max_idle_connections: 0")));
  EXPECT_TRUE(Accepts(service_with("max_idle_connections: 10000")));
  EXPECT_TRUE(Rejects(service_with("max_idle_connections: 10001"),
                      "services[0].max_idle_connections", "must be 0..10000"));
  for (const char* key : {"connect", "request", "idle"}) {
    std::string path = std::string("services[0].timeouts.") + key;
    EXPECT_TRUE(Accepts(service_with(std::string("timeouts: {") + key + ": 1h}")));
    EXPECT_TRUE(Rejects(service_with(std::string("timeouts: {") + key + ": 61m}"), path,
                        "must be > 0 and at most 1h"));
    EXPECT_TRUE(
        Rejects(service_with(std::string("timeouts: {") + key + ": 0ms}"), path, "must be > 0"));
  }
  // connect > request is allowed.
  EXPECT_TRUE(Accepts(service_with("timeouts: {connect: 10s, request: 1s}")));
}

TEST(Bounds, EndpointWeight) {
  auto with_weight = [](const char* w) {
    return std::string("services: [{name: s, endpoints: [{address: 10.0.0.1:80, weight: ") + w +
           "}]}]\n";
  };
  EXPECT_TRUE(Accepts(with_weight("1")));
  EXPECT_TRUE(Accepts(with_weight("1000")));
  EXPECT_TRUE(Rejects(with_weight("0"), "services[0].endpoints[0].weight", "must be 1..1000"));
  EXPECT_TRUE(Rejects(with_weight("1001"), "services[0].endpoints[0].weight", "must be 1..1000"));
}

TEST(Bounds, Names) {
  EXPECT_TRUE(Accepts("services: [{name: A-z_0.9, endpoints: [{address: 10.0.0.1:80}]}]\n"));
  EXPECT_TRUE(Rejects("services: [{name: 'a b', endpoints: [{address: 10.0.0.1:80}]}]\n",
                      "services[0].name", "may only contain letters, digits"));
  EXPECT_TRUE(Rejects("services: [{name: '', endpoints: [{address: 10.0.0.1:80}]}]\n",
                      "services[0].name", "must not be empty"));
  std::string long_name(129, 'n');
  EXPECT_TRUE(
      Rejects("services: [{name: " + long_name + ", endpoints: [{address: 10.0.0.1:80}]}]\n",
              "services[0].name", "at most 128 characters"));
  EXPECT_TRUE(Accepts("services: [{name: " + std::string(128, 'n') +
                      ", endpoints: [{address: 10.0.0.1:80}]}]\n"));
  EXPECT_TRUE(Rejects("node: {id: 'gw/1'}\n", "node.id", "may only contain"));
  EXPECT_TRUE(Rejects("node: {id: ''}\n", "node.id", "must not be empty"));
  EXPECT_TRUE(Accepts("node: {city: '', zone: ''}\n"));
}

// ---- cross-field rules ----

TEST(Rules, AtLeastOneListener) {
  LoadResult r = load("workers: 1\n");
  EXPECT_TRUE(HasError(r, 0, "listeners", "at least one listener is required"));
  LoadResult empty = load("listeners: []\n");
  EXPECT_TRUE(HasError(empty, 1, "listeners", "at least one listener is required"));
  EXPECT_TRUE(HasError(load(""), 0, "listeners", "at least one listener is required"));
}

TEST(Rules, ListenerFieldsRequired) {
  LoadResult r = load(R"(
listeners:
  - name: a
  - address: 127.0.0.1:81
)");
  EXPECT_TRUE(HasError(r, 2, "listeners[0].address", "required"));
  EXPECT_TRUE(HasError(r, 3, "listeners[1].name", "required"));
  EXPECT_EQ(r.errors.size(), 2u) << dump(r);
}

TEST(Rules, UniqueNames) {
  LoadResult r = load(R"(
listeners:
  - {name: public, address: 127.0.0.1:8080}
  - {name: public, address: 127.0.0.1:8081}
services:
  - {name: s, endpoints: [{address: 10.0.0.1:80}]}
  - {name: s, endpoints: [{address: 10.0.0.1:80}]}
routes:
  - {name: r, service: s}
  - {name: r, service: s}
)");
  EXPECT_TRUE(
      HasError(r, 3, "listeners[1].name", "duplicate listener name 'public' (first at line 2)"));
  EXPECT_TRUE(HasError(r, 6, "services[1].name", "duplicate service name 's' (first at line 5)"));
  EXPECT_TRUE(HasError(r, 9, "routes[1].name", "duplicate route name 'r' (first at line 8)"));
  EXPECT_EQ(r.errors.size(), 3u) << dump(r);
}

TEST(Rules, ListenerAndAdminAddressesDistinct) {
  LoadResult r = load(R"(
admin: {address: 127.0.0.1:9901}
listeners:
  - {name: a, address: 127.0.0.1:8080}
  - {name: b, address: 127.0.0.1:8080}
  - {name: c, address: 127.0.0.1:9901}
  - {name: d, address: 127.0.0.1:8082}
  - {name: e, address: ':8082'}
)");
  EXPECT_TRUE(HasError(r, 4, "listeners[1].address", "clashes with listeners[0].address"));
  EXPECT_TRUE(HasError(r, 5, "listeners[2].address", "clashes with admin.address"));
  // 0.0.0.0 covers every interface, so it clashes with any host on the same port.
  EXPECT_TRUE(HasError(r, 7, "listeners[4].address", "clashes with listeners[3].address"));
  EXPECT_EQ(r.errors.size(), 3u) << dump(r);
  // Same host, different ports, and different hosts on the same port are fine.
  LoadResult ok = load(R"(
admin: {address: 127.0.0.1:9901}
listeners:
  - {name: a, address: 127.0.0.1:8080}
  - {name: b, address: 127.0.0.1:8081}
  - {name: c, address: 127.0.0.2:8080}
  - {name: d, address: '[::1]:8080'}
)");
  EXPECT_TRUE(ok.ok()) << dump(ok);
}

TEST(Rules, AdminAddressRequiredWithPort) {
  EXPECT_TRUE(Rejects("admin: {}\n", "admin.address", "required"));
  EXPECT_TRUE(Rejects("admin: {address: 127.0.0.1}\n", "admin.address", "expected host:port"));
  EXPECT_TRUE(Rejects("admin: {address: 127.0.0.1:0}\n", "admin.address", "port must be 1..65535"));
  EXPECT_TRUE(Rejects("admin: 127.0.0.1:9901\n", "admin", "expected a mapping"));
}

TEST(Rules, ServiceNeedsEndpoints) {
  EXPECT_TRUE(Rejects("services: [{name: s}]\n", "services[0].endpoints",
                      "at least one endpoint is required"));
  EXPECT_TRUE(Rejects("services: [{name: s, endpoints: []}]\n", "services[0].endpoints",
                      "at least one endpoint is required"));
  EXPECT_TRUE(Rejects("services: [{name: s, endpoints: [{weight: 2}]}]\n",
                      "services[0].endpoints[0].address", "required"));
  EXPECT_TRUE(Rejects(
      "services: [{name: s, endpoints: [{address: 10.0.0.1:80}, {address: 10.0.0.1:80}]}]\n",
      "services[0].endpoints[1].address", "duplicate endpoint"));
}

TEST(Rules, RingHashAndHashOn) {
  EXPECT_TRUE(Rejects(service_with("load_balancer: {policy: ring_hash}"),
                      "services[0].load_balancer.hash_on", "required when policy is ring_hash"));
  EXPECT_TRUE(Rejects(service_with("load_balancer: {hash_on: client_ip}"),
                      "services[0].load_balancer.hash_on", "only used with policy ring_hash"));
  EXPECT_TRUE(Rejects(service_with("load_balancer: {policy: least_request, hash_on: path}"),
                      "services[0].load_balancer.hash_on", "only used with policy ring_hash"));
  EXPECT_TRUE(Rejects(service_with("load_balancer: {policy: ring_hash, hash_on: 'header:'}"),
                      "services[0].load_balancer.hash_on",
                      "must be header:NAME, query:NAME, client_ip or path"));
  EXPECT_TRUE(Rejects(service_with("load_balancer: {policy: ring_hash, hash_on: cookie:sid}"),
                      "services[0].load_balancer.hash_on", "must be header:NAME"));
  EXPECT_TRUE(Rejects(service_with("load_balancer: {policy: least_requests}"),
                      "services[0].load_balancer.policy",
                      "must be round_robin, least_request or ring_hash, got 'least_requests' (did "
                      "you mean 'least_request'?)"));
  for (const char* key : {"header:X-Id", "query:customer", "client_ip", "path"}) {
    EXPECT_TRUE(Accepts(
        service_with(std::string("load_balancer: {policy: ring_hash, hash_on: '") + key + "'}")));
  }
  LoadResult q = load_with(service_with("load_balancer: {policy: ring_hash, hash_on: query:Cust}"));
  ASSERT_TRUE(q.ok()) << dump(q);
  EXPECT_EQ(q.config->services[0].load_balancer.hash_on.kind, RequestInput::Kind::kQuery);
  EXPECT_EQ(q.config->services[0].load_balancer.hash_on.name, "Cust");  // query names keep case
}

TEST(Rules, RetryOn) {
  LoadResult r = load_with(service_with("retry: {on: [timeout, 503]}"));
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_EQ(r.config->services[0].retry.on, kRetryTimeout | kRetry503);
  LoadResult none = load_with(service_with("retry: {on: []}"));
  ASSERT_TRUE(none.ok()) << dump(none);
  EXPECT_EQ(none.config->services[0].retry.on, 0u);
  EXPECT_TRUE(Rejects(service_with("retry: {on: [reset, 500]}"), "services[0].retry.on[1]",
                      "must be connect_failure, reset, timeout, 502, 503 or 504, got '500'"));
  EXPECT_TRUE(Rejects(service_with("retry: {on: [conect_failure]}"), "services[0].retry.on[0]",
                      "did you mean 'connect_failure'?"));
  EXPECT_TRUE(Rejects(service_with("retry: {on: reset}"), "services[0].retry.on",
                      "expected a list, got 'reset'"));
}

TEST(Rules, ServiceKind) {
  EXPECT_TRUE(Accepts(service_with("kind: global")));
  EXPECT_TRUE(Rejects(service_with("kind: unit"), "services[0].kind",
                      "kind 'unit' requires the top-level 'units' section"));
  EXPECT_TRUE(Rejects(service_with("kind: sharded"), "services[0].kind", "must be global or unit"));
}

std::string route_with(std::string_view fields) {
  return "services: [{name: s, endpoints: [{address: 10.0.0.1:80}]}]\nroutes:\n  - name: r\n    "
         "service: s\n    " +
         std::string(fields) + "\n";
}

TEST(Rules, RouteServiceMustExist) {
  EXPECT_TRUE(
      Rejects("services: [{name: accounts, endpoints: [{address: 10.0.0.1:80}]}]\n"
              "routes: [{name: r, service: acounts}]\n",
              "routes[0].service", "no service named 'acounts' (did you mean 'accounts'?)"));
  EXPECT_TRUE(Rejects("routes: [{name: r}]\n", "routes[0].service", "required"));
}

TEST(Rules, RoutePaths) {
  EXPECT_TRUE(
      Rejects(route_with("match: {path: api}"), "routes[0].match.path", "must start with '/'"));
  EXPECT_TRUE(Rejects(route_with("match: {path_prefix: api}"), "routes[0].match.path_prefix",
                      "must start with '/'"));
  EXPECT_TRUE(Rejects(route_with("match: {path_prefix: '/a?b'}"), "routes[0].match.path_prefix",
                      "must not contain"));
  EXPECT_TRUE(Rejects(route_with("match: {path: /a, path_prefix: /b}"),
                      "routes[0].match.path_prefix",
                      "use either 'path' or 'path_prefix', not both"));
}

TEST(Rules, StripPrefix) {
  EXPECT_TRUE(Accepts(route_with("match: {path_prefix: /api/v1}\n    strip_prefix: /api")));
  EXPECT_TRUE(Accepts(route_with("match: {path_prefix: /api/v1}\n    strip_prefix: /api/v1")));
  EXPECT_TRUE(Accepts(route_with("match: {path: /api/v1/x}\n    strip_prefix: /api")));
  EXPECT_TRUE(Rejects(route_with("match: {path_prefix: /api/v1}\n    strip_prefix: /v1"),
                      "routes[0].strip_prefix",
                      "'/v1' must be a prefix of match.path_prefix ('/api/v1')"));
  EXPECT_TRUE(Rejects(route_with("match: {path: /x}\n    strip_prefix: /api"),
                      "routes[0].strip_prefix", "must be a prefix of match.path ('/x')"));
  EXPECT_TRUE(Rejects(route_with("strip_prefix: /api"), "routes[0].strip_prefix",
                      "must be a prefix of match.path_prefix ('/')"));
  EXPECT_TRUE(
      Rejects(route_with("strip_prefix: api"), "routes[0].strip_prefix", "must start with '/'"));
  EXPECT_TRUE(
      Rejects(route_with("prefix_rewrite: v2"), "routes[0].prefix_rewrite", "must start with '/'"));
  EXPECT_TRUE(Accepts(route_with("prefix_rewrite: /v2")));
}

TEST(Rules, Methods) {
  EXPECT_TRUE(Accepts(route_with("match: {methods: [GET, PROPFIND, M-SEARCH]}")));
  EXPECT_TRUE(Rejects(route_with("match: {methods: [get]}"), "routes[0].match.methods[0]",
                      "must be upper-case, got 'get' (did you mean 'GET'?)"));
  EXPECT_TRUE(Rejects(route_with("match: {methods: ['GE T']}"), "routes[0].match.methods[0]",
                      "expected an HTTP method"));
  EXPECT_TRUE(
      Rejects(route_with("match: {methods: GET}"), "routes[0].match.methods", "expected a list"));
}

TEST(Rules, Hosts) {
  LoadResult r = load_with(route_with("match: {hosts: [A.Example.COM, '*.Example.com']}"));
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_EQ(r.config->routes[0].match.hosts,
            (std::vector<std::string>{"a.example.com", "*.example.com"}));
  EXPECT_TRUE(Rejects(route_with("match: {hosts: ['*']}"), "routes[0].match.hosts[0]",
                      "expected a host name"));
  EXPECT_TRUE(Rejects(route_with("match: {hosts: ['a.*.com']}"), "routes[0].match.hosts[0]",
                      "expected a host name"));
  EXPECT_TRUE(Rejects(route_with("match: {hosts: ['*example.com']}"), "routes[0].match.hosts[0]",
                      "expected a host name"));
  EXPECT_TRUE(Rejects(route_with("match: {hosts: ['a..b']}"), "routes[0].match.hosts[0]",
                      "expected a host name"));
  EXPECT_TRUE(Rejects(route_with("match: {host: 'a.com:8080'}"), "routes[0].match.host",
                      "must not include a port"));
  EXPECT_TRUE(Rejects(route_with("match: {host: a.com, hosts: [b.com]}"), "routes[0].match.host",
                      "use either 'host' or 'hosts', not both"));
  EXPECT_TRUE(Rejects(route_with("match: {hosts: a.com}"), "routes[0].match.hosts",
                      "use 'host' for a single host name"));
  EXPECT_TRUE(Rejects(route_with("match: {host: [a.com]}"), "routes[0].match.host",
                      "use 'hosts' for a list"));
}

TEST(Rules, Headers) {
  LoadResult r =
      load_with(route_with("match: {headers: {X-A: One, x-b: '*', x-c: true, x-d: ''}}"));
  ASSERT_TRUE(r.ok()) << dump(r);
  const auto& h = r.config->routes[0].match.headers;
  ASSERT_EQ(h.size(), 4u);
  EXPECT_EQ(h[0].name, "x-a");
  EXPECT_EQ(h[0].value, "One");  // values keep their case: exact match
  EXPECT_FALSE(h[0].present_only);
  EXPECT_TRUE(h[1].present_only);
  EXPECT_EQ(h[2].value, "true");
  EXPECT_FALSE(h[2].present_only);
  EXPECT_EQ(h[3].value, "");
  EXPECT_FALSE(h[3].present_only);
  EXPECT_TRUE(Rejects(route_with("match: {headers: {x-a: 1, X-A: 2}}"),
                      "routes[0].match.headers.X-A", "duplicate header"));
  EXPECT_TRUE(Rejects(route_with("match: {headers: {'x a': 1}}"), "routes[0].match.headers.x a",
                      "'x a' is not a valid header name"));
  EXPECT_TRUE(Rejects(route_with("match: {headers: {x-a: }}"), "routes[0].match.headers.x-a",
                      "expected a header value, or \"*\" for any value, got null"));
  EXPECT_TRUE(Rejects(route_with("match: {headers: [x-a]}"), "routes[0].match.headers",
                      "expected a mapping"));
}

TEST(Rules, AccessLog) {
  EXPECT_TRUE(Accepts("access_log: {path: 'off'}\n"));
  EXPECT_TRUE(Rejects("access_log: {format: text}\n", "access_log.format", "must be json"));
  EXPECT_TRUE(Rejects("access_log: {path: ''}\n", "access_log.path", "must not be empty"));
}

// Listeners and admin bind without a name lookup; a host name would fail only at start-up.
TEST(Rules, BindAddressesMustBeIpLiterals) {
  LoadResult r = load(R"(
listeners: [{name: a, address: localhost:8080}, {name: b, address: '[fe80::1%lo]:8081'}]
admin: {address: my-host:9901}
)");
  EXPECT_TRUE(HasError(r, 1, "listeners[0].address", "must be an IP address (not a host name)"));
  EXPECT_TRUE(HasError(r, 2, "admin.address", "must be an IP address"));
  EXPECT_EQ(r.errors.size(), 2u) << dump(r);
  // Endpoints are resolved by name, so names are fine there.
  EXPECT_TRUE(Accepts("services: [{name: s, endpoints: [{address: backend.internal:80}]}]\n"));
}

TEST(Rules, ListenerPortZeroRejected) {
  LoadResult r = load("listeners: [{name: x, address: 127.0.0.1:0}]\n");
  EXPECT_TRUE(HasError(r, 1, "listeners[0].address", "port must be 1..65535, got '127.0.0.1:0'"));
}

// ---- unknown and unsupported keys ----

TEST(Keys, UnknownKeysWithSuggestions) {
  LoadResult r = load(R"(
listeners: [{name: public, address: 127.0.0.1:8080}]
workres: 2
services:
  - name: s
    endpoints: [{address: 10.0.0.1:80, wieght: 2}]
    retires: {attempts: 2}
    colour: blue
)");
  EXPECT_TRUE(HasError(r, 2, "workres", "unknown key 'workres' (did you mean 'workers'?)"));
  EXPECT_TRUE(HasError(r, 5, "services[0].endpoints[0].wieght",
                       "unknown key 'wieght' (did you mean 'weight'?)"));
  EXPECT_TRUE(
      HasError(r, 6, "services[0].retires", "unknown key 'retires' (did you mean 'retry'?)"));
  EXPECT_TRUE(HasError(r, 7, "services[0].colour", "unknown key 'colour'"));
  EXPECT_EQ(r.errors.size(), 4u) << dump(r);
  for (const auto& e : r.errors) {
    if (e.message.find("colour") != std::string::npos) {
      EXPECT_EQ(e.message.find("did you mean"), std::string::npos);
    }
  }
}

// A temporary directory with a token file, for control_plane sections.
struct ControlPlaneDir {
  std::filesystem::path dir;
  ControlPlaneDir() {
    char tmpl[] = "/tmp/sluice-loader-cp-XXXXXX";
    dir = ::mkdtemp(tmpl);
    std::ofstream(dir / "token") << "  secret-token\n";
  }
  ~ControlPlaneDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string section() const {
    return "control_plane: {address: http://127.0.0.1:7070, token_file: " +
           (dir / "token").string() + ", cache_dir: " + (dir / "cache").string() + "}\n";
  }
};

TEST(ControlPlane, ReadWithDefaultsAndCreatesTheCacheDir) {
  ControlPlaneDir d;
  LoadResult r = load_with(d.section());
  ASSERT_TRUE(r.ok()) << dump(r);
  const ControlPlane& cp = r.config->control_plane;
  EXPECT_TRUE(cp.enabled);
  EXPECT_EQ(cp.address, "http://127.0.0.1:7070");
  EXPECT_EQ(cp.token_file, (d.dir / "token").string());
  EXPECT_EQ(cp.poll_wait, 30s);
  EXPECT_EQ(cp.report_interval, 5s);
  EXPECT_TRUE(std::filesystem::is_directory(d.dir / "cache"));
  EXPECT_TRUE(r.config->services.empty());
}

TEST(ControlPlane, PushedSectionsAreNotAllowedInTheFile) {
  ControlPlaneDir d;
  LoadResult r = load_with(R"(services:
  - name: accounts
    endpoints: [{address: 127.0.0.1:9101}]
routes: []
)" + d.section());
  EXPECT_FALSE(r.config);
  EXPECT_TRUE(HasError(r, 2, "services", "comes from the control plane"));
  EXPECT_TRUE(HasError(r, 5, "routes", "comes from the control plane"));
  EXPECT_EQ(r.errors.size(), 2u) << dump(r);
}

TEST(ControlPlane, BadValuesAreErrors) {
  ControlPlaneDir d;
  LoadResult r = load_with(R"(control_plane:
  address: ftp://127.0.0.1:7070
  token_file: /nonexistent/token
  poll_wait: 0s
  report_interval: 10m
  cache: x
)");
  EXPECT_FALSE(r.config);
  EXPECT_TRUE(HasError(r, 3, "control_plane.address", "must start with http:// or https://"));
  EXPECT_TRUE(HasError(r, 4, "control_plane.token_file", "cannot read the token"));
  EXPECT_TRUE(HasError(r, 5, "control_plane.poll_wait", ""));
  EXPECT_TRUE(HasError(r, 6, "control_plane.report_interval", ""));
  EXPECT_TRUE(HasError(r, 7, "control_plane.cache", "unknown key"));
  EXPECT_TRUE(HasError(r, 2, "control_plane.cache_dir", "required"));
  EXPECT_EQ(r.errors.size(), 6u) << dump(r);
}

TEST(ControlPlane, PushedSectionsMergeWithTheLocalFile) {
  ControlPlaneDir d;
  std::string local =
      "node: {id: gw1, city: a}\n"
      "listeners: [{name: public, address: 127.0.0.1:8080}]\n" +
      d.section();
  const char* pushed = R"({"services": [{"name": "accounts",
      "endpoints": [{"address": "127.0.0.1:9101", "city": "a"}]}],
    "routes": [{"name": "acc", "match": {"path_prefix": "/acc"}, "service": "accounts"}],
    "rate_limits": []})";
  LoadResult r = load_with_pushed(local, "gw.yaml", pushed, "control plane config 3.4");
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_EQ(r.config->node.id, "gw1");
  ASSERT_EQ(r.config->services.size(), 1u);
  EXPECT_EQ(r.config->services[0].name, "accounts");
  ASSERT_EQ(r.config->routes.size(), 1u);
  EXPECT_TRUE(r.config->control_plane.enabled);
}

TEST(ControlPlane, ErrorsInPushedSectionsNameThePushedConfig) {
  ControlPlaneDir d;
  std::string local = "listeners: [{name: public, address: 127.0.0.1:8080}]\n" + d.section();
  LoadResult r = load_with_pushed(
      local, "gw.yaml",
      R"({"services": [], "routes": [{"name": "acc", "match": {"path_prefix": "/acc"},
          "service": "acounts"}]})",
      "control plane config 3.4");
  EXPECT_FALSE(r.config);
  ASSERT_EQ(r.errors.size(), 1u) << dump(r);
  EXPECT_EQ(r.errors[0].file, "control plane config 3.4");
  EXPECT_EQ(r.errors[0].line, 0);
  EXPECT_EQ(r.errors[0].path, "routes[0].service");

  // Not a JSON object, or keys that are not pushed sections.
  r = load_with_pushed(local, "gw.yaml", "[1, 2]", "control plane config 3.5");
  EXPECT_FALSE(r.config);
  EXPECT_EQ(r.errors.size(), 1u) << dump(r);
  r = load_with_pushed(local, "gw.yaml", R"({"listeners": []})", "control plane config 3.6");
  EXPECT_FALSE(r.config);
  EXPECT_TRUE(HasError(r, 1, "listeners", "unknown key")) << dump(r);
}

// A registry-backed service with no instance registered is pushed with no endpoints; a file may
// not do that.
TEST(ControlPlane, OnlyAPushedServiceMayHaveNoEndpoints) {
  ControlPlaneDir d;
  std::string local = "listeners: [{name: public, address: 127.0.0.1:8080}]\n" + d.section();
  LoadResult r = load_with_pushed(local, "gw.yaml", R"({"services": [{"name": "pay",
      "endpoints": []}], "routes": [{"name": "pay", "service": "pay"}]})",
                                  "control plane config 1.0");
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_TRUE(r.config->services[0].endpoints.empty());
  r = load_with(R"(services: [{name: pay, endpoints: []}]
)");
  EXPECT_TRUE(HasError(r, 2, "services[0].endpoints", "at least one endpoint is required"));
}

TEST(ControlPlane, ALocalFileWithPushedSectionsIsRefusedWhenMerging) {
  ControlPlaneDir d;
  std::string local =
      "listeners: [{name: public, address: 127.0.0.1:8080}]\n" + d.section() + "routes: []\n";
  LoadResult r = load_with_pushed(local, "gw.yaml", R"({"services": []})", "control plane");
  EXPECT_FALSE(r.config);
  ASSERT_EQ(r.errors.size(), 1u) << dump(r);
  EXPECT_EQ(r.errors[0].file, "gw.yaml");
  EXPECT_EQ(r.errors[0].line, 3);
  EXPECT_EQ(r.errors[0].path, "routes");
}

// The issue-4 keys were "not supported by this build yet"; now both are read.
TEST(Keys, DualCityKeysAreSupported) {
  LoadResult r = load(R"(
node: {city: a}
listeners: [{name: public, address: 127.0.0.1:8080}]
services:
  - name: accounts
    kind: unit
    endpoints: [{address: 127.0.0.1:9101}]
    locality: {prefer: same_city}
units: {key: header:x-customer-id, owners: {a: "0-99"}}
)");
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_EQ(r.config->services[0].locality.prefer, Locality::Prefer::kSameCity);
  EXPECT_TRUE(r.config->units.enabled);
}

// The issue-3 keys were "not supported by this build yet"; now each is read.
TEST(Keys, GovernanceKeysAreSupported) {
  LoadResult r = load(R"(
listeners: [{name: public, address: 127.0.0.1:8080}]
services:
  - name: accounts
    endpoints: [{address: 127.0.0.1:9101}]
    health_check: {path: /healthz}
    outlier_detection: {consecutive_errors: 5}
    circuit_breaker: {window: 10s}
    fallback: {status: 503}
    adaptive_concurrency: {algorithm: gradient}
rate_limits: []
redis: {address: 127.0.0.1:6379}
overload: {max_in_flight: 100}
)");
  ASSERT_TRUE(r.ok()) << dump(r);
  const Service& s = r.config->services[0];
  EXPECT_TRUE(s.health_check.enabled);
  EXPECT_TRUE(s.outlier_detection.enabled);
  EXPECT_TRUE(s.circuit_breaker.enabled);
  EXPECT_TRUE(s.fallback.enabled);
  EXPECT_TRUE(s.adaptive_concurrency.enabled);
  EXPECT_TRUE(r.config->redis.enabled);
  EXPECT_TRUE(r.config->overload.enabled);
  EXPECT_TRUE(r.config->rate_limits.empty());
}

// With a units section, kind unit is fine even when the section itself has errors: those are
// reported there, not again on every unit service.
TEST(Keys, UnitServiceWithUnitsSectionReportsOnlyUnits) {
  LoadResult r = load_with("units: {shards: 100}\n" + service_with("kind: unit"));
  EXPECT_TRUE(HasError(r, 2, "units.key", "required"));
  EXPECT_TRUE(HasError(r, 2, "units.owners", "required"));
  EXPECT_TRUE(HasError(r, 2, "units", "node.city is required with units"));
  EXPECT_EQ(r.errors.size(), 3u) << dump(r);
}

TEST(Keys, DuplicateKeys) {
  LoadResult r = load(R"(
listeners: [{name: public, address: 127.0.0.1:8080}]
workers: 2
workers: 3
)");
  EXPECT_TRUE(HasError(r, 3, "workers", "duplicate key (first at line 2)"));
  EXPECT_EQ(r.errors.size(), 1u) << dump(r);
}

TEST(Keys, MergeKeysExplained) {
  EXPECT_TRUE(Rejects("node: {<<: {id: x}}\n", "node.<<", "merge keys ('<<') are not supported"));
}

TEST(Keys, NonStringKey) {
  EXPECT_TRUE(Rejects("node: {[a]: 1}\n", "node", "keys must be strings"));
}

// ---- many errors at once ----

TEST(Errors, AllAtOnceWithLinesAndPaths) {
  LoadResult r = load(R"(
workers: 100
listeners:
  - {name: public, address: 127.0.0.1:8080}
limits:
  max_headers: 0
  header_timeout: soon
services:
  - name: a
    endpoints: [{address: 10.0.0.1:80}]
  - name: b
    endpoints: [{address: 10.0.0.2:80}]
  - name: c
    endpoints:
      - address: 10.0.0.3
        weight: 0
    retry:
      attempts: 11
routes:
  - name: r
    match: {path: no-slash}
    service: d
)");
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(r.config);
  EXPECT_TRUE(HasError(r, 1, "workers", "must be 0..64, got 100"));
  EXPECT_TRUE(HasError(r, 5, "limits.max_headers", "must be 1..1000"));
  EXPECT_TRUE(HasError(r, 6, "limits.header_timeout", "expected a duration"));
  EXPECT_TRUE(HasError(r, 14, "services[2].endpoints[0].address", "expected host:port"));
  EXPECT_TRUE(HasError(r, 15, "services[2].endpoints[0].weight", "must be 1..1000"));
  EXPECT_TRUE(HasError(r, 17, "services[2].retry.attempts", "must be 0..10"));
  EXPECT_TRUE(HasError(r, 20, "routes[0].match.path", "must start with '/'"));
  EXPECT_TRUE(HasError(r, 21, "routes[0].service", "no service named 'd'"));
  EXPECT_EQ(r.errors.size(), 8u) << dump(r);
  // Ordered by line, and rendered as file:line: path: message.
  for (size_t i = 1; i < r.errors.size(); ++i) EXPECT_LE(r.errors[i - 1].line, r.errors[i].line);
  EXPECT_EQ(r.errors[5].to_string(),
            "test.yaml:17: services[2].retry.attempts: must be 0..10, got 11");
}

TEST(Errors, TypeErrors) {
  LoadResult r = load(R"(
listeners: {name: public}
node: [a]
limits:
  max_body_bytes: {a: 1}
services: accounts
)");
  EXPECT_TRUE(HasError(r, 1, "listeners", "expected a list, got a mapping"));
  EXPECT_TRUE(HasError(r, 2, "node", "expected a mapping, got a list"));
  EXPECT_TRUE(HasError(r, 4, "limits.max_body_bytes", "expected a size"));
  EXPECT_TRUE(HasError(r, 5, "services", "expected a list, got 'accounts'"));
  EXPECT_EQ(r.errors.size(), 4u) << dump(r);
}

TEST(Errors, TopLevelNotAMapping) {
  LoadResult r = load("- a\n- b\n");
  ASSERT_EQ(r.errors.size(), 1u) << dump(r);
  EXPECT_EQ(r.errors[0].message, "expected a mapping, got a list");
}

TEST(Errors, YamlSyntaxErrorIsOneErrorWithItsLine) {
  LoadResult r = load(R"(
listeners:
  - {name: public, address: 127.0.0.1:8080
workers: 1
)");
  ASSERT_EQ(r.errors.size(), 1u) << dump(r);
  EXPECT_FALSE(r.config);
  EXPECT_EQ(r.errors[0].file, "test.yaml");
  EXPECT_GE(r.errors[0].line, 2);
  EXPECT_LE(r.errors[0].line, 3);
  EXPECT_EQ(r.errors[0].message.rfind("YAML syntax error: ", 0), 0u) << r.errors[0].message;

  LoadResult bad_indent = load("node:\n  id: a\n    city: b\n");
  ASSERT_EQ(bad_indent.errors.size(), 1u) << dump(bad_indent);
  EXPECT_EQ(bad_indent.errors[0].line, 3);

  LoadResult alias = load("node: *missing\n");
  ASSERT_EQ(alias.errors.size(), 1u) << dump(alias);
  EXPECT_EQ(alias.errors[0].line, 1);
}

TEST(Errors, WholeFileErrorsHaveNoLine) {
  LoadResult list = load("- a\n- b\n");
  ASSERT_EQ(list.errors.size(), 1u) << dump(list);
  EXPECT_EQ(list.errors[0].line, 0);
  EXPECT_EQ(list.errors[0].to_string(), "test.yaml: expected a mapping, got a list");
  LoadResult no_listeners = load("workers: 1\n");
  ASSERT_EQ(no_listeners.errors.size(), 1u) << dump(no_listeners);
  EXPECT_EQ(no_listeners.errors[0].line, 0);
  // An error inside a section keeps its line.
  LoadResult admin = load("listeners: [{name: a, address: 127.0.0.1:80}]\nadmin: {}\n");
  ASSERT_EQ(admin.errors.size(), 1u) << dump(admin);
  EXPECT_EQ(admin.errors[0].line, 2);
  EXPECT_EQ(admin.errors[0].path, "admin.address");
}

TEST(Errors, SeveralDocuments) {
  LoadResult r = load("listeners: [{name: a, address: 127.0.0.1:80}]\n---\nworkers: 1\n");
  ASSERT_EQ(r.errors.size(), 1u) << dump(r);
  EXPECT_TRUE(HasError(r, 2, "", "expected one YAML document"));
  // A leading '---' (or a trailing '...') is still one document.
  EXPECT_TRUE(load("---\nlisteners: [{name: a, address: 127.0.0.1:80}]\n...\n").ok());
}

// yaml-cpp 0.7's LoadAll never returned (and kept allocating) on a stray ',' at document level,
// and Load returned null for it, which surfaced as "at least one listener is required".
TEST(Errors, StrayCommaIsASyntaxErrorNotAHang) {
  for (const char* text : {",", ",node: {id: a}\n", "---\n,\n", "listeners: []\n---\n,\n"}) {
    LoadResult r = load_string(text, "x");
    ASSERT_EQ(r.errors.size(), 1u) << text << "\n" << dump(r);
    EXPECT_EQ(r.errors[0].message.rfind("YAML syntax error: unexpected ','", 0), 0u) << text << "\n"
                                                                                     << dump(r);
  }
  EXPECT_EQ(load_string("---\n,\n", "x").errors[0].line, 2);
}

// ---- files ----

class LoadFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("sluice_config_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(LoadFile, ReadsAndNamesTheFile) {
  auto path = (dir_ / "gw.yaml").string();
  std::ofstream(path) << "listeners: [{name: a, address: 127.0.0.1:80}]\nworkers: 99\n";
  LoadResult r = load_file(path);
  ASSERT_EQ(r.errors.size(), 1u) << dump(r);
  EXPECT_EQ(r.errors[0].to_string(), path + ":2: workers: must be 0..64, got 99");
  std::ofstream(path) << "listeners: [{name: a, address: 127.0.0.1:80}]\n";
  LoadResult ok = load_file(path);
  ASSERT_TRUE(ok.ok()) << dump(ok);
  EXPECT_EQ(ok.config->source_file, path);
}

TEST_F(LoadFile, MissingFileIsOneClearError) {
  auto path = (dir_ / "nope.yaml").string();
  LoadResult r = load_file(path);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_FALSE(r.config);
  EXPECT_EQ(r.errors[0].to_string(), path + ": cannot read config: No such file or directory");
}

TEST_F(LoadFile, DirectoryIsOneClearError) {
  LoadResult r = load_file(dir_.string());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].message, "cannot read config: is a directory");
}

// ---- http: request path rules ----

TEST(Http, SafeDefaultsWithNoSection) {
  LoadResult r = load_with("");
  ASSERT_TRUE(r.ok()) << dump(r);
  const http::PathOptions& p = r.config->http.path;
  EXPECT_TRUE(p.normalize);
  EXPECT_TRUE(p.merge_slashes);
  EXPECT_EQ(p.escaped_slashes, http::EscapedSlashes::kReject);
  EXPECT_EQ(p.parameters, http::PathParameters::kReject);
  EXPECT_TRUE(Accepts("http:\n"));
}

TEST(Http, EveryKeyRead) {
  LoadResult r = load_with(
      "http: {normalize_path: false, merge_slashes: false, escaped_slashes: unescape, "
      "path_parameters: keep}\n");
  ASSERT_TRUE(r.ok()) << dump(r);
  const http::PathOptions& p = r.config->http.path;
  EXPECT_FALSE(p.normalize);
  EXPECT_FALSE(p.merge_slashes);
  EXPECT_EQ(p.escaped_slashes, http::EscapedSlashes::kUnescape);
  EXPECT_EQ(p.parameters, http::PathParameters::kKeep);
  EXPECT_EQ(load_with("http: {escaped_slashes: keep}\n").config->http.path.escaped_slashes,
            http::EscapedSlashes::kKeep);
}

TEST(Http, BadValuesAreErrorsAllAtOnce) {
  LoadResult r = load_with(
      "http:\n  normalize_path: yes\n  escaped_slashes: decode\n  path_parameters: strip\n"
      "  merge_slash: true\n");
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(HasError(r, 3, "http.normalize_path", "expected true or false"));
  EXPECT_TRUE(HasError(r, 4, "http.escaped_slashes", "keep"));
  EXPECT_TRUE(HasError(r, 5, "http.path_parameters", "reject"));
  EXPECT_TRUE(HasError(r, 6, "http.merge_slash", "did you mean 'merge_slashes'"));
  EXPECT_TRUE(Rejects("http: [a]\n", "http", "mapping"));
}

TEST(Http, RoutePathsThatCanNeverMatchAreErrors) {
  EXPECT_TRUE(Rejects(route_with("match: {path_prefix: '/a//b'}"), "routes[0].match.path_prefix",
                      "'/a//b' can never match: request paths are normalised first (see http); "
                      "write '/a/b'"));
  EXPECT_TRUE(Rejects(route_with("match: {path: /a/../b}"), "routes[0].match.path", "write '/b'"));
  EXPECT_TRUE(
      Rejects(route_with("match: {path: /%61dmin}"), "routes[0].match.path", "write '/admin'"));
  EXPECT_TRUE(Rejects(route_with("match: {path_prefix: /a%2fb}"), "routes[0].match.path_prefix",
                      "requests with such a path are refused (path contains an encoded slash"));
  EXPECT_TRUE(Rejects(route_with("match: {path_prefix: '/a;v=1'}"), "routes[0].match.path_prefix",
                      "path contains ';'"));
  EXPECT_TRUE(Rejects(route_with("match: {path_prefix: /a/b}\n    strip_prefix: /a/."),
                      "routes[0].strip_prefix", "write '/a/'"));
  // What the options allow, a route may name.
  EXPECT_TRUE(Accepts("http: {merge_slashes: false}\n" + route_with("match: {path: '/a//b'}")));
  EXPECT_TRUE(Accepts("http: {escaped_slashes: keep}\n" +
                      route_with("match: {path_prefix: /files/a%2Fb}")));
  EXPECT_TRUE(
      Rejects("http: {escaped_slashes: keep}\n" + route_with("match: {path_prefix: /files/a%2fb}"),
              "routes[0].match.path_prefix", "write '/files/a%2Fb'"));
  EXPECT_TRUE(
      Accepts("http: {path_parameters: keep}\n" + route_with("match: {path_prefix: '/a;v=1'}")));
  EXPECT_TRUE(Accepts(route_with("match: {path_prefix: /api/}")));
  EXPECT_TRUE(Accepts(route_with("match: {path_prefix: /a%20b}")));
}

TEST(Http, ToJsonRoundTrips) {
  LoadResult first = load_with(
      "http: {normalize_path: false, merge_slashes: false, escaped_slashes: keep, "
      "path_parameters: keep}\n");
  ASSERT_TRUE(first.ok()) << dump(first);
  std::string json = to_json(*first.config);
  auto j = nlohmann::json::parse(json);
  EXPECT_EQ(j["http"]["normalize_path"], false);
  EXPECT_EQ(j["http"]["merge_slashes"], false);
  EXPECT_EQ(j["http"]["escaped_slashes"], "keep");
  EXPECT_EQ(j["http"]["path_parameters"], "keep");
  LoadResult second = load_string(json, "effective.json");
  ASSERT_TRUE(second.ok()) << dump(second) << json;
  EXPECT_TRUE(SameConfig(*first.config, *second.config)) << json;
  auto d = nlohmann::json::parse(to_json(*load_with("").config));
  EXPECT_EQ(d["http"]["escaped_slashes"], "reject");
  EXPECT_EQ(d["http"]["path_parameters"], "reject");
}

// ---- effective config as JSON ----

TEST(ToJson, DefaultsAndFormats) {
  LoadResult r = load_with(
      "services: [{name: s, endpoints: [{address: '[::1]:80'}]}]\n"
      "routes: [{name: r, service: s, match: {headers: {x-a: '*'}}}]\n");
  ASSERT_TRUE(r.ok()) << dump(r);
  auto j = nlohmann::json::parse(to_json(*r.config));
  EXPECT_EQ(j["node"]["id"], "sluice");
  EXPECT_EQ(j["workers"], 1);
  EXPECT_EQ(j["io_backend"], "auto");
  EXPECT_EQ(j["listeners"][0]["address"], "127.0.0.1:8080");
  EXPECT_FALSE(j.contains("admin"));  // absent = disabled
  EXPECT_EQ(j["limits"]["max_header_bytes"], 65536);
  EXPECT_EQ(j["limits"]["header_timeout"], "10s");
  EXPECT_EQ(j["limits"]["idle_timeout"], "1m");
  EXPECT_EQ(j["limits"]["drain_timeout"], "30s");
  EXPECT_EQ(j["access_log"]["path"], "stdout");
  const auto& s = j["services"][0];
  EXPECT_EQ(s["endpoints"][0]["address"], "[::1]:80");
  EXPECT_EQ(s["endpoints"][0]["weight"], 1);
  EXPECT_EQ(s["load_balancer"]["policy"], "round_robin");
  EXPECT_FALSE(s["load_balancer"].contains("hash_on"));
  EXPECT_EQ(s["timeouts"]["connect"], "1s");
  EXPECT_EQ(s["retry"]["on"], nlohmann::json::parse(R"(["connect_failure","reset"])"));
  EXPECT_EQ(s["kind"], "global");
  EXPECT_EQ(j["routes"][0]["match"]["path_prefix"], "/");
  EXPECT_EQ(j["routes"][0]["match"]["headers"]["x-a"], "*");
  EXPECT_EQ(j["routes"][0]["service"], "s");
}

// JSON is YAML: the effective config loads back to itself.
TEST(ToJson, RoundTrips) {
  std::string json = ExpectRoundTrip(load(kFullExample));
  ASSERT_FALSE(json.empty());
  auto j = nlohmann::json::parse(json);
  EXPECT_EQ(j["admin"]["address"], "127.0.0.1:9901");
  EXPECT_EQ(j["limits"]["drain_timeout"], "1500ms");
  EXPECT_EQ(j["services"][0]["load_balancer"]["hash_on"], "header:x-customer-id");
  EXPECT_EQ(j["services"][0]["retry"]["on"],
            nlohmann::json::parse(R"(["connect_failure","reset","502","503","504"])"));
  EXPECT_EQ(j["routes"][1]["match"]["path"], "/pay");
}

// ---- governance: health checks, outlier detection, breakers, fallbacks, adaptive concurrency,
// rate limits, redis, overload ----

// Exactly one error, and it is this one.
::testing::AssertionResult RejectsOnly(std::string_view extra, std::string_view path,
                                       std::string_view text) {
  LoadResult r = load_with(extra);
  if (r.errors.size() != 1) {
    return ::testing::AssertionFailure() << "wanted only " << path << ": ..." << text << "... for\n"
                                         << extra << "\ngot\n"
                                         << dump(r);
  }
  return Rejects(extra, path, text);
}

// Two services and two routes for rate-limit rules to name, then `extra`.
std::string with_routes(std::string_view extra) {
  return "services:\n"
         "  - {name: accounts, endpoints: [{address: 10.0.0.1:80}]}\n"
         "  - {name: payments, endpoints: [{address: 10.0.0.2:80}]}\n"
         "routes:\n"
         "  - {name: accounts-api, service: accounts}\n"
         "  - {name: pay, service: payments}\n" +
         std::string(extra);
}

constexpr std::string_view kGovernanceExample = R"(
listeners: [{name: public, address: 127.0.0.1:8080}]
services:
  - name: accounts
    endpoints: [{address: 127.0.0.1:9101}, {address: 127.0.0.1:9102}]
    health_check:
      path: /healthz?deep=1
      host: accounts.internal:8080
      interval: 2s
      timeout: 300ms
      jitter: 250ms
      healthy_threshold: 3
      unhealthy_threshold: 4
    outlier_detection:
      consecutive_errors: 7
      base_ejection_time: 15s
      max_ejection_time: 2m
      max_ejection_percent: 34
    circuit_breaker:
      window: 20s
      min_requests: 40
      error_ratio: 0.25
      slow_call_duration: 800ms
      slow_call_ratio: 0.75
      open_duration: 3s
      max_open_duration: 45s
      half_open_probes: 7
      max_concurrent: 900
      max_pending: 120
    fallback: {status: 503, body: '{"code":"DEGRADED"}', content_type: application/problem+json}
    adaptive_concurrency:
      algorithm: gradient
      initial_limit: 40
      min_limit: 10
      max_limit: 400
      sample_window: 500ms
      tolerance: 2.5
      mode: shadow
  - name: payments
    endpoints: [{address: 127.0.0.1:9201}]
    adaptive_concurrency: {algorithm: aimd, latency_threshold: 300ms, backoff: 0.75}
routes:
  - {name: accounts-api, match: {path_prefix: /api/accounts}, service: accounts}
  - {name: pay, match: {path_prefix: /pay}, service: payments}
rate_limits:
  - name: per-app
    match: {routes: [pay, accounts-api, pay], services: [accounts]}
    key: [header:X-App-Id, route]
    limit: {requests: 100, per: 1s, burst: 20}
    algorithm: token_bucket
    scope: cluster
    mode: enforce
    overrides:
      - {key: "vip|accounts-api", limit: {requests: 1000, burst: 200}}
      - {key: "batch|pay", limit: {requests: 5, per: 1m}}
    max_keys: 5000
  - name: per-ip
    key: [client_ip, method, query:Tenant, service]
    limit: {requests: 50, per: 10s}
    algorithm: sliding_window
    mode: shadow
    overrides: [{key: "2001:db8::1|GET|t1|payments", limit: {requests: 500}}]
  - name: in-flight
    match: {services: [payments]}
    key: []
    limit: {requests: 64}
    algorithm: concurrency
redis:
  address: redis.internal:6380
  timeout: 50ms
  on_error: deny
  key_prefix: "gw:"
  gateways: 4
overload:
  priority_key: header:X-Channel
  priorities: [payment, branch, mobile, web]
  default_priority: mobile
  reserve: 0.4
  max_in_flight: 20000
  mode: shadow
)";

TEST(Governance, FullExampleLandsInTheStructs) {
  LoadResult r = load(kGovernanceExample);
  ASSERT_TRUE(r.ok()) << dump(r);
  const GatewayConfig& c = *r.config;
  ASSERT_EQ(c.services.size(), 2u);
  const Service& acc = c.services[0];

  const HealthCheck& hc = acc.health_check;
  EXPECT_TRUE(hc.enabled);
  EXPECT_EQ(hc.path, "/healthz?deep=1");
  EXPECT_EQ(hc.host, "accounts.internal:8080");
  EXPECT_EQ(hc.interval, 2s);
  EXPECT_EQ(hc.timeout, 300ms);
  EXPECT_EQ(hc.jitter, 250ms);
  EXPECT_EQ(hc.healthy_threshold, 3u);
  EXPECT_EQ(hc.unhealthy_threshold, 4u);

  const OutlierDetection& od = acc.outlier_detection;
  EXPECT_TRUE(od.enabled);
  EXPECT_EQ(od.consecutive_errors, 7u);
  EXPECT_EQ(od.base_ejection_time, 15s);
  EXPECT_EQ(od.max_ejection_time, 120s);
  EXPECT_EQ(od.max_ejection_percent, 34u);

  const CircuitBreaker& cb = acc.circuit_breaker;
  EXPECT_TRUE(cb.enabled);
  EXPECT_EQ(cb.window, 20s);
  EXPECT_EQ(cb.min_requests, 40u);
  EXPECT_EQ(cb.error_ratio, 0.25);
  EXPECT_EQ(cb.slow_call_duration, 800ms);
  EXPECT_EQ(cb.slow_call_ratio, 0.75);
  EXPECT_EQ(cb.open_duration, 3s);
  EXPECT_EQ(cb.max_open_duration, 45s);
  EXPECT_EQ(cb.half_open_probes, 7u);
  EXPECT_EQ(cb.max_concurrent, 900u);
  EXPECT_EQ(cb.max_pending, 120u);

  const Fallback& fb = acc.fallback;
  EXPECT_TRUE(fb.enabled);
  EXPECT_EQ(fb.status, 503);
  EXPECT_EQ(fb.body, R"({"code":"DEGRADED"})");
  EXPECT_EQ(fb.content_type, "application/problem+json");

  const AdaptiveConcurrency& ac = acc.adaptive_concurrency;
  EXPECT_TRUE(ac.enabled);
  EXPECT_EQ(ac.algorithm, AdaptiveConcurrency::Algorithm::kGradient);
  EXPECT_EQ(ac.initial_limit, 40u);
  EXPECT_EQ(ac.min_limit, 10u);
  EXPECT_EQ(ac.max_limit, 400u);
  EXPECT_EQ(ac.sample_window, 500ms);
  EXPECT_EQ(ac.tolerance, 2.5);
  EXPECT_EQ(ac.mode, Mode::kShadow);
  const AdaptiveConcurrency& aimd = c.services[1].adaptive_concurrency;
  EXPECT_EQ(aimd.algorithm, AdaptiveConcurrency::Algorithm::kAimd);
  EXPECT_EQ(aimd.latency_threshold, 300ms);
  EXPECT_EQ(aimd.backoff, 0.75);
  EXPECT_EQ(aimd.mode, Mode::kEnforce);
  // Sections a service leaves out stay disabled.
  EXPECT_FALSE(c.services[1].health_check.enabled);
  EXPECT_FALSE(c.services[1].circuit_breaker.enabled);

  ASSERT_EQ(c.rate_limits.size(), 3u);
  const RateLimitRule& app = c.rate_limits[0];
  EXPECT_EQ(app.name, "per-app");
  // A name listed twice counts once; indices follow the file order of the list.
  EXPECT_EQ(app.match_routes, (std::vector<std::string>{"pay", "accounts-api"}));
  EXPECT_EQ(app.route_indices, (std::vector<size_t>{1, 0}));
  EXPECT_EQ(app.match_services, (std::vector<std::string>{"accounts"}));
  EXPECT_EQ(app.service_indices, (std::vector<size_t>{0}));
  ASSERT_EQ(app.key.size(), 2u);
  EXPECT_EQ(app.key[0].kind, RequestInput::Kind::kHeader);
  EXPECT_EQ(app.key[0].name, "x-app-id");
  EXPECT_EQ(app.key[1].kind, RequestInput::Kind::kRoute);
  EXPECT_EQ(app.limit.requests, 100u);
  EXPECT_EQ(app.limit.per, 1s);
  EXPECT_EQ(app.limit.burst, 20u);
  EXPECT_EQ(app.algorithm, RateAlgorithm::kTokenBucket);
  EXPECT_EQ(app.scope, RateScope::kCluster);
  EXPECT_EQ(app.mode, Mode::kEnforce);
  ASSERT_EQ(app.overrides.size(), 2u);
  EXPECT_EQ(app.overrides[0].key, "vip|accounts-api");
  EXPECT_EQ(app.overrides[0].limit.requests, 1000u);
  EXPECT_EQ(app.overrides[0].limit.per, 1s);  // the rule's
  EXPECT_EQ(app.overrides[0].limit.burst, 200u);
  EXPECT_EQ(app.overrides[1].key, "batch|pay");
  EXPECT_EQ(app.overrides[1].limit.requests, 5u);
  EXPECT_EQ(app.overrides[1].limit.per, 1min);
  EXPECT_EQ(app.overrides[1].limit.burst, 5u);  // not inherited: the override's requests
  EXPECT_EQ(app.max_keys, 5000u);

  const RateLimitRule& ip = c.rate_limits[1];
  ASSERT_EQ(ip.key.size(), 4u);
  EXPECT_EQ(ip.key[0].kind, RequestInput::Kind::kClientIp);
  EXPECT_EQ(ip.key[1].kind, RequestInput::Kind::kMethod);
  EXPECT_EQ(ip.key[2].kind, RequestInput::Kind::kQuery);
  EXPECT_EQ(ip.key[2].name, "Tenant");  // query parameter names keep their case
  EXPECT_EQ(ip.key[3].kind, RequestInput::Kind::kService);
  EXPECT_TRUE(ip.match_routes.empty());
  EXPECT_TRUE(ip.route_indices.empty());
  EXPECT_TRUE(ip.service_indices.empty());
  EXPECT_EQ(ip.limit.requests, 50u);
  EXPECT_EQ(ip.limit.per, 10s);
  EXPECT_EQ(ip.limit.burst, 0u);
  EXPECT_EQ(ip.algorithm, RateAlgorithm::kSlidingWindow);
  EXPECT_EQ(ip.scope, RateScope::kNode);
  EXPECT_EQ(ip.mode, Mode::kShadow);
  ASSERT_EQ(ip.overrides.size(), 1u);
  EXPECT_EQ(ip.overrides[0].limit.requests, 500u);
  EXPECT_EQ(ip.overrides[0].limit.per, 10s);
  EXPECT_EQ(ip.max_keys, 100000u);

  const RateLimitRule& conc = c.rate_limits[2];
  EXPECT_TRUE(conc.key.empty());
  EXPECT_EQ(conc.service_indices, (std::vector<size_t>{1}));
  EXPECT_EQ(conc.algorithm, RateAlgorithm::kConcurrency);
  EXPECT_EQ(conc.limit.requests, 64u);

  EXPECT_TRUE(c.redis.enabled);
  EXPECT_EQ(c.redis.address.host, "redis.internal");
  EXPECT_EQ(c.redis.address.port, 6380);
  EXPECT_EQ(c.redis.timeout, 50ms);
  EXPECT_EQ(c.redis.on_error, Redis::OnError::kDeny);
  EXPECT_EQ(c.redis.key_prefix, "gw:");
  EXPECT_EQ(c.redis.gateways, 4u);

  const Overload& o = c.overload;
  EXPECT_TRUE(o.enabled);
  EXPECT_EQ(o.priority_key.kind, RequestInput::Kind::kHeader);
  EXPECT_EQ(o.priority_key.name, "x-channel");
  EXPECT_EQ(o.priorities, (std::vector<std::string>{"payment", "branch", "mobile", "web"}));
  EXPECT_EQ(o.default_priority, 2u);
  EXPECT_EQ(o.reserve, 0.4);
  EXPECT_EQ(o.max_in_flight, 20000u);
  EXPECT_EQ(o.mode, Mode::kShadow);
}

TEST(Governance, AbsentSectionsAreDisabledWithDefaults) {
  LoadResult r = load_with(service_with("retry: {attempts: 1}"));
  ASSERT_TRUE(r.ok()) << dump(r);
  const Service& s = r.config->services[0];
  EXPECT_FALSE(s.health_check.enabled);
  EXPECT_FALSE(s.outlier_detection.enabled);
  EXPECT_FALSE(s.circuit_breaker.enabled);
  EXPECT_FALSE(s.fallback.enabled);
  EXPECT_FALSE(s.adaptive_concurrency.enabled);
  EXPECT_TRUE(r.config->rate_limits.empty());
  EXPECT_FALSE(r.config->redis.enabled);
  EXPECT_FALSE(r.config->overload.enabled);
  EXPECT_EQ(r.config->overload.priorities.size(), 0u);
}

// A section that is present, even empty, is enabled with every field at its config.h default.
TEST(Governance, EmptySectionsAreEnabledWithDefaults) {
  LoadResult r = load_with(R"(services:
  - name: s
    endpoints: [{address: 10.0.0.1:80}]
    health_check:
    outlier_detection: {}
    circuit_breaker: {}
    fallback: {}
    adaptive_concurrency: {}
routes: [{name: r, service: s}]
rate_limits: [{name: x, limit: {requests: 10}}]
redis: {address: 127.0.0.1:6379}
overload: {}
)");
  ASSERT_TRUE(r.ok()) << dump(r);
  const Service& s = r.config->services[0];
  const Service d;
  EXPECT_TRUE(s.health_check.enabled);
  EXPECT_EQ(s.health_check.path, "/healthz");
  EXPECT_EQ(s.health_check.host, "");
  EXPECT_EQ(s.health_check.interval, 1s);
  EXPECT_EQ(s.health_check.timeout, 500ms);
  EXPECT_EQ(s.health_check.jitter, 100ms);
  EXPECT_EQ(s.health_check.healthy_threshold, 2u);
  EXPECT_EQ(s.health_check.unhealthy_threshold, 3u);
  EXPECT_TRUE(s.outlier_detection.enabled);
  EXPECT_EQ(s.outlier_detection.consecutive_errors, 5u);
  EXPECT_EQ(s.outlier_detection.base_ejection_time, 10s);
  EXPECT_EQ(s.outlier_detection.max_ejection_time, 300s);
  EXPECT_EQ(s.outlier_detection.max_ejection_percent, 50u);
  const CircuitBreaker& cb = s.circuit_breaker;
  EXPECT_TRUE(cb.enabled);
  EXPECT_EQ(cb.window, 10s);
  EXPECT_EQ(cb.min_requests, 20u);
  EXPECT_EQ(cb.error_ratio, 0.5);
  EXPECT_EQ(cb.slow_call_duration, 1s);
  EXPECT_EQ(cb.slow_call_ratio, 1.0);
  EXPECT_EQ(cb.open_duration, 5s);
  EXPECT_EQ(cb.max_open_duration, 60s);
  EXPECT_EQ(cb.half_open_probes, 5u);
  EXPECT_EQ(cb.max_concurrent, 0u);
  EXPECT_EQ(cb.max_pending, 0u);
  EXPECT_TRUE(s.fallback.enabled);
  EXPECT_EQ(s.fallback.status, 503);
  EXPECT_EQ(s.fallback.body, "");
  EXPECT_EQ(s.fallback.content_type, "application/json");
  const AdaptiveConcurrency& ac = s.adaptive_concurrency;
  EXPECT_TRUE(ac.enabled);
  EXPECT_EQ(ac.algorithm, AdaptiveConcurrency::Algorithm::kGradient);
  EXPECT_EQ(ac.initial_limit, d.adaptive_concurrency.initial_limit);
  EXPECT_EQ(ac.min_limit, d.adaptive_concurrency.min_limit);
  EXPECT_EQ(ac.max_limit, d.adaptive_concurrency.max_limit);
  EXPECT_EQ(ac.sample_window, 250ms);
  EXPECT_EQ(ac.tolerance, 1.5);
  EXPECT_EQ(ac.latency_threshold, 500ms);
  EXPECT_EQ(ac.backoff, 0.9);
  EXPECT_EQ(ac.mode, Mode::kEnforce);

  ASSERT_EQ(r.config->rate_limits.size(), 1u);
  const RateLimitRule& rule = r.config->rate_limits[0];
  EXPECT_TRUE(rule.match_routes.empty());
  EXPECT_TRUE(rule.match_services.empty());
  EXPECT_TRUE(rule.key.empty());
  EXPECT_EQ(rule.limit.requests, 10u);
  EXPECT_EQ(rule.limit.per, 1s);
  EXPECT_EQ(rule.limit.burst, 10u);  // a bucket holds `requests` when no burst is given
  EXPECT_EQ(rule.algorithm, RateAlgorithm::kTokenBucket);
  EXPECT_EQ(rule.scope, RateScope::kNode);
  EXPECT_EQ(rule.mode, Mode::kEnforce);
  EXPECT_TRUE(rule.overrides.empty());
  EXPECT_EQ(rule.max_keys, 100000u);

  const Redis& redis = r.config->redis;
  EXPECT_TRUE(redis.enabled);
  EXPECT_EQ(redis.timeout, 20ms);
  EXPECT_EQ(redis.on_error, Redis::OnError::kLocalFallback);
  EXPECT_EQ(redis.key_prefix, "sluice:");
  EXPECT_EQ(redis.gateways, 0u);

  const Overload& o = r.config->overload;
  EXPECT_TRUE(o.enabled);
  EXPECT_EQ(o.priority_key.kind, RequestInput::Kind::kNone);
  EXPECT_TRUE(o.priorities.empty());
  EXPECT_EQ(o.reserve, 0.3);
  EXPECT_EQ(o.max_in_flight, 0u);
  EXPECT_EQ(o.mode, Mode::kEnforce);
}

// A default that would break a rule against a value written out gives way to it; only values
// written out can be errors.
TEST(Governance, DefaultsGiveWayToValuesWrittenOut) {
  auto service = [](std::string_view fields) {
    LoadResult r = load_with(service_with(fields));
    EXPECT_TRUE(r.ok()) << fields << "\n" << dump(r);
    return r.ok() ? r.config->services[0] : Service{};
  };
  Service s = service("health_check: {interval: 200ms}");
  EXPECT_EQ(s.health_check.timeout, 200ms);
  EXPECT_EQ(s.health_check.jitter, 20ms);
  s = service("health_check: {interval: 10ms}");
  EXPECT_EQ(s.health_check.timeout, 10ms);
  EXPECT_EQ(s.health_check.jitter, 1ms);
  s = service("health_check: {interval: 5s}");
  EXPECT_EQ(s.health_check.timeout, 500ms);
  EXPECT_EQ(s.health_check.jitter, 100ms);
  s = service("outlier_detection: {base_ejection_time: 10m}");
  EXPECT_EQ(s.outlier_detection.max_ejection_time, 10min);
  s = service("outlier_detection: {base_ejection_time: 1s}");
  EXPECT_EQ(s.outlier_detection.max_ejection_time, 300s);
  s = service("circuit_breaker: {open_duration: 2m}");
  EXPECT_EQ(s.circuit_breaker.max_open_duration, 2min);
  s = service("adaptive_concurrency: {min_limit: 2000}");
  EXPECT_EQ(s.adaptive_concurrency.max_limit, 2000u);
  EXPECT_EQ(s.adaptive_concurrency.initial_limit, 2000u);
  s = service("adaptive_concurrency: {max_limit: 20}");
  EXPECT_EQ(s.adaptive_concurrency.min_limit, 5u);
  EXPECT_EQ(s.adaptive_concurrency.initial_limit, 20u);
  s = service("adaptive_concurrency: {max_limit: 3}");
  EXPECT_EQ(s.adaptive_concurrency.min_limit, 3u);
  EXPECT_EQ(s.adaptive_concurrency.initial_limit, 3u);
  s = service("adaptive_concurrency: {min_limit: 60, max_limit: 80}");
  EXPECT_EQ(s.adaptive_concurrency.initial_limit, 60u);
}

TEST(Governance, HealthCheckBounds) {
  const std::string p = "services[0].health_check.";
  EXPECT_TRUE(Accepts(service_with("health_check: {interval: 10ms, jitter: 0s}")));
  EXPECT_TRUE(Accepts(service_with("health_check: {interval: 1h, timeout: 1h, jitter: 59m}")));
  EXPECT_TRUE(RejectsOnly(service_with("health_check: {interval: 9ms}"), p + "interval",
                          "must be 10ms..1h, got 9ms"));
  EXPECT_TRUE(RejectsOnly(service_with("health_check: {interval: 61m}"), p + "interval",
                          "must be 10ms..1h, got 61m"));
  EXPECT_TRUE(RejectsOnly(service_with("health_check: {timeout: 0ms}"), p + "timeout",
                          "must be 1ms..1h, got 0ms"));
  // timeout <= interval (equal is fine), jitter < interval.
  EXPECT_TRUE(Accepts(service_with("health_check: {timeout: 1s, jitter: 999ms}")));
  EXPECT_TRUE(RejectsOnly(service_with("health_check: {timeout: 1001ms}"), p + "timeout",
                          "must be at most interval (1s), got 1001ms"));
  EXPECT_TRUE(RejectsOnly(service_with("health_check: {interval: 2s, timeout: 3s}"), p + "timeout",
                          "must be at most interval (2s), got 3s"));
  EXPECT_TRUE(RejectsOnly(service_with("health_check: {jitter: 1s}"), p + "jitter",
                          "must be less than interval (1s), got 1s"));
  EXPECT_TRUE(RejectsOnly(service_with("health_check: {jitter: 2h}"), p + "jitter",
                          "must be at most 1h, got 2h"));
  for (const char* key : {"healthy_threshold", "unhealthy_threshold"}) {
    EXPECT_TRUE(Accepts(service_with(std::string("health_check: {") + key + ": 1}")));
    EXPECT_TRUE(Accepts(service_with(std::string("health_check: {") + key + ": 100}")));
    EXPECT_TRUE(RejectsOnly(service_with(std::string("health_check: {") + key + ": 0}"), p + key,
                            "must be 1..100, got 0"));
    EXPECT_TRUE(RejectsOnly(service_with(std::string("health_check: {") + key + ": 101}"), p + key,
                            "must be 1..100, got 101"));
  }
  EXPECT_TRUE(RejectsOnly(service_with("health_check: {path: healthz}"), p + "path",
                          "must start with '/'"));
  EXPECT_TRUE(RejectsOnly(service_with("health_check: {path: '/a b'}"), p + "path",
                          "no spaces, control characters or '#', got '/a b'"));
  EXPECT_TRUE(Accepts(service_with("health_check: {host: '[::1]:8080'}")));
  EXPECT_TRUE(RejectsOnly(service_with("health_check: {host: 'a b'}"), p + "host",
                          "expected a host name such as accounts.internal"));
  EXPECT_TRUE(RejectsOnly(service_with("health_check: {intervall: 1s}"), p + "intervall",
                          "unknown key 'intervall' (did you mean 'interval'?)"));
  EXPECT_TRUE(RejectsOnly(service_with("health_check: [a]"), "services[0].health_check",
                          "expected a mapping, got a list"));
}

TEST(Governance, OutlierDetectionBounds) {
  const std::string p = "services[0].outlier_detection.";
  EXPECT_TRUE(Accepts(service_with("outlier_detection: {consecutive_errors: 10000}")));
  EXPECT_TRUE(RejectsOnly(service_with("outlier_detection: {consecutive_errors: 0}"),
                          p + "consecutive_errors", "must be 1..10000, got 0"));
  EXPECT_TRUE(RejectsOnly(service_with("outlier_detection: {consecutive_errors: 10001}"),
                          p + "consecutive_errors", "must be 1..10000, got 10001"));
  EXPECT_TRUE(Accepts(service_with("outlier_detection: {max_ejection_percent: 0}")));
  EXPECT_TRUE(Accepts(service_with("outlier_detection: {max_ejection_percent: 100}")));
  EXPECT_TRUE(RejectsOnly(service_with("outlier_detection: {max_ejection_percent: 101}"),
                          p + "max_ejection_percent", "must be 0..100, got 101"));
  EXPECT_TRUE(RejectsOnly(service_with("outlier_detection: {base_ejection_time: 0s}"),
                          p + "base_ejection_time", "must be > 0"));
  EXPECT_TRUE(Accepts(service_with("outlier_detection: {max_ejection_time: 10s}")));
  EXPECT_TRUE(RejectsOnly(service_with("outlier_detection: {max_ejection_time: 9s}"),
                          p + "max_ejection_time",
                          "must be at least base_ejection_time (10s), got 9s"));
  EXPECT_TRUE(RejectsOnly(
      service_with("outlier_detection: {base_ejection_time: 1m, max_ejection_time: 30s}"),
      p + "max_ejection_time", "must be at least base_ejection_time (1m), got 30s"));
}

TEST(Governance, CircuitBreakerBounds) {
  const std::string p = "services[0].circuit_breaker.";
  auto cb = [](std::string_view fields) {
    return service_with("circuit_breaker: {" + std::string(fields) + "}");
  };
  EXPECT_TRUE(Accepts(cb("window: 1s")));
  EXPECT_TRUE(Accepts(cb("window: 1h")));
  EXPECT_TRUE(RejectsOnly(cb("window: 999ms"), p + "window", "must be 1s..1h, got 999ms"));
  EXPECT_TRUE(RejectsOnly(cb("min_requests: 0"), p + "min_requests", "must be 1..1000000, got 0"));
  EXPECT_TRUE(RejectsOnly(cb("min_requests: 1000001"), p + "min_requests", "must be 1..1000000"));
  for (const char* key : {"error_ratio", "slow_call_ratio"}) {
    EXPECT_TRUE(Accepts(cb(std::string(key) + ": 1")));
    EXPECT_TRUE(Accepts(cb(std::string(key) + ": 0.001")));
    EXPECT_TRUE(
        RejectsOnly(cb(std::string(key) + ": 0"), p + key, "must be > 0 and at most 1, got 0"));
    EXPECT_TRUE(RejectsOnly(cb(std::string(key) + ": 1.01"), p + key,
                            "must be > 0 and at most 1, got 1.01"));
    EXPECT_TRUE(RejectsOnly(cb(std::string(key) + ": -0.5"), p + key,
                            "must be > 0 and at most 1, got -0.5"));
    EXPECT_TRUE(RejectsOnly(cb(std::string(key) + ": half"), p + key,
                            "expected a number such as 0.5, got 'half'"));
    EXPECT_TRUE(RejectsOnly(cb(std::string(key) + ": .nan"), p + key, "expected a number"));
    EXPECT_TRUE(RejectsOnly(cb(std::string(key) + ": inf"), p + key, "expected a number"));
    EXPECT_TRUE(RejectsOnly(cb(std::string(key) + ": 50%"), p + key, "expected a number"));
  }
  EXPECT_TRUE(RejectsOnly(cb("slow_call_duration: 0s"), p + "slow_call_duration", "must be > 0"));
  EXPECT_TRUE(RejectsOnly(cb("open_duration: 2h"), p + "open_duration", "at most 1h"));
  EXPECT_TRUE(Accepts(cb("open_duration: 5s, max_open_duration: 5s")));
  EXPECT_TRUE(RejectsOnly(cb("max_open_duration: 4s"), p + "max_open_duration",
                          "must be at least open_duration (5s), got 4s"));
  EXPECT_TRUE(RejectsOnly(cb("half_open_probes: 0"), p + "half_open_probes", "must be 1..1000"));
  EXPECT_TRUE(RejectsOnly(cb("half_open_probes: 1001"), p + "half_open_probes", "must be 1..1000"));
  for (const char* key : {"max_concurrent", "max_pending"}) {
    EXPECT_TRUE(Accepts(cb(std::string(key) + ": 0")));
    EXPECT_TRUE(Accepts(cb(std::string(key) + ": 1000000")));
    EXPECT_TRUE(RejectsOnly(cb(std::string(key) + ": 1000001"), p + key,
                            "must be 0..1000000, got 1000001"));
  }
}

TEST(Governance, FallbackRules) {
  const std::string p = "services[0].fallback";
  auto fb = [](std::string_view fields) {
    return service_with("circuit_breaker: {}\n    fallback: {" + std::string(fields) + "}");
  };
  EXPECT_TRUE(Accepts(fb("status: 200")));
  EXPECT_TRUE(Accepts(fb("status: 599")));
  EXPECT_TRUE(RejectsOnly(fb("status: 199"), p + ".status", "must be 200..599, got 199"));
  EXPECT_TRUE(RejectsOnly(fb("status: 600"), p + ".status", "must be 200..599, got 600"));
  EXPECT_TRUE(Accepts(fb("status: 204")));
  EXPECT_TRUE(
      RejectsOnly(fb("status: 204, body: x"), p + ".body", "must be empty with status 204"));
  EXPECT_TRUE(
      RejectsOnly(fb("content_type: ''"), p + ".content_type", "must be a non-empty header value"));
  EXPECT_TRUE(RejectsOnly(fb("content_type: \"text/plain\\r\\nx-a: b\""), p + ".content_type",
                          "without control characters"));
  EXPECT_TRUE(Accepts(fb("body: '" + std::string(65536, 'x') + "'")));
  EXPECT_TRUE(RejectsOnly(fb("body: '" + std::string(65537, 'x') + "'"), p + ".body",
                          "must be at most 64KiB, got 65537 bytes"));
  // Served while the breaker is open: without a breaker it never would be.
  EXPECT_TRUE(
      RejectsOnly(service_with("fallback: {status: 503}"), p, "only used with circuit_breaker"));
}

TEST(Governance, AdaptiveConcurrencyRules) {
  const std::string p = "services[0].adaptive_concurrency.";
  auto ac = [](std::string_view fields) {
    return service_with("adaptive_concurrency: {" + std::string(fields) + "}");
  };
  EXPECT_TRUE(RejectsOnly(ac("algorithm: vegas"), p + "algorithm",
                          "must be gradient or aimd, got 'vegas'"));
  EXPECT_TRUE(RejectsOnly(ac("algorithm: AIMD"), p + "algorithm", "(did you mean 'aimd'?)"));
  EXPECT_TRUE(RejectsOnly(ac("min_limit: 0"), p + "min_limit", "must be 1..1000000, got 0"));
  EXPECT_TRUE(RejectsOnly(ac("max_limit: 1000001"), p + "max_limit", "must be 1..1000000"));
  EXPECT_TRUE(Accepts(ac("min_limit: 7, initial_limit: 7, max_limit: 7")));
  EXPECT_TRUE(RejectsOnly(ac("min_limit: 20, max_limit: 10"), p + "max_limit",
                          "must be at least min_limit (20), got 10"));
  EXPECT_TRUE(RejectsOnly(ac("initial_limit: 4"), p + "initial_limit",
                          "must be min_limit..max_limit (5..1000), got 4"));
  EXPECT_TRUE(RejectsOnly(ac("initial_limit: 1001"), p + "initial_limit",
                          "must be min_limit..max_limit (5..1000), got 1001"));
  EXPECT_TRUE(RejectsOnly(ac("initial_limit: 30, max_limit: 20"), p + "initial_limit",
                          "must be min_limit..max_limit (5..20), got 30"));
  EXPECT_TRUE(Accepts(ac("sample_window: 10ms")));
  EXPECT_TRUE(Accepts(ac("sample_window: 1m")));
  EXPECT_TRUE(
      RejectsOnly(ac("sample_window: 9ms"), p + "sample_window", "must be 10ms..1m, got 9ms"));
  EXPECT_TRUE(RejectsOnly(ac("sample_window: 61s"), p + "sample_window", "must be 10ms..1m"));
  EXPECT_TRUE(Accepts(ac("tolerance: 1")));
  EXPECT_TRUE(Accepts(ac("tolerance: 10")));
  EXPECT_TRUE(RejectsOnly(ac("tolerance: 0.99"), p + "tolerance", "must be 1..10, got 0.99"));
  EXPECT_TRUE(RejectsOnly(ac("tolerance: 10.5"), p + "tolerance", "must be 1..10, got 10.5"));
  EXPECT_TRUE(Accepts(ac("algorithm: aimd, backoff: 0.5, latency_threshold: 1s")));
  EXPECT_TRUE(
      RejectsOnly(ac("algorithm: aimd, backoff: 1"), p + "backoff", "must be > 0 and < 1, got 1"));
  EXPECT_TRUE(
      RejectsOnly(ac("algorithm: aimd, backoff: 0"), p + "backoff", "must be > 0 and < 1, got 0"));
  // Keys of the other algorithm are errors, not silently unused.
  EXPECT_TRUE(RejectsOnly(ac("latency_threshold: 1s"), p + "latency_threshold",
                          "only used with algorithm aimd"));
  EXPECT_TRUE(RejectsOnly(ac("backoff: 0.5"), p + "backoff", "only used with algorithm aimd"));
  EXPECT_TRUE(RejectsOnly(ac("algorithm: aimd, tolerance: 2"), p + "tolerance",
                          "only used with algorithm gradient"));
  EXPECT_TRUE(
      RejectsOnly(ac("mode: dry_run"), p + "mode", "must be enforce or shadow, got 'dry_run'"));
}

TEST(Governance, RateLimitRuleFields) {
  auto rule = [](std::string_view fields) {
    return with_routes("rate_limits:\n  - {name: r, " + std::string(fields) + "}\n");
  };
  const std::string p = "rate_limits[0].";
  EXPECT_TRUE(Accepts(rule("limit: {requests: 1}")));
  EXPECT_TRUE(Accepts(rule("limit: {requests: 1000000000, per: 24h, burst: 1000000000}")));
  EXPECT_TRUE(
      RejectsOnly(with_routes("rate_limits: [{limit: {requests: 1}}]\n"), p + "name", "required"));
  EXPECT_TRUE(RejectsOnly(rule("algorithm: token_bucket"), p + "limit", "required"));
  EXPECT_TRUE(RejectsOnly(rule("limit: {per: 1s}"), p + "limit.requests", "required"));
  EXPECT_TRUE(RejectsOnly(rule("limit: {requests: 0}"), p + "limit.requests",
                          "must be 1..1000000000, got 0"));
  EXPECT_TRUE(RejectsOnly(rule("limit: {requests: 1000000001}"), p + "limit.requests",
                          "must be 1..1000000000"));
  EXPECT_TRUE(RejectsOnly(rule("limit: {requests: 1, per: 0ms}"), p + "limit.per",
                          "must be 1ms..24h, got 0ms"));
  EXPECT_TRUE(RejectsOnly(rule("limit: {requests: 1, per: 25h}"), p + "limit.per",
                          "must be 1ms..24h, got 25h"));
  EXPECT_TRUE(RejectsOnly(rule("limit: {requests: 1, burst: 0}"), p + "limit.burst",
                          "must be 1..1000000000, got 0"));
  EXPECT_TRUE(
      RejectsOnly(rule("limit: {requests: 1, rate: 1}"), p + "limit.rate", "unknown key 'rate'"));
  EXPECT_TRUE(RejectsOnly(rule("limit: {requests: 1}, algorithm: gcra"), p + "algorithm",
                          "must be token_bucket, sliding_window or concurrency, got 'gcra'"));
  EXPECT_TRUE(RejectsOnly(rule("limit: {requests: 1}, scope: global"), p + "scope",
                          "must be node or cluster, got 'global'"));
  EXPECT_TRUE(RejectsOnly(rule("limit: {requests: 1}, mode: log"), p + "mode",
                          "must be enforce or shadow, got 'log'"));
  EXPECT_TRUE(RejectsOnly(rule("limit: {requests: 1}, max_keys: 0"), p + "max_keys",
                          "must be 1..10000000, got 0"));
  EXPECT_TRUE(Accepts(rule("limit: {requests: 1}, max_keys: 10000000")));
  EXPECT_TRUE(RejectsOnly(rule("limit: {requests: 1}, max_keys: 10000001"), p + "max_keys",
                          "must be 1..10000000"));
  // Names are unique.
  LoadResult dup = load_with(with_routes(
      "rate_limits:\n  - {name: a, limit: {requests: 1}}\n  - {name: a, limit: {requests: 1}}\n"));
  EXPECT_TRUE(
      HasError(dup, 10, "rate_limits[1].name", "duplicate rate limit name 'a' (first at line 9)"));
  EXPECT_EQ(dup.errors.size(), 1u) << dump(dup);
}

TEST(Governance, RateLimitAlgorithmRules) {
  auto rule = [](std::string_view fields) {
    return with_routes("rate_limits:\n  - {name: r, " + std::string(fields) + "}\n");
  };
  const std::string p = "rate_limits[0].";
  EXPECT_TRUE(RejectsOnly(rule("algorithm: sliding_window, limit: {requests: 5, burst: 2}"),
                          p + "limit.burst", "only used with algorithm token_bucket"));
  EXPECT_TRUE(RejectsOnly(rule("algorithm: concurrency, limit: {requests: 5, burst: 2}"),
                          p + "limit.burst", "only used with algorithm token_bucket"));
  EXPECT_TRUE(RejectsOnly(rule("algorithm: concurrency, limit: {requests: 5, per: 1s}"),
                          p + "limit.per", "not used by algorithm concurrency"));
  // Whatever the value: a key the algorithm does not use is one error, not two.
  EXPECT_TRUE(RejectsOnly(rule("algorithm: concurrency, limit: {requests: 5, per: 0s}"),
                          p + "limit.per", "not used by algorithm concurrency"));
  EXPECT_TRUE(RejectsOnly(rule("algorithm: sliding_window, limit: {requests: 5, burst: 0}"),
                          p + "limit.burst", "only used with algorithm token_bucket"));
  EXPECT_TRUE(Accepts(rule("algorithm: concurrency, limit: {requests: 5}")));
  // An invalid algorithm is reported once; checks that depend on it are not guessed at.
  EXPECT_TRUE(RejectsOnly(rule("algorithm: leaky, limit: {requests: 5, burst: 2, per: 1s}"),
                          p + "algorithm", "must be token_bucket"));
  // Cluster scope needs redis, and concurrency is node scope only.
  EXPECT_TRUE(RejectsOnly(rule("scope: cluster, limit: {requests: 5}"), p + "scope",
                          "scope cluster requires the top-level 'redis' section"));
  EXPECT_TRUE(
      Accepts(rule("scope: cluster, limit: {requests: 5}") + "redis: {address: 127.0.0.1:6379}\n"));
  EXPECT_TRUE(Accepts(rule("scope: node, limit: {requests: 5}")));
  EXPECT_TRUE(RejectsOnly(rule("scope: cluster, algorithm: concurrency, limit: {requests: 5}") +
                              "redis: {address: 127.0.0.1:6379}\n",
                          p + "scope", "concurrency limits are node scope only"));
  EXPECT_TRUE(RejectsOnly(rule("scope: cluster, algorithm: concurrency, limit: {requests: 5}"),
                          p + "scope", "concurrency limits are node scope only"));
  // A redis section that is itself invalid still counts as present: one error, not two.
  EXPECT_TRUE(RejectsOnly(rule("scope: cluster, limit: {requests: 5}") + "redis: {timeout: 1s}\n",
                          "redis.address", "required"));
}

TEST(Governance, RateLimitMatchAndKey) {
  auto rule = [](std::string_view fields) {
    return with_routes("rate_limits:\n  - {name: r, limit: {requests: 1}, " + std::string(fields) +
                       "}\n");
  };
  const std::string p = "rate_limits[0].";
  EXPECT_TRUE(RejectsOnly(rule("match: {routes: [accounts-apj]}"), p + "match.routes[0]",
                          "no route named 'accounts-apj' (did you mean 'accounts-api'?)"));
  EXPECT_TRUE(RejectsOnly(rule("match: {services: [pay, payments]}"), p + "match.services[0]",
                          "no service named 'pay'"));
  EXPECT_TRUE(RejectsOnly(rule("match: {routes: []}"), p + "match.routes",
                          "must not be empty (leave it out to match every route)"));
  EXPECT_TRUE(RejectsOnly(rule("match: {services: }"), p + "match.services",
                          "must not be empty (leave it out to match every service)"));
  EXPECT_TRUE(RejectsOnly(rule("match: {route: [pay]}"), p + "match.route",
                          "unknown key 'route' (did you mean 'routes'?)"));
  EXPECT_TRUE(RejectsOnly(rule("match: {routes: pay}"), p + "match.routes", "expected a list"));
  EXPECT_TRUE(Accepts(rule("key: []")));
  EXPECT_TRUE(Accepts(rule("key: [client_ip, route, service, method, header:a, query:b]")));
  EXPECT_TRUE(RejectsOnly(rule("key: [cookie:x]"), p + "key[0]",
                          "must be client_ip, route, service, method, header:NAME or query:NAME, "
                          "got 'cookie:x'"));
  EXPECT_TRUE(
      RejectsOnly(rule("key: [route, clientip]"), p + "key[1]", "(did you mean 'client_ip'?)"));
  EXPECT_TRUE(RejectsOnly(rule("key: ['header:']"), p + "key[0]", "must be client_ip"));
  EXPECT_TRUE(RejectsOnly(rule("key: ['header:a b']"), p + "key[0]", "must be client_ip"));
  EXPECT_TRUE(RejectsOnly(rule("key: ['query:a=b']"), p + "key[0]", "must be client_ip"));
  EXPECT_TRUE(RejectsOnly(rule("key: [route, route]"), p + "key[1]", "duplicate key part 'route'"));
  // Header names are case-insensitive; query parameter names are not.
  EXPECT_TRUE(RejectsOnly(rule("key: [header:X-A, header:x-a]"), p + "key[1]",
                          "duplicate key part 'header:x-a'"));
  EXPECT_TRUE(Accepts(rule("key: [query:A, query:a]")));
  EXPECT_TRUE(RejectsOnly(rule("key: client_ip"), p + "key", "expected a list"));
}

TEST(Governance, RateLimitOverrides) {
  auto rule = [](std::string_view fields) {
    return with_routes("rate_limits:\n  - {name: r, limit: {requests: 1}, " + std::string(fields) +
                       "}\n");
  };
  const std::string p = "rate_limits[0].overrides";
  EXPECT_TRUE(Accepts(rule("key: [header:x-app], overrides: []")));
  EXPECT_TRUE(Accepts(rule("key: [], overrides: []")));
  EXPECT_TRUE(RejectsOnly(rule("overrides: [{key: a, limit: {requests: 2}}]"), p,
                          "overrides need a 'key' on the rule"));
  EXPECT_TRUE(RejectsOnly(rule("key: [client_ip, route], overrides: [{key: 10.0.0.1, limit: "
                               "{requests: 2}}]"),
                          p + "[0].key",
                          "'10.0.0.1' has 1 value(s) but the rule's key has 2 (client_ip|route); "
                          "join the values with '|'"));
  EXPECT_TRUE(RejectsOnly(rule("key: [header:x-app], overrides: [{key: 'a|b', limit: "
                               "{requests: 2}}]"),
                          p + "[0].key", "'a|b' has 2 value(s) but the rule's key has 1"));
  // Empty values are values: a header sent with an empty value.
  EXPECT_TRUE(
      Accepts(rule("key: [header:x-app, method], overrides: [{key: '|GET', limit: "
                   "{requests: 2}}]")));
  EXPECT_TRUE(RejectsOnly(rule("key: [header:x-app, route], overrides: [{key: 'vip|acounts-api', "
                               "limit: {requests: 2}}]"),
                          p + "[0].key",
                          "value 2 of 'vip|acounts-api': no route named "
                          "'acounts-api' (did you mean 'accounts-api'?)"));
  EXPECT_TRUE(RejectsOnly(rule("key: [service], overrides: [{key: 'accounts-api', limit: "
                               "{requests: 2}}]"),
                          p + "[0].key", "value 1 of 'accounts-api': no service named"));
  EXPECT_TRUE(RejectsOnly(rule("key: [client_ip], overrides: [{key: 'localhost', limit: "
                               "{requests: 2}}]"),
                          p + "[0].key", "expected an IP address, got 'localhost'"));
  EXPECT_TRUE(RejectsOnly(rule("key: [client_ip], overrides: [{key: '2001:DB8:0::1', limit: "
                               "{requests: 2}}]"),
                          p + "[0].key", "write the address as '2001:db8::1'"));
  EXPECT_TRUE(
      Accepts(rule("key: [client_ip], overrides: [{key: '10.1.2.3', limit: "
                   "{requests: 2}}, {key: '::1', limit: {requests: 2}}]")));
  LoadResult dup = load_with(with_routes(R"(rate_limits:
  - name: r
    key: [header:x-app]
    limit: {requests: 1}
    overrides:
      - {key: vip, limit: {requests: 2}}
      - {key: vip, limit: {requests: 3}}
)"));
  EXPECT_TRUE(HasError(dup, 14, "rate_limits[0].overrides[1].key",
                       "duplicate override key 'vip' (first at line 13)"));
  EXPECT_EQ(dup.errors.size(), 1u) << dump(dup);
  EXPECT_TRUE(RejectsOnly(rule("key: [method], overrides: [{limit: {requests: 2}}]"), p + "[0].key",
                          "required"));
  EXPECT_TRUE(
      RejectsOnly(rule("key: [method], overrides: [{key: GET}]"), p + "[0].limit", "required"));
  EXPECT_TRUE(RejectsOnly(rule("key: [method], overrides: [{key: GET, limit: {per: 1s}}]"),
                          p + "[0].limit.requests", "required"));
  // An override's limit follows the same algorithm rules as the rule's.
  EXPECT_TRUE(RejectsOnly(rule("key: [method], algorithm: sliding_window, overrides: [{key: GET, "
                               "limit: {requests: 2, burst: 3}}]"),
                          p + "[0].limit.burst", "only used with algorithm token_bucket"));
  EXPECT_TRUE(RejectsOnly(rule("key: [method], algorithm: concurrency, overrides: [{key: GET, "
                               "limit: {requests: 2, per: 1s}}]"),
                          p + "[0].limit.per", "not used by algorithm concurrency"));
}

TEST(Governance, RedisRules) {
  EXPECT_TRUE(Accepts("redis: {address: localhost:6379}\n"));
  EXPECT_TRUE(Accepts("redis: {address: '[::1]:6379', timeout: 1ms, gateways: 10000}\n"));
  EXPECT_TRUE(RejectsOnly("redis: {timeout: 20ms}\n", "redis.address", "required"));
  EXPECT_TRUE(RejectsOnly("redis: {address: redis}\n", "redis.address", "expected host:port"));
  EXPECT_TRUE(
      RejectsOnly("redis: {address: 'redis:0'}\n", "redis.address", "port must be 1..65535"));
  EXPECT_TRUE(Accepts("redis: {address: 127.0.0.1:6379, timeout: 10s}\n"));
  EXPECT_TRUE(RejectsOnly("redis: {address: 127.0.0.1:6379, timeout: 11s}\n", "redis.timeout",
                          "must be 1ms..10s, got 11s"));
  EXPECT_TRUE(RejectsOnly("redis: {address: 127.0.0.1:6379, timeout: 500us}\n", "redis.timeout",
                          "must be 1ms..10s, got 500us"));
  EXPECT_TRUE(RejectsOnly("redis: {address: 127.0.0.1:6379, on_error: fail}\n", "redis.on_error",
                          "must be local_fallback, allow or deny, got 'fail'"));
  EXPECT_TRUE(RejectsOnly("redis: {address: 127.0.0.1:6379, key_prefix: 'a b'}\n",
                          "redis.key_prefix", "without spaces or control characters"));
  EXPECT_TRUE(Accepts("redis: {address: 127.0.0.1:6379, key_prefix: ''}\n"));
  EXPECT_TRUE(RejectsOnly("redis: {address: 127.0.0.1:6379, gateways: 10001}\n", "redis.gateways",
                          "must be 0..10000, got 10001"));
  EXPECT_TRUE(RejectsOnly("redis: {address: 127.0.0.1:6379, password: x}\n", "redis.password",
                          "unknown key 'password'"));
}

TEST(Governance, OverloadRules) {
  EXPECT_TRUE(Accepts("overload: {max_in_flight: 10000000}\n"));
  EXPECT_TRUE(RejectsOnly("overload: {max_in_flight: 10000001}\n", "overload.max_in_flight",
                          "must be 0..10000000"));
  EXPECT_TRUE(Accepts("overload: {reserve: 0}\n"));
  EXPECT_TRUE(Accepts("overload: {reserve: 0.9}\n"));
  EXPECT_TRUE(
      RejectsOnly("overload: {reserve: 0.91}\n", "overload.reserve", "must be 0..0.9, got 0.91"));
  EXPECT_TRUE(RejectsOnly("overload: {mode: off}\n", "overload.mode", "must be enforce or shadow"));
  EXPECT_TRUE(RejectsOnly("overload: {priority_key: client_ip, priorities: [a]}\n",
                          "overload.priority_key",
                          "must be header:NAME or query:NAME, got 'client_ip'"));
  EXPECT_TRUE(Accepts("overload: {priority_key: query:ch, priorities: [a]}\n"));
  EXPECT_TRUE(RejectsOnly("overload: {priority_key: header:x-ch}\n", "overload.priorities",
                          "required with priority_key"));
  EXPECT_TRUE(RejectsOnly("overload: {priorities: [a, b]}\n", "overload.priority_key",
                          "required with priorities"));
  EXPECT_TRUE(RejectsOnly("overload: {priority_key: header:x, priorities: []}\n",
                          "overload.priorities", "must name at least one priority class"));
  EXPECT_TRUE(RejectsOnly("overload: {priority_key: header:x, priorities: [a, 'b c']}\n",
                          "overload.priorities[1]", "may only contain"));
  LoadResult dup = load_with(
      "overload:\n  priority_key: header:x\n  priorities:\n    - a\n"
      "    - b\n    - a\n");
  EXPECT_TRUE(
      HasError(dup, 7, "overload.priorities[2]", "duplicate priority name 'a' (first at line 5)"));
  EXPECT_EQ(dup.errors.size(), 1u) << dump(dup);
  std::string sixteen = "[p0";
  for (int i = 1; i < 16; ++i) sixteen += ", p" + std::to_string(i);
  EXPECT_TRUE(Accepts("overload: {priority_key: header:x, priorities: " + sixteen + "]}\n"));
  EXPECT_TRUE(RejectsOnly("overload: {priority_key: header:x, priorities: " + sixteen + ", p16]}\n",
                          "overload.priorities", "at most 16 priority classes, got 17"));
  // default_priority: the lowest class unless named; the name must be one of the classes.
  LoadResult last = load_with("overload: {priority_key: header:x, priorities: [a, b, c]}\n");
  ASSERT_TRUE(last.ok()) << dump(last);
  EXPECT_EQ(last.config->overload.default_priority, 2u);
  LoadResult first =
      load_with("overload: {priority_key: header:x, priorities: [a, b, c], default_priority: a}\n");
  ASSERT_TRUE(first.ok()) << dump(first);
  EXPECT_EQ(first.config->overload.default_priority, 0u);
  EXPECT_TRUE(RejectsOnly(
      "overload: {priority_key: header:x, priorities: [payment, web], default_priority: paymnt}\n",
      "overload.default_priority",
      "must be one of priorities (payment, web), got 'paymnt' (did you mean 'payment'?)"));
  EXPECT_TRUE(RejectsOnly("overload: {default_priority: a}\n", "overload.default_priority",
                          "only used with priorities"));
}

TEST(Governance, AllErrorsAtOnceWithLinesAndPaths) {
  LoadResult r = load(R"(
listeners: [{name: public, address: 127.0.0.1:8080}]
services:
  - name: a
    endpoints: [{address: 10.0.0.1:80}]
    health_check: {interval: 1s, timeout: 2s}
    circuit_breaker:
      error_ratio: 2
    fallback: {status: 700}
routes: [{name: r, service: a}]
rate_limits:
  - name: x
    match: {routes: [q]}
    limit: {requests: 0}
    scope: cluster
overload:
  reserve: 1
)");
  EXPECT_FALSE(r.config);
  EXPECT_TRUE(
      HasError(r, 5, "services[0].health_check.timeout", "must be at most interval (1s), got 2s"));
  EXPECT_TRUE(HasError(r, 7, "services[0].circuit_breaker.error_ratio",
                       "must be > 0 and at most 1, got 2"));
  EXPECT_TRUE(HasError(r, 8, "services[0].fallback.status", "must be 200..599, got 700"));
  EXPECT_TRUE(HasError(r, 12, "rate_limits[0].match.routes[0]", "no route named 'q'"));
  EXPECT_TRUE(HasError(r, 13, "rate_limits[0].limit.requests", "must be 1..1000000000, got 0"));
  EXPECT_TRUE(HasError(r, 14, "rate_limits[0].scope",
                       "scope cluster requires the top-level 'redis' section"));
  EXPECT_TRUE(HasError(r, 16, "overload.reserve", "must be 0..0.9, got 1"));
  EXPECT_EQ(r.errors.size(), 7u) << dump(r);
  EXPECT_EQ(r.errors[4].to_string(),
            "test.yaml:13: rate_limits[0].limit.requests: must be 1..1000000000, got 0");
}

TEST(ToJson, GovernanceRoundTrips) {
  std::string json = ExpectRoundTrip(load(kGovernanceExample));
  ASSERT_FALSE(json.empty());
  auto j = nlohmann::json::parse(json);
  const auto& s = j["services"][0];
  EXPECT_EQ(s["health_check"]["path"], "/healthz?deep=1");
  EXPECT_EQ(s["health_check"]["host"], "accounts.internal:8080");
  EXPECT_EQ(s["health_check"]["jitter"], "250ms");
  EXPECT_EQ(s["health_check"]["unhealthy_threshold"], 4);
  EXPECT_EQ(s["outlier_detection"]["max_ejection_time"], "2m");
  EXPECT_EQ(s["outlier_detection"]["max_ejection_percent"], 34);
  EXPECT_EQ(s["circuit_breaker"]["error_ratio"], 0.25);
  EXPECT_EQ(s["circuit_breaker"]["max_open_duration"], "45s");
  EXPECT_EQ(s["circuit_breaker"]["max_pending"], 120);
  EXPECT_EQ(s["fallback"]["body"], R"({"code":"DEGRADED"})");
  EXPECT_EQ(s["fallback"]["content_type"], "application/problem+json");
  EXPECT_EQ(s["adaptive_concurrency"]["tolerance"], 2.5);
  EXPECT_EQ(s["adaptive_concurrency"]["mode"], "shadow");
  EXPECT_FALSE(s["adaptive_concurrency"].contains("backoff"));
  const auto& aimd = j["services"][1]["adaptive_concurrency"];
  EXPECT_EQ(aimd["algorithm"], "aimd");
  EXPECT_EQ(aimd["backoff"], 0.75);
  EXPECT_EQ(aimd["latency_threshold"], "300ms");
  EXPECT_FALSE(aimd.contains("tolerance"));
  EXPECT_FALSE(j["services"][1].contains("health_check"));

  const auto& app = j["rate_limits"][0];
  EXPECT_EQ(app["match"]["routes"], nlohmann::json::parse(R"(["pay","accounts-api"])"));
  EXPECT_EQ(app["key"], nlohmann::json::parse(R"(["header:x-app-id","route"])"));
  EXPECT_EQ(app["limit"], nlohmann::json::parse(R"({"requests":100,"per":"1s","burst":20})"));
  EXPECT_EQ(app["scope"], "cluster");
  // burst 0 is shown as the value it takes effect as: the limit's requests.
  EXPECT_EQ(
      app["overrides"][1],
      nlohmann::json::parse(R"({"key":"batch|pay","limit":{"requests":5,"per":"1m","burst":5}})"));
  EXPECT_EQ(j["rate_limits"][1]["limit"], nlohmann::json::parse(R"({"requests":50,"per":"10s"})"));
  EXPECT_EQ(j["rate_limits"][1]["max_keys"], 100000);
  EXPECT_EQ(j["rate_limits"][2]["limit"], nlohmann::json::parse(R"({"requests":64})"));
  EXPECT_EQ(j["rate_limits"][2]["key"], nlohmann::json::array());
  EXPECT_EQ(j["redis"]["address"], "redis.internal:6380");
  EXPECT_EQ(j["redis"]["on_error"], "deny");
  EXPECT_EQ(j["redis"]["gateways"], 4);
  EXPECT_EQ(j["overload"]["priority_key"], "header:x-channel");
  EXPECT_EQ(j["overload"]["default_priority"], "mobile");
  EXPECT_EQ(j["overload"]["reserve"], 0.4);
  EXPECT_EQ(j["overload"]["mode"], "shadow");
}

TEST(ToJson, GovernanceSectionsLeftOutStayOut) {
  LoadResult r = load_with(service_with("retry: {attempts: 1}"));
  ASSERT_TRUE(r.ok()) << dump(r);
  auto j = nlohmann::json::parse(to_json(*r.config));
  for (const char* key : {"health_check", "outlier_detection", "circuit_breaker", "fallback",
                          "adaptive_concurrency"}) {
    EXPECT_FALSE(j["services"][0].contains(key)) << key;
  }
  EXPECT_EQ(j["rate_limits"], nlohmann::json::array());
  EXPECT_FALSE(j.contains("redis"));
  EXPECT_FALSE(j.contains("overload"));
}

// ---- dual city: locality per service, unit (shard) routing ----

constexpr std::string_view kDualCityExample = R"(
node: {id: gw-a1, city: a, zone: a1}
listeners: [{name: public, address: 127.0.0.1:8080}]
services:
  - name: accounts
    kind: unit
    endpoints:
      - {address: 127.0.0.1:9101, city: a, zone: a1}
      - {address: 127.0.0.1:9201, city: b, zone: b1}
    locality: {prefer: same_zone, failover_threshold: 0.5, panic_threshold: 0}
  - name: catalog
    endpoints: [{address: 127.0.0.1:9301, city: a}]
    locality: {prefer: none, failover_threshold: 1, panic_threshold: 0.9}
  - name: payments
    endpoints: [{address: 127.0.0.1:9401}]
routes:
  - {name: accounts-api, match: {path_prefix: /api/accounts}, service: accounts}
units:
  key: header:X-Customer-Id
  shards: 1000
  owners:
    b: ["500-749", "750-999"]
    a: "0-99, 100-199,200 - 499"
  peers: {b: gw-b.internal:8180, a: "127.0.0.1:8080"}
  protect: false
  hold_timeout: 500ms
  peer_timeouts: {connect: 200ms, request: 3s}
)";

TEST(DualCity, FullExampleLandsInTheStructs) {
  LoadResult r = load(kDualCityExample);
  ASSERT_TRUE(r.ok()) << dump(r);
  const GatewayConfig& c = *r.config;
  ASSERT_EQ(c.services.size(), 3u);

  const Locality& acc = c.services[0].locality;
  EXPECT_EQ(acc.prefer, Locality::Prefer::kSameZone);
  EXPECT_EQ(acc.failover_threshold, 0.5);
  EXPECT_EQ(acc.panic_threshold, 0.0);
  EXPECT_EQ(c.services[0].kind, ServiceKind::kUnit);
  const Locality& cat = c.services[1].locality;
  EXPECT_EQ(cat.prefer, Locality::Prefer::kNone);
  EXPECT_EQ(cat.failover_threshold, 1.0);
  EXPECT_EQ(cat.panic_threshold, 0.9);
  EXPECT_EQ(c.services[2].locality, Locality{});  // no section: the defaults

  const Units& u = c.units;
  EXPECT_TRUE(u.enabled);
  EXPECT_EQ(u.key.kind, RequestInput::Kind::kHeader);
  EXPECT_EQ(u.key.name, "x-customer-id");  // header names lower-cased
  EXPECT_EQ(u.shards, 1000u);
  // Owners and peers sorted by city; each city's ranges sorted and merged.
  ASSERT_EQ(u.owners.size(), 2u);
  EXPECT_EQ(u.owners[0], (UnitOwner{"a", {{0, 499}}}));
  EXPECT_EQ(u.owners[1], (UnitOwner{"b", {{500, 999}}}));
  ASSERT_EQ(u.peers.size(), 2u);
  EXPECT_EQ(u.peers[0].city, "a");
  EXPECT_EQ(u.peers[0].address.to_string(), "127.0.0.1:8080");
  EXPECT_EQ(u.peers[1].city, "b");
  EXPECT_EQ(u.peers[1].address.host, "gw-b.internal");  // names allowed, as for endpoints
  EXPECT_EQ(u.peers[1].address.port, 8180);
  EXPECT_FALSE(u.protect);
  EXPECT_EQ(u.hold_timeout, 500ms);
  EXPECT_EQ(u.peer_timeouts.connect, 200ms);
  EXPECT_EQ(u.peer_timeouts.request, 3s);
  EXPECT_EQ(u.peer_timeouts.idle, Timeouts{}.idle);
}

TEST(DualCity, Defaults) {
  LoadResult r = load_with(
      "node: {city: a}\n"
      "units: {key: query:Cid, owners: {a: 0-99}}\n" +
      service_with("locality: {}") + "  - {name: t, endpoints: [{address: 10.0.0.2:80}]}\n");
  ASSERT_TRUE(r.ok()) << dump(r);
  const Units& u = r.config->units;
  Units d;  // the defaults as declared in config.h
  EXPECT_TRUE(u.enabled);
  EXPECT_EQ(u.key.kind, RequestInput::Kind::kQuery);
  EXPECT_EQ(u.key.name, "Cid");  // query names keep their case
  EXPECT_EQ(u.shards, 100u);
  EXPECT_EQ(u.owners, (std::vector<UnitOwner>{{"a", {{0, 99}}}}));
  EXPECT_TRUE(u.peers.empty());
  EXPECT_TRUE(u.protect);
  EXPECT_EQ(u.hold_timeout, 2s);
  EXPECT_EQ(u.peer_timeouts, d.peer_timeouts);
  EXPECT_EQ(u.peer_timeouts.connect, 1s);
  EXPECT_EQ(u.peer_timeouts.request, 5s);

  // An empty locality section and an absent one both mean the defaults (which apply either way,
  // so GET /config always shows them and loading that back gives the same struct).
  EXPECT_EQ(r.config->services[0].locality, Locality{});
  EXPECT_EQ(r.config->services[1].locality, Locality{});
  EXPECT_EQ(Locality{}.prefer, Locality::Prefer::kSameCity);
  EXPECT_EQ(Locality{}.failover_threshold, 0.7);
  EXPECT_EQ(Locality{}.panic_threshold, 0.25);

  LoadResult none = load_with(service_with("kind: global"));
  ASSERT_TRUE(none.ok()) << dump(none);
  EXPECT_FALSE(none.config->units.enabled);
  EXPECT_EQ(none.config->units, Units{});
}

// node.city a, then a units section whose keys start on line 4 (line 1 is the listener).
LoadResult load_units(std::string_view body) {
  return load_with("node: {city: a}\nunits:\n" + std::string(body));
}

// Exactly one error, with this line, path and message (the whole message).
::testing::AssertionResult OnlyError(const LoadResult& r, int line, std::string_view path,
                                     std::string_view message) {
  if (r.errors.size() == 1 && r.errors[0].line == line && r.errors[0].path == path &&
      r.errors[0].message == message && !r.config)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "wanted only " << line << ": " << path << ": " << message << "\ngot\n"
         << dump(r);
}

TEST(DualCity, UnitKeySyntax) {
  auto key = [](std::string_view k) {
    return load_units("  key: " + std::string(k) + "\n  owners: {a: 0-99}\n");
  };
  LoadResult header = key("header:X-Tenant");
  ASSERT_TRUE(header.ok()) << dump(header);
  EXPECT_EQ(header.config->units.key.name, "x-tenant");
  LoadResult segment = key("path_segment:2");
  ASSERT_TRUE(segment.ok()) << dump(segment);
  EXPECT_EQ(segment.config->units.key.kind, RequestInput::Kind::kPathSegment);
  EXPECT_EQ(segment.config->units.key.segment, 2u);
  EXPECT_TRUE(segment.config->units.key.name.empty());
  EXPECT_TRUE(key("path_segment:1000").ok());

  const std::string kSyntax = "must be header:NAME, query:NAME or path_segment:N, got ";
  EXPECT_TRUE(OnlyError(key("customer"), 4, "units.key", kSyntax + "'customer'"));
  EXPECT_TRUE(OnlyError(key("'header:'"), 4, "units.key", kSyntax + "'header:'"));
  EXPECT_TRUE(OnlyError(key("'header:x y'"), 4, "units.key", kSyntax + "'header:x y'"));
  EXPECT_TRUE(OnlyError(key("query:a=b"), 4, "units.key", kSyntax + "'query:a=b'"));
  EXPECT_TRUE(OnlyError(key("cookie:sid"), 4, "units.key", kSyntax + "'cookie:sid'"));
  EXPECT_TRUE(OnlyError(key("path_segment:x"), 4, "units.key", kSyntax + "'path_segment:x'"));
  EXPECT_TRUE(OnlyError(key("path_segment:-1"), 4, "units.key", kSyntax + "'path_segment:-1'"));
  const std::string kSegment =
      "path_segment must be 1..1000 (segments count from 1: in /users/42, segment 2 is 42), got ";
  EXPECT_TRUE(OnlyError(key("path_segment:0"), 4, "units.key", kSegment + "0"));
  EXPECT_TRUE(OnlyError(key("path_segment:1001"), 4, "units.key", kSegment + "1001"));
  EXPECT_TRUE(OnlyError(key("path_segment:99999999999999999999999"), 4, "units.key",
                        kSegment + "99999999999999999999999"));
  EXPECT_TRUE(OnlyError(load_units("  owners: {a: 0-99}\n"), 3, "units.key", "required"));
}

TEST(DualCity, Shards) {
  auto shards = [](std::string_view n, std::string_view owners) {
    return load_units("  key: header:x\n  shards: " + std::string(n) + "\n  owners: {a: \"" +
                      std::string(owners) + "\"}\n");
  };
  LoadResult one = shards("1", "0");
  ASSERT_TRUE(one.ok()) << dump(one);
  EXPECT_EQ(one.config->units.owners[0].ranges, (std::vector<ShardRange>{{0, 0}}));
  EXPECT_TRUE(shards("100000", "0-99999").ok());
  // Without a valid shard count, ranges are not judged against it (no second error).
  EXPECT_TRUE(OnlyError(shards("0", "0-99"), 5, "units.shards", "must be 1..100000, got 0"));
  EXPECT_TRUE(
      OnlyError(shards("100001", "0-99"), 5, "units.shards", "must be 1..100000, got 100001"));
  EXPECT_TRUE(
      OnlyError(shards("many", "0-99"), 5, "units.shards", "expected a number, got 'many'"));
}

TEST(DualCity, OwnersMustCoverEveryShardOnce) {
  auto owners = [](std::string_view o) {
    return load_units("  key: header:x\n  owners:\n" + std::string(o));
  };
  // Line 5 is "owners:", its cities follow.
  EXPECT_TRUE(OnlyError(owners("    a: 0-49\n    b: 40-99\n"), 7, "units.owners.b",
                        "shards 40-49 owned by both a and b"));
  EXPECT_TRUE(OnlyError(owners("    a: 0-42\n    b: 42-99\n"), 7, "units.owners.b",
                        "shard 42 owned by both a and b"));
  // The overlap is blamed on the later line, even when its range starts first.
  EXPECT_TRUE(OnlyError(owners("    a: 10-99\n    b: 0-10\n"), 7, "units.owners.b",
                        "shard 10 owned by both a and b"));
  EXPECT_TRUE(OnlyError(owners("    b: 10-99\n    a: 0-10\n"), 7, "units.owners.a",
                        "shard 10 owned by both b and a"));
  EXPECT_TRUE(OnlyError(owners("    a: 0-49, 40-45\n    b: 50-99\n"), 6, "units.owners.a",
                        "shards 40-45 listed twice for a"));
  EXPECT_TRUE(OnlyError(owners("    a: [\"0-49\", \"49\"]\n    b: 50-99\n"), 6, "units.owners.a[1]",
                        "shard 49 listed twice for a"));
  // Every overlap, each on the line that claims the shard a second time.
  LoadResult three = owners("    a: 0-99\n    b: 10-19\n    c: [\"30\", \"20-29\"]\n");
  EXPECT_TRUE(HasError(three, 7, "units.owners.b", "shards 10-19 owned by both a and b"));
  EXPECT_TRUE(HasError(three, 8, "units.owners.c[0]", "shard 30 owned by both a and c"));
  EXPECT_TRUE(HasError(three, 8, "units.owners.c[1]", "shards 20-29 owned by both a and c"));
  EXPECT_EQ(three.errors.size(), 3u) << dump(three);

  // Gaps: one error on units.owners naming every shard without an owner.
  EXPECT_TRUE(OnlyError(owners("    a: 0-49\n    b: 60-99\n"), 5, "units.owners",
                        "shards 50-59 have no owner"));
  EXPECT_TRUE(
      OnlyError(owners("    a: 0-49\n    b: 51-99\n"), 5, "units.owners", "shard 50 has no owner"));
  EXPECT_TRUE(OnlyError(owners("    a: 1-49, 52\n    b: 60-98\n"), 5, "units.owners",
                        "shards 0, 50-51, 53-59, 99 have no owner"));
  EXPECT_TRUE(OnlyError(load_units("  key: header:x\n  owners: {}\n"), 5, "units.owners",
                        "shards 0-99 have no owner"));
  std::string odd;
  for (int i = 0; i < 100; i += 2) odd += (odd.empty() ? "" : ", ") + std::to_string(i);
  EXPECT_TRUE(OnlyError(owners("    a: " + odd + "\n"), 5, "units.owners",
                        "shards 1, 3, 5, 7, 9, 11, 13, 15, 17, 19 and 40 more ranges have no "
                        "owner"));
  EXPECT_TRUE(OnlyError(load_units("  key: header:x\n"), 3, "units.owners", "required"));
}

TEST(DualCity, OwnerRanges) {
  auto owners = [](std::string_view o) {
    return load_units("  key: header:x\n  owners:\n" + std::string(o));
  };
  // Single shards, ranges, lists; blanks around commas and dashes; a city may own nothing.
  LoadResult r = owners(
      "    a: \"0-9, 20 - 29,42\"\n"
      "    b: [\"10-19\", 30-41, \"43-99\"]\n"
      "    c: []\n"
      "    d: \"\"\n");
  ASSERT_TRUE(r.ok()) << dump(r);
  const auto& o = r.config->units.owners;
  ASSERT_EQ(o.size(), 4u);
  EXPECT_EQ(o[0], (UnitOwner{"a", {{0, 9}, {20, 29}, {42, 42}}}));
  EXPECT_EQ(o[1], (UnitOwner{"b", {{10, 19}, {30, 41}, {43, 99}}}));
  EXPECT_EQ(o[2], (UnitOwner{"c", {}}));
  EXPECT_EQ(o[3], (UnitOwner{"d", {}}));
  // A city owning no shard, or this gateway's city not being an owner at all, is allowed.
  EXPECT_TRUE(load_with("node: {city: c}\nunits: {key: header:x, owners: {a: 0-99}}\n").ok());

  // Ranges within 0..shards-1 (the part inside still counts, so no gap is reported too).
  EXPECT_TRUE(OnlyError(owners("    a: 0-49\n    b: 50-100\n"), 7, "units.owners.b",
                        "range 50-100 is outside 0..99 (shards: 100)"));
  EXPECT_TRUE(OnlyError(owners("    a: 0-99, 100\n"), 6, "units.owners.a",
                        "shard 100 is outside 0..99 (shards: 100)"));
  EXPECT_TRUE(OnlyError(owners("    a: 0-99, 18446744073709551616\n"), 6, "units.owners.a",
                        "shard 18446744073709551616 is outside 0..99 (shards: 100)"));
  EXPECT_TRUE(OnlyError(owners("    a: 0-49, 99-50\n"), 6, "units.owners.a",
                        "range 99-50: first must be <= last"));
  // Parts that are not understood; no gap is reported alongside them.
  const std::string kRanges =
      " is not a shard or a range of shards (write ranges such as \"0-49\" or \"0-9, 20-29, 42\")";
  EXPECT_TRUE(
      OnlyError(owners("    a: 0-x\n    b: 50-99\n"), 6, "units.owners.a", "'0-x'" + kRanges));
  EXPECT_TRUE(OnlyError(owners("    a: \"0-9,,10-49\"\n"), 6, "units.owners.a", "''" + kRanges));
  EXPECT_TRUE(OnlyError(owners("    a: \"0-99,\"\n"), 6, "units.owners.a", "''" + kRanges));
  EXPECT_TRUE(OnlyError(owners("    a: \"-5\"\n"), 6, "units.owners.a", "'-5'" + kRanges));
  EXPECT_TRUE(OnlyError(owners("    a: 0-1-2\n"), 6, "units.owners.a", "'0-1-2'" + kRanges));
  EXPECT_TRUE(OnlyError(owners("    a: [0-99, [1]]\n"), 6, "units.owners.a[1]",
                        "expected a string, got a list"));
  EXPECT_TRUE(OnlyError(owners("    a: {first: 0}\n"), 6, "units.owners.a",
                        "expected shard ranges: a string such as \"0-49\" or \"0-9, 20-29, 42\", "
                        "or a list of such strings, got a mapping"));
  EXPECT_TRUE(OnlyError(owners("    a:\n"), 6, "units.owners.a",
                        "expected shard ranges: a string such as \"0-49\" or \"0-9, 20-29, 42\", "
                        "or a list of such strings, got null"));
  // Cities are names, once each.
  EXPECT_TRUE(OnlyError(owners("    a: 0-49\n    a: 50-99\n"), 7, "units.owners.a",
                        "duplicate city (first at line 6)"));
  EXPECT_TRUE(OnlyError(owners("    a: 0-49\n    b/2: 50-99\n"), 7, "units.owners.b/2",
                        "'b/2' may only contain letters, digits, '_', '.' and '-'"));
  // At most 254 cities (each owning one shard here).
  auto cities = [](int n) {
    std::string body = "  key: header:x\n  shards: " + std::to_string(n) + "\n  owners:\n";
    for (int i = 0; i < n; ++i)
      body += "    c" + std::to_string(i) + ": " + std::to_string(i) + "\n";
    return load_units(body);
  };
  EXPECT_TRUE(cities(254).ok()) << dump(cities(254));
  EXPECT_TRUE(OnlyError(cities(255), 6, "units.owners", "at most 254 cities, got 255"));
  EXPECT_TRUE(OnlyError(load_units("  key: header:x\n  owners: [a, b]\n"), 5, "units.owners",
                        "expected a mapping of city to shard ranges, such as {a: \"0-49\", b: "
                        "\"50-99\"}, got a list"));
}

TEST(DualCity, Peers) {
  auto peers = [](std::string_view p) {
    return load_units("  key: header:x\n  owners: {a: 0-49, b: 50-99}\n  peers:\n" +
                      std::string(p));
  };
  // Line 6 is "peers:".
  LoadResult ok = peers("    b: \"[::1]:8180\"\n    a: localhost:8080\n");
  ASSERT_TRUE(ok.ok()) << dump(ok);
  EXPECT_EQ(ok.config->units.peers[0].address.host, "localhost");
  EXPECT_EQ(ok.config->units.peers[1].address.host, "::1");
  EXPECT_TRUE(OnlyError(peers("    c: 127.0.0.1:8280\n"), 7, "units.peers.c",
                        "city 'c' is not in units.owners (a, b)"));
  EXPECT_TRUE(OnlyError(peers("    bb: 127.0.0.1:8280\n"), 7, "units.peers.bb",
                        "city 'bb' is not in units.owners (a, b) (did you mean 'b'?)"));
  EXPECT_TRUE(OnlyError(peers("    b: 127.0.0.1\n"), 7, "units.peers.b",
                        "expected host:port such as 127.0.0.1:8080 or [::1]:8080, got "
                        "'127.0.0.1'"));
  EXPECT_TRUE(OnlyError(peers("    b: 127.0.0.1:0\n"), 7, "units.peers.b",
                        "port must be 1..65535, got '127.0.0.1:0'"));
  EXPECT_TRUE(OnlyError(peers("    b: 127.0.0.1:8180\n    b: 127.0.0.1:8181\n"), 8, "units.peers.b",
                        "duplicate city (first at line 7)"));
  EXPECT_TRUE(OnlyError(peers("    - 127.0.0.1:8180\n"), 6, "units.peers",
                        "expected a mapping of city to gateway address, such as {a: "
                        "127.0.0.1:8080, b: 127.0.0.1:8180}, got a list"));
  LoadResult no_owners = load_units("  key: header:x\n  owners: {}\n  peers: {a: 127.0.0.1:1}\n");
  EXPECT_TRUE(HasError(no_owners, 6, "units.peers.a", "city 'a' is not in units.owners"));
  EXPECT_TRUE(HasError(no_owners, 5, "units.owners", "shards 0-99 have no owner"));
  EXPECT_EQ(no_owners.errors.size(), 2u) << dump(no_owners);
  // A city listed in owners with no shard (yet) may have a peer: run-time switches can move
  // shards to it.
  EXPECT_TRUE(load_units("  key: header:x\n  owners: {a: 0-99, b: []}\n"
                         "  peers: {b: 127.0.0.1:8180}\n")
                  .ok());
  // Owner cities that failed to load are not used to judge peers.
  LoadResult broken =
      load_units("  key: header:x\n  owners: {a: 0-99, b/1: 0}\n  peers: {b: 127.0.0.1:8180}\n");
  EXPECT_TRUE(OnlyError(broken, 5, "units.owners.b/1",
                        "'b/1' may only contain letters, digits, '_', '.' and '-'"));
}

TEST(DualCity, TimingBounds) {
  auto units = [](std::string_view extra) {
    return load_units("  key: header:x\n  owners: {a: 0-99}\n" + std::string(extra));
  };
  LoadResult zero = units("  hold_timeout: 0s\n");
  ASSERT_TRUE(zero.ok()) << dump(zero);
  EXPECT_EQ(zero.config->units.hold_timeout, 0s);
  EXPECT_TRUE(units("  hold_timeout: 60s\n").ok());
  EXPECT_TRUE(OnlyError(units("  hold_timeout: 61s\n"), 6, "units.hold_timeout",
                        "must be at most 1m, got 61s"));
  EXPECT_TRUE(OnlyError(units("  hold_timeout: 2\n"), 6, "units.hold_timeout",
                        "expected a duration such as 500ms, 2s or 1m, got '2'"));
  EXPECT_TRUE(units("  peer_timeouts: {connect: 1ns, request: 1h}\n").ok());
  EXPECT_TRUE(OnlyError(units("  peer_timeouts: {connect: 0s}\n"), 6, "units.peer_timeouts.connect",
                        "must be > 0 and at most 1h, got 0s"));
  EXPECT_TRUE(OnlyError(units("  peer_timeouts: {request: 61m}\n"), 6,
                        "units.peer_timeouts.request", "must be > 0 and at most 1h, got 61m"));
  EXPECT_TRUE(OnlyError(units("  peer_timeouts: {idle: 1s}\n"), 6, "units.peer_timeouts.idle",
                        "unknown key 'idle'"));
  EXPECT_TRUE(OnlyError(units("  protect: yes\n"), 6, "units.protect",
                        "expected true or false, got 'yes'"));
  EXPECT_TRUE(OnlyError(units("  shard: 10\n"), 6, "units.shard",
                        "unknown key 'shard' (did you mean 'shards'?)"));
  EXPECT_TRUE(OnlyError(load_with("node: {city: a}\nunits: on\n"), 3, "units",
                        "expected a mapping, got 'on'"));
}

TEST(DualCity, NodeCityRequiredWithUnits) {
  const std::string units = "units: {key: header:x, owners: {a: 0-99}}\n";
  EXPECT_TRUE(OnlyError(load_with(units), 2, "units", "node.city is required with units"));
  EXPECT_TRUE(OnlyError(load_with("node: {id: gw, city: ''}\n" + units), 3, "units",
                        "node.city is required with units"));
  // A node.city that is itself wrong is reported once, there.
  EXPECT_TRUE(OnlyError(load_with("node: {city: 'a b'}\n" + units), 2, "node.city",
                        "'a b' may only contain letters, digits, '_', '.' and '-'"));
  // An empty units section still needs key and owners, and node.city.
  LoadResult empty = load_with("units:\n");
  EXPECT_TRUE(HasError(empty, 2, "units.key", "required"));
  EXPECT_TRUE(HasError(empty, 2, "units.owners", "required"));
  EXPECT_TRUE(HasError(empty, 2, "units", "node.city is required with units"));
  EXPECT_EQ(empty.errors.size(), 3u) << dump(empty);
}

TEST(DualCity, LocalityBounds) {
  auto locality = [](std::string_view l) {
    return load_with(service_with("locality: " + std::string(l)));
  };
  // Line 5 holds the locality section.
  EXPECT_TRUE(locality("{prefer: same_city, failover_threshold: 1, panic_threshold: 0}").ok());
  EXPECT_TRUE(locality("{failover_threshold: 0.001, panic_threshold: 0.999}").ok());
  EXPECT_TRUE(OnlyError(locality("{failover_threshold: 0}"), 5,
                        "services[0].locality.failover_threshold",
                        "must be > 0 and at most 1, got 0"));
  EXPECT_TRUE(OnlyError(locality("{failover_threshold: 1.5}"), 5,
                        "services[0].locality.failover_threshold",
                        "must be > 0 and at most 1, got 1.5"));
  EXPECT_TRUE(OnlyError(locality("{failover_threshold: 70%}"), 5,
                        "services[0].locality.failover_threshold",
                        "expected a number such as 0.5, got '70%'"));
  EXPECT_TRUE(OnlyError(locality("{panic_threshold: 1}"), 5, "services[0].locality.panic_threshold",
                        "must be at least 0 and < 1, got 1"));
  EXPECT_TRUE(OnlyError(locality("{panic_threshold: -0.1}"), 5,
                        "services[0].locality.panic_threshold",
                        "must be at least 0 and < 1, got -0.1"));
  EXPECT_TRUE(OnlyError(locality("{prefer: same_citty}"), 5, "services[0].locality.prefer",
                        "must be none, same_city or same_zone, got 'same_citty' (did you mean "
                        "'same_city'?)"));
  EXPECT_TRUE(
      OnlyError(locality("{spill: 0.5}"), 5, "services[0].locality.spill", "unknown key 'spill'"));
  EXPECT_TRUE(OnlyError(locality("same_city"), 5, "services[0].locality",
                        "expected a mapping, got 'same_city'"));
  // Preferring a city or zone the gateway does not know is allowed: all endpoints are then
  // in one tier (docs/config.md).
  LoadResult no_city = locality("{prefer: same_zone}");
  ASSERT_TRUE(no_city.ok()) << dump(no_city);
  EXPECT_EQ(no_city.config->node.city, "");
}

TEST(DualCity, AllErrorsAtOnceWithLinesAndPaths) {
  LoadResult r = load(R"(
listeners: [{name: public, address: 127.0.0.1:8080}]
services:
  - name: a
    endpoints: [{address: 10.0.0.1:80}]
    kind: unit
    locality: {prefer: far, panic_threshold: 1}
units:
  key: path_segment:0
  shards: 100
  owners:
    a: 0-49
    b: 45-89
  peers: {c: 127.0.0.1:8280}
  hold_timeout: 2m
)");
  EXPECT_FALSE(r.config);
  EXPECT_TRUE(
      HasError(r, 6, "services[0].locality.prefer", "must be none, same_city or same_zone"));
  EXPECT_TRUE(HasError(r, 6, "services[0].locality.panic_threshold", "must be at least 0 and < 1"));
  EXPECT_TRUE(HasError(r, 7, "units", "node.city is required with units"));
  EXPECT_TRUE(HasError(r, 8, "units.key", "path_segment must be 1..1000"));
  EXPECT_TRUE(HasError(r, 12, "units.owners.b", "shards 45-49 owned by both a and b"));
  EXPECT_TRUE(HasError(r, 10, "units.owners", "shards 90-99 have no owner"));
  EXPECT_TRUE(HasError(r, 13, "units.peers.c", "city 'c' is not in units.owners (a, b)"));
  EXPECT_TRUE(HasError(r, 14, "units.hold_timeout", "must be at most 1m, got 2m"));
  EXPECT_EQ(r.errors.size(), 8u) << dump(r);
  EXPECT_EQ(r.errors[4].to_string(), "test.yaml:10: units.owners: shards 90-99 have no owner");
}

TEST(ToJson, DualCityRoundTrips) {
  std::string json = ExpectRoundTrip(load(kDualCityExample));
  ASSERT_FALSE(json.empty());

  auto j = nlohmann::json::parse(json);
  EXPECT_EQ(j["services"][0]["kind"], "unit");
  EXPECT_EQ(j["services"][0]["locality"],
            nlohmann::json::parse(
                R"({"prefer":"same_zone","failover_threshold":0.5,"panic_threshold":0.0})"));
  EXPECT_EQ(j["services"][1]["locality"]["prefer"], "none");
  // Always shown, with the values in effect, also for a service whose file has no locality.
  EXPECT_EQ(j["services"][2]["locality"],
            nlohmann::json::parse(
                R"({"prefer":"same_city","failover_threshold":0.7,"panic_threshold":0.25})"));
  EXPECT_EQ(j["units"], nlohmann::json::parse(R"({
    "key": "header:x-customer-id", "shards": 1000,
    "owners": {"a": "0-499", "b": "500-999"},
    "peers": {"a": "127.0.0.1:8080", "b": "gw-b.internal:8180"},
    "protect": false, "hold_timeout": "500ms",
    "peer_timeouts": {"connect": "200ms", "request": "3s"}})"));

  // Other key sources, cities owning nothing or scattered shards, and no peers.
  std::string other_json = ExpectRoundTrip(
      load_with("node: {city: c}\n"
                "units: {key: path_segment:3, owners: {a: '0-9, 20', b: '10-19, 21-99', c: []}, "
                "hold_timeout: 0s}\n"));
  ASSERT_FALSE(other_json.empty());
  auto ju = nlohmann::json::parse(other_json)["units"];
  EXPECT_EQ(ju["key"], "path_segment:3");
  EXPECT_EQ(ju["owners"], nlohmann::json::parse(R"({"a":"0-9, 20","b":"10-19, 21-99","c":""})"));
  EXPECT_EQ(ju["peers"], nlohmann::json::object());
  EXPECT_EQ(ju["hold_timeout"], "0s");
  LoadResult query = load_with("node: {city: a}\nunits: {key: query:Cid, owners: {a: 0-99}}\n");
  ASSERT_TRUE(query.ok()) << dump(query);
  EXPECT_EQ(nlohmann::json::parse(to_json(*query.config))["units"]["key"], "query:Cid");
}

TEST(ToJson, UnitsLeftOutStayOut) {
  LoadResult r = load_with(service_with("retry: {attempts: 1}"));
  ASSERT_TRUE(r.ok()) << dump(r);
  auto j = nlohmann::json::parse(to_json(*r.config));
  EXPECT_FALSE(j.contains("units"));
  EXPECT_TRUE(j["services"][0].contains("locality"));
}

// Every key of the file at a value other than its default: a field that to_json forgets loads
// back as its default, and SameConfig names it.
TEST(ToJson, EveryFieldRoundTrips) {
  ControlPlaneDir d;
  const std::filesystem::path admin_token = d.dir / "admin.token";
  std::ofstream(admin_token) << std::string(40, 'a') << "\n";
  ::chmod(admin_token.c_str(), 0600);
  std::string yaml = R"(node: {id: gw-b2, city: b, zone: b2}
workers: 3
io_backend: epoll
listeners:
  - {name: public, address: 127.0.0.1:18080}
  - {name: internal, address: "[::1]:18081"}
admin:
  address: 127.0.0.1:19901
  token_file: )" + admin_token.string() +
                     R"(
  allowed_hosts: [gw-b2.bank.example, "gw.bank.example:8443"]
limits:
  max_header_bytes: 32KiB
  max_uri_bytes: 4KiB
  max_body_bytes: 2MiB
  max_headers: 50
  header_timeout: 5s
  idle_timeout: 30s
  drain_timeout: 1500ms
  max_connections: 5000
  body_timeout: 7s
  min_body_rate: 1000
  request_buffer_bytes: 8KiB
  max_idle_upstream_bytes: 32MiB
http: {normalize_path: false, merge_slashes: false, escaped_slashes: unescape, path_parameters: keep}
access_log: {path: "off", format: json}
services:
  - name: accounts
    kind: unit
    endpoints:
      - {address: 127.0.0.1:9101, city: a, zone: a1, weight: 3}
      - {address: 127.0.0.1:9201, city: b, zone: b1, weight: 2}
    load_balancer: {policy: ring_hash, hash_on: query:cid}
    timeouts: {connect: 250ms, request: 2s, idle: 90s, total: 4s}
    retry: {attempts: 3, on: [timeout, 503], budget_percent: 30, min_retry_concurrency: 7,
            non_idempotent: true}
    max_idle_connections: 0
    health_check: {path: /ready, host: accounts.internal, interval: 3s, timeout: 1s,
                   jitter: 200ms, healthy_threshold: 4, unhealthy_threshold: 6}
    outlier_detection: {consecutive_errors: 9, base_ejection_time: 20s, max_ejection_time: 200s,
                        max_ejection_percent: 40}
    circuit_breaker: {window: 30s, min_requests: 50, error_ratio: 0.3, slow_call_duration: 2s,
                      slow_call_ratio: 0.6, open_duration: 7s, max_open_duration: 70s,
                      half_open_probes: 9, max_concurrent: 800, max_pending: 90}
    fallback: {status: 200, body: cached, content_type: text/plain}
    adaptive_concurrency: {algorithm: aimd, initial_limit: 30, min_limit: 8, max_limit: 300,
                           sample_window: 1s, latency_threshold: 250ms, backoff: 0.8, mode: shadow}
    locality: {prefer: same_zone, failover_threshold: 0.6, panic_threshold: 0.1}
  - name: payments
    endpoints: [{address: pay.internal:9401}]
    load_balancer: {policy: least_request}
    adaptive_concurrency: {tolerance: 3}
routes:
  - name: accounts-api
    match: {hosts: [api.example.com], path_prefix: /api/accounts, methods: [GET, PUT],
            headers: {x-channel: mobile, x-app: "*"}}
    service: accounts
    strip_prefix: /api
    prefix_rewrite: /v3
  - {name: pay, match: {path: /pay}, service: payments}
rate_limits:
  - name: per-app
    match: {routes: [pay], services: [payments]}
    key: [header:x-app-id, query:t, client_ip, route, service, method]
    limit: {requests: 100, per: 2s, burst: 30}
    scope: cluster
    mode: shadow
    overrides: [{key: "a|b|10.0.0.1|pay|payments|GET", limit: {requests: 7, per: 3s, burst: 9}}]
    max_keys: 777
  - {name: window, key: [client_ip], limit: {requests: 50, per: 10s}, algorithm: sliding_window}
  - {name: flight, limit: {requests: 64}, algorithm: concurrency}
  - name: implicit-burst
    key: [client_ip]
    limit: {requests: 10}
    overrides: [{key: 10.0.0.2, limit: {requests: 20}}]
redis: {address: redis.internal:6380, timeout: 50ms, on_error: allow, key_prefix: "gw:", gateways: 4}
overload: {priority_key: query:prio, priorities: [payment, web], default_priority: payment,
           reserve: 0.2, max_in_flight: 5000, mode: shadow}
units:
  key: path_segment:2
  shards: 10
  owners: {a: "0-4", b: "5-9"}
  peers: {a: 127.0.0.1:28080}
  protect: false
  hold_timeout: 3s
  peer_timeouts: {connect: 300ms, request: 4s}
)";
  std::string json = ExpectRoundTrip(load_string(yaml, "test.yaml"));
  ASSERT_FALSE(json.empty());
  EXPECT_EQ(json.find(std::string(40, 'a')), std::string::npos) << "the admin token is shown";

  // control_plane cannot share a file with the sections it pushes, which GET /config shows (here
  // empty): they are left out to load it back.
  std::ofstream(d.dir / "ca.pem") << "not checked at load\n";
  LoadResult cp = load_with(
      "control_plane: {address: 'https://cp.internal:7443/sluice', token_file: " +
      (d.dir / "token").string() + ", cache_dir: " + (d.dir / "cache").string() +
      ", ca_file: " + (d.dir / "ca.pem").string() + ", poll_wait: 45s, report_interval: 9s}\n");
  ASSERT_TRUE(cp.ok()) << dump(cp);
  auto cp_json = nlohmann::ordered_json::parse(to_json(*cp.config));
  for (const char* pushed : {"services", "routes", "rate_limits"}) cp_json.erase(pushed);
  EXPECT_EQ(cp_json["control_plane"]["ca_file"], (d.dir / "ca.pem").string());
  LoadResult cp_again = load_string(cp_json.dump(), "effective.json");
  ASSERT_TRUE(cp_again.ok()) << dump(cp_again);
  EXPECT_TRUE(SameConfig(*cp.config, *cp_again.config));
}

// ---- reload: what only a restart can change (from the field tables) ----

std::vector<std::string> RestartOnly(std::string_view before, std::string_view after) {
  LoadResult a = load_with(before);
  LoadResult b = load_with(after);
  EXPECT_TRUE(a.ok()) << dump(a);
  EXPECT_TRUE(b.ok()) << dump(b);
  if (!a.ok() || !b.ok()) return {"(not loaded)"};
  return restart_only_changes(*a.config, *b.config);
}

TEST(RestartOnlyChanges, NamesEachSettingBoundAtStart) {
  const std::string why = ": cannot change on reload; restart the gateway to apply";
  EXPECT_EQ(RestartOnly("workers: 2\n", "workers: 3\n"), std::vector<std::string>{"workers" + why});
  EXPECT_EQ(RestartOnly("", "io_backend: epoll\n"), std::vector<std::string>{"io_backend" + why});
  EXPECT_EQ(RestartOnly("", "node: {zone: z1}\n"), std::vector<std::string>{"node" + why});
  EXPECT_EQ(RestartOnly("access_log: {path: stdout}\n", "access_log: {path: 'off'}\n"),
            std::vector<std::string>{"access_log.path" + why});
  EXPECT_EQ(RestartOnly("", "admin: {address: 127.0.0.1:9901}\n"),
            std::vector<std::string>{"admin.address" + why});
  LoadResult base = load_with("");
  ASSERT_TRUE(base.ok()) << dump(base);
  GatewayConfig moved = *base.config;
  moved.listeners[0].address.port = 8081;
  EXPECT_EQ(restart_only_changes(*base.config, moved), std::vector<std::string>{"listeners" + why});
  const std::string redis = "redis: {address: 127.0.0.1:6379}\n";
  EXPECT_EQ(RestartOnly("", redis), std::vector<std::string>{"redis" + why});
  EXPECT_EQ(RestartOnly(redis, "redis: {address: 127.0.0.1:6379, gateways: 3}\n"),
            std::vector<std::string>{"redis" + why});
  EXPECT_EQ(RestartOnly(redis, "redis: {address: 127.0.0.1:6379, on_error: deny}\n"),
            std::vector<std::string>{"redis" + why});
  // In file order, all at once.
  EXPECT_EQ(RestartOnly("", "workers: 5\nio_backend: epoll\nnode: {id: b}\n"),
            (std::vector<std::string>{"workers" + why, "io_backend" + why, "node" + why}));
}

TEST(RestartOnlyChanges, EverythingElseReloads) {
  EXPECT_TRUE(RestartOnly("", "").empty());
  EXPECT_TRUE(RestartOnly("",
                          "limits: {max_headers: 10, idle_timeout: 5s, max_body_bytes: 1KiB}\n"
                          "http: {merge_slashes: false}\n"
                          "access_log: {format: json}\n"
                          "services: [{name: s, endpoints: [{address: 127.0.0.1:1}]}]\n")
                  .empty());
}

TEST(RestartOnlyChanges, ControlPlaneAsAWhole) {
  ControlPlaneDir d;
  const std::string cp = d.section();
  EXPECT_TRUE(RestartOnly(cp, cp).empty());
  std::string slower = cp;
  slower.insert(slower.rfind('}'), ", poll_wait: 10s");
  EXPECT_EQ(RestartOnly(cp, slower),
            std::vector<std::string>{
                "control_plane: cannot change on reload; restart the gateway to apply"});
}

// ---- robustness ----

TEST(Robustness, NothingEscapes) {
  for (const char* text :
       {"", "~", "[", "{", "\t", "a: b: c", "!!binary x", "? [a]\n: b", "listeners: [[[]]]",
        "services: [[], ~, 1]", "routes: [{match: 1}]", "&a [*a]", "\xff\xfe"}) {
    LoadResult r;
    EXPECT_NO_THROW(r = load_string(text, "x")) << text;
    EXPECT_FALSE(r.ok()) << text;
    EXPECT_FALSE(r.config) << text;
  }
}

}  // namespace
}  // namespace sluice::config
