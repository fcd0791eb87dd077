// What the sample service reads from a request target: which endpoint the path names, the number
// in its path, and query parameters. Pure functions over string views; nothing allocates.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace sluice::sample {

enum class Endpoint {
  kAny,            // every path not listed below: the JSON description of the request
  kHealthz,        // /healthz
  kFaults,         // /_sample/faults
  kStats,          // /_sample/stats
  kBytes,          // /_sample/bytes?n=N[&chunked=1]
  kEcho,           // /_sample/echo
  kStatus,         // /_sample/status/NNN
  kDelay,          // /_sample/delay/MS
  kClose,          // /_sample/close[?rst=1]
  kUnknownSample,  // any other /_sample/... path: 404
};

struct Route {
  Endpoint endpoint = Endpoint::kAny;
  uint64_t arg = 0;    // the status of /_sample/status/NNN, the milliseconds of /_sample/delay/MS
  bool arg_ok = true;  // false when that number is missing, malformed or out of range
};

inline constexpr uint64_t kMinStatus = 200;  // 1xx are interim answers, not final ones
inline constexpr uint64_t kMaxStatus = 599;
inline constexpr uint64_t kMaxDelayMs = 3'600'000;        // one hour
inline constexpr uint64_t kMaxBytes = uint64_t{1} << 40;  // /_sample/bytes?n= upper bound (1 TiB)

// `path` is the request path without the query string.
Route classify(std::string_view path);

// The raw (not percent-decoded) value of the first `name` parameter of a query string
// ("a=1&b=2"); a parameter without '=' has an empty value. nullopt when absent.
std::optional<std::string_view> query_param(std::string_view query, std::string_view name);

// Plain decimal digits only (no sign, no spaces); nullopt on anything else or on overflow.
std::optional<uint64_t> parse_u64(std::string_view text);

// Query flag values read as true: "1", "true", "yes", "on" and the empty value ("?chunked").
bool is_true(std::string_view value);

}  // namespace sluice::sample
