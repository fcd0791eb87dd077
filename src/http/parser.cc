#include "http/parser.h"

#include <llhttp.h>

#include <array>
#include <cstring>

namespace sluice::http {

void MessageHead::clear() {
  method.clear();
  target.clear();
  status = 0;
  reason.clear();
  version_major = 1;
  version_minor = 1;
  headers.clear();
  keep_alive = true;
  chunked = false;
  content_length = -1;
  expect_continue = false;
  upgrade = false;
}

std::string_view MessageHead::path() const {
  std::string_view t = target;
  auto q = t.find('?');
  return q == std::string_view::npos ? t : t.substr(0, q);
}

std::string_view MessageHead::query() const {
  std::string_view t = target;
  auto q = t.find('?');
  return q == std::string_view::npos ? std::string_view() : t.substr(q + 1);
}

std::optional<std::string_view> find_query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

int status_for(ParseError e) {
  switch (e) {
    case ParseError::kNone:
      return 200;
    case ParseError::kBadRequest:
      return 400;
    case ParseError::kHeaderTooLarge:
      return 431;
    case ParseError::kUriTooLong:
      return 414;
    case ParseError::kBodyTooLarge:
      return 413;
    case ParseError::kUnsupported:
      return 501;
  }
  return 400;
}

// Line-level checks llhttp 8 does not make strictly enough for a proxy: bare LF, bare CR and
// obs-fold in the head are rejected here before llhttp sees the bytes; the head size is counted
// here so an oversized head is refused before it is parsed.
struct HeadScanner {
  size_t bytes = 0;     // head bytes seen so far
  size_t line_len = 0;  // bytes in the current line, without CR/LF
  size_t lines = 0;     // complete non-empty lines
  bool prev_cr = false;
  bool done = false;

  void reset() { *this = HeadScanner(); }

