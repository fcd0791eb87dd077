// Response bodies of the sample service. The constant part of the JSON answer (service, city,
// zone, instance) is rendered once at start-up; per request only the method, path, query and
// counters are appended to a reused buffer, so answering does not allocate once buffers are warm.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "observability/access_log.h"

#include "http/header_map.h"
#include "http/writer.h"

namespace sluice::sample {

using observability::append_json_string;

// Appends {"name": "value", ...} with names lower-cased, in order of first appearance; the values
// of a repeated name are joined with ", ".
void append_headers_object(std::string& out, const http::HeaderMap& headers);

struct RequestView {
  std::string_view method;
  std::string_view path;   // without the query string
  std::string_view query;  // without '?'; the "query" key is left out when empty
  uint64_t body_bytes = 0;
  const http::HeaderMap* headers = nullptr;  // echoed as "headers" when set
  int status = 0;                            // added as "status" when non-zero
};

class BodyBuilder {
 public:
  BodyBuilder(std::string_view service, std::string_view city, std::string_view zone,
              std::string_view instance);

  // Appends {"service","city","zone","instance","method","path"[,"query"],"body_bytes"
  // [,"status"][,"headers"]} to `out`.
  void build(std::string& out, const RequestView& r) const;

 private:
  std::string prefix_;  // {"service":"..","city":"..","zone":"..","instance":"..",
};

using http::reason_phrase;

// The body of /_sample/bytes: byte k is kBytePattern[k % 64], so a client can check any range.
inline constexpr std::string_view kBytePattern =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
inline constexpr size_t kPatternBlockSize = 64 * 1024;
static_assert(kPatternBlockSize % 64 == 0);
// kBytePattern repeated to kPatternBlockSize bytes; built once, shared by all workers.
std::string_view pattern_block();

}  // namespace sluice::sample
