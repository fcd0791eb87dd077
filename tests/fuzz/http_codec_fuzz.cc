// libFuzzer target for the HTTP/1 codec: the first byte picks request or response parsing and a
// split pattern; the rest is fed in pieces, continuing after each complete message as the gateway
// does. Checks the parser's own invariants (consumed never exceeds what was fed, no callbacks
// after an error, heads within limits).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "http/parser.h"

namespace {

using sluice::http::MessageHead;
using sluice::http::Parser;

struct Sink : sluice::http::MessageSink {
  bool errored = false;
  size_t body = 0;
  size_t max_headers = 0;
  void on_head(MessageHead& head) override {
    if (errored) std::abort();
    if (head.headers.size() > max_headers) std::abort();
    (void)head.path();
    (void)head.query();
  }
  void on_body(std::string_view data) override {
    if (errored) std::abort();
    body += data.size();
  }
  void on_complete() override {
    if (errored) std::abort();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  uint8_t mode = data[0];
  const char* p = reinterpret_cast<const char*>(data + 1);
  size_t len = size - 1;
  Sink sink;
  sluice::http::ParserLimits limits;
  limits.max_header_bytes = 4096;
  limits.max_uri_bytes = 1024;
  limits.max_headers = 32;
  limits.max_body_bytes = 1 << 20;
  sink.max_headers = limits.max_headers;
  Parser parser((mode & 1) ? Parser::Kind::kResponse : Parser::Kind::kRequest, sink, limits);
  parser.expect_no_body((mode & 2) != 0);
  size_t step = (mode >> 2) == 0 ? len : (mode >> 2);
  size_t off = 0;
  while (off < len) {
    size_t n = std::min(step, len - off);
    size_t fed = 0;
    while (fed < n) {
      auto r = parser.feed(p + off + fed, n - fed);
      if (r.consumed > n - fed) std::abort();
      fed += r.consumed;
      if (r.status == Parser::Status::kError) {
        sink.errored = true;
        if (parser.feed(p, len).status != Parser::Status::kError) std::abort();
        return 0;
      }
      if (r.status == Parser::Status::kNeedMore) {
        if (fed != n) std::abort();
        break;
      }
    }
    off += n;
  }
  parser.finish();
  return 0;
}
