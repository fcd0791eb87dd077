// The gateway config schema: which keys exist, their bounds, and the rules across fields.
// Typed reading and error collection live in reader.h; this file only says what is valid.
#include "config/loader.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

#include "config/reader.h"

namespace sluice::config {
namespace {

using namespace std::chrono_literals;

constexpr uint32_t kMaxWorkers = 64;
constexpr size_t kMaxNameLength = 128;
constexpr Duration kMaxTimeout = 1h;
constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kTiB = kMiB * kMiB;

constexpr std::array<std::string_view, 3> kLbPolicies = {"round_robin", "least_request",
                                                         "ring_hash"};
constexpr std::array<std::string_view, 2> kServiceKinds = {"global", "unit"};
constexpr std::array<std::string_view, 1> kLogFormats = {"json"};

struct RetryOnName {
  std::string_view name;
  uint32_t bit;
};
constexpr std::array<RetryOnName, 6> kRetryOn = {{
    {"connect_failure", kRetryConnectFailure},
    {"reset", kRetryReset},
    {"timeout", kRetryTimeout},
    {"502", kRetry502},
    {"503", kRetry503},
    {"504", kRetry504},
}};

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

// RFC 9110 token characters (header names, methods).
bool is_tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string to_upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

// Names of listeners, services and routes end up in metric labels and log fields.
std::optional<std::string> read_name(Diagnostics& diag, const Value& v, bool allow_empty = false) {
  auto s = read_string(diag, v);
  if (!s) return std::nullopt;
  if (s->empty()) {
    if (allow_empty) return s;
    v.error(diag, "must not be empty");
    return std::nullopt;
  }
  if (s->size() > kMaxNameLength) {
    v.error(diag, fmt::format("must be at most {} characters", kMaxNameLength));
    return std::nullopt;
  }
  if (!std::all_of(s->begin(), s->end(), is_name_char)) {
    v.error(diag, fmt::format("'{}' may only contain letters, digits, '_', '.' and '-'", *s));
    return std::nullopt;
  }
  return s;
}

std::optional<core::HostPort> read_address(Diagnostics& diag, const Value& v) {
  auto s = read_string(diag, v);
  if (!s) return std::nullopt;
  if (auto hp = core::parse_host_port(*s)) return hp;
  if (core::parse_host_port(*s, /*allow_port_zero=*/true)) {
    v.error(diag, fmt::format("port must be 1..65535, got '{}'", *s));
  } else {
    v.error(diag,
            fmt::format("expected host:port such as 127.0.0.1:8080 or [::1]:8080, got '{}'", *s));
  }
  return std::nullopt;
}

// Sockets the gateway binds: the workers and the admin server bind IP literals without a name
// lookup, so a host name here would only fail at start-up; reject it at load time instead.
std::optional<core::HostPort> read_bind_address(Diagnostics& diag, const Value& v) {
  auto hp = read_address(diag, v);
  if (!hp) return std::nullopt;
  std::string addr = hp->host.substr(0, hp->host.find('%'));
  unsigned char buf[sizeof(in6_addr)];
  if (inet_pton(AF_INET, addr.c_str(), buf) == 1 || inet_pton(AF_INET6, addr.c_str(), buf) == 1)
    return hp;
  v.error(diag, fmt::format("must be an IP address (not a host name) with a port, such as "
                            "127.0.0.1:8080, [::1]:8080 or :8080, got '{}'",
                            v.node.Scalar()));
  return std::nullopt;
}

// A URL path as written in a route: absolute, no query or fragment, no spaces or controls.
std::optional<std::string> read_path(Diagnostics& diag, const Value& v) {
  auto s = read_string(diag, v);
  if (!s) return std::nullopt;
  if (s->empty() || s->front() != '/') {
    v.error(diag, fmt::format("must start with '/', got '{}'", *s));
    return std::nullopt;
  }
  for (char c : *s) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '?' || c == '#') {
      v.error(diag,
              fmt::format("'{}' must not contain spaces, control characters, '?' or '#'", *s));
      return std::nullopt;
    }
  }
  return s;
}

