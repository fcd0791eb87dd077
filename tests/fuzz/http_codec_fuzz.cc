// libFuzzer target for the HTTP/1 codec: the first byte picks request or response parsing and a
// split pattern; the rest is fed in pieces, continuing after each complete message as the gateway
// does. Checks the parser's own invariants (consumed never exceeds what was fed, no callbacks
// after an error, heads within limits) and that the verdict does not depend on how the bytes
// were split into reads: the same input fed whole, in pieces of the chosen size and one byte at a
// time must give the same heads, bodies, completions and error.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "http/parser.h"

namespace {

using sluice::http::MessageHead;
using sluice::http::Parser;

uint64_t mix(uint64_t h, std::string_view s) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;  // FNV-1a
  return (h ^ 0xff) * 1099511628211ull;
}

struct Sink : sluice::http::MessageSink {
  bool errored = false;
  size_t max_headers = 0;
  // The verdict.
  uint64_t heads = 0, completes = 0, body = 0;
  uint64_t head_hash = 14695981039346656037ull, body_hash = 14695981039346656037ull;

  void on_head(MessageHead& head) override {
    if (errored) std::abort();
    if (head.headers.size() > max_headers) std::abort();
    (void)head.path();
    (void)head.query();
    ++heads;
    head_hash = mix(head_hash, head.method);
    head_hash = mix(head_hash, head.target);
    head_hash = mix(head_hash, std::to_string(head.status));
    for (size_t i = 0; i < head.headers.size(); ++i) {
      head_hash = mix(head_hash, head.headers.at(i).name);
      head_hash = mix(head_hash, head.headers.at(i).value);
    }
    head_hash = mix(head_hash, std::to_string(head.content_length) + (head.chunked ? "c" : "") +
                                   (head.keep_alive ? "k" : ""));
  }
  void on_body(std::string_view data) override {
    if (errored) std::abort();
    body += data.size();
    for (unsigned char c : data) body_hash = (body_hash ^ c) * 1099511628211ull;
  }
  void on_complete() override {
    if (errored) std::abort();
    ++completes;
  }
};

struct Outcome {
  uint64_t heads, completes, body, head_hash, body_hash;
  int error;
  int finish;
  bool operator==(const Outcome&) const = default;
};

Outcome run(bool response, bool no_body, const char* p, size_t len, size_t step) {
  Sink sink;
  sluice::http::ParserLimits limits;
  limits.max_header_bytes = 4096;
  limits.max_uri_bytes = 1024;
  limits.max_headers = 32;
  limits.max_body_bytes = 1 << 20;
  sink.max_headers = limits.max_headers;
  Parser parser(response ? Parser::Kind::kResponse : Parser::Kind::kRequest, sink, limits);
  parser.expect_no_body(no_body);
  size_t off = 0;
  int finish = -1;
  while (off < len && !sink.errored) {
    size_t n = std::min(step, len - off);
    size_t fed = 0;
    while (fed < n) {
      auto r = parser.feed(p + off + fed, n - fed);
      if (r.consumed > n - fed) std::abort();
      fed += r.consumed;
      if (r.status == Parser::Status::kError) {
        sink.errored = true;
        if (parser.feed(p, len).status != Parser::Status::kError) std::abort();
        break;
      }
      if (r.status == Parser::Status::kNeedMore) {
        if (fed != n) std::abort();
        break;
      }
    }
    off += n;
  }
  if (!sink.errored) finish = static_cast<int>(parser.finish());
  return {sink.heads,     sink.completes, sink.body,
          sink.head_hash, sink.body_hash, static_cast<int>(parser.error()),
          finish};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  uint8_t mode = data[0];
  const char* p = reinterpret_cast<const char*>(data + 1);
  size_t len = size - 1;
  bool response = (mode & 1) != 0;
  bool no_body = (mode & 2) != 0;
  size_t step = (mode >> 2) == 0 ? len : (mode >> 2);
  Outcome whole = run(response, no_body, p, len, len == 0 ? 1 : len);
  if (!(run(response, no_body, p, len, step == 0 ? 1 : step) == whole)) std::abort();
  if (len <= 4096 && !(run(response, no_body, p, len, 1) == whole)) std::abort();
  return 0;
}
