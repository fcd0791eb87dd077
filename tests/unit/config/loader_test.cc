#include "config/loader.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

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
  EXPECT_EQ(acc.load_balancer.hash_on.source, HashKey::Source::kHeader);
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
  EXPECT_EQ(s.load_balancer.hash_on.source, HashKey::Source::kNone);
  EXPECT_EQ(s.timeouts.connect, 1s);
  EXPECT_EQ(s.timeouts.request, 5s);
  EXPECT_EQ(s.timeouts.idle, 60s);
  EXPECT_EQ(s.retry.attempts, d.retry.attempts);
  EXPECT_EQ(s.retry.on, d.retry.on);
  EXPECT_EQ(s.retry.budget_percent, d.retry.budget_percent);
  EXPECT_EQ(s.retry.min_retry_concurrency, d.retry.min_retry_concurrency);
  EXPECT_FALSE(s.retry.non_idempotent);
  EXPECT_EQ(s.kind, ServiceKind::kGlobal);
  EXPECT_EQ(s.max_idle_connections, 64u);
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
  EXPECT_EQ(q.config->services[0].load_balancer.hash_on.source, HashKey::Source::kQuery);
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

TEST(Keys, UnsupportedContractKeysAreErrors) {
  LoadResult r = load(R"(
listeners: [{name: public, address: 127.0.0.1:8080}]
services:
  - name: accounts
    endpoints: [{address: 127.0.0.1:9101}]
    health_check: {path: /healthz}
    outlier_detection: {consecutive_errors: 5}
    circuit_breaker: {window: 10s}
    fallback: {status: 503}
    locality: {prefer: same_city}
rate_limits: [{name: per-app}]
redis: {address: 127.0.0.1:6379}
units: {key: header:x-customer-id}
control_plane: {address: http://127.0.0.1:7070}
)");
  EXPECT_FALSE(r.config);
  const std::string kNotYet = "not supported by this build yet (planned: ";
  EXPECT_TRUE(HasError(r, 5, "services[0].health_check", kNotYet + "active health checks)"));
  EXPECT_TRUE(HasError(r, 6, "services[0].outlier_detection", kNotYet + "outlier detection)"));
  EXPECT_TRUE(HasError(r, 7, "services[0].circuit_breaker", kNotYet + "circuit breaking)"));
  EXPECT_TRUE(HasError(r, 8, "services[0].fallback", kNotYet + "fallback responses)"));
  EXPECT_TRUE(HasError(r, 9, "services[0].locality", kNotYet + "dual-city locality routing)"));
  EXPECT_TRUE(HasError(r, 10, "rate_limits", kNotYet + "rate limiting)"));
  EXPECT_TRUE(HasError(r, 11, "redis", kNotYet + "cluster-wide rate limiting)"));
  EXPECT_TRUE(HasError(r, 12, "units", kNotYet + "dual-city unit routing)"));
  EXPECT_TRUE(HasError(r, 13, "control_plane", kNotYet + "control plane)"));
  EXPECT_EQ(r.errors.size(), 9u) << dump(r);
  EXPECT_EQ(r.errors[0].to_string(),
            "test.yaml:5: services[0].health_check: not supported by this build yet (planned: "
            "active health checks)");
}

TEST(Keys, UnitServiceWithUnitsSectionReportsOnlyUnits) {
  LoadResult r = load_with("units: {shards: 100}\n" + service_with("kind: unit"));
  ASSERT_EQ(r.errors.size(), 1u) << dump(r);
  EXPECT_EQ(r.errors[0].path, "units");
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

// ---- effective config as JSON ----

TEST(ToJson, DefaultsAndFormats) {
  LoadResult r = load_with(
      "services: [{name: s, endpoints: [{address: '[::1]:80'}]}]\n"
      "routes: [{name: r, service: s, match: {headers: {x-a: '*'}}}]\n");
  ASSERT_TRUE(r.ok()) << dump(r);
  auto j = nlohmann::json::parse(to_json(*r.config));
  EXPECT_EQ(j["node"]["id"], "sluice");
  EXPECT_EQ(j["workers"], 1);
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
  LoadResult first = load(kFullExample);
  ASSERT_TRUE(first.ok()) << dump(first);
  std::string json = to_json(*first.config);
  LoadResult second = load_string(json, "effective.json");
  ASSERT_TRUE(second.ok()) << dump(second) << json;
  EXPECT_EQ(to_json(*second.config), json);
  auto j = nlohmann::json::parse(json);
  EXPECT_EQ(j["admin"]["address"], "127.0.0.1:9901");
  EXPECT_EQ(j["limits"]["drain_timeout"], "1500ms");
  EXPECT_EQ(j["services"][0]["load_balancer"]["hash_on"], "header:x-customer-id");
  EXPECT_EQ(j["services"][0]["retry"]["on"],
            nlohmann::json::parse(R"(["connect_failure","reset","502","503","504"])"));
  EXPECT_EQ(j["routes"][1]["match"]["path"], "/pay");
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