// "api.example.com" or "*.example.com", lower-cased; no port (the router strips it from Host).
std::optional<std::string> read_host(Diagnostics& diag, const Value& v) {
  auto s = read_string(diag, v);
  if (!s) return std::nullopt;
  std::string host = to_lower(*s);
  std::string_view rest = host;
  if (rest.starts_with("*.")) rest.remove_prefix(2);
  if (host.find(':') != std::string::npos) {
    v.error(diag, fmt::format("'{}' must not include a port (hosts match the Host header "
                              "without its port)",
                              *s));
    return std::nullopt;
  }
  bool ok =
      !rest.empty() && rest.front() != '.' && rest.back() != '.' &&
      rest.find("..") == std::string_view::npos &&
      std::all_of(rest.begin(), rest.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
      });
  if (!ok) {
    v.error(diag, fmt::format("expected a host name such as api.example.com or a wildcard such "
                              "as *.example.com, got '{}'",
                              *s));
    return std::nullopt;
  }
  return host;
}

std::optional<HashKey> read_hash_key(Diagnostics& diag, const Value& v) {
  auto s = read_string(diag, v);
  if (!s) return std::nullopt;
  HashKey key;
  std::string_view text = *s;
  if (text == "client_ip") {
    key.source = HashKey::Source::kClientIp;
    return key;
  }
  if (text == "path") {
    key.source = HashKey::Source::kPath;
    return key;
  }
  if (text.starts_with("header:")) {
    std::string_view name = text.substr(7);
    if (is_token(name)) {
      key.source = HashKey::Source::kHeader;
      key.name = to_lower(name);
      return key;
    }
  } else if (text.starts_with("query:")) {
    std::string_view name = text.substr(6);
    bool ok = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
      auto u = static_cast<unsigned char>(c);
      return u > 0x20 && u != 0x7f && c != '&' && c != '=' && c != '#';
    });
    if (ok) {
      key.source = HashKey::Source::kQuery;
      key.name = std::string(name);
      return key;
    }
  }
  v.error(diag, fmt::format("must be header:NAME, query:NAME, client_ip or path, got '{}'", *s));
  return std::nullopt;
}

std::string hash_key_string(const HashKey& key) {
  switch (key.source) {
    case HashKey::Source::kHeader:
      return "header:" + key.name;
    case HashKey::Source::kQuery:
      return "query:" + key.name;
    case HashKey::Source::kClientIp:
      return "client_ip";
    case HashKey::Source::kPath:
      return "path";
    case HashKey::Source::kNone:
      break;
  }
  return "";
}

bool is_wildcard_host(const std::string& host) {
  return host == "0.0.0.0" || host == "::" || host.empty();
}

// Two sockets that cannot both be bound (or that SO_REUSEPORT would silently share).
bool addresses_clash(const core::HostPort& a, const core::HostPort& b) {
  return a.port == b.port &&
         (a.host == b.host || is_wildcard_host(a.host) || is_wildcard_host(b.host));
}

// A socket the gateway binds, remembered for the clash check across listeners and admin.
struct BoundAddress {
  std::string path;
  int line;
  core::HostPort address;
};

class SchemaLoader {
 public:
  SchemaLoader(Diagnostics& diag, GatewayConfig& config) : diag_(diag), config_(config) {}

  void load(const Value& root) {
    MapReader top(
        diag_, root,
        {"node", "workers", "listeners", "admin", "limits", "access_log", "services", "routes"},
        {{"rate_limits", "rate limiting"},
         {"redis", "cluster-wide rate limiting"},
         {"units", "dual-city unit routing"},
         {"control_plane", "control plane"}});
    if (!top.is_map()) return;
    has_units_ = root.node.IsMap() && root.node["units"];
    if (const Value* v = top.get("node")) load_node(*v);
    load_workers(top);
    if (const Value* v = top.get("admin")) load_admin(*v);
    load_listeners(top);
    if (const Value* v = top.get("limits")) load_limits(*v);
    if (const Value* v = top.get("access_log")) load_access_log(*v);
    if (const Value* v = top.get("services")) load_services(*v);
    if (const Value* v = top.get("routes")) load_routes(*v);
    check_addresses();
  }

