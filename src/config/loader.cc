// The gateway config schema: which keys exist, their bounds, and the rules across fields.
// Typed reading and error collection live in reader.h; this file only says what is valid.
#include "config/loader.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

#include "config/fields.h"
#include "config/reader.h"
#include "config/secret_file.h"
#include "core/log.h"
#include "net/http_client.h"

namespace sluice::config {
namespace {

using namespace std::chrono_literals;

constexpr uint32_t kMaxWorkers = 64;
constexpr size_t kMaxNameLength = 128;
constexpr Duration kMaxTimeout = 1h;
constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;
constexpr uint64_t kTiB = kMiB * kMiB;

constexpr std::array<std::string_view, 3> kLbPolicies = {"round_robin", "least_request",
                                                         "ring_hash"};
constexpr std::array<std::string_view, 2> kServiceKinds = {"global", "unit"};
constexpr std::array<std::string_view, 1> kLogFormats = {"json"};
constexpr std::array<std::string_view, 3> kIoBackends = {"auto", "io_uring", "epoll"};
constexpr std::array<std::string_view, 3> kEscapedSlashes = {"keep", "reject", "unescape"};
constexpr std::array<http::EscapedSlashes, 3> kEscapedSlashValues = {
    http::EscapedSlashes::kKeep, http::EscapedSlashes::kReject, http::EscapedSlashes::kUnescape};
constexpr std::array<std::string_view, 2> kPathParameters = {"keep", "reject"};
constexpr std::array<http::PathParameters, 2> kPathParameterValues = {
    http::PathParameters::kKeep, http::PathParameters::kReject};
// The sections a control plane pushes (docs/control-plane.md); the rest of a file stays local.
constexpr std::array<std::string_view, 4> kPushedSections = {"services", "routes", "rate_limits",
                                                             "units"};
// Indexed by the enums of config.h.
constexpr std::array<std::string_view, 2> kModes = {"enforce", "shadow"};
constexpr std::array<std::string_view, 2> kAdaptiveAlgorithms = {"gradient", "aimd"};
constexpr std::array<std::string_view, 3> kRateAlgorithms = {"token_bucket", "sliding_window",
                                                             "concurrency"};
constexpr std::array<std::string_view, 2> kRateScopes = {"node", "cluster"};
constexpr std::array<std::string_view, 3> kRedisOnError = {"local_fallback", "allow", "deny"};
constexpr std::array<std::string_view, 3> kLocalityPrefer = {"none", "same_city", "same_zone"};

// Governance bounds (docs/config.md lists each one).
constexpr RealRange kRatio{0, 1, /*lo_open=*/true, /*hi_open=*/false};
constexpr uint64_t kMaxRequests = 1'000'000'000;
constexpr uint64_t kMaxRateKeys = 10'000'000;
constexpr uint32_t kMaxConcurrencyLimit = 1'000'000;
constexpr size_t kMaxPriorities = 16;
constexpr size_t kMaxFallbackBody = 64 * 1024;

// Dual-city bounds (docs/config.md lists each one).
constexpr RealRange kPanicRatio{0, 1, /*lo_open=*/false, /*hi_open=*/true};
constexpr uint32_t kMaxShards = 100'000;
constexpr Duration kMaxHoldTimeout = 60s;
constexpr size_t kMaxUnitCities = 254;  // router::UnitTable indexes cities in a byte
// Shard lists in errors stop after this many ranges ("... and 12 more ranges").
constexpr size_t kMaxShardRangesShown = 10;

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

// A request input (config/request_input.h) as one of the forms `syntax` allows.
std::optional<RequestInput> read_request_input(Diagnostics& diag, const Value& v,
                                               const RequestInputSyntax& syntax) {
  auto s = read_string(diag, v);
  if (!s) return std::nullopt;
  std::string error;
  auto input = parse_request_input(*s, syntax, error);
  if (!input) v.error(diag, error);
  return input;
}

// True when `s` has no control characters (CR, LF and NUL included), so it can go in a header.
bool is_header_value(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return (u >= 0x20 && u != 0x7f) || c == '\t';
  });
}

// The text an address has as a key part: what inet_ntop gives, which is how the gateway writes a
// client's address. nullopt when `s` is not an IP literal.
std::optional<std::string> canonical_ip(const std::string& s) {
  unsigned char buf[sizeof(in6_addr)];
  char text[INET6_ADDRSTRLEN];
  for (int family : {AF_INET, AF_INET6}) {
    if (inet_pton(family, s.c_str(), buf) == 1 &&
        inet_ntop(family, buf, text, sizeof(text)) != nullptr)
      return std::string(text);
  }
  return std::nullopt;
}

std::string shard_range_string(const ShardRange& r) {
  return r.first == r.last ? std::to_string(r.first) : fmt::format("{}-{}", r.first, r.last);
}

// "0-49, 60, 70-79", as written in units.owners.
std::string shard_ranges_string(const std::vector<ShardRange>& ranges) {
  std::string out;
  for (const auto& r : ranges) out += (out.empty() ? "" : ", ") + shard_range_string(r);
  return out;
}

// "shard 42" or "shards 40-49, 60 and 3 more ranges", for errors; `ranges` is not empty.
std::string shards_for_error(const std::vector<ShardRange>& ranges) {
  if (ranges.size() == 1 && ranges[0].first == ranges[0].last)
    return fmt::format("shard {}", ranges[0].first);
  std::string out = "shards ";
  for (size_t i = 0; i < ranges.size() && i < kMaxShardRangesShown; ++i)
    out += (i == 0 ? "" : ", ") + shard_range_string(ranges[i]);
  if (ranges.size() > kMaxShardRangesShown)
    out += fmt::format(" and {} more ranges", ranges.size() - kMaxShardRangesShown);
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A shard number as written; a number too large for 64 bits saturates (it is out of range anyway).
std::optional<uint64_t> parse_shard(std::string_view s) {
  s = trim(s);
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec == std::errc::result_out_of_range) return std::numeric_limits<uint64_t>::max();
  return n;
}

// One city's claim on a range of shards, where it was written.
struct ShardClaim {
  ShardRange range;  // within the key space (clamped)
  size_t owner = 0;  // index into Units::owners, in file order
  std::string path;
  int line = 0;
};

bool is_wildcard_host(const std::string& host) {
  return host == "0.0.0.0" || host == "::" || host.empty();
}

