// One input of a request that config can name: where a ring-hash key, a rate-limit key part, an
// overload priority class or a unit (shard) key is read from. One type, one parser and one
// printer, so "header:X-Customer-Id" means the same wherever it may be written.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace sluice::config {

struct RequestInput {
  enum class Kind : uint8_t {
    kNone,         // not set
    kHeader,       // header:NAME, first value
    kQuery,        // query:NAME, raw value of the first occurrence
    kPathSegment,  // path_segment:N, 1-based, of the path without the query
    kPath,         // path: the whole path without the query
    kClientIp,     // client_ip: the peer address as inet_ntop writes it
    kRoute,        // route: name of the matched route
    kService,      // service: name of the routed service
    kMethod,       // method
  };
  Kind kind = Kind::kNone;
  std::string name;      // header (lower-case) or query parameter name
  uint32_t segment = 0;  // path_segment:N

  bool operator==(const RequestInput&) const = default;
};

// Segments count from 1; "/users/42" has "42" as segment 2.
inline constexpr uint32_t kMaxPathSegment = 1000;

// Which inputs a setting accepts, in the order its error message lists them, and whether a
// misspelt plain input ("clientip") gets a suggestion.
struct RequestInputSyntax {
  std::span<const RequestInput::Kind> kinds;
  bool suggest = false;
};

// The settings that name request inputs (docs/config.md).
extern const RequestInputSyntax kHashOnSyntax;       // services[].load_balancer.hash_on
extern const RequestInputSyntax kRateKeySyntax;      // rate_limits[].key[]
extern const RequestInputSyntax kPriorityKeySyntax;  // overload.priority_key
extern const RequestInputSyntax kUnitKeySyntax;      // units.key

// "header:x-customer-id", "query:cid", "path_segment:2", "client_ip", ...; "" for kNone. What
// parse_request_input reads back to the same value.
std::string to_string(const RequestInput& input);

// `text` as one of the inputs `syntax` allows. Header names must be RFC 9110 tokens (kept
// lower-case), query names must not contain spaces, controls, '&', '=' or '#'. nullopt with
// `error` set to the message (without key path) otherwise.
std::optional<RequestInput> parse_request_input(std::string_view text,
                                                const RequestInputSyntax& syntax,
                                                std::string& error);

}  // namespace sluice::config
