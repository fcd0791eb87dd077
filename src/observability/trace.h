// Trace context (W3C traceparent, https://www.w3.org/TR/trace-context/) and request ids: the
// gateway continues an incoming trace with a new span id, or starts one, and tags every request
// with a random id. Both run per request, so they write into caller-owned strings.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/random.h"

namespace sluice::observability {

constexpr uint8_t kTraceFlagSampled = 0x01;
constexpr uint8_t kTraceFlagRandom = 0x02;  // Trace Context Level 2: trace id is random
constexpr size_t kTraceparentSize = 55;     // "00-" + 32 + "-" + 16 + "-" + 2

// A parsed traceparent. The ids are views into the parsed header.
struct TraceParent {
  uint8_t version = 0;
  std::string_view trace_id;   // 32 lower-case hex chars, not all zero
  std::string_view parent_id;  // 16 lower-case hex chars, not all zero
  uint8_t flags = 0;
  bool sampled() const { return (flags & kTraceFlagSampled) != 0; }
};

// Parses by the spec's rules: lower-case hex only, ids not all zero, version ff invalid;
// version 00 is exactly 55 chars; a later version is parsed as 00 and may carry more fields
// after a '-' at offset 55. Surrounding spaces/tabs (HTTP OWS) are ignored.
bool parse_traceparent(std::string_view header, TraceParent& out);

// Writes the traceparent to send upstream into `out` (replacing its contents): version 00, the
// trace id and flags of a valid `incoming` header (flags other than sampled/random cleared, as
// the spec requires) and a new random span id; for an absent or invalid header, a new trace
// id with flags 01.
void make_child_traceparent(std::string_view incoming, core::Rng& rng, std::string& out);

// Writes 32 lower-case hex chars (128 random bits) into `out` (replacing its contents).
void make_request_id(core::Rng& rng, std::string& out);

}  // namespace sluice::observability