  // Scans up to the end of the head. Returns the number of head bytes in [p, p+len) or -1 on a
  // framing violation (reason set).
  long scan(const char* p, size_t len, const char** reason) {
    size_t i = 0;
    while (i < len) {
      if (prev_cr) {
        if (p[i] != '\n') {
          *reason = "bare CR in message head";
          return -1;
        }
        prev_cr = false;
        ++i;
        if (line_len == 0) {
          if (lines > 0) {
            done = true;
            break;
          }
          // An empty line before the start line is tolerated (RFC 9112 section 2.2).
        } else {
          ++lines;
        }
        line_len = 0;
        continue;
      }
      // Jump to the next CR; the bytes before it must hold no LF.
      const char* start = p + i;
      const void* cr = std::memchr(start, '\r', len - i);
      size_t stop = cr ? static_cast<size_t>(static_cast<const char*>(cr) - p) : len;
      if (stop > i) {
        if (std::memchr(start, '\n', stop - i)) {
          *reason = "bare LF in message head";
          return -1;
        }
        if (line_len == 0 && lines > 0 && (*start == ' ' || *start == '\t')) {
          *reason = "obsolete line folding in header";
          return -1;
        }
        line_len += stop - i;
      }
      i = stop;
      if (i < len) {
        prev_cr = true;
        ++i;
      }
    }
    bytes += i;
    return static_cast<long>(i);
  }
};

// RFC 9110 tchar: the only bytes allowed in a header field name.
static bool is_token(std::string_view s) {
  static const auto table = [] {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c) t[c] = true;
    for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
    for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
    for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
    return t;
  }();
  if (s.empty()) return false;
  for (char c : s) {
    if (!table[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

struct Parser::LL {
  llhttp_t parser;
  HeadScanner scanner;
  bool field_open = false;  // a header name has begun and its value is not complete yet
};

struct Parser::Callbacks {
  static Parser& self(llhttp_t* p) { return *static_cast<Parser*>(p->data); }

  static int on_message_begin(llhttp_t* p) {
    Parser& s = self(p);
    s.reset_message();
    s.in_message_ = true;
    return 0;
  }
  static int on_url(llhttp_t* p, const char* at, size_t len) {
    Parser& s = self(p);
    if (s.head_.target.size() + len > s.limits_.max_uri_bytes) {
      s.fail(ParseError::kUriTooLong, "request-target too long");
      return -1;
    }
    s.head_.target.append(at, len);
    return 0;
  }
  static int on_status(llhttp_t* p, const char* at, size_t len) {
    self(p).head_.reason.append(at, len);
    return 0;
  }
  static int on_header_field(llhttp_t* p, const char* at, size_t len) {
    Parser& s = self(p);
    if (s.head_done_) return 0;  // trailer fields are not forwarded
    if (!s.ll_->field_open) {
      if (s.head_.headers.size() >= s.limits_.max_headers) {
        s.fail(ParseError::kHeaderTooLarge, "too many header fields");
        return -1;
      }
      s.head_.headers.begin_field();
      s.ll_->field_open = true;
    }
    s.head_.headers.append_name(std::string_view(at, len));
    return 0;
  }
  static int on_header_value(llhttp_t* p, const char* at, size_t len) {
    Parser& s = self(p);
    if (s.head_done_) return 0;
    s.head_.headers.append_value(std::string_view(at, len));
    return 0;
  }
  static int on_header_value_complete(llhttp_t* p) {
    Parser& s = self(p);
    if (s.head_done_) return 0;
    s.head_.headers.trim_last_value();
    s.ll_->field_open = false;
    // llhttp 8 tolerates whitespace between a field name and the colon; RFC 9112 section 5.1
    // says a server must reject it, since other hops may read the name differently.
    if (!is_token(s.head_.headers.at(s.head_.headers.size() - 1).name)) {
      s.fail(ParseError::kBadRequest, "invalid header field name");
      return -1;
    }
    return 0;
  }
  static int on_headers_complete(llhttp_t* p) {
    Parser& s = self(p);
    if (!s.finish_head()) return -1;
    s.sink_.on_head(s.head_);
    if (s.kind_ == Kind::kResponse && s.no_body_) return 1;  // HEAD response / 304: no body
    return 0;
  }
  static int on_body(llhttp_t* p, const char* at, size_t len) {
    Parser& s = self(p);
    s.body_bytes_ += len;
    if (s.kind_ == Kind::kRequest && s.body_bytes_ > s.limits_.max_body_bytes) {
      s.fail(ParseError::kBodyTooLarge, "request body too large");
      return -1;
    }
    s.sink_.on_body(std::string_view(at, len));
    return 0;
  }
  // The same callbacks for every parser: one table for the process, not one per connection.
  static const llhttp_settings_t& settings() {
    static const llhttp_settings_t table = [] {
      llhttp_settings_t t;
      llhttp_settings_init(&t);
      t.on_message_begin = &Callbacks::on_message_begin;
      t.on_url = &Callbacks::on_url;
      t.on_status = &Callbacks::on_status;
      t.on_header_field = &Callbacks::on_header_field;
      t.on_header_value = &Callbacks::on_header_value;
      t.on_header_value_complete = &Callbacks::on_header_value_complete;
      t.on_headers_complete = &Callbacks::on_headers_complete;
      t.on_body = &Callbacks::on_body;
      t.on_message_complete = &Callbacks::on_message_complete;
      return t;
    }();
    return table;
  }

  static int on_message_complete(llhttp_t* p) {
    Parser& s = self(p);
    s.in_message_ = false;
    s.completed_ = true;
    s.sink_.on_complete();
    return HPE_PAUSED;
  }
};

Parser::Parser(Kind kind, MessageSink& sink, const ParserLimits& limits)
    : ll_(std::make_unique<LL>()), kind_(kind), sink_(sink), limits_(limits) {
  llhttp_init(&ll_->parser, kind == Kind::kRequest ? HTTP_REQUEST : HTTP_RESPONSE,
              &Callbacks::settings());
  ll_->parser.data = this;
}

Parser::~Parser() = default;

void Parser::reset() {
  llhttp_init(&ll_->parser, kind_ == Kind::kRequest ? HTTP_REQUEST : HTTP_RESPONSE,
              &Callbacks::settings());
  ll_->parser.data = this;
  ll_->scanner.reset();
  reset_message();
  error_ = ParseError::kNone;
  error_reason_ = "";
  in_message_ = false;
  no_body_ = false;
}

void Parser::reset_message() {
  head_.clear();
  head_bytes_ = 0;
  body_bytes_ = 0;
  head_done_ = false;
  in_value_ = false;
  completed_ = false;
  ll_->field_open = false;
}

bool Parser::fail(ParseError e, const char* reason) {
  if (error_ == ParseError::kNone) {
    error_ = e;
    error_reason_ = reason;
  }
  return false;
}

bool Parser::finish_head() {
  llhttp_t& p = ll_->parser;
  head_done_ = true;
  head_.version_major = p.http_major;
  head_.version_minor = p.http_minor;
  if (kind_ == Kind::kRequest) {
    head_.method = llhttp_method_name(static_cast<llhttp_method_t>(p.method));
    if (p.method == HTTP_CONNECT) return fail(ParseError::kUnsupported, "CONNECT is not supported");
    if (head_.target.empty() || (head_.target[0] != '/' && head_.target != "*")) {
      // Absolute-form targets are for forward proxies; a reverse proxy takes origin-form only.
      return fail(ParseError::kBadRequest, "request-target must be in origin form");
    }
    if (p.http_major != 1) return fail(ParseError::kBadRequest, "unsupported HTTP version");
    if (p.http_minor == 1 && head_.headers.count("host") != 1) {
      return fail(ParseError::kBadRequest, "HTTP/1.1 request needs exactly one Host header");
    }
  } else {
    head_.status = p.status_code;
  }
  head_.chunked = (p.flags & F_CHUNKED) != 0;
  if (p.flags & F_TRANSFER_ENCODING) {
    // Only a single "chunked" coding is forwarded safely: anything else could be read
    // differently by the next hop.
    if (head_.headers.count("transfer-encoding") != 1 ||
        !iequals(head_.headers.get("transfer-encoding"), "chunked")) {
      return fail(ParseError::kBadRequest, "unsupported Transfer-Encoding");
    }
  }
  if (p.flags & F_CONTENT_LENGTH) {
    if (head_.chunked)
      return fail(ParseError::kBadRequest, "both Content-Length and Transfer-Encoding");
    head_.content_length = static_cast<int64_t>(p.content_length);
    if (kind_ == Kind::kRequest &&
        static_cast<uint64_t>(head_.content_length) > limits_.max_body_bytes) {
      return fail(ParseError::kBodyTooLarge, "request body too large");
    }
  }
  head_.keep_alive = llhttp_should_keep_alive(&p) != 0;
  head_.upgrade = p.upgrade != 0;
  if (kind_ == Kind::kRequest) {
    std::string_view expect = head_.headers.get("expect");
    head_.expect_continue = !expect.empty() && iequals(expect, "100-continue");
  }
  return true;
}

Parser::Result Parser::feed(const char* data, size_t len) {
  if (error_ != ParseError::kNone) return {Status::kError, 0};
  llhttp_t& p = ll_->parser;
  size_t offset = 0;
  while (offset < len) {
    size_t chunk = len - offset;
    if (!ll_->scanner.done) {
      const char* reason = nullptr;
      long head = ll_->scanner.scan(data + offset, chunk, &reason);
      if (head < 0) {
        fail(ParseError::kBadRequest, reason);
        return {Status::kError, offset};
      }
      if (ll_->scanner.bytes > limits_.max_header_bytes) {
        fail(ParseError::kHeaderTooLarge, "message head too large");
        return {Status::kError, offset};
      }
      // Give llhttp the head only; the body follows once the head has been checked.
      chunk = static_cast<size_t>(head);
    }
    llhttp_errno_t err = llhttp_execute(&p, data + offset, chunk);
    if (err == HPE_OK) {
      offset += chunk;
      continue;
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      size_t used = static_cast<size_t>(llhttp_get_error_pos(&p) - (data + offset));
      offset += used;
      if (err == HPE_PAUSED) {
        llhttp_resume(&p);
      } else {
        llhttp_resume_after_upgrade(&p);
      }
      if (completed_) {
        completed_ = false;
        ll_->scanner.reset();
        return {Status::kComplete, offset};
      }
      continue;
    }
    if (error_ == ParseError::kNone) fail(ParseError::kBadRequest, llhttp_get_error_reason(&p));
    return {Status::kError, offset};
  }
  return {Status::kNeedMore, offset};
}

Parser::Status Parser::finish() {
  if (error_ != ParseError::kNone) return Status::kError;
  if (!in_message_) return Status::kNeedMore;
  llhttp_errno_t err = llhttp_finish(&ll_->parser);
  if (completed_) {
    completed_ = false;
    ll_->scanner.reset();
    return Status::kComplete;
  }
  if (err != HPE_OK && err != HPE_PAUSED) {
    fail(ParseError::kBadRequest, "message cut short by connection close");
    return Status::kError;
  }
  fail(ParseError::kBadRequest, "message cut short by connection close");
  return Status::kError;
}

}  // namespace sluice::http
