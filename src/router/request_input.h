// The value a request has for a config::RequestInput: one reader for the ring-hash key, rate-limit
// key parts, overload priority classes and unit (shard) keys. No allocation, no exceptions: it
// returns views into the request's own buffers.
#pragma once

#include <optional>
#include <string_view>

#include "config/request_input.h"
#include "http/header_map.h"

namespace sluice::router {

// What a request offers to its inputs; views valid while the request is. Parts a caller leaves
// empty read as empty (e.g. route and service before routing).
struct RequestInputs {
  std::string_view method;
  std::string_view path;   // without the query
  std::string_view query;  // without the '?'
  const http::HeaderMap* headers = nullptr;
  std::string_view client_ip;
  std::string_view route;
  std::string_view service;
};

// nullopt when the request does not carry the input: a header or query parameter that is absent,
// a path segment past the end, kNone. A header (first value) or query parameter (raw, first
// occurrence) that is present with an empty value is "". Callers decide what empty means.
std::optional<std::string_view> input_value(const config::RequestInput& input,
                                            const RequestInputs& request);

// Segment n (1-based) of "/a/b/c"; segments are split positionally ("//x" has an empty segment 1).
// nullopt past the end.
std::optional<std::string_view> path_segment(std::string_view path, uint32_t n);

}  // namespace sluice::router