 private:
  void load_node(const Value& v) {
    MapReader m(diag_, v, {"id", "city", "zone"});
    if (const Value* id = m.get("id")) {
      if (auto s = read_name(diag_, *id)) config_.node.id = *s;
    }
    if (const Value* city = m.get("city")) {
      if (auto s = read_name(diag_, *city, /*allow_empty=*/true)) config_.node.city = *s;
    }
    if (const Value* zone = m.get("zone")) {
      if (auto s = read_name(diag_, *zone, /*allow_empty=*/true)) config_.node.zone = *s;
    }
  }

  void load_workers(const MapReader& top) {
    top.read_uint("workers", config_.workers, 0, kMaxWorkers);
    if (config_.workers == 0) {
      unsigned cores = std::thread::hardware_concurrency();
      config_.workers = std::clamp<uint32_t>(cores, 1, kMaxWorkers);
    }
  }

  void load_admin(const Value& v) {
    MapReader m(diag_, v, {"address"});
    if (!m.is_map()) return;
    if (const Value* a = m.require("address")) {
      if (auto hp = read_bind_address(diag_, *a)) {
        config_.admin.address = *hp;
        config_.admin.enabled = true;
        bound_.push_back({a->path, a->line, *hp});
      }
    }
  }

  void load_listeners(const MapReader& top) {
    const Value* v = top.get("listeners");
    std::optional<std::vector<Value>> items;
    if (v != nullptr) items = read_list(diag_, *v);
    if (v != nullptr && !items) return;
    if (!items || items->empty()) {
      diag_.add(v != nullptr ? v->line : 0, "listeners", "at least one listener is required");
      return;
    }
    std::vector<std::pair<std::string, int>> names;
    for (const Value& item : *items) {
      MapReader m(diag_, item, {"name", "address"});
      if (!m.is_map()) continue;
      Listener listener;
      if (const Value* n = m.require("name")) {
        if (auto s = read_name(diag_, *n)) {
          check_unique(names, *s, *n, "listener");
          listener.name = *s;
        }
      }
      if (const Value* a = m.require("address")) {
        if (auto hp = read_bind_address(diag_, *a)) {
          listener.address = *hp;
          bound_.push_back({a->path, a->line, *hp});
        }
      }
      config_.listeners.push_back(std::move(listener));
    }
  }

  void load_limits(const Value& v) {
    MapReader m(diag_, v,
                {"max_header_bytes", "max_uri_bytes", "max_body_bytes", "max_headers",
                 "header_timeout", "idle_timeout", "drain_timeout", "max_connections"});
    Limits& l = config_.limits;
    bool header_ok = m.read_size("max_header_bytes", l.max_header_bytes, kKiB, kMiB);
    bool uri_ok = m.read_size("max_uri_bytes", l.max_uri_bytes, 256, kMiB);
    m.read_size("max_body_bytes", l.max_body_bytes, 1, kTiB);
    m.read_uint("max_headers", l.max_headers, 1, 1000);
    m.read("header_timeout", l.header_timeout, kMaxTimeout);
    m.read("idle_timeout", l.idle_timeout, kMaxTimeout);
    m.read("drain_timeout", l.drain_timeout, kMaxTimeout);
    m.read_uint("max_connections", l.max_connections, 1, 1'000'000);
    // The URI is part of the request head, so a larger URI limit could never take effect.
    if (header_ok && uri_ok && l.max_uri_bytes > l.max_header_bytes) {
      const Value* at = m.get("max_uri_bytes");
      if (at == nullptr) at = m.get("max_header_bytes");
      diag_.add(at->line, "limits.max_uri_bytes",
                fmt::format("must not exceed limits.max_header_bytes ({} > {})", l.max_uri_bytes,
                            l.max_header_bytes));
    }
  }

