#include "http/parser.h"

#include <arpa/inet.h>
#include <llhttp.h>

#include <algorithm>
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

// Line-level checks llhttp 8 does not make strictly enough for a proxy, made before llhttp sees
// the bytes: bare LF, bare CR and obs-fold in the head and the trailers, and the size limits of
// the head. Every verdict is tied to the byte where it is found, and the caller hands llhttp only
// the bytes before that byte, so an error llhttp finds earlier in the stream wins: the answer is
// the same however the bytes were split into reads (every byte boundary gives the same verdict).
struct HeadScanner {
  struct Out {
    size_t ok;         // bytes before the end of the section or the offending byte
    ParseError error;  // kNone, or the verdict at byte `ok`
    const char* reason;
  };

  size_t bytes = 0;       // section bytes seen so far
  size_t line_len = 0;    // bytes in the current line, without CR/LF
  size_t lines = 0;       // complete non-empty lines (a trailer section starts at 1)
  size_t target_len = 0;  // request-target bytes seen so far
  uint8_t spaces = 0;     // SPs seen in the request line
  bool prev_cr = false;
  bool prev_sp = false;
  bool request = false;  // the start line is a request line: checked byte by byte
  bool done = false;

  void start_head(bool is_request) {
    *this = HeadScanner();
    request = is_request;
  }
  void start_trailers() {
    *this = HeadScanner();
    lines = 1;  // no start line: the first empty line ends the section
  }

  Out stop(size_t at, ParseError e, const char* reason) { return {at, e, reason}; }

