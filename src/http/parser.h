// HTTP/1.x message parser: fed bytes, calls back with the head, body pieces and completion.
// llhttp stays behind this interface; the parser never owns a socket and never buffers bodies.
// Strict by default: anything that could be read two ways (request smuggling vectors) is an error.
// The verdict (heads, bodies, completions, error) is the same however the bytes are split into
// feed() calls, and on_head is called only once llhttp has accepted the whole head.
// operations.md ("What the gateway refuses, and why") lists every refusal.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "http/header_map.h"

namespace sluice::http {

struct MessageHead {
  // Requests.
  std::string method;  // as received, e.g. "GET"
  std::string target;  // request-target, e.g. "/a/b?x=1"
  // Responses.
  int status = 0;
  std::string reason;

  uint8_t version_major = 1;
  uint8_t version_minor = 1;
  HeaderMap headers;
  bool keep_alive = true;        // after this message, per version and Connection header
  bool chunked = false;          // Transfer-Encoding: chunked
  int64_t content_length = -1;   // -1 when absent
  bool expect_continue = false;  // Expect: 100-continue
  bool upgrade = false;          // Upgrade/CONNECT: not supported by the proxy

  void clear();
  std::string_view path() const;   // target without query string
  std::string_view query() const;  // after '?', without it; empty if none
};

// The raw (not percent-decoded) value of the first `name=value` pair in a query string; "" for a
// bare `name`; nullopt when the parameter is absent.
std::optional<std::string_view> find_query_param(std::string_view query, std::string_view name);

enum class ParseError {
  kNone = 0,
  kBadRequest,      // 400: malformed or ambiguous message
  kHeaderTooLarge,  // 431: head larger than max_header_bytes, or too many fields
  kUriTooLong,      // 414
  kBodyTooLarge,    // 413
  kUnsupported,     // 501/400: upgrade, CONNECT, unknown transfer coding
};

struct ParserLimits {
  size_t max_header_bytes = 65536;
  size_t max_uri_bytes = 8192;
  size_t max_headers = 100;
  uint64_t max_body_bytes = UINT64_MAX;  // requests: 413 beyond; 0 = unlimited is not used
};

class MessageSink {
 public:
  virtual ~MessageSink() = default;
  // The head is complete (all header fields parsed and checked).
  virtual void on_head(MessageHead& head) = 0;
  // A piece of the (de-chunked) body; valid only during the call.
  virtual void on_body(std::string_view data) = 0;
  // The message is complete; the parser stops after this call (see Parser::feed).
  virtual void on_complete() = 0;
};

class Parser {
 public:
  enum class Kind { kRequest, kResponse };
  enum class Status {
    kNeedMore,  // all bytes consumed, message not complete
    kComplete,  // a message completed; `consumed` bytes up to its end were used
    kError,     // see error(); the connection must be closed
  };
  struct Result {
    Status status;
    size_t consumed;
  };

  Parser(Kind kind, MessageSink& sink, const ParserLimits& limits = {});
  ~Parser();
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  // Parses up to `len` bytes. Stops right after a complete message (kComplete) so the caller can
  // finish it before feeding the rest (pipelining). Never calls back after an error.
  Result feed(const char* data, size_t len);
  // The peer closed: completes a response delimited by connection close. kComplete, or kError
  // when the message was cut short, or kNeedMore when nothing had started.
  Status finish();

  // Forgets any message in progress and any error; ready for a new message on a new stream.
  void reset();

  // Responses only: the request was HEAD (or the status has no body): the next response has no
  // body.
  void expect_no_body(bool no_body) { no_body_ = no_body; }
  void set_limits(const ParserLimits& limits) { limits_ = limits; }

  ParseError error() const { return error_; }
  const char* error_reason() const { return error_reason_; }
  MessageHead& head() { return head_; }
  bool in_message() const { return in_message_; }
  bool head_done() const { return head_done_; }
  uint64_t body_bytes() const { return body_bytes_; }

  // Used by the llhttp callbacks (implementation detail).
  struct Callbacks;

 private:
  void reset_message();
  bool fail(ParseError e, const char* reason);
  bool finish_head();
  void deliver_head();

  struct LL;
  std::unique_ptr<LL> ll_;
  Kind kind_;
  MessageSink& sink_;
  ParserLimits limits_;
  MessageHead head_;
  ParseError error_ = ParseError::kNone;
  const char* error_reason_ = "";
  size_t head_bytes_ = 0;
  uint64_t body_bytes_ = 0;
  bool in_message_ = false;
  bool head_done_ = false;
  bool in_value_ = false;
  bool no_body_ = false;
  bool completed_ = false;
  bool head_pending_ = false;  // checked by finish_head, not yet accepted by llhttp
};

// Maps a ParseError to the status the gateway answers with.
int status_for(ParseError e);

}  // namespace sluice::http