  void load_access_log(const Value& v) {
    MapReader m(diag_, v, {"path", "format"});
    if (const Value* p = m.get("path")) {
      if (auto s = read_string(diag_, *p)) {
        if (s->empty()) {
          p->error(diag_, "must not be empty (use 'off' to disable the access log)");
        } else {
          config_.access_log.path = *s;
        }
      }
    }
    if (const Value* f = m.get("format")) {
      if (auto i = read_enum(diag_, *f, kLogFormats)) config_.access_log.format = kLogFormats[*i];
    }
  }

  void load_services(const Value& v) {
    auto items = read_list(diag_, v);
    if (!items) return;
    for (const Value& item : *items) {
      MapReader m(diag_, item,
                  {"name", "endpoints", "load_balancer", "timeouts", "retry", "kind",
                   "max_idle_connections"},
                  {{"health_check", "active health checks"},
                   {"outlier_detection", "outlier detection"},
                   {"circuit_breaker", "circuit breaking"},
                   {"fallback", "fallback responses"},
                   {"locality", "dual-city locality routing"}});
      if (!m.is_map()) continue;
      Service service;
      if (const Value* n = m.require("name")) {
        if (auto s = read_name(diag_, *n)) {
          check_unique(service_names_, *s, *n, "service");
          service.name = *s;
        }
      }
      if (const Value* e = m.get("endpoints")) {
        load_endpoints(*e, service);
      } else {
        diag_.add(item.line, item.path + ".endpoints", "at least one endpoint is required");
      }
      if (const Value* lb = m.get("load_balancer")) load_load_balancer(*lb, service.load_balancer);
      if (const Value* t = m.get("timeouts")) {
        MapReader tm(diag_, *t, {"connect", "request", "idle"});
        tm.read("connect", service.timeouts.connect, kMaxTimeout);
        tm.read("request", service.timeouts.request, kMaxTimeout);
        tm.read("idle", service.timeouts.idle, kMaxTimeout);
      }
      if (const Value* r = m.get("retry")) load_retry(*r, service.retry);
      if (const Value* k = m.get("kind")) {
        if (auto i = read_enum(diag_, *k, kServiceKinds)) {
          service.kind = *i == 0 ? ServiceKind::kGlobal : ServiceKind::kUnit;
          if (service.kind == ServiceKind::kUnit && !has_units_) {
            k->error(diag_, "kind 'unit' requires the top-level 'units' section");
          }
        }
      }
      m.read_uint("max_idle_connections", service.max_idle_connections, 0, 10000);
      config_.services.push_back(std::move(service));
    }
  }

  void load_endpoints(const Value& v, Service& service) {
    auto items = read_list(diag_, v);
    if (!items) return;
    if (items->empty()) {
      v.error(diag_, "at least one endpoint is required");
      return;
    }
    std::vector<BoundAddress> seen;
    for (const Value& item : *items) {
      MapReader m(diag_, item, {"address", "city", "zone", "weight"});
      if (!m.is_map()) continue;
      Endpoint endpoint;
      if (const Value* a = m.require("address")) {
        if (auto hp = read_address(diag_, *a)) {
          endpoint.address = *hp;
          for (const auto& other : seen) {
            if (other.address.host == hp->host && other.address.port == hp->port) {
              a->error(diag_, fmt::format("duplicate endpoint (same address as {})", other.path));
              break;
            }
          }
          seen.push_back({a->path, a->line, *hp});
        }
      }
      if (const Value* c = m.get("city")) {
        if (auto s = read_name(diag_, *c, /*allow_empty=*/true)) endpoint.city = *s;
      }
      if (const Value* z = m.get("zone")) {
        if (auto s = read_name(diag_, *z, /*allow_empty=*/true)) endpoint.zone = *s;
      }
      m.read_uint("weight", endpoint.weight, 1, 1000);
      service.endpoints.push_back(std::move(endpoint));
    }
  }

