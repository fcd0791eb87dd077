// Every response the gateway answers itself (errors, 429, 503 overload and no endpoint, 502/504,
// 508/421 of unit routing, the circuit breaker's fallback) is built here, from one description:
// status, the error's code and message, extra headers such as Retry-After, and the request's
// keep-alive state. The format is the public contract of docs/operations.md ("Errors"):
//
//   HTTP/1.1 <status> <reason>
//   Content-Type: application/json            (the fallback's content_type for a fallback)
//   Content-Length: <n>
//   x-request-id: <id>
//   <extra headers>                           (Retry-After: 1 for any 503 that names none)
//   Connection: close                         (only when the connection closes after it)
//
//   {"error":"<message>"[,"code":"<CODE>"]<extra members>,"status":<status>,"request_id":"<id>"}
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace sluice::gateway {

struct LocalReply {
  int status = 500;
  std::string_view message = {};  // "error"
  std::string_view code = {};     // "code" (e.g. RATE_LIMITED); empty: no member
  // Further JSON members, already encoded, each with its leading comma: ",\"rule\":\"x\"".
  std::string_view extra_json = {};
  // Further header lines, each ending in CRLF: "Retry-After: 3\r\nRateLimit-Limit: 10\r\n".
  // Empty on a 503 means "Retry-After: 1".
  std::string_view extra_headers = {};
  // A body sent as it is instead of the JSON error (a service's fallback response); then
  // `content_type` names its type and no Retry-After is added.
  bool raw = false;
  std::string_view content_type = {};
  std::string_view body = {};

  std::string_view request_id = {};
  bool close = false;         // Connection: close (the connection ends after this response)
  bool head_request = false;  // HEAD: the head says how long the body is; no body follows
};

// Appends the whole response to `out`; returns the body bytes written (0 for HEAD). `scratch` is
// the caller's reusable buffer for the JSON body (its capacity is kept: no allocation once warm).
size_t append_local_reply(std::string& out, const LocalReply& reply, std::string& scratch);

}  // namespace sluice::gateway