  Out scan(const char* p, size_t len, const ParserLimits& lim) {
    size_t i = 0;
    while (i < len) {
      if (bytes + i >= lim.max_header_bytes) {
        // One byte more than the limit. Inside the request line the line is what is too long:
        // 414 whatever the segmentation (the target check below usually fires first).
        if (request && lines == 0 && line_len > 0) {
          return stop(i, ParseError::kUriTooLong, "request line too long");
        }
        return stop(i, ParseError::kHeaderTooLarge, "message head too large");
      }
      if (prev_cr) {
        if (p[i] != '\n') return stop(i, ParseError::kBadRequest, "bare CR in message head");
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
      if (request && lines == 0) {
        // The request line: method SP request-target SP version, up to its CR.
        size_t end = i + std::min(len - i, lim.max_header_bytes - bytes - i);
        size_t j = i;
        for (; j < end; ++j) {
          char c = p[j];
          if (c == ' ') {
            // Two SPs in a row: another hop may read the target as empty or as " /x".
            if (prev_sp) return stop(j, ParseError::kBadRequest, "malformed request line");
            prev_sp = true;
            ++spaces;
            continue;
          }
          if (c == '\r' || c == '\n') break;
          prev_sp = false;
          if (spaces == 1) {
            // A fragment is never sent (RFC 9112 section 3.2); hops disagree on where the
            // path ends if one is.
            if (c == '#') return stop(j, ParseError::kBadRequest, "fragment in request-target");
            if (++target_len > lim.max_uri_bytes) {
              return stop(j, ParseError::kUriTooLong, "request-target too long");
            }
          }
        }
        line_len += j - i;
        i = j;
        if (i < end) {
          if (p[i] == '\n') return stop(i, ParseError::kBadRequest, "bare LF in message head");
          prev_cr = true;
          ++i;
        }
        continue;
      }
      // A header (or trailer, or status) line: jump to the next CR, within the size limit.
      size_t window = std::min(len - i, lim.max_header_bytes - bytes - i);
      const char* start = p + i;
      if (line_len == 0 && lines > 0) {
        if (*start == ' ' || *start == '\t') {
          return stop(i, ParseError::kBadRequest, "obsolete line folding in header");
        }
        if (*start != '\r' && lines - 1 >= lim.max_headers) {
          return stop(i, ParseError::kHeaderTooLarge, "too many header fields");
        }
      }
      const void* cr = std::memchr(start, '\r', window);
      size_t end = cr ? static_cast<size_t>(static_cast<const char*>(cr) - p) : i + window;
      if (end > i) {
        if (const void* lf = std::memchr(start, '\n', end - i)) {
          return stop(static_cast<size_t>(static_cast<const char*>(lf) - p),
                      ParseError::kBadRequest, "bare LF in message head");
        }
        line_len += end - i;
      }
      i = end;
      if (cr) {
        prev_cr = true;
        ++i;
      }
    }
    bytes += i;
    return {i, ParseError::kNone, nullptr};
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

// Chunk extensions are not forwarded (bodies are re-chunked) but still cross the wire: bounded
// per chunk so that a peer cannot stream an endless chunk line.
constexpr size_t kMaxChunkExtensionBytes = 4096;

// RFC 3986 host with an optional port, as a Host field value: reg-name (which covers IPv4
// addresses), or an IPv6 literal in brackets; the port, if there is a colon, is 1..65535.
// IPvFuture literals and empty hosts or ports are refused: no client sends them and hops read
// them differently.
// RFC 3986 reg-name bytes: unreserved, sub-delims and '%' (pct-encoded, checked below).
constexpr std::array<bool, 256> kRegNameChars = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("-._~!$&'()*+,;=%")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

static bool valid_host(std::string_view v) {
  auto hex = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  };
  std::string_view host = v;
  std::string_view port;
  bool has_port = false;
  if (!v.empty() && v.front() == '[') {
    size_t close = v.find(']');
    if (close == std::string_view::npos) return false;
    host = v.substr(0, close + 1);
    std::string_view rest = v.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      has_port = true;
      port = rest.substr(1);
    }
    std::string_view inner = host.substr(1, host.size() - 2);
    char buf[64];
    if (inner.empty() || inner.size() >= sizeof buf) return false;
    for (char c : inner) {
      if (!hex(c) && c != ':' && c != '.') return false;  // no zone ids, no IPvFuture
    }
    std::memcpy(buf, inner.data(), inner.size());
    buf[inner.size()] = '\0';
    unsigned char addr[16];
    if (inet_pton(AF_INET6, buf, addr) != 1) return false;
  } else {
    size_t colon = v.find(':');
    if (colon != std::string_view::npos) {
      has_port = true;
      host = v.substr(0, colon);
      port = v.substr(colon + 1);
    }
    if (host.empty()) return false;
    for (size_t i = 0; i < host.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(host[i]);
      if (!kRegNameChars[c]) return false;
      if (c == '%' && (i + 2 >= host.size() || !hex(host[i + 1]) || !hex(host[i + 2]))) {
        return false;
      }
    }
  }
  if (has_port) {
    if (port.empty() || port.size() > 5) return false;
    unsigned value = 0;
    for (char c : port) {
      if (c < '0' || c > '9') return false;
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) return false;
  }
  return true;
}

struct Parser::LL {
  llhttp_t parser;
  HeadScanner scanner;
  bool field_open = false;     // a header name has begun and its value is not complete yet
  bool trailers_next = false;  // the last chunk was read: the trailer section follows
  size_t chunk_ext_bytes = 0;  // chunk extension bytes in the current chunk line
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
    // The scanner stops a longer target first; this is a second guard.
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
    // llhttp still checks the head after this callback (an invalid Transfer-Encoding, say): the
    // sink gets the head only once llhttp has taken it (see deliver_head).
    s.head_pending_ = true;
    if (s.kind_ == Kind::kResponse && s.no_body_) return 1;  // HEAD response / 304: no body
    return 0;
  }
  static int on_body(llhttp_t* p, const char* at, size_t len) {
    Parser& s = self(p);
    s.deliver_head();
    s.body_bytes_ += len;
    if (s.kind_ == Kind::kRequest && s.body_bytes_ > s.limits_.max_body_bytes) {
      s.fail(ParseError::kBodyTooLarge, "request body too large");
      return -1;
    }
    s.sink_.on_body(std::string_view(at, len));
    return 0;
  }
  static int on_chunk_extension(llhttp_t* p, const char*, size_t len) {
    Parser& s = self(p);
    s.ll_->chunk_ext_bytes += len;
    if (s.ll_->chunk_ext_bytes > kMaxChunkExtensionBytes) {
      s.fail(ParseError::kBadRequest, "chunk extensions too long");
      return -1;
    }
    return 0;
  }
  static int on_chunk_header(llhttp_t* p) {
    Parser& s = self(p);
    s.ll_->chunk_ext_bytes = 0;
    if (p->content_length != 0) return 0;
    // The last chunk: stop so that feed() runs the trailer section through the scanner before
    // llhttp reads it (llhttp 8 takes a bare LF or a folded line there).
    s.ll_->trailers_next = true;
    return HPE_PAUSED;
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
      t.on_chunk_extension_name = &Callbacks::on_chunk_extension;
      t.on_chunk_extension_value = &Callbacks::on_chunk_extension;
      t.on_chunk_header = &Callbacks::on_chunk_header;
      t.on_message_complete = &Callbacks::on_message_complete;
      return t;
    }();
    return table;
  }

  static int on_message_complete(llhttp_t* p) {
    Parser& s = self(p);
    s.deliver_head();
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
  ll_->scanner.start_head(kind_ == Kind::kRequest);
}