  void load_load_balancer(const Value& v, LoadBalancer& lb) {
    MapReader m(diag_, v, {"policy", "hash_on"});
    if (!m.is_map()) return;
    bool policy_ok = true;
    if (const Value* p = m.get("policy")) {
      auto i = read_enum(diag_, *p, kLbPolicies);
      policy_ok = i.has_value();
      if (i) lb.policy = static_cast<LbPolicy>(*i);
    }
    const Value* h = m.get("hash_on");
    if (h != nullptr) {
      if (auto key = read_hash_key(diag_, *h)) lb.hash_on = *key;
    }
    if (!policy_ok) return;
    if (lb.policy == LbPolicy::kRingHash && h == nullptr) {
      diag_.add(v.line, v.path + ".hash_on", "required when policy is ring_hash");
    } else if (lb.policy != LbPolicy::kRingHash && h != nullptr) {
      h->error(diag_, "only used with policy ring_hash");
    }
  }

  void load_retry(const Value& v, Retry& retry) {
    MapReader m(diag_, v,
                {"attempts", "on", "budget_percent", "min_retry_concurrency", "non_idempotent"});
    m.read_uint("attempts", retry.attempts, 0, 10);
    if (const Value* on = m.get("on")) {
      if (auto items = read_list(diag_, *on)) {
        std::array<std::string_view, kRetryOn.size()> names;
        for (size_t i = 0; i < kRetryOn.size(); ++i) names[i] = kRetryOn[i].name;
        uint32_t bits = 0;
        bool ok = true;
        for (const Value& item : *items) {
          auto i = read_enum(diag_, item, names);
          if (i) bits |= kRetryOn[*i].bit;
          ok = ok && i.has_value();
        }
        if (ok) retry.on = bits;
      }
    }
    m.read_uint("budget_percent", retry.budget_percent, 0, 100);
    m.read_uint("min_retry_concurrency", retry.min_retry_concurrency, 0, 10000);
    m.read("non_idempotent", retry.non_idempotent);
  }

  void load_routes(const Value& v) {
    auto items = read_list(diag_, v);
    if (!items) return;
    std::vector<std::pair<std::string, int>> names;
    for (const Value& item : *items) {
      MapReader m(diag_, item, {"name", "match", "service", "strip_prefix", "prefix_rewrite"});
      if (!m.is_map()) continue;
      Route route;
      if (const Value* n = m.require("name")) {
        if (auto s = read_name(diag_, *n)) {
          check_unique(names, *s, *n, "route");
          route.name = *s;
        }
      }
      bool match_ok = true;
      if (const Value* mv = m.get("match")) match_ok = load_match(*mv, route.match);
      if (route.match.path.empty() && route.match.path_prefix.empty())
        route.match.path_prefix = "/";
      if (const Value* s = m.require("service")) resolve_service(*s, route);
      const Value* strip = m.get("strip_prefix");
      if (strip != nullptr) {
        if (auto p = read_path(diag_, *strip)) {
          route.strip_prefix = *p;
          const std::string& matched =
              route.match.path.empty() ? route.match.path_prefix : route.match.path;
          const char* key = route.match.path.empty() ? "path_prefix" : "path";
          if (match_ok && !matched.starts_with(route.strip_prefix)) {
            strip->error(diag_, fmt::format("'{}' must be a prefix of match.{} ('{}')",
                                            route.strip_prefix, key, matched));
          }
        }
      }
      if (const Value* r = m.get("prefix_rewrite")) {
        if (auto p = read_path(diag_, *r)) route.prefix_rewrite = *p;
      }
      config_.routes.push_back(std::move(route));
    }
  }

