#include "sample/connection.h"

#include <array>
#include <charconv>
#include <span>

#include "sample/body.h"
#include "sample/faults.h"
#include "sample/worker.h"

namespace sluice::sample {

namespace {

using asio::redirect_error;
using asio::use_awaitable;

constexpr std::string_view kJson = "application/json";
constexpr std::string_view kOctets = "application/octet-stream";
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
constexpr auto kLingerTime = std::chrono::seconds(1);
constexpr size_t kLingerBytes = 1024 * 1024;

void append_dec(std::string& out, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

bool status_has_body(int status) {
  return status != 204 && status != 304;
}

}  // namespace

Connection::Connection(Worker& worker, asio::ip::tcp::socket socket)
    : worker_(worker),
      shared_(worker.shared()),
      socket_(std::move(socket)),
      timer_(worker.io_context()),
      parser_(http::Parser::Kind::kRequest, *this),
      rbuf_(new char[kReadBufferSize]) {
  out_.reserve(4096);
  scratch_.reserve(1024);
  worker_.add(this);
}

Connection::~Connection() {
  worker_.remove(this);
}

void Connection::start(std::shared_ptr<Connection> c) {
  auto executor = c->socket_.get_executor();
  Connection* raw = c.get();
  // `self` is a parameter of the coroutine, so the frame owns the connection.
  asio::co_spawn(executor, raw->run(std::move(c)), asio::detached);
}

void Connection::close() {
  closed_ = true;
  std::error_code ignored;
  socket_.close(ignored);
  timer_.cancel();
}

bool Connection::method_is(std::string_view m) {
  return parser_.head().method == m;
}

void Connection::reset_request() {
  route_ = {};
  body_bytes_ = 0;
  head_method_ = false;
  echo_headers_ = false;
  started_ = false;
  collect_ = false;
  collect_overflow_ = false;
  echo_ = EchoMode::kOff;
  collected_.clear();
}

// ---- codec callbacks (run inside parser_.feed) -------------------------------------------------

void Connection::on_head(http::MessageHead& head) {
  reset_request();
  route_ = classify(head.path());
  head_method_ = head.method == "HEAD";
  keep_alive_ = head.keep_alive && !head.upgrade;  // no protocol switch here: answer, then close
  http10_ = head.version_minor == 0;
  const bool has_body = head.chunked || head.content_length > 0;
  if (head.expect_continue && has_body && !http10_) out_.append(kContinue);

  if (auto echo = head.headers.get("x-sample-echo"); !echo.empty()) {
    echo_headers_ = http::iequals(echo, "headers");
  }
  if (route_.endpoint == Endpoint::kEcho) {
    // The answer starts now so the body can stream back as it arrives.
    started_ = true;
    if (!head.chunked) {
      echo_ = EchoMode::kLength;
      append_head(200, kOctets, head.content_length > 0 ? head.content_length : 0);
    } else if (!http10_) {
      echo_ = EchoMode::kChunked;
      append_head(200, kOctets, kChunked);
    } else {
      // An HTTP/1.0 client cannot read chunked: the end of the body is the end of the connection.
      keep_alive_ = false;
      echo_ = EchoMode::kUntilClose;
      append_head(200, kOctets, kNoLength);
    }
  } else if (route_.endpoint == Endpoint::kFaults && has_body) {
    collect_ = true;
  }
}

void Connection::on_body(std::string_view data) {
  body_bytes_ += data.size();
  if (echo_ != EchoMode::kOff) {
    if (head_method_) return;
    // Copied because `data` is only valid during the call; run() writes it before reading more,
    // so out_ holds at most one read buffer of body.
    if (echo_ == EchoMode::kChunked) {
      char size[20];
      auto [end, ec] = std::to_chars(size, size + sizeof size, data.size(), 16);
      out_.append(size, end);
      out_.append("\r\n");
      out_.append(data);
      out_.append("\r\n");
    } else {
      out_.append(data);
    }
    return;
  }
  if (collect_) {
    if (collected_.size() + data.size() > kMaxControlBody) {
      collect_overflow_ = true;
      collect_ = false;
      collected_.clear();
    } else {
      collected_.append(data);
    }
  }
}

void Connection::on_complete() {
  if (echo_ == EchoMode::kChunked && !head_method_) out_.append("0\r\n\r\n");
}

// ---- answers -----------------------------------------------------------------------------------

void Connection::append_head(int status, std::string_view content_type, int64_t length,
                             std::string_view extra_headers) {
  out_.append("HTTP/1.1 ");
  append_dec(out_, static_cast<uint64_t>(status));
  out_.push_back(' ');
  out_.append(reason_phrase(status));
  out_.append("\r\nContent-Type: ");
  out_.append(content_type);
  if (length >= 0) {
    out_.append("\r\nContent-Length: ");
    append_dec(out_, static_cast<uint64_t>(length));
  } else if (length == kChunked) {
    out_.append("\r\nTransfer-Encoding: chunked");
  }
  out_.append("\r\n");
  out_.append(shared_.instance_header);
  if (!keep_alive_) {
    out_.append("Connection: close\r\n");
  } else if (http10_) {
    out_.append("Connection: keep-alive\r\n");
  }
  out_.append(extra_headers);
  out_.append("\r\n");
  started_ = true;
}

void Connection::answer_json(int status, std::string_view body, std::string_view extra_headers) {
  if (!status_has_body(status)) {
    append_head(status, kJson, kNoLength, extra_headers);
    return;
  }
  append_head(status, kJson, static_cast<int64_t>(body.size()), extra_headers);
  if (!head_method_) out_.append(body);
}

void Connection::answer_any(int status) {
  if (status < 0) {
    // Fault injection applies to this generic answer only: health checks, the control
    // endpoints and the explicit test endpoints must keep answering as asked.
    if (worker_.inject_error(shared_.faults.error_rate())) {
      answer_json(500, R"({"error":"injected"})");
      return;
    }
    status = 0;
  }
  const http::MessageHead& head = parser_.head();
  scratch_.clear();
  RequestView view{
      head.method, head.path(), head.query(), body_bytes_, echo_headers_ ? &head.headers : nullptr,
      status};
  shared_.body.build(scratch_, view);
  answer_json(status == 0 ? 200 : status, scratch_);
}

Connection::Action Connection::dispatch() {
  const bool read_only = method_is("GET") || head_method_;
  switch (route_.endpoint) {
    case Endpoint::kAny: {
      auto latency = shared_.faults.latency();
      if (latency.count() > 0) {
        wait_ = latency;
        wait_status_ = -1;
        return Action::kWait;
      }
      answer_any(-1);
      return Action::kDone;
    }
    case Endpoint::kHealthz:
      if (!read_only) {
        answer_json(405, R"({"error":"method not allowed"})", "Allow: GET, HEAD\r\n");
      } else if (shared_.faults.healthy()) {
        answer_json(200, R"({"status":"ok"})");
      } else {
        answer_json(503, R"({"status":"unhealthy"})");
      }
      return Action::kDone;
    case Endpoint::kFaults: {
      if (read_only) {
        answer_json(200, faults_json(shared_.faults.snapshot()));
        return Action::kDone;
      }
      if (!method_is("POST") && !method_is("PUT")) {
        answer_json(405, R"({"error":"method not allowed"})", "Allow: GET, HEAD, POST, PUT\r\n");
        return Action::kDone;
      }
      if (collect_overflow_) {
        answer_json(413, R"({"error":"body too large"})");
        return Action::kDone;
      }
      std::string error;
      auto update = parse_fault_update(collected_, &error);
      if (!update) {
        std::string body = R"({"error":)";
        append_json_string(body, error);
        body.push_back('}');
        answer_json(400, body);
        return Action::kDone;
      }
      shared_.faults.apply(*update);
      answer_json(200, faults_json(shared_.faults.snapshot()));
      return Action::kDone;
    }
    case Endpoint::kStats: {
      auto s = shared_.stats();
      scratch_ = R"({"requests":)";
      append_dec(scratch_, s.requests);
      scratch_.append(R"(,"health_checks":)");
      append_dec(scratch_, s.health_checks);
      scratch_.append(R"(,"connections":)");
      append_dec(scratch_, s.connections);
      scratch_.append(R"(,"active_connections":)");
      append_dec(scratch_, s.active_connections);
      scratch_.push_back('}');
      answer_json(200, scratch_);
      return Action::kDone;
    }
    case Endpoint::kBytes: {
      std::string_view query = parser_.head().query();
      auto n_text = query_param(query, "n");
      auto n = n_text ? parse_u64(*n_text) : std::nullopt;
      if (!n || *n > kMaxBytes) {
        answer_json(400, R"({"error":"n must be a byte count 0..1099511627776"})");
        return Action::kDone;
      }
      auto chunked_flag = query_param(query, "chunked");
      // HTTP/1.0 cannot read chunked: fall back to Content-Length.
      bytes_chunked_ = chunked_flag && is_true(*chunked_flag) && !http10_;
      bytes_n_ = *n;
      append_head(200, kOctets, bytes_chunked_ ? kChunked : static_cast<int64_t>(bytes_n_));
      return head_method_ ? Action::kDone : Action::kBytes;
    }
    case Endpoint::kEcho:
      return Action::kDone;  // answered while the body streamed (on_head, on_body, on_complete)
    case Endpoint::kStatus:
      if (!route_.arg_ok) {
        answer_json(400, R"({"error":"status must be 200..599"})");
      } else {
        answer_any(static_cast<int>(route_.arg));
      }
      return Action::kDone;
    case Endpoint::kDelay:
      if (!route_.arg_ok) {
        answer_json(400, R"({"error":"delay must be 0..3600000 milliseconds"})");
        return Action::kDone;
      }
      wait_ = std::chrono::milliseconds(route_.arg);
      wait_status_ = 0;
      return Action::kWait;
    case Endpoint::kClose:
      return Action::kClose;
    case Endpoint::kUnknownSample:
      answer_json(404, R"({"error":"unknown /_sample/ endpoint"})");
      return Action::kDone;
  }
  return Action::kDone;
}

// ---- I/O
// -----------------------------------------------------------------------------------------

asio::awaitable<bool> Connection::flush() {
  if (out_.empty()) co_return !closed_;
  std::error_code ec;
  co_await asio::async_write(socket_, asio::buffer(out_), redirect_error(use_awaitable, ec));
  out_.clear();
  co_return !ec && !closed_;
}

asio::awaitable<bool> Connection::stream_bytes(uint64_t n, bool chunked) {
  // The head (and earlier pipelined answers) in out_ go out with the first piece; then one
  // pattern block at a time, each written before the next, so memory stays at one shared block.
  std::string_view block = pattern_block();
  uint64_t left = n;
  bool first = true;
  char size_line[24];
  std::error_code ec;
  while (first || left > 0) {
    std::array<asio::const_buffer, 4> bufs;
    size_t count = 0;
    if (first && !out_.empty()) bufs[count++] = asio::buffer(out_);
    size_t piece = left < block.size() ? static_cast<size_t>(left) : block.size();
    if (piece > 0) {
      if (chunked) {
        auto [end, e] = std::to_chars(size_line, size_line + sizeof size_line - 2, piece, 16);
        end[0] = '\r';
        end[1] = '\n';
        bufs[count++] = asio::buffer(size_line, static_cast<size_t>(end + 2 - size_line));
      }
      bufs[count++] = asio::buffer(block.data(), piece);
    }
    left -= piece;
    if (chunked) {
      std::string_view tail = piece == 0 ? "0\r\n\r\n" : left == 0 ? "\r\n0\r\n\r\n" : "\r\n";
      bufs[count++] = asio::buffer(tail.data(), tail.size());
    }
    first = false;
    if (count > 0) {
      co_await asio::async_write(socket_, std::span(bufs.data(), count),
                                 redirect_error(use_awaitable, ec));
    }
    out_.clear();
    if (ec || closed_) co_return false;
  }
  co_return true;
}

asio::awaitable<void> Connection::linger_close() {
  // Close after an answer that ends the connection: half-close, then drain what the client is
  // still sending for a short while, so the kernel does not turn our close into a reset that could
  // destroy the answer before the client read it.
  std::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  if (ec) {
    close();
    co_return;
  }
  timer_.expires_after(kLingerTime);
  timer_.async_wait([self = shared_from_this()](std::error_code e) {
    if (!e) self->close();
  });
  size_t drained = 0;
  while (drained < kLingerBytes && !closed_) {
    size_t n = co_await socket_.async_read_some(asio::buffer(rbuf_.get(), kReadBufferSize),
                                                redirect_error(use_awaitable, ec));
    if (ec) break;
    drained += n;
  }
  close();
}

asio::awaitable<void> Connection::run(std::shared_ptr<Connection> self) {
  std::error_code ec;
  for (;;) {
    if (rpos_ == rlen_) {
      // Everything read so far is handled: write the gathered answers (and any echoed body)
      // before reading more, which is also what applies backpressure to a streaming client.
      // (Written out rather than calling flush(): one coroutine frame less on the hot path.)
      if (!out_.empty()) {
        co_await asio::async_write(socket_, asio::buffer(out_), redirect_error(use_awaitable, ec));
        out_.clear();
        if (ec || closed_) break;
      }
      size_t n = co_await socket_.async_read_some(asio::buffer(rbuf_.get(), kReadBufferSize),
                                                  redirect_error(use_awaitable, ec));
      if (ec || closed_) {
        // The client closed. Only a body delimited by the close (HTTP/1.0 echo) ends well here.
        if (echo_ == EchoMode::kUntilClose && !closed_) {
          co_await flush();
        }
        break;
      }
      rpos_ = 0;
      rlen_ = n;
    }
    auto r = parser_.feed(rbuf_.get() + rpos_, rlen_ - rpos_);
    rpos_ += r.consumed;
    if (r.status == http::Parser::Status::kNeedMore) continue;
    if (r.status == http::Parser::Status::kError) {
      if (started_) {
        // Mid-answer (a streaming echo): no way to report it in-band.
        co_await flush();
        break;
      }
      keep_alive_ = false;
      std::string body = R"({"error":)";
      append_json_string(body, parser_.error_reason());
      body.push_back('}');
      answer_json(http::status_for(parser_.error()), body);
      if (co_await flush()) co_await linger_close();
      break;
    }

    switch (route_.endpoint) {
      case Endpoint::kHealthz:
        worker_.count_health_check();
        break;
      case Endpoint::kStats:
      case Endpoint::kFaults:
        break;  // the test's or operator's own calls: not traffic
      default:
        worker_.count_request();
    }
    Action action = dispatch();
    if (action == Action::kWait) {
      if (!co_await flush()) break;
      timer_.expires_after(wait_);
      co_await timer_.async_wait(redirect_error(use_awaitable, ec));
      if (closed_) break;
      answer_any(wait_status_);
    } else if (action == Action::kBytes) {
      if (!co_await stream_bytes(bytes_n_, bytes_chunked_)) break;
    } else if (action == Action::kClose) {
      co_await flush();  // earlier pipelined answers, not this one
      auto rst = query_param(parser_.head().query(), "rst");
      if (rst && is_true(*rst)) {
        // Abortive close: the client sees a reset instead of an orderly end of stream.
        socket_.set_option(asio::socket_base::linger(true, 0), ec);
      }
      break;
    }
    reset_request();
    if (!keep_alive_) {
      if (co_await flush()) co_await linger_close();
      break;
    }
    if (out_.size() >= kFlushThreshold && !co_await flush()) break;
  }
  close();
}

}  // namespace sluice::sample
