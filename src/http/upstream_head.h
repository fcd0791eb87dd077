// The request head a proxy sends upstream, as a pure function of the request and the routing
// decisions: no socket, no clock, no random numbers (the caller passes the request id and the
// traceparent it made), so every rule below is pinned by unit tests.
//
// Semantics, exactly:
// - Request line: `method SP target SP HTTP/1.1`; `target` is what the caller decided to send
//   (the rewritten path and the query as received, or the target unchanged for a forward).
// - Not forwarded: hop-by-hop fields (http::is_hop_by_hop: Connection, Keep-Alive, TE, Trailer,
//   Upgrade, Transfer-Encoding, Proxy-*), every field named in the client's Connection header,
//   Content-Length and Expect (the framing and 100-continue are the gateway's), and the fields the
//   gateway sets itself: X-Request-Id, X-Forwarded-Proto, traceparent, x-sluice-hop, and
//   X-Forwarded-For (its first value is kept as the prefix of the one sent).
// - Everything else is forwarded in order, as received; Host too. Without a Host, `default_host`
//   is sent (the endpoint's address), unless it is empty.
// - Then: `X-Forwarded-For: <first client value>, <client_ip>` (just client_ip when there was
//   none), `X-Forwarded-Proto: <proto>`, `x-request-id`, `traceparent`, `x-sluice-hop:
//   [<hop_prev>,]<hop_city>` when `hop_city` is set, and the framing: `Transfer-Encoding:
//   chunked` for a chunked body, else `Content-Length` when the request had one (>= 0).
// - Never a header injected through the bytes of a field: the method must be a token, the target
//   visible ASCII (no space or control byte), a name a token, and no value may hold CR, LF or NUL
//   (client fields and the caller's values alike). Otherwise nothing is appended and the error is
//   returned. The HTTP parser refuses such bytes already; this is the second line.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "http/header_map.h"

namespace sluice::http {

struct UpstreamHeadInput {
  std::string_view method;
  std::string_view target;
  const HeaderMap* headers = nullptr;  // the client's fields (null: none)
  std::string_view default_host;       // Host when the client sent none; empty: no Host then
  std::string_view client_ip;          // appended to X-Forwarded-For
  std::string_view proto = "http";     // X-Forwarded-Proto
  std::string_view request_id;         // x-request-id
  std::string_view traceparent;        // sent as it is; empty: not sent
  std::string_view hop_prev;           // the x-sluice-hop list the request arrived with
  std::string_view hop_city;           // this gateway's city when the request crosses cities
  bool chunked = false;
  int64_t content_length = -1;  // -1: no body framing header (no body)
};

enum class UpstreamHeadError : uint8_t {
  kNone = 0,
  kBadMethod,  // not a token
  kBadTarget,  // empty, or a space or control byte in it
  kBadName,    // a field name that is not a token
  kBadValue,   // CR, LF or NUL in a value
};
std::string_view to_string(UpstreamHeadError e);

// Appends the head (ending in the empty line) to `out`. On an error `out` is left as it was.
UpstreamHeadError append_upstream_head(std::string& out, const UpstreamHeadInput& in);

}  // namespace sluice::http