  // Returns false when a field that strip_prefix is checked against failed to load.
  bool load_match(const Value& v, RouteMatch& match) {
    MapReader m(diag_, v, {"hosts", "host", "path", "path_prefix", "methods", "headers"});
    if (!m.is_map()) return false;
    bool ok = true;
    const Value* host = m.get("host");
    const Value* hosts = m.get("hosts");
    if (host != nullptr && hosts != nullptr) {
      host->error(diag_, "use either 'host' or 'hosts', not both");
    } else if (host != nullptr) {
      if (host->node.IsSequence()) {
        host->error(diag_, "expected one host name; use 'hosts' for a list");
      } else if (auto h = read_host(diag_, *host)) {
        match.hosts.push_back(*h);
      }
    } else if (hosts != nullptr) {
      if (hosts->node.IsScalar()) {
        hosts->error(diag_, "expected a list; use 'host' for a single host name");
      } else if (auto items = read_list(diag_, *hosts)) {
        for (const Value& item : *items) {
          if (auto h = read_host(diag_, item)) {
            if (std::find(match.hosts.begin(), match.hosts.end(), *h) == match.hosts.end())
              match.hosts.push_back(*h);
          }
        }
      }
    }
    const Value* path = m.get("path");
    const Value* prefix = m.get("path_prefix");
    if (path != nullptr) {
      if (auto p = read_path(diag_, *path)) {
        match.path = *p;
      } else {
        ok = false;
      }
    }
    if (prefix != nullptr) {
      if (auto p = read_path(diag_, *prefix)) {
        match.path_prefix = *p;
      } else {
        ok = false;
      }
    }
    if (path != nullptr && prefix != nullptr) {
      prefix->error(diag_, "use either 'path' or 'path_prefix', not both");
      ok = false;
    }
    if (const Value* methods = m.get("methods")) {
      if (auto items = read_list(diag_, *methods)) {
        for (const Value& item : *items) {
          auto s = read_string(diag_, item);
          if (!s) continue;
          if (!is_token(*s)) {
            item.error(diag_, fmt::format("expected an HTTP method such as GET, got '{}'", *s));
          } else if (*s != to_upper(*s)) {
            item.error(diag_, fmt::format("methods are case-sensitive and must be upper-case, "
                                          "got '{}' (did you mean '{}'?)",
                                          *s, to_upper(*s)));
          } else if (std::find(match.methods.begin(), match.methods.end(), *s) ==
                     match.methods.end()) {
            match.methods.push_back(*s);
          }
        }
      }
    }
    if (const Value* headers = m.get("headers")) load_header_matches(*headers, match);
    return ok;
  }