Parser::~Parser() = default;

void Parser::reset() {
  llhttp_init(&ll_->parser, kind_ == Kind::kRequest ? HTTP_REQUEST : HTTP_RESPONSE,
              &Callbacks::settings());
  ll_->parser.data = this;
  ll_->scanner.start_head(kind_ == Kind::kRequest);
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
  head_pending_ = false;
  ll_->field_open = false;
  ll_->trailers_next = false;
  ll_->chunk_ext_bytes = 0;
}

void Parser::deliver_head() {
  if (!head_pending_) return;
  head_pending_ = false;
  sink_.on_head(head_);
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
      // Absolute-form targets are for forward proxies; a reverse proxy takes origin-form only,
      // so no authority other than Host ever has to be checked or reconciled with it.
      return fail(ParseError::kBadRequest, "request-target must be in origin form");
    }
    if (head_.target == "*" && p.method != HTTP_OPTIONS) {
      return fail(ParseError::kBadRequest, "asterisk-form is for OPTIONS only");
    }
    if (p.http_major != 1) return fail(ParseError::kBadRequest, "unsupported HTTP version");
    size_t hosts = head_.headers.count("host");
    if (p.http_minor == 1 && hosts != 1) {
      return fail(ParseError::kBadRequest, "HTTP/1.1 request needs exactly one Host header");
    }
    if (hosts > 1) return fail(ParseError::kBadRequest, "more than one Host header");
    if (hosts == 1 && !valid_host(head_.headers.get("host"))) {
      return fail(ParseError::kBadRequest, "invalid Host header");
    }
  } else {
    head_.status = p.status_code;
  }
  head_.chunked = (p.flags & F_CHUNKED) != 0;
  if ((p.flags & F_TRANSFER_ENCODING) && p.http_major == 1 && p.http_minor == 0) {
    // RFC 9112 section 6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
    return fail(ParseError::kBadRequest, "Transfer-Encoding in an HTTP/1.0 message");
  }
  if (p.flags & F_TRANSFER_ENCODING) {
    // Only a single "chunked" coding is forwarded safely: anything else could be read
    // differently by the next hop.
    if (head_.headers.count("transfer-encoding") != 1 || !(p.flags & F_CHUNKED) ||
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
    HeadScanner::Out scanned{chunk, ParseError::kNone, nullptr};
    bool scanning = !ll_->scanner.done;
    if (scanning) {
      // Give llhttp the head (or trailers) only up to its end or to the first bad byte; the
      // body follows once the head has been checked.
      scanned = ll_->scanner.scan(data + offset, chunk, limits_);
      chunk = scanned.ok;
    }
    llhttp_errno_t err = chunk == 0 ? HPE_OK : llhttp_execute(&p, data + offset, chunk);
    if (err == HPE_OK) deliver_head();  // llhttp took the whole head
    if (err == HPE_OK) {
      offset += chunk;
      if (scanned.error != ParseError::kNone) {
        fail(scanned.error, scanned.reason);
        return {Status::kError, offset};
      }
      continue;
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      size_t used = static_cast<size_t>(llhttp_get_error_pos(&p) - (data + offset));
      offset += used;
      if (scanning && used < chunk) {
        // llhttp ended a message inside what the scanner holds to be one head: the two read
        // the framing differently. Never seen; refused rather than guessed.
        fail(ParseError::kBadRequest, "ambiguous message framing");
        return {Status::kError, offset};
      }
      if (err == HPE_PAUSED) {
        llhttp_resume(&p);
      } else {
        llhttp_resume_after_upgrade(&p);
      }
      if (completed_) {
        completed_ = false;
        ll_->scanner.start_head(kind_ == Kind::kRequest);
        return {Status::kComplete, offset};
      }
      if (ll_->trailers_next) {
        ll_->trailers_next = false;
        ll_->scanner.start_trailers();
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
    ll_->scanner.start_head(kind_ == Kind::kRequest);
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