// 127.0.0.0/8, ::1 and IPv4-mapped 127.x: addresses only this host can reach.
bool is_loopback_host(const std::string& host) {
  std::string h = host.substr(0, host.find('%'));
  in_addr v4{};
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

// admin.allowed_hosts entries: a DNS name or IP literal, optionally with ":port", lower-cased as
// Host and Origin are compared.
std::optional<std::string> read_allowed_host(Diagnostics& diag, const Value& v) {
  auto s = read_string(diag, v);
  if (!s) return std::nullopt;
  std::string host = to_lower(*s);
  std::string name = host;
  if (auto hp = core::parse_host_port(host)) {
    name = hp->host;
  } else if (name.size() > 2 && name.front() == '[' && name.back() == ']') {
    name = name.substr(1, name.size() - 2);
  }
  bool ok = !name.empty() && name.size() <= 253 && host.find(' ') == std::string::npos;
  unsigned char buf[sizeof(in6_addr)];
  if (ok && inet_pton(AF_INET6, name.c_str(), buf) != 1) {
    for (char c : name) {
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_'))
        ok = false;
    }
  }
  if (!ok) {
    v.error(diag, fmt::format("expected a host name such as gw-a1.bank.example, optionally with "
                              ":port, got '{}'",
                              *s));
    return std::nullopt;
  }
  return host;
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

// ---- readers of fields with checks of their own ----

std::optional<std::string> read_id(Diagnostics& diag, const Value& v) {
  return read_name(diag, v);
}
std::optional<std::string> read_name_or_empty(Diagnostics& diag, const Value& v) {
  return read_name(diag, v, /*allow_empty=*/true);
}

std::optional<std::string> read_log_path(Diagnostics& diag, const Value& v) {
  auto s = read_string(diag, v);
  if (s && s->empty()) {
    v.error(diag, "must not be empty (use 'off' to disable the access log)");
    return std::nullopt;
  }
  return s;
}

std::optional<std::string> read_key_prefix(Diagnostics& diag, const Value& v) {
  auto s = read_string(diag, v);
  if (!s) return std::nullopt;
  bool ok = s->size() <= kMaxNameLength && std::all_of(s->begin(), s->end(), [](char c) {
              auto u = static_cast<unsigned char>(c);
              return u > 0x20 && u != 0x7f;
            });
  if (ok) return s;
  v.error(diag, fmt::format("must be at most {} characters, without spaces or control characters",
                            kMaxNameLength));
  return std::nullopt;
}

std::optional<std::string> read_server_url(Diagnostics& diag, const Value& v) {
  auto text = read_string(diag, v);
  if (!text) return std::nullopt;
  std::string error;
  auto url = net::parse_server_url(*text, &error);
  if (!url) {
    v.error(diag, error);
    return std::nullopt;
  }
  return url->url;
}

std::optional<std::string> read_token_path(Diagnostics& diag, const Value& v) {
  auto path = read_string(diag, v);
  if (!path) return std::nullopt;
  std::string error;
  if (!net::read_token_file(*path, &error)) {
    v.error(diag, "cannot read the token: " + error);
    return std::nullopt;
  }
  return path;
}

// Created when missing: the gateway keeps the last applied config there.
std::optional<std::string> read_cache_dir(Diagnostics& diag, const Value& v) {
  auto dir = read_string(diag, v);
  if (!dir) return std::nullopt;
  std::error_code ec;
  std::filesystem::create_directories(*dir, ec);
  if (*dir == "" || ec || !std::filesystem::is_directory(*dir) ||
      ::access(dir->c_str(), W_OK | X_OK) != 0) {
    v.error(diag, fmt::format("'{}' is not a writable directory{}", *dir,
                              ec ? " (" + ec.message() + ")" : ""));
    return std::nullopt;
  }
  return dir;
}

std::optional<std::string> read_readable_file(Diagnostics& diag, const Value& v) {
  auto path = read_string(diag, v);
  if (!path) return std::nullopt;
  if (::access(path->c_str(), R_OK) != 0) {
    v.error(diag, fmt::format("cannot read '{}': {}", *path, std::strerror(errno)));
    return std::nullopt;
  }
  return path;
}

// ---- field tables (config/fields.h): one declaration per field ----

constexpr std::array kLimitsFields = {
    size_field("max_header_bytes", &Limits::max_header_bytes, kKiB, kMiB),
    size_field("max_uri_bytes", &Limits::max_uri_bytes, 256, kMiB),
    size_field("max_body_bytes", &Limits::max_body_bytes, 1, kTiB),
    uint_field("max_headers", &Limits::max_headers, 1, 1000),
    duration_field("header_timeout", &Limits::header_timeout, kMaxTimeout),
    duration_field("idle_timeout", &Limits::idle_timeout, kMaxTimeout),
    duration_field("drain_timeout", &Limits::drain_timeout, kMaxTimeout),
    uint_field("max_connections", &Limits::max_connections, 1, 1'000'000),
    duration_field("body_timeout", &Limits::body_timeout, 1ms, kMaxTimeout),
    size_field("min_body_rate", &Limits::min_body_rate, 0, kGiB),
    // Bounded: every connection may hold this much while its body arrives.
    size_field("request_buffer_bytes", &Limits::request_buffer_bytes, 0, kMiB),
    size_field("max_idle_upstream_bytes", &Limits::max_idle_upstream_bytes, 0, kTiB),
};
constexpr size_t kMaxHeaderBytes = field_index(kLimitsFields, "max_header_bytes");
constexpr size_t kMaxUriBytes = field_index(kLimitsFields, "max_uri_bytes");

std::optional<std::string> read_header_name_or_empty(Diagnostics& diag, const Value& v);

// Top-level scalars. workers and io_backend are bound to the threads made at start.
constexpr std::array kTopFields = {
    uint_field("workers", &GatewayConfig::workers, 0, kMaxWorkers, /*restart=*/true),
    mapped_enum_field<&GatewayConfig::io_backend, kIoBackends>("io_backend", kIoBackends,
                                                               /*restart=*/true),
    string_field("channel_header", &GatewayConfig::channel_header, read_header_name_or_empty),
};

// node: who this gateway is; its metrics, routing and unit ownership are bound to it at start.
constexpr std::array kNodeFields = {
    string_field("id", &Node::id, read_id, /*restart=*/true),
    string_field("city", &Node::city, read_name_or_empty, /*restart=*/true),
    string_field("zone", &Node::zone, read_name_or_empty, /*restart=*/true),
};

constexpr std::array kHttpFields = {
    bool_field("normalize_path", &http::PathOptions::normalize),
    bool_field("merge_slashes", &http::PathOptions::merge_slashes),
    mapped_enum_field<&http::PathOptions::escaped_slashes, kEscapedSlashValues>("escaped_slashes",
                                                                                kEscapedSlashes),
    mapped_enum_field<&http::PathOptions::parameters, kPathParameterValues>("path_parameters",
                                                                            kPathParameters),
};

// The access log file is opened at start.
constexpr std::array kAccessLogFields = {
    string_field("path", &AccessLog::path, read_log_path, /*restart=*/true),
    mapped_enum_field<&AccessLog::format, kLogFormats>("format", kLogFormats),
};

constexpr std::array kTimeoutsFields = {
    duration_field("connect", &Timeouts::connect, kMaxTimeout),
    duration_field("request", &Timeouts::request, kMaxTimeout),
    duration_field("idle", &Timeouts::idle, kMaxTimeout),
    duration_field("total", &Timeouts::total, 0ns, kMaxTimeout),
};
// units.peer_timeouts: cross-city forwards have no idle pool or overall deadline of their own.
constexpr std::array kPeerTimeoutsFields = {kTimeoutsFields[0], kTimeoutsFields[1]};

constexpr std::array kOutlierFields = {
    uint_field("consecutive_errors", &OutlierDetection::consecutive_errors, 1, 10000),
    duration_field("base_ejection_time", &OutlierDetection::base_ejection_time, kMaxTimeout),
    duration_field("max_ejection_time", &OutlierDetection::max_ejection_time, kMaxTimeout),
    uint_field("max_ejection_percent", &OutlierDetection::max_ejection_percent, 0, 100),
};

constexpr std::array kBreakerFields = {
    duration_field("window", &CircuitBreaker::window, 1s, kMaxTimeout),
    uint_field("min_requests", &CircuitBreaker::min_requests, 1, 1'000'000),
    real_field("error_ratio", &CircuitBreaker::error_ratio, kRatio),
    duration_field("slow_call_duration", &CircuitBreaker::slow_call_duration, kMaxTimeout),
    real_field("slow_call_ratio", &CircuitBreaker::slow_call_ratio, kRatio),
    duration_field("open_duration", &CircuitBreaker::open_duration, kMaxTimeout),
    duration_field("max_open_duration", &CircuitBreaker::max_open_duration, kMaxTimeout),
    uint_field("half_open_probes", &CircuitBreaker::half_open_probes, 1, 1000),
    uint_field("max_concurrent", &CircuitBreaker::max_concurrent, 0, kMaxConcurrencyLimit),
    uint_field("max_pending", &CircuitBreaker::max_pending, 0, kMaxConcurrencyLimit),
};

constexpr std::array kLocalityFields = {
    enum_field<&Locality::prefer>("prefer", kLocalityPrefer),
    real_field("failover_threshold", &Locality::failover_threshold, kRatio),
    real_field("panic_threshold", &Locality::panic_threshold, kPanicRatio),
};

// Redis connections and the cluster-limit share are set up at start.
constexpr std::array kRedisFields = {
    address_field("address", &Redis::address, read_address, /*restart=*/true, /*required=*/true),
    duration_field("timeout", &Redis::timeout, 1ms, 10s, /*restart=*/true),
    enum_field<&Redis::on_error>("on_error", kRedisOnError, /*restart=*/true),
    string_field("key_prefix", &Redis::key_prefix, read_key_prefix, /*restart=*/true),
    uint_field("gateways", &Redis::gateways, 0, 10000, /*restart=*/true),
};

// The control link is made at start. ca_file last: to_json leaves it out when not set.
constexpr auto kControlPlaneFields = [] {
  std::array fields = {
      string_field("address", &ControlPlane::address, read_server_url, true, /*required=*/true),
      string_field("token_file", &ControlPlane::token_file, read_token_path, true, true),
      string_field("cache_dir", &ControlPlane::cache_dir, read_cache_dir, true, true),
      duration_field("poll_wait", &ControlPlane::poll_wait, 1s, 300s, /*restart=*/true),
      duration_field("report_interval", &ControlPlane::report_interval, 1s, 300s, true),
      string_field("ca_file", &ControlPlane::ca_file, read_readable_file, /*restart=*/true),
  };
  fields[5].omit_empty = true;
  return fields;
}();

// routes[].split header names: RFC 9110 tokens, lower-cased (header names are matched ignoring
// case). override_header may be "" to turn the override off.
std::optional<std::string> read_header_name(Diagnostics& diag, const Value& v) {
  auto s = read_string(diag, v);
  if (!s) return std::nullopt;
  if (!is_token(*s)) {
    v.error(diag, fmt::format("'{}' is not a valid header name", *s));
    return std::nullopt;
  }
  return to_lower(*s);
}

std::optional<std::string> read_header_name_or_empty(Diagnostics& diag, const Value& v) {
  if (v.node.IsScalar() && v.node.Scalar().empty()) return std::string();
  return read_header_name(diag, v);
}

// RFC 6265: a cookie name is a token, compared case-sensitively.
std::optional<std::string> read_cookie_name(Diagnostics& diag, const Value& v) {
  auto s = read_string(diag, v);
  if (!s) return std::nullopt;
  if (!is_token(*s)) {
    v.error(diag, fmt::format("'{}' is not a valid cookie name", *s));
    return std::nullopt;
  }
  return s;
}

// routes[].services[] besides `name`, which is resolved to a service by the loader.
constexpr auto kSplitServiceFields = [] {
  std::array fields = {
      uint_field("weight", &SplitService::weight, 0, kMaxSplitWeight),
      bool_field("canary", &SplitService::canary),
  };
  fields[0].required = true;
  return fields;
}();
constexpr size_t kSplitWeight = field_index(kSplitServiceFields, "weight");
constexpr size_t kSplitCanary = field_index(kSplitServiceFields, "canary");

// routes[].split. An empty sticky key means "not set" and is left out of to_json.
constexpr auto kSplitFields = [] {
  std::array fields = {
      string_field("sticky_header", &Split::sticky_header, read_header_name),
      string_field("sticky_cookie", &Split::sticky_cookie, read_cookie_name),
      string_field("override_header", &Split::override_header, read_header_name_or_empty),
  };
  fields[0].omit_empty = true;
  fields[1].omit_empty = true;
  return fields;
}();

class SchemaLoader {
 public:
  // `pushed`: the document is a gateway file merged with the sections a control plane pushed.
  SchemaLoader(Diagnostics& diag, GatewayConfig& config, bool pushed = false)
      : diag_(diag), config_(config), pushed_(pushed) {}

  void load(const Value& root) {
    MapReader top(diag_, root,
                  {"node", "workers", "io_backend", "channel_header", "listeners", "admin",
                   "limits", "http", "access_log", "services", "routes", "rate_limits", "redis",
                   "overload", "units", "control_plane"});
    if (!top.is_map()) return;
    if (const Value* v = top.get("control_plane")) load_control_plane(*v);
    if (config_.control_plane.enabled && !pushed_) {
      for (std::string_view key : kPushedSections) {
        if (const Value* v = top.get(key)) {
          v->error(diag_,
                   "comes from the control plane when control_plane is set; remove it "
                   "from this file (or remove control_plane)");
        }
      }
    }
    has_units_ = root.node.IsMap() && root.node["units"];
    if (const Value* v = top.get("node")) load_node(*v);
    load_workers(top);
    if (const Value* v = top.get("admin")) load_admin(*v);
    load_listeners(top);
    if (const Value* v = top.get("limits")) load_limits(*v);
    // Before routes: their paths are checked against the request paths this allows.
    if (const Value* v = top.get("http")) load_http(*v);
    if (const Value* v = top.get("access_log")) load_access_log(*v);
    if (const Value* v = top.get("services")) load_services(*v);
    if (const Value* v = top.get("routes")) load_routes(*v);
    // Rate-limit rules name routes and services, and cluster-scope rules need the redis section.
    has_redis_ = top.get("redis") != nullptr;
    if (const Value* v = top.get("redis")) load_redis(*v);
    if (const Value* v = top.get("rate_limits")) load_rate_limits(*v);
    if (const Value* v = top.get("overload")) load_overload(*v);
    if (const Value* v = top.get("units")) {
      load_units(*v);
      // Which shards are this gateway's depends on its own city; a node.city that failed to
      // load has its own error already.
      if (config_.units.enabled && config_.node.city.empty() && !node_city_invalid_)
        v->error(diag_, "node.city is required with units");
    }
    check_addresses();
  }

 private:
  void load_control_plane(const Value& v) {
    MapReader m(diag_, v, field_keys(kControlPlaneFields));
    if (!m.is_map()) return;
    config_.control_plane.enabled = true;
    read_fields(m, kControlPlaneFields, config_.control_plane);
  }

  void load_node(const Value& v) {
    MapReader m(diag_, v, field_keys(kNodeFields));
    const auto ok = read_fields(m, kNodeFields, config_.node);
    node_city_invalid_ = !ok[field_index(kNodeFields, "city")];
  }

  void load_workers(const MapReader& top) {
    read_fields(top, kTopFields, config_);
    if (config_.workers == 0) {
      unsigned cores = std::thread::hardware_concurrency();
      config_.workers = std::clamp<uint32_t>(cores, 1, kMaxWorkers);
    }
  }

  void load_admin(const Value& v) {
    MapReader m(diag_, v, {"address", "token_file", "allowed_hosts"});
    if (!m.is_map()) return;
    Admin& admin = config_.admin;
    const Value* a = m.require("address");
    if (a != nullptr) {
      if (auto hp = read_bind_address(diag_, *a)) {
        admin.address = *hp;
        admin.enabled = true;
        bound_.push_back({a->path, a->line, *hp});
      }
    }
    bool token_invalid = false;
    if (const Value* t = m.get("token_file")) {
      token_invalid = true;
      if (auto path = read_string(diag_, *t)) {
        std::string error;
        if (auto secret = read_secret_file(*path, &error)) {
          admin.token_file = *path;
          admin.token = std::move(secret->secret);
          token_invalid = false;
          if (secret->others_can_read) {
            core::log_warn(
                "{}:{}: admin.token_file: '{}' is readable by group or others (mode {:04o}); "
                "chmod 600 it",
                diag_.file(), t->line, *path, secret->mode);
          }
        } else {
          t->error(diag_, error);
        }
      }
    }
    // Anyone who reaches an open admin API can reload, drain or move shards: off loopback that
    // needs the token.
    if (admin.enabled && admin.token_file.empty() && !token_invalid &&
        !is_loopback_host(admin.address.host)) {
      diag_.add(a->line, "admin.token_file",
                fmt::format("required when admin.address ({}) is not a loopback address: without "
                            "it anyone who reaches the admin API can reload, drain or switch "
                            "cities",
                            admin.address.to_string()));
    }
    if (const Value* h = m.get("allowed_hosts")) {
      if (auto items = read_list(diag_, *h)) {
        for (const Value& item : *items) {
          if (auto host = read_allowed_host(diag_, item)) admin.allowed_hosts.push_back(*host);
        }
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
    MapReader m(diag_, v, field_keys(kLimitsFields));
    Limits& l = config_.limits;
    const auto ok = read_fields(m, kLimitsFields, l);
    const bool header_ok = ok[kMaxHeaderBytes];
    const bool uri_ok = ok[kMaxUriBytes];
    // The URI is part of the request head, so a larger URI limit could never take effect.
    if (header_ok && uri_ok && l.max_uri_bytes > l.max_header_bytes) {
      const Value* at = m.get("max_uri_bytes");
      if (at == nullptr) at = m.get("max_header_bytes");
      diag_.add(at->line, "limits.max_uri_bytes",
                fmt::format("must not exceed limits.max_header_bytes ({} > {})", l.max_uri_bytes,
                            l.max_header_bytes));
    }
  }

  void load_http(const Value& v) {
    MapReader m(diag_, v, field_keys(kHttpFields));
    read_fields(m, kHttpFields, config_.http.path);
  }

  // A route path that request paths can never equal (they are normalised first, or refused)
  // would be a route that silently never matches: an error instead, naming the form to write.
  bool check_route_path(const Value& v, const std::string& path) {
    std::string normal;
    http::PathResult r = http::normalize_path(path, config_.http.path, normal);
    if (r.error != http::PathError::kNone) {
      v.error(diag_, fmt::format("'{}' can never match: requests with such a path are refused ({})",
                                 path, http::path_error_reason(r.error)));
      return false;
    }
    if (r.changed) {
      v.error(diag_, fmt::format("'{}' can never match: request paths are normalised first "
                                 "(see http); write '{}'",
                                 path, normal));
      return false;
    }
    return true;
  }

  void load_access_log(const Value& v) {
    MapReader m(diag_, v, field_keys(kAccessLogFields));
    read_fields(m, kAccessLogFields, config_.access_log);
  }

  void load_services(const Value& v) {
    auto items = read_list(diag_, v);
    if (!items) return;
    for (const Value& item : *items) {
      MapReader m(diag_, item,
                  {"name", "endpoints", "load_balancer", "timeouts", "retry", "kind",
                   "max_idle_connections", "health_check", "outlier_detection", "circuit_breaker",
                   "fallback", "adaptive_concurrency", "locality"});
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
        MapReader tm(diag_, *t, field_keys(kTimeoutsFields));
        read_fields(tm, kTimeoutsFields, service.timeouts);
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
      service.max_idle_connections_set =
          m.read_uint("max_idle_connections", service.max_idle_connections, 0, 10000) &&
          m.get("max_idle_connections") != nullptr;
      if (const Value* h = m.get("health_check")) load_health_check(*h, service.health_check);
      if (const Value* o = m.get("outlier_detection"))
        load_outlier_detection(*o, service.outlier_detection);
      const Value* breaker = m.get("circuit_breaker");
      if (breaker != nullptr) load_circuit_breaker(*breaker, service.circuit_breaker);
      if (const Value* f = m.get("fallback")) {
        load_fallback(*f, service.fallback);
        // The fallback is served while the breaker is open; without a breaker it never would be.
        if (breaker == nullptr) {
          f->error(diag_,
                   "only used with circuit_breaker (the fallback is served while the breaker is "
                   "open)");
        }
      }
      if (const Value* a = m.get("adaptive_concurrency"))
        load_adaptive_concurrency(*a, service.adaptive_concurrency);
      if (const Value* l = m.get("locality")) load_locality(*l, service.locality);
      config_.services.push_back(std::move(service));
    }
  }

  void load_endpoints(const Value& v, Service& service) {
    auto items = read_list(diag_, v);
    if (!items) return;
    // A control plane pushes a registry-backed service with no instance registered as an empty
    // list: its requests get 503 (no endpoint) instead of the rest of the config being refused.
    if (items->empty() && !pushed_) {
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
      if (auto key = read_request_input(diag_, *h, kHashOnSyntax)) lb.hash_on = *key;
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
    for (const Value& item : *items) {
      MapReader m(
          diag_, item,
          {"name", "match", "service", "services", "split", "strip_prefix", "prefix_rewrite"});
      if (!m.is_map()) continue;
      Route route;
      if (const Value* n = m.require("name")) {
        if (auto s = read_name(diag_, *n)) {
          check_unique(route_names_, *s, *n, "route");
          route.name = *s;
        }
      }
      bool match_ok = true;
      if (const Value* mv = m.get("match")) match_ok = load_match(*mv, route.match);
      if (route.match.path.empty() && route.match.path_prefix.empty())
        route.match.path_prefix = "/";
      const Value* one = m.get("service");
      const Value* split = m.get("services");
      if (one != nullptr && split != nullptr) {
        split->error(diag_, "use either 'service' or 'services' (a weighted split), not both");
      } else if (split != nullptr) {
        load_split_services(*split, route);
      } else if (one != nullptr) {
        resolve_service(*one, route);
      } else if (m.is_map()) {
        diag_.add(item.line, item.path + ".service",
                  "required (or 'services' for a weighted split)");
      }
      if (const Value* sv = m.get("split")) {
        if (split == nullptr) {
          sv->error(diag_,
                    "needs 'services' (a weighted split); a route with one 'service' has "
                    "nothing to split");
        } else {
          load_split(*sv, route.split);
        }
      }
      const Value* strip = m.get("strip_prefix");
      if (strip != nullptr) {
        if (auto p = read_path(diag_, *strip); p && check_route_path(*strip, *p)) {
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

  // routes[].services: [{name, weight, canary}], each an existing service, named once; the
  // weights pick among them per request (router/split.h).
  void load_split_services(const Value& v, Route& route) {
    auto items = read_list(diag_, v);
    if (!items) return;
    if (items->empty() || items->size() > kMaxSplitServices) {
      v.error(diag_,
              fmt::format("must list 1..{} services, got {}", kMaxSplitServices, items->size()));
      return;
    }
    bool all_read = true;
    const Value* canary_at = nullptr;
    std::optional<ServiceKind> kind;
    std::string kind_of;
    for (const Value& item : *items) {
      MapReader m(diag_, item, field_keys(kSplitServiceFields, {"name"}));
      if (!m.is_map()) {
        all_read = false;
        continue;
      }
      SplitService s;
      bool ok = true;
      if (const Value* n = m.require("name")) {
        if (auto name = read_string(diag_, *n)) {
          s.name = *name;
          if (auto i = find_name(s.name, "service")) {
            s.service_index = *i;
            const Service& svc = config_.services[*i];
            if (std::any_of(route.services.begin(), route.services.end(),
                            [&](const SplitService& o) { return o.name == s.name; })) {
              n->error(diag_, fmt::format("service '{}' is listed twice", s.name));
              ok = false;
            } else if (kind && *kind != svc.kind) {
              // A unit service routes by the customer's home city, a global one does not: one
              // customer would be served in either city depending on the side of the split.
              n->error(diag_, fmt::format("service '{}' is {} but '{}' is {}: the services of a "
                                          "split must all be unit or all global",
                                          s.name, kServiceKinds[svc.kind == ServiceKind::kUnit],
                                          kind_of, kServiceKinds[*kind == ServiceKind::kUnit]));
              ok = false;
            } else if (!kind) {
              kind = svc.kind;
              kind_of = s.name;
            }
          } else {
            std::vector<std::string_view> names;
            for (const auto& [name_, line] : service_names_) names.push_back(name_);
            n->error(diag_,
                     fmt::format("no service named '{}'{}", s.name, did_you_mean(s.name, names)));
            ok = false;
          }
        } else {
          ok = false;
        }
      } else {
        ok = false;
      }
      const auto read_ok = read_fields(m, kSplitServiceFields, s);
      ok = ok && read_ok[kSplitWeight] && read_ok[kSplitCanary];
      if (s.canary) {
        const Value* c = m.get("canary");
        if (canary_at != nullptr) {
          c->error(diag_, fmt::format("only one service of a split may be the canary "
                                      "(already {} at line {})",
                                      canary_at->path, canary_at->line));
          ok = false;
        } else {
          canary_at = c;
        }
      }
      if (!ok) {
        all_read = false;
        continue;
      }
      route.services.push_back(std::move(s));
    }
    // Judged only when every entry loaded: a weight that failed to read is not a weight of 0.
    if (all_read && std::none_of(route.services.begin(), route.services.end(),
                                 [](const SplitService& s) { return s.weight > 0; })) {
      v.error(diag_, "at least one service needs a weight above 0 (the weights are all 0)");
    }
    if (!route.services.empty()) route.service_index = route.services.front().service_index;
  }

  void load_split(const Value& v, Split& split) {
    MapReader m(diag_, v, field_keys(kSplitFields));
    read_fields(m, kSplitFields, split);
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
      if (auto p = read_path(diag_, *path); p && check_route_path(*path, *p)) {
        match.path = *p;
      } else {
        ok = false;
      }
    }
    if (prefix != nullptr) {
      if (auto p = read_path(diag_, *prefix); p && check_route_path(*prefix, *p)) {
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

  // ---- resilience, per service ----

  void load_health_check(const Value& v, HealthCheck& hc) {
    MapReader m(diag_, v,
                {"path", "host", "interval", "timeout", "jitter", "healthy_threshold",
                 "unhealthy_threshold"});
    if (!m.is_map()) return;
    hc.enabled = true;
    if (const Value* p = m.get("path")) {
      if (auto s = read_string(diag_, *p)) {
        bool ok = s->starts_with('/') && std::all_of(s->begin(), s->end(), [](char c) {
                    auto u = static_cast<unsigned char>(c);
                    return u > 0x20 && u != 0x7f && c != '#';
                  });
        if (ok) {
          hc.path = *s;
        } else {
          p->error(diag_, fmt::format("must start with '/' and contain no spaces, control "
                                      "characters or '#', got '{}'",
                                      *s));
        }
      }
    }
    if (const Value* h = m.get("host")) {
      if (auto s = read_string(diag_, *h)) {
        bool ok = std::all_of(s->begin(), s->end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 std::string_view(".-_:[]").find(c) != std::string_view::npos;
        });
        if (ok) {
          hc.host = *s;
        } else {
          h->error(diag_, fmt::format("expected a host name such as accounts.internal, with an "
                                      "optional :port, got '{}'",
                                      *s));
        }
      }
    }
    bool interval_ok = m.read("interval", hc.interval, 10ms, kMaxTimeout);
    bool timeout_ok = m.read("timeout", hc.timeout, 1ms, kMaxTimeout);
    bool jitter_ok = m.read("jitter", hc.jitter, 0ns, kMaxTimeout);
    m.read_uint("healthy_threshold", hc.healthy_threshold, 1, 100);
    m.read_uint("unhealthy_threshold", hc.unhealthy_threshold, 1, 100);
    if (!interval_ok) return;
    // Defaults give way to a short interval; values written out are checked against it.
    const std::string interval = core::format_duration(hc.interval);
    if (const Value* t = m.get("timeout")) {
      if (timeout_ok && hc.timeout > hc.interval) {
        t->error(diag_,
                 fmt::format("must be at most interval ({}), got {}", interval, t->node.Scalar()));
      }
    } else {
      hc.timeout = std::min(hc.timeout, hc.interval);
    }
    if (const Value* j = m.get("jitter")) {
      if (jitter_ok && hc.jitter >= hc.interval) {
        j->error(diag_, fmt::format("must be less than interval ({}), got {}", interval,
                                    j->node.Scalar()));
      }
    } else {
      hc.jitter = std::min(hc.jitter, hc.interval / 10);
    }
  }

  void load_outlier_detection(const Value& v, OutlierDetection& od) {
    MapReader m(diag_, v, field_keys(kOutlierFields));
    if (!m.is_map()) return;
    od.enabled = true;
    const auto ok = read_fields(m, kOutlierFields, od);
    at_least(m, "max_ejection_time", od.max_ejection_time,
             ok[field_index(kOutlierFields, "max_ejection_time")], "base_ejection_time",
             od.base_ejection_time, ok[field_index(kOutlierFields, "base_ejection_time")]);
  }

  void load_circuit_breaker(const Value& v, CircuitBreaker& cb) {
    MapReader m(diag_, v, field_keys(kBreakerFields));
    if (!m.is_map()) return;
    cb.enabled = true;
    const auto ok = read_fields(m, kBreakerFields, cb);
    at_least(m, "max_open_duration", cb.max_open_duration,
             ok[field_index(kBreakerFields, "max_open_duration")], "open_duration",
             cb.open_duration, ok[field_index(kBreakerFields, "open_duration")]);
  }

  // `upper` (key `upper_key`) must be >= `lower`. Written out, a smaller value is an error; left
  // out, its default is raised to `lower`, so that writing only `lower` never fails on a default.
  template <class T>
  void at_least(const MapReader& m, std::string_view upper_key, T& upper, bool upper_ok,
                std::string_view lower_key, T lower, bool lower_ok) {
    if (!upper_ok || !lower_ok) return;
    const Value* u = m.get(upper_key);
    if (u == nullptr) {
      upper = std::max(upper, lower);
    } else if (upper < lower) {
      u->error(diag_, fmt::format("must be at least {} ({}), got {}", lower_key, show(lower),
                                  u->node.Scalar()));
    }
  }
  static std::string show(Duration d) { return core::format_duration(d); }
  static std::string show(uint32_t n) { return std::to_string(n); }

  void load_fallback(const Value& v, Fallback& fb) {
    MapReader m(diag_, v, {"status", "body", "content_type"});
    if (!m.is_map()) return;
    fb.enabled = true;
    bool status_ok = m.read_uint("status", fb.status, 200, 599);
    const Value* body = m.get("body");
    if (body != nullptr) {
      if (auto s = read_string(diag_, *body)) {
        if (s->size() > kMaxFallbackBody) {
          body->error(diag_, fmt::format("must be at most 64KiB, got {} bytes", s->size()));
        } else {
          fb.body = *s;
        }
      }
    }
    if (const Value* c = m.get("content_type")) {
      if (auto s = read_string(diag_, *c)) {
        if (s->empty() || !is_header_value(*s)) {
          c->error(diag_, "must be a non-empty header value without control characters");
        } else {
          fb.content_type = *s;
        }
      }
    }
    if (status_ok && (fb.status == 204 || fb.status == 304) && body != nullptr &&
        !fb.body.empty()) {
      body->error(diag_, fmt::format("must be empty with status {} (a response that has no body)",
                                     fb.status));
    }
  }

  void load_adaptive_concurrency(const Value& v, AdaptiveConcurrency& ac) {
    MapReader m(diag_, v,
                {"algorithm", "initial_limit", "min_limit", "max_limit", "sample_window",
                 "tolerance", "latency_threshold", "backoff", "mode"});
    if (!m.is_map()) return;
    ac.enabled = true;
    bool algorithm_ok = true;
    if (const Value* a = m.get("algorithm")) {
      auto i = read_enum(diag_, *a, kAdaptiveAlgorithms);
      algorithm_ok = i.has_value();
      if (i) ac.algorithm = static_cast<AdaptiveConcurrency::Algorithm>(*i);
    }
    bool initial_ok = m.read_uint("initial_limit", ac.initial_limit, 1, kMaxConcurrencyLimit);
    bool min_ok = m.read_uint("min_limit", ac.min_limit, 1, kMaxConcurrencyLimit);
    bool max_ok = m.read_uint("max_limit", ac.max_limit, 1, kMaxConcurrencyLimit);
    m.read("sample_window", ac.sample_window, 10ms, 1min);
    m.read("tolerance", ac.tolerance, RealRange{1, 10});
    m.read("latency_threshold", ac.latency_threshold, kMaxTimeout);
    m.read("backoff", ac.backoff, RealRange{0, 1, true, true});
    read_mode(m, ac.mode);
    if (algorithm_ok) {
      bool gradient = ac.algorithm == AdaptiveConcurrency::Algorithm::kGradient;
      for (std::string_view key : {"latency_threshold", "backoff"}) {
        if (const Value* k = m.get(key); k != nullptr && gradient)
          k->error(diag_, "only used with algorithm aimd");
      }
      if (const Value* k = m.get("tolerance"); k != nullptr && !gradient)
        k->error(diag_, "only used with algorithm gradient");
    }
    // min_limit <= initial_limit <= max_limit; defaults give way to the limits written out.
    if (!min_ok || !max_ok) return;
    const Value* min = m.get("min_limit");
    const Value* max = m.get("max_limit");
    if (min != nullptr && max != nullptr) {
      if (ac.max_limit < ac.min_limit) {
        max->error(diag_, fmt::format("must be at least min_limit ({}), got {}", ac.min_limit,
                                      ac.max_limit));
        return;
      }
    } else if (min != nullptr) {
      ac.max_limit = std::max(ac.max_limit, ac.min_limit);
    } else if (max != nullptr) {
      ac.min_limit = std::min(ac.min_limit, ac.max_limit);
    }
    if (!initial_ok) return;
    if (const Value* initial = m.get("initial_limit")) {
      if (ac.initial_limit < ac.min_limit || ac.initial_limit > ac.max_limit) {
        initial->error(diag_, fmt::format("must be min_limit..max_limit ({}..{}), got {}",
                                          ac.min_limit, ac.max_limit, ac.initial_limit));
      }
    } else {
      ac.initial_limit = std::clamp(ac.initial_limit, ac.min_limit, ac.max_limit);
    }
  }

  bool read_mode(const MapReader& m, Mode& mode) {
    const Value* v = m.get("mode");
    if (v == nullptr) return true;
    auto i = read_enum(diag_, *v, kModes);
    if (i) mode = static_cast<Mode>(*i);
    return i.has_value();
  }

  // ---- dual city: locality per service, unit (shard) routing at the top level ----

  // A prefer of same_city/same_zone with an empty node.city/zone is not an error: every endpoint
  // is then in the same tier (docs/config.md says so).
  void load_locality(const Value& v, Locality& l) {
    MapReader m(diag_, v, field_keys(kLocalityFields));
    if (!m.is_map()) return;
    read_fields(m, kLocalityFields, l);
  }

  void load_units(const Value& v) {
    MapReader m(diag_, v,
                {"key", "shards", "owners", "peers", "protect", "hold_timeout", "peer_timeouts"});
    if (!m.is_map()) return;
    Units& u = config_.units;
    u.enabled = true;
    if (const Value* k = m.require("key")) {
      if (auto key = read_request_input(diag_, *k, kUnitKeySyntax)) u.key = *key;
    }
    bool shards_ok = m.read_uint("shards", u.shards, 1, kMaxShards);
    std::optional<std::vector<std::string>> cities;
    if (const Value* o = m.require("owners")) cities = load_unit_owners(*o, shards_ok, u);
    if (const Value* p = m.get("peers")) load_unit_peers(*p, cities, u);
    m.read("protect", u.protect);
    m.read("hold_timeout", u.hold_timeout, 0ns, kMaxHoldTimeout);
    if (const Value* t = m.get("peer_timeouts")) {
      MapReader tm(diag_, *t, field_keys(kPeerTimeoutsFields));
      read_fields(tm, kPeerTimeoutsFields, u.peer_timeouts);
    }
    // Sorted by city, ranges sorted and merged: a reload keeps run-time ownership when the
    // section is unchanged, and moving a city or range within the file changes nothing.
    auto by_city = [](const auto& a, const auto& b) { return a.city < b.city; };
    std::sort(u.owners.begin(), u.owners.end(), by_city);
    std::sort(u.peers.begin(), u.peers.end(), by_city);
  }

  // The owner cities in file order, or nullopt when they are not all known (so that peers are not
  // checked against a partial list).
  std::optional<std::vector<std::string>> load_unit_owners(const Value& v, bool shards_ok,
                                                           Units& u) {
    if (!v.node.IsNull() && !v.node.IsMap()) {
      v.error(diag_,
              "expected a mapping of city to shard ranges, such as {a: \"0-49\", b: "
              "\"50-99\"}, got " +
                  describe(v.node));
      return std::nullopt;
    }
    bool cities_ok = true;
    bool ranges_ok = true;
    std::vector<ShardClaim> claims;
    std::vector<std::pair<std::string, int>> seen;
    for (auto it = v.node.begin(); it != v.node.end(); ++it) {
      const YAML::Node key = it->first;  // copies: see MapReader
      const YAML::Node value_node = it->second;
      auto city = read_city_key(v, key, value_node, seen);
      if (!city) {
        cities_ok = false;
        continue;
      }
      Value item = v.child(*city, key, value_node);
      const size_t owner = u.owners.size();
      u.owners.push_back(UnitOwner{*city, {}});
      auto add = [&](const Value& at) {
        auto s = read_string(diag_, at);
        bool ok = s && parse_shard_ranges(at, *s, shards_ok ? u.shards : 0, owner, claims);
        ranges_ok = ranges_ok && ok;
      };
      if (item.node.IsSequence()) {
        for (size_t i = 0; i < item.node.size(); ++i) add(item.item(i));
      } else if (item.node.IsScalar()) {
        add(item);
      } else {
        item.error(diag_,
                   "expected shard ranges: a string such as \"0-49\" or \"0-9, 20-29, 42\", "
                   "or a list of such strings, got " +
                       describe(item.node));
        ranges_ok = false;
      }
    }
    // Without a valid shard count nothing can be checked against the key space. Gaps are only
    // judged when every range was understood, so that a typo is not also reported as a gap.
    if (shards_ok) check_shard_ownership(v, claims, u, /*gaps=*/cities_ok && ranges_ok);
    for (const ShardClaim& c : claims) u.owners[c.owner].ranges.push_back(c.range);
    for (UnitOwner& o : u.owners) {
      std::sort(o.ranges.begin(), o.ranges.end(),
                [](const ShardRange& a, const ShardRange& b) { return a.first < b.first; });
      std::vector<ShardRange> merged;
      for (const ShardRange& r : o.ranges) {
        if (!merged.empty() && uint64_t{merged.back().last} + 1 >= r.first) {
          merged.back().last = std::max(merged.back().last, r.last);
        } else {
          merged.push_back(r);
        }
      }
      o.ranges = std::move(merged);
    }
    if (u.owners.size() > kMaxUnitCities) {
      v.error(diag_, fmt::format("at most {} cities, got {}", kMaxUnitCities, u.owners.size()));
    }
    if (!cities_ok) return std::nullopt;
    std::vector<std::string> cities;
    for (const UnitOwner& o : u.owners) cities.push_back(o.city);
    return cities;
  }

  // A city as the key of units.owners or units.peers: a name, once per mapping.
  std::optional<std::string> read_city_key(const Value& map, const YAML::Node& key,
                                           const YAML::Node& value,
                                           std::vector<std::pair<std::string, int>>& seen) {
    if (!key.IsScalar()) {
      map.error(diag_, "cities must be strings, got " + describe(key));
      return std::nullopt;
    }
    Value item = map.child(key.Scalar(), key, value);
    int key_line = key.Mark().is_null() ? map.line : key.Mark().line + 1;
    auto city = read_name(diag_, Value{key, item.path, key_line});
    if (!city) return std::nullopt;
    auto first = std::find_if(seen.begin(), seen.end(), [&](auto& s) { return s.first == *city; });
    if (first != seen.end()) {
      diag_.add(key_line, item.path,
                fmt::format("duplicate city (first at line {})", first->second));
      return std::nullopt;
    }
    seen.emplace_back(*city, key_line);
    return city;
  }

  // "0-9, 20-29, 42" into claims of `owner`; a blank string claims nothing. `shards` is 0 when
  // unknown (then ranges are not checked against it). False when some part is not understood.
  bool parse_shard_ranges(const Value& at, std::string_view text, uint32_t shards, size_t owner,
                          std::vector<ShardClaim>& claims) {
    if (trim(text).empty()) return true;
    bool ok = true;
    for (size_t start = 0;;) {
      size_t comma = text.find(',', start);
      std::string_view piece = trim(text.substr(start, comma - start));
      size_t dash = piece.find('-');
      auto first = parse_shard(piece.substr(0, dash));
      auto last = dash == std::string_view::npos ? first : parse_shard(piece.substr(dash + 1));
      if (!first || !last) {
        at.error(diag_, fmt::format("'{}' is not a shard or a range of shards (write ranges such "
                                    "as \"0-49\" or \"0-9, 20-29, 42\")",
                                    piece));
        ok = false;
      } else if (*first > *last) {
        at.error(diag_, fmt::format("range {}-{}: first must be <= last", *first, *last));
        ok = false;
      } else if (shards > 0 && *last >= shards) {
        at.error(diag_, fmt::format("{} {} is outside 0..{} (shards: {})",
                                    dash == std::string_view::npos ? "shard" : "range", piece,
                                    shards - 1, shards));
        // The part inside the key space still counts, so it is not also reported as a gap.
        if (*first < shards)
          claims.push_back({{static_cast<uint32_t>(*first), shards - 1}, owner, at.path, at.line});
      } else {
        claims.push_back({{static_cast<uint32_t>(*first), static_cast<uint32_t>(*last)},
                          owner,
                          at.path,
                          at.line});
      }
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    return ok;
  }

  // Every shard 0..shards-1 owned by exactly one city. One sweep in order of first shard: a claim
  // that starts before the furthest-reaching earlier claim ends overlaps it, and the overlap is
  // reported on whichever of the two is further down the file. Every shard claimed twice lies in
  // some reported overlap, and the work is O(n log n) in the number of ranges, not of shards.
  void check_shard_ownership(const Value& owners, const std::vector<ShardClaim>& claims,
                             const Units& u, bool gaps) {
    std::vector<size_t> order(claims.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return claims[a].range.first < claims[b].range.first;
    });
    std::optional<size_t> reach;  // the claim that reaches furthest so far
    std::vector<ShardRange> unowned;
    uint64_t next = 0;  // the first shard not covered by the claims seen so far
    for (size_t i : order) {
      const ShardClaim& c = claims[i];
      if (reach && c.range.first <= claims[*reach].range.last) {
        const ShardClaim& earlier = claims[std::min(i, *reach)];
        const ShardClaim& later = claims[std::max(i, *reach)];
        std::vector<ShardRange> both{
            {c.range.first, std::min(c.range.last, claims[*reach].range.last)}};
        const std::string& a = u.owners[earlier.owner].city;
        const std::string& b = u.owners[later.owner].city;
        diag_.add(later.line, later.path,
                  a == b ? fmt::format("{} listed twice for {}", shards_for_error(both), a)
                         : fmt::format("{} owned by both {} and {}", shards_for_error(both), a, b));
      }
      if (!reach || c.range.last > claims[*reach].range.last) reach = i;
      if (c.range.first > next) unowned.push_back({static_cast<uint32_t>(next), c.range.first - 1});
      next = std::max<uint64_t>(next, uint64_t{c.range.last} + 1);
    }
    if (next < u.shards) unowned.push_back({static_cast<uint32_t>(next), u.shards - 1});
    if (gaps && !unowned.empty()) {
      bool one = unowned.size() == 1 && unowned[0].first == unowned[0].last;
      owners.error(diag_,
                   fmt::format("{} {} no owner", shards_for_error(unowned), one ? "has" : "have"));
    }
  }

  // `cities` is nullopt when the owner cities are not known (their errors stand).
  void load_unit_peers(const Value& v, const std::optional<std::vector<std::string>>& cities,
                       Units& u) {
    if (v.node.IsNull()) return;
    if (!v.node.IsMap()) {
      v.error(diag_,
              "expected a mapping of city to gateway address, such as {a: 127.0.0.1:8080, "
              "b: 127.0.0.1:8180}, got " +
                  describe(v.node));
      return;
    }
    std::vector<std::pair<std::string, int>> seen;
    for (auto it = v.node.begin(); it != v.node.end(); ++it) {
      const YAML::Node key = it->first;  // copies: see MapReader
      const YAML::Node value_node = it->second;
      auto city = read_city_key(v, key, value_node, seen);
      if (!city) continue;
      Value item = v.child(*city, key, value_node);
      // A peer is where requests for a city's shards are forwarded; a city that can own no shard
      // is never forwarded to, so the name is most likely a typo.
      if (cities && std::find(cities->begin(), cities->end(), *city) == cities->end()) {
        std::vector<std::string_view> names(cities->begin(), cities->end());
        int key_line = key.Mark().is_null() ? v.line : key.Mark().line + 1;
        std::string known = cities->empty() ? "" : fmt::format(" ({})", fmt::join(*cities, ", "));
        diag_.add(key_line, item.path,
                  fmt::format("city '{}' is not in units.owners{}{}", *city, known,
                              did_you_mean(*city, names)));
        continue;
      }
      if (auto hp = read_address(diag_, item)) u.peers.push_back(UnitPeer{*city, *hp});
    }
  }

  // ---- rate limiting and overload, top level ----

  void load_redis(const Value& v) {
    MapReader m(diag_, v, field_keys(kRedisFields));
    if (!m.is_map()) return;
    config_.redis.enabled = true;
    read_fields(m, kRedisFields, config_.redis);
  }

  void load_rate_limits(const Value& v) {
    auto items = read_list(diag_, v);
    if (!items) return;
    std::vector<std::pair<std::string, int>> names;
    for (const Value& item : *items) {
      MapReader m(
          diag_, item,
          {"name", "match", "key", "limit", "algorithm", "scope", "mode", "overrides", "max_keys"});
      if (!m.is_map()) continue;
      RateLimitRule rule;
      if (const Value* n = m.require("name")) {
        if (auto s = read_name(diag_, *n)) {
          check_unique(names, *s, *n, "rate limit");
          rule.name = *s;
        }
      }
      if (const Value* mv = m.get("match")) load_rate_match(*mv, rule);
      bool key_ok = true;
      if (const Value* k = m.get("key")) key_ok = load_rate_key(*k, rule.key);
      // Checks that depend on the algorithm are skipped when it failed to load; its error stands.
      std::optional<RateAlgorithm> algorithm = rule.algorithm;
      if (const Value* a = m.get("algorithm")) {
        algorithm.reset();
        if (auto i = read_enum(diag_, *a, kRateAlgorithms)) {
          rule.algorithm = static_cast<RateAlgorithm>(*i);
          algorithm = rule.algorithm;
        }
      }
      if (const Value* l = m.require("limit")) load_rate_value(*l, algorithm, rule.limit, nullptr);
      if (const Value* sv = m.get("scope")) {
        if (auto i = read_enum(diag_, *sv, kRateScopes)) {
          rule.scope = static_cast<RateScope>(*i);
          if (rule.scope == RateScope::kCluster) {
            if (algorithm == RateAlgorithm::kConcurrency) {
              sv->error(diag_, "concurrency limits are node scope only");
            } else if (!has_redis_) {
              sv->error(diag_, "scope cluster requires the top-level 'redis' section");
            }
          }
        }
      }
      read_mode(m, rule.mode);
      if (const Value* o = m.get("overrides")) load_overrides(*o, algorithm, key_ok, rule);
      m.read_uint("max_keys", rule.max_keys, 1, kMaxRateKeys);
      config_.rate_limits.push_back(std::move(rule));
    }
  }

  void load_rate_match(const Value& v, RateLimitRule& rule) {
    MapReader m(diag_, v, {"routes", "services"});
    if (const Value* r = m.get("routes")) {
      resolve_names(*r, "route", route_names_, rule.match_routes, rule.route_indices);
    }
    if (const Value* s = m.get("services")) {
      resolve_names(*s, "service", service_names_, rule.match_services, rule.service_indices);
    }
  }

  // A list of route or service names, each resolved to its index in the config. A name listed
  // twice counts once.
  void resolve_names(const Value& v, const char* what,
                     const std::vector<std::pair<std::string, int>>& known,
                     std::vector<std::string>& names, std::vector<size_t>& indices) {
    auto items = read_list(diag_, v);
    if (!items) return;
    if (items->empty()) {
      v.error(diag_, fmt::format("must not be empty (leave it out to match every {})", what));
      return;
    }
    for (const Value& item : *items) {
      auto s = read_string(diag_, item);
      if (!s) continue;
      auto index = find_name(*s, what);
      if (!index) {
        std::vector<std::string_view> candidates;
        for (const auto& [name, line] : known) candidates.push_back(name);
        item.error(diag_,
                   fmt::format("no {} named '{}'{}", what, *s, did_you_mean(*s, candidates)));
        continue;
      }
      if (std::find(names.begin(), names.end(), *s) != names.end()) continue;
      names.push_back(*s);
      indices.push_back(*index);
    }
  }

  std::optional<size_t> find_name(const std::string& name, std::string_view what) const {
    if (what == "route") {
      for (size_t i = 0; i < config_.routes.size(); ++i) {
        if (config_.routes[i].name == name) return i;
      }
    } else {
      for (size_t i = 0; i < config_.services.size(); ++i) {
        if (config_.services[i].name == name) return i;
      }
    }
    return std::nullopt;
  }

  // Returns false when a part failed to load, so that overrides are not checked against it.
  bool load_rate_key(const Value& v, std::vector<RequestInput>& key) {
    auto items = read_list(diag_, v);
    if (!items) return false;
    bool ok = true;
    for (const Value& item : *items) {
      auto part = read_request_input(diag_, item, kRateKeySyntax);
      if (!part) {
        ok = false;
        continue;
      }
      if (std::find(key.begin(), key.end(), *part) != key.end()) {
        std::string text = to_string(*part);
        item.error(diag_, fmt::format("duplicate key part '{}'", text));
        ok = false;
        continue;
      }
      key.push_back(std::move(*part));
    }
    return ok;
  }

  // `algorithm` is nullopt when the rule's algorithm is invalid. An override's limit takes `per`
  // from the rule's limit (`inherit`) unless it gives its own; `burst` is never inherited.
  void load_rate_value(const Value& v, std::optional<RateAlgorithm> algorithm, RateLimitValue& out,
                       const RateLimitValue* inherit) {
    MapReader m(diag_, v, {"requests", "per", "burst"});
    if (!m.is_map()) return;
    if (const Value* r = m.require("requests")) {
      if (auto n = read_uint(diag_, *r, 1, kMaxRequests)) out.requests = *n;
    }
    if (inherit != nullptr) out.per = inherit->per;
    // A key the algorithm does not use is reported as such, whatever its value.
    const Value* per = m.get("per");
    if (per != nullptr && algorithm == RateAlgorithm::kConcurrency) {
      per->error(diag_, "not used by algorithm concurrency (its limit is requests in flight)");
    } else {
      m.read("per", out.per, 1ms, 24h);
    }
    const Value* burst = m.get("burst");
    if (burst != nullptr && algorithm && *algorithm != RateAlgorithm::kTokenBucket) {
      burst->error(diag_, "only used with algorithm token_bucket");
    } else {
      m.read_uint("burst", out.burst, 1, kMaxRequests);
    }
    // A bucket without a burst holds `requests`: resolved here, so that the config says what
    // takes effect and GET /config (which shows it so) loads back to the same limit.
    if (algorithm == RateAlgorithm::kTokenBucket && out.burst == 0) out.burst = out.requests;
  }

  void load_overrides(const Value& v, std::optional<RateAlgorithm> algorithm, bool key_ok,
                      RateLimitRule& rule) {
    auto items = read_list(diag_, v);
    if (!items) return;
    if (!items->empty() && key_ok && rule.key.empty()) {
      v.error(diag_,
              "overrides need a 'key' on the rule (without one, all requests share one "
              "counter)");
      return;
    }
    std::vector<std::pair<std::string, int>> seen;
    for (const Value& item : *items) {
      MapReader m(diag_, item, {"key", "limit"});
      if (!m.is_map()) continue;
      RateLimitOverride o;
      if (const Value* k = m.require("key")) {
        if (auto s = read_string(diag_, *k)) {
          auto first =
              std::find_if(seen.begin(), seen.end(), [&](const auto& x) { return x.first == *s; });
          if (first != seen.end()) {
            k->error(diag_, fmt::format("duplicate override key '{}' (first at line {})", *s,
                                        first->second));
          } else {
            seen.emplace_back(*s, k->line);
            if (key_ok) check_override_key(*k, *s, rule.key);
          }
          o.key = *s;
        }
      }
      if (const Value* l = m.require("limit")) load_rate_value(*l, algorithm, o.limit, &rule.limit);
      rule.overrides.push_back(std::move(o));
    }
  }

  // An override key is the composed key of some request: one value per key part, joined by '|'.
  // Values the loader can know (routes, services, addresses) are checked so a typo is not an
  // override that never matches.
  void check_override_key(const Value& at, const std::string& key,
                          const std::vector<RequestInput>& parts) {
    std::vector<std::string> values;
    for (size_t start = 0;;) {
      size_t bar = key.find('|', start);
      values.push_back(key.substr(start, bar - start));
      if (bar == std::string::npos) break;
      start = bar + 1;
    }
    if (values.size() != parts.size()) {
      std::string names;
      for (const auto& p : parts) names += (names.empty() ? "" : "|") + to_string(p);
      at.error(diag_, fmt::format("'{}' has {} value(s) but the rule's key has {} ({}); join the "
                                  "values with '|'",
                                  key, values.size(), parts.size(), names));
      return;
    }
    for (size_t i = 0; i < parts.size(); ++i) {
      const std::string& value = values[i];
      switch (parts[i].kind) {
        case RequestInput::Kind::kRoute:
        case RequestInput::Kind::kService: {
          bool route = parts[i].kind == RequestInput::Kind::kRoute;
          const char* what = route ? "route" : "service";
          if (!find_name(value, what)) {
            std::vector<std::string_view> candidates;
            for (const auto& [name, line] : route ? route_names_ : service_names_)
              candidates.push_back(name);
            at.error(diag_, fmt::format("value {} of '{}': no {} named '{}'{}", i + 1, key, what,
                                        value, did_you_mean(value, candidates)));
          }
          break;
        }
        case RequestInput::Kind::kClientIp: {
          auto ip = canonical_ip(value);
          if (!ip) {
            at.error(diag_, fmt::format("value {} of '{}': expected an IP address, got '{}'", i + 1,
                                        key, value));
          } else if (*ip != value) {
            at.error(diag_, fmt::format("value {} of '{}': write the address as '{}' (the form "
                                        "client addresses take in keys)",
                                        i + 1, key, *ip));
          }
          break;
        }
        default:
          break;
      }
    }
  }

  void load_overload(const Value& v) {
    MapReader m(
        diag_, v,
        {"priority_key", "priorities", "default_priority", "reserve", "max_in_flight", "mode"});
    if (!m.is_map()) return;
    Overload& o = config_.overload;
    o.enabled = true;
    const Value* key = m.get("priority_key");
    if (key != nullptr) {
      if (auto k = read_request_input(diag_, *key, kPriorityKeySyntax)) o.priority_key = *k;
    }
    const Value* priorities = m.get("priorities");
    bool priorities_ok = true;
    if (priorities != nullptr) {
      auto items = read_list(diag_, *priorities);
      priorities_ok = items.has_value();
      if (items && items->empty()) {
        priorities->error(diag_, "must name at least one priority class (leave it out for none)");
        priorities_ok = false;
      } else if (items && items->size() > kMaxPriorities) {
        priorities->error(diag_, fmt::format("at most {} priority classes, got {}", kMaxPriorities,
                                             items->size()));
        priorities_ok = false;
      } else if (items) {
        std::vector<std::pair<std::string, int>> names;
        for (const Value& item : *items) {
          auto s = read_name(diag_, item);
          if (!s) {
            priorities_ok = false;
            continue;
          }
          size_t before = names.size();
          check_unique(names, *s, item, "priority");
          if (names.size() == before) {
            priorities_ok = false;
            continue;
          }
          o.priorities.push_back(*s);
        }
      }
    }
    m.read("reserve", o.reserve, RealRange{0, 0.9});
    m.read_uint("max_in_flight", o.max_in_flight, 0, kMaxRateKeys);
    read_mode(m, o.mode);
    // Classes need a key to tell them apart, and a key needs classes to map to.
    if (key != nullptr && priorities == nullptr) {
      diag_.add(v.line, v.path + ".priorities", "required with priority_key");
    }
    if (priorities != nullptr && key == nullptr) {
      diag_.add(v.line, v.path + ".priority_key", "required with priorities");
    }
    if (!o.priorities.empty()) o.default_priority = o.priorities.size() - 1;
    if (const Value* d = m.get("default_priority")) {
      auto s = read_string(diag_, *d);
      if (!s) return;
      if (priorities == nullptr) {
        d->error(diag_, "only used with priorities");
        return;
      }
      if (!priorities_ok) return;
      auto it = std::find(o.priorities.begin(), o.priorities.end(), *s);
      if (it == o.priorities.end()) {
        std::vector<std::string_view> names(o.priorities.begin(), o.priorities.end());
        d->error(diag_, fmt::format("must be one of priorities ({}), got '{}'{}",
                                    fmt::join(o.priorities, ", "), *s, did_you_mean(*s, names)));
        return;
      }
      o.default_priority = static_cast<size_t>(it - o.priorities.begin());
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
  bool has_redis_ = false;
  bool node_city_invalid_ = false;
  bool pushed_ = false;
  std::vector<BoundAddress> bound_;                         // admin + listeners
  std::vector<std::pair<std::string, int>> service_names_;  // name, line
  std::vector<std::pair<std::string, int>> route_names_;    // name, line
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
  auto config = std::make_shared<GatewayConfig>();
  config->source_file = source_name;
  result.errors = load_document(yaml, source_name, [&](Diagnostics& diag, const Value& root) {
    SchemaLoader(diag, *config).load(root);
  });
  if (result.errors.empty()) result.config = std::move(config);
  return result;
}

LoadResult load_with_pushed(std::string_view local_yaml, const std::string& local_name,
                            std::string_view pushed_json, const std::string& pushed_name) {
  LoadResult result;
  auto config = std::make_shared<GatewayConfig>();
  config->source_file = local_name;
  YAML::Node pushed;
  result.errors = load_document(pushed_json, pushed_name, [&](Diagnostics& diag, const Value& v) {
    MapReader m(diag, v, {"services", "routes", "rate_limits", "units"});
    if (m.is_map()) pushed = v.node;
  });
  if (!result.errors.empty()) return result;
  result.errors = load_document(local_yaml, local_name, [&](Diagnostics& diag, const Value& root) {
    YAML::Node merged = YAML::Clone(root.node);
    if (merged.IsMap()) {
      for (std::string_view key : kPushedSections) {
        if (const YAML::Node local = root.node[std::string(key)]) {
          diag.add(local.Mark().line + 1, std::string(key),
                   "comes from the control plane when control_plane is set; remove it from this "
                   "file (or remove control_plane)");
        }
      }
      for (std::string_view key : kPushedSections) {
        const std::string k(key);
        if (pushed[k]) merged[k] = pushed[k];
      }
    }
    SchemaLoader(diag, *config, /*pushed=*/true).load(Value{merged, "", 1});
  });
  // The local file cannot hold these sections, so errors under them are about what was pushed;
  // their lines are of the JSON text, which nobody sees: leave them out.
  for (ConfigError& e : result.errors) {
    if (e.message.rfind("comes from the control plane", 0) == 0) continue;
    for (std::string_view key : kPushedSections) {
      if (e.path.rfind(key, 0) == 0 &&
          (e.path.size() == key.size() || e.path[key.size()] == '[' || e.path[key.size()] == '.')) {
        e.file = pushed_name;
        e.line = 0;
      }
    }
  }
  if (result.errors.empty()) result.config = std::move(config);
  return result;
}

LoadResult load_file(const std::string& path) {
  LoadResult result;
  if (auto text = read_config_file(path, result.errors)) return load_string(*text, path);
  return result;
}

std::string to_json(const GatewayConfig& config) {
  // Ordered like the file, and using only the file's own keys, so the output is itself a valid
  // config (JSON is YAML) that loads back to the same values.
  using Json = nlohmann::ordered_json;
  auto d = [](Duration x) { return core::format_duration(x); };
  Json j;
  write_fields(j["node"], kNodeFields, config.node);
  write_fields(j, kTopFields, config);
  j["listeners"] = Json::array();
  for (const auto& l : config.listeners) {
    j["listeners"].push_back({{"name", l.name}, {"address", l.address.to_string()}});
  }
  if (config.admin.enabled) {
    // The token itself is never shown; the file it came from is.
    j["admin"] = {{"address", config.admin.address.to_string()}};
    if (!config.admin.token_file.empty()) j["admin"]["token_file"] = config.admin.token_file;
    j["admin"]["allowed_hosts"] = config.admin.allowed_hosts;
  }
  write_fields(j["limits"], kLimitsFields, config.limits);
  write_fields(j["http"], kHttpFields, config.http.path);
  write_fields(j["access_log"], kAccessLogFields, config.access_log);
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
    if (s.load_balancer.hash_on.kind != RequestInput::Kind::kNone) {
      js["load_balancer"]["hash_on"] = to_string(s.load_balancer.hash_on);
    }
    write_fields(js["timeouts"], kTimeoutsFields, s.timeouts);
    Json on = Json::array();
    for (const auto& r : kRetryOn) {
      if (s.retry.on & r.bit) on.push_back(r.name);
    }
    js["retry"] = {{"attempts", s.retry.attempts},
                   {"on", on},
                   {"budget_percent", s.retry.budget_percent},
                   {"min_retry_concurrency", s.retry.min_retry_concurrency},
                   {"non_idempotent", s.retry.non_idempotent}};
    // Only when set: absent means "follow demand", and the output must load back the same way.
    if (s.max_idle_connections_set) js["max_idle_connections"] = s.max_idle_connections;
    // Sections left out of the file stay out, so that the output loads back to the same config.
    if (const HealthCheck& h = s.health_check; h.enabled) {
      js["health_check"] = {{"path", h.path},
                            {"host", h.host},
                            {"interval", d(h.interval)},
                            {"timeout", d(h.timeout)},
                            {"jitter", d(h.jitter)},
                            {"healthy_threshold", h.healthy_threshold},
                            {"unhealthy_threshold", h.unhealthy_threshold}};
    }
    if (const OutlierDetection& o = s.outlier_detection; o.enabled) {
      write_fields(js["outlier_detection"], kOutlierFields, o);
    }
    if (const CircuitBreaker& b = s.circuit_breaker; b.enabled) {
      write_fields(js["circuit_breaker"], kBreakerFields, b);
    }
    if (const Fallback& f = s.fallback; f.enabled) {
      js["fallback"] = {{"status", f.status}, {"body", f.body}, {"content_type", f.content_type}};
    }
    if (const AdaptiveConcurrency& a = s.adaptive_concurrency; a.enabled) {
      Json ja;
      ja["algorithm"] = kAdaptiveAlgorithms[static_cast<size_t>(a.algorithm)];
      ja["initial_limit"] = a.initial_limit;
      ja["min_limit"] = a.min_limit;
      ja["max_limit"] = a.max_limit;
      ja["sample_window"] = d(a.sample_window);
      // Only the keys of the chosen algorithm: the others are rejected when loaded.
      if (a.algorithm == AdaptiveConcurrency::Algorithm::kGradient) {
        ja["tolerance"] = a.tolerance;
      } else {
        ja["latency_threshold"] = d(a.latency_threshold);
        ja["backoff"] = a.backoff;
      }
      ja["mode"] = kModes[static_cast<size_t>(a.mode)];
      js["adaptive_concurrency"] = std::move(ja);
    }
    // Always shown: the defaults apply whether or not the file has the section.
    write_fields(js["locality"], kLocalityFields, s.locality);
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
    if (r.services.empty()) {
      jr["service"] = r.service;
    } else {
      jr["services"] = Json::array();
      for (const auto& sv : r.services) {
        Json js = {{"name", sv.name}};
        write_fields(js, kSplitServiceFields, sv);
        jr["services"].push_back(std::move(js));
      }
      write_fields(jr["split"], kSplitFields, r.split);
    }
    if (!r.strip_prefix.empty()) jr["strip_prefix"] = r.strip_prefix;
    if (!r.prefix_rewrite.empty()) jr["prefix_rewrite"] = r.prefix_rewrite;
    j["routes"].push_back(std::move(jr));
  }
  // The limit as it takes effect: burst 0 means `requests`; keys an algorithm rejects are left out.
  auto limit_json = [&](const RateLimitValue& v, RateAlgorithm algorithm) {
    Json jl = {{"requests", v.requests}};
    if (algorithm != RateAlgorithm::kConcurrency) jl["per"] = d(v.per);
    if (algorithm == RateAlgorithm::kTokenBucket) jl["burst"] = v.burst > 0 ? v.burst : v.requests;
    return jl;
  };
  j["rate_limits"] = Json::array();
  for (const auto& rule : config.rate_limits) {
    Json jr;
    jr["name"] = rule.name;
    jr["match"] = Json::object();
    if (!rule.match_routes.empty()) jr["match"]["routes"] = rule.match_routes;
    if (!rule.match_services.empty()) jr["match"]["services"] = rule.match_services;
    jr["key"] = Json::array();
    for (const auto& part : rule.key) jr["key"].push_back(to_string(part));
    jr["limit"] = limit_json(rule.limit, rule.algorithm);
    jr["algorithm"] = kRateAlgorithms[static_cast<size_t>(rule.algorithm)];
    jr["scope"] = kRateScopes[static_cast<size_t>(rule.scope)];
    jr["mode"] = kModes[static_cast<size_t>(rule.mode)];
    jr["overrides"] = Json::array();
    for (const auto& o : rule.overrides) {
      jr["overrides"].push_back({{"key", o.key}, {"limit", limit_json(o.limit, rule.algorithm)}});
    }
    jr["max_keys"] = rule.max_keys;
    j["rate_limits"].push_back(std::move(jr));
  }
  if (const Redis& r = config.redis; r.enabled) {
    write_fields(j["redis"], kRedisFields, r);
  }
  if (const Overload& o = config.overload; o.enabled) {
    Json jo;
    if (o.priority_key.kind != RequestInput::Kind::kNone)
      jo["priority_key"] = to_string(o.priority_key);
    if (!o.priorities.empty()) {
      jo["priorities"] = o.priorities;
      jo["default_priority"] = o.priorities[o.default_priority];
    }
    jo["reserve"] = o.reserve;
    jo["max_in_flight"] = o.max_in_flight;
    jo["mode"] = kModes[static_cast<size_t>(o.mode)];
    j["overload"] = std::move(jo);
  }
  if (const Units& u = config.units; u.enabled) {
    Json ju;
    ju["key"] = to_string(u.key);
    ju["shards"] = u.shards;
    ju["owners"] = Json::object();
    for (const auto& o : u.owners) ju["owners"][o.city] = shard_ranges_string(o.ranges);
    ju["peers"] = Json::object();
    for (const auto& p : u.peers) ju["peers"][p.city] = p.address.to_string();
    ju["protect"] = u.protect;
    ju["hold_timeout"] = d(u.hold_timeout);
    write_fields(ju["peer_timeouts"], kPeerTimeoutsFields, u.peer_timeouts);
    j["units"] = std::move(ju);
  }
  if (const ControlPlane& cp = config.control_plane; cp.enabled) {
    write_fields(j["control_plane"], kControlPlaneFields, cp);
  }
  return j.dump(2);
}

std::vector<std::string> restart_only_changes(const GatewayConfig& a, const GatewayConfig& b) {
  std::vector<std::string> out;
  const char* why = ": cannot change on reload; restart the gateway to apply";
  std::vector<std::string_view> top;
  restart_fields_changed(kTopFields, a, b, top);
  for (std::string_view key : top) out.push_back(std::string(key) + why);
  bool listeners_same = a.listeners.size() == b.listeners.size();
  for (size_t i = 0; listeners_same && i < a.listeners.size(); ++i) {
    listeners_same = a.listeners[i].name == b.listeners[i].name &&
                     a.listeners[i].address.to_string() == b.listeners[i].address.to_string();
  }
  if (!listeners_same) out.push_back(std::string("listeners") + why);
  if (a.admin.enabled != b.admin.enabled ||
      a.admin.address.to_string() != b.admin.address.to_string()) {
    out.push_back(std::string("admin.address") + why);
  }
  std::vector<std::string_view> log;
  restart_fields_changed(kAccessLogFields, a.access_log, b.access_log, log);
  for (std::string_view key : log) out.push_back("access_log." + std::string(key) + why);
  // Sections named as a whole.
  if (restart_needed(kNodeFields, a.node, b.node)) out.push_back(std::string("node") + why);
  if (a.redis.enabled != b.redis.enabled || restart_needed(kRedisFields, a.redis, b.redis))
    out.push_back(std::string("redis") + why);
  if (a.control_plane.enabled != b.control_plane.enabled ||
      restart_needed(kControlPlaneFields, a.control_plane, b.control_plane)) {
    out.push_back(std::string("control_plane") + why);
  }
  return out;
}

}  // namespace sluice::config