  void load_header_matches(const Value& v, RouteMatch& match) {
    if (v.node.IsNull()) return;
    if (!v.node.IsMap()) {
      v.error(diag_, "expected a mapping of header name to value, got " + describe(v.node));
      return;
    }
    std::vector<std::pair<std::string, int>> seen;
    for (auto it = v.node.begin(); it != v.node.end(); ++it) {
      const YAML::Node key = it->first;  // copies: see MapReader
      const YAML::Node value_node = it->second;
      if (!key.IsScalar()) {
        v.error(diag_, "header names must be strings, got " + describe(key));
        continue;
      }
      Value item = v.child(key.Scalar(), key, value_node);
      int key_line = key.Mark().is_null() ? v.line : key.Mark().line + 1;
      HeaderMatch h;
      h.name = to_lower(key.Scalar());
      if (!is_token(h.name)) {
        diag_.add(key_line, item.path, fmt::format("'{}' is not a valid header name", h.name));
        continue;
      }
      auto first =
          std::find_if(seen.begin(), seen.end(), [&](auto& s) { return s.first == h.name; });
      if (first != seen.end()) {
        diag_.add(key_line, item.path,
                  fmt::format("duplicate header (first at line {}; names are case-insensitive)",
                              first->second));
        continue;
      }
      seen.emplace_back(h.name, key_line);
      if (!item.node.IsScalar()) {
        item.error(diag_,
                   "expected a header value, or \"*\" for any value, got " + describe(item.node));
        continue;
      }
      const std::string& value = item.node.Scalar();
      if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
        item.error(diag_, "must not contain CR, LF or NUL");
        continue;
      }
      if (value == "*") {
        h.present_only = true;
      } else {
        h.value = value;
      }
      match.headers.push_back(std::move(h));
    }
  }

  void resolve_service(const Value& v, Route& route) {
    auto s = read_string(diag_, v);
    if (!s) return;
    route.service = *s;
    for (size_t i = 0; i < config_.services.size(); ++i) {
      if (config_.services[i].name == *s) {
        route.service_index = i;
        return;
      }
    }
    // A service whose own name was invalid has no entry to point at; its error already stands.
    std::vector<std::string_view> names;
    for (const auto& [name, line] : service_names_) names.push_back(name);
    v.error(diag_, fmt::format("no service named '{}'{}", *s, did_you_mean(*s, names)));
  }

  void check_unique(std::vector<std::pair<std::string, int>>& seen, const std::string& name,
                    const Value& at, const char* what) {
    for (const auto& [other, line] : seen) {
      if (other == name) {
        at.error(diag_, fmt::format("duplicate {} name '{}' (first at line {})", what, name, line));
        return;
      }
    }
    seen.emplace_back(name, at.line);
  }

  void check_addresses() {
    for (size_t i = 0; i < bound_.size(); ++i) {
      for (size_t j = 0; j < i; ++j) {
        const BoundAddress& a = bound_[i];
        const BoundAddress& b = bound_[j];
        if (!addresses_clash(a.address, b.address)) continue;
        // Blame the one further down the file, naming the other.
        const BoundAddress& later = a.line >= b.line ? a : b;
        const BoundAddress& earlier = a.line >= b.line ? b : a;
        diag_.add(later.line, later.path,
                  fmt::format("{} clashes with {} ({})", later.address.to_string(), earlier.path,
                              earlier.address.to_string()));
      }
    }
  }

  Diagnostics& diag_;
  GatewayConfig& config_;
  bool has_units_ = false;
  std::vector<BoundAddress> bound_;                         // admin + listeners
  std::vector<std::pair<std::string, int>> service_names_;  // name, line
};

}  // namespace

std::string ConfigError::to_string() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line);
  out += ": ";
  if (!path.empty()) out += path + ": ";
  out += message;
  return out;
}

LoadResult load_string(std::string_view yaml, const std::string& source_name) {
  LoadResult result;
  try {
    Diagnostics diag(source_name);
    std::optional<YAML::Node> document = parse_single_document(yaml, diag);
    if (!document) {
      result.errors = diag.take();
      return result;
    }
    auto config = std::make_shared<GatewayConfig>();
    config->source_file = source_name;
    Value root{*document, "", 1};
    SchemaLoader(diag, *config).load(root);
    if (diag.count() == 0) result.config = std::move(config);
    result.errors = diag.take();
  } catch (const std::exception& e) {
    // Nothing escapes: a bug in the loader is still reported as a config error.
    result.config.reset();
    result.errors = {ConfigError{source_name, 0, "", std::string("internal error: ") + e.what()}};
  } catch (...) {
    result.config.reset();
    result.errors = {ConfigError{source_name, 0, "", "internal error"}};
  }
  return result;
}

LoadResult load_file(const std::string& path) {
  auto fail = [&](std::string message) {
    LoadResult result;
    result.errors.push_back(ConfigError{path, 0, "", std::move(message)});
    return result;
  };
  try {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) return fail("cannot read config: is a directory");
    std::ifstream in(path, std::ios::binary);
    if (!in) return fail(fmt::format("cannot read config: {}", std::strerror(errno)));
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) return fail(fmt::format("cannot read config: {}", std::strerror(errno)));
    return load_string(text.str(), path);
  } catch (const std::exception& e) {
    return fail(std::string("cannot read config: ") + e.what());
  }
}

std::string to_json(const GatewayConfig& config) {
  // Ordered like the file, and using only the file's own keys, so the output is itself a valid
  // config (JSON is YAML) that loads back to the same values.
  using Json = nlohmann::ordered_json;
  auto d = [](Duration x) { return core::format_duration(x); };
  Json j;
  j["node"] = {{"id", config.node.id}, {"city", config.node.city}, {"zone", config.node.zone}};
  j["workers"] = config.workers;
  j["listeners"] = Json::array();
  for (const auto& l : config.listeners) {
    j["listeners"].push_back({{"name", l.name}, {"address", l.address.to_string()}});
  }
  if (config.admin.enabled) j["admin"] = {{"address", config.admin.address.to_string()}};
  const Limits& l = config.limits;
  j["limits"] = {{"max_header_bytes", l.max_header_bytes}, {"max_uri_bytes", l.max_uri_bytes},
                 {"max_body_bytes", l.max_body_bytes},     {"max_headers", l.max_headers},
                 {"header_timeout", d(l.header_timeout)},  {"idle_timeout", d(l.idle_timeout)},
                 {"drain_timeout", d(l.drain_timeout)},    {"max_connections", l.max_connections}};
  j["access_log"] = {{"path", config.access_log.path}, {"format", config.access_log.format}};
  j["services"] = Json::array();
  for (const auto& s : config.services) {
    Json js;
    js["name"] = s.name;
    js["kind"] = kServiceKinds[s.kind == ServiceKind::kUnit ? 1 : 0];
    js["endpoints"] = Json::array();
    for (const auto& e : s.endpoints) {
      js["endpoints"].push_back({{"address", e.address.to_string()},
                                 {"city", e.city},
                                 {"zone", e.zone},
                                 {"weight", e.weight}});
    }
    js["load_balancer"] = {{"policy", kLbPolicies[static_cast<size_t>(s.load_balancer.policy)]}};
    if (s.load_balancer.hash_on.source != HashKey::Source::kNone) {
      js["load_balancer"]["hash_on"] = hash_key_string(s.load_balancer.hash_on);
    }
    js["timeouts"] = {{"connect", d(s.timeouts.connect)},
                      {"request", d(s.timeouts.request)},
                      {"idle", d(s.timeouts.idle)}};
    Json on = Json::array();
    for (const auto& r : kRetryOn) {
      if (s.retry.on & r.bit) on.push_back(r.name);
    }
    js["retry"] = {{"attempts", s.retry.attempts},
                   {"on", on},
                   {"budget_percent", s.retry.budget_percent},
                   {"min_retry_concurrency", s.retry.min_retry_concurrency},
                   {"non_idempotent", s.retry.non_idempotent}};
    js["max_idle_connections"] = s.max_idle_connections;
    j["services"].push_back(std::move(js));
  }
  j["routes"] = Json::array();
  for (const auto& r : config.routes) {
    Json jr;
    jr["name"] = r.name;
    Json m;
    m["hosts"] = r.match.hosts;
    if (!r.match.path.empty()) m["path"] = r.match.path;
    if (!r.match.path_prefix.empty()) m["path_prefix"] = r.match.path_prefix;
    m["methods"] = r.match.methods;
    m["headers"] = Json::object();
    for (const auto& h : r.match.headers) m["headers"][h.name] = h.present_only ? "*" : h.value;
    jr["match"] = std::move(m);
    jr["service"] = r.service;
    if (!r.strip_prefix.empty()) jr["strip_prefix"] = r.strip_prefix;
    if (!r.prefix_rewrite.empty()) jr["prefix_rewrite"] = r.prefix_rewrite;
    j["routes"].push_back(std::move(jr));
  }
  return j.dump(2);
}

}  // namespace sluice::config
