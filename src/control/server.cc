#include "control/server.h"

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>
#include <asio/bind_executor.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/ssl.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/write.hpp>
#include <nlohmann/json.hpp>

#include "core/log.h"
#include "http/parser.h"
#include "http/writer.h"

namespace sluice::control {
namespace {

using asio::ip::tcp;
using TlsStream = asio::ssl::stream<tcp::socket>;

class SessionBase {
 public:
  virtual ~SessionBase() = default;
  // Thread-safe: posts the stop to the session's strand (Server::stop()).
  virtual void request_stop() = 0;
};

}  // namespace

struct Server::Impl {
  ServerOptions options;
  Handler& handler;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  // The acceptor, its retry timer and their state are used on this strand only.
  asio::strand<asio::io_context::executor_type> accept_strand;
  tcp::acceptor acceptor;
  asio::steady_timer accept_timer;
  // Pause before the next accept after a failure, doubled per failure in a row (0: none).
  // Out of descriptors (EMFILE), the connection stays in the backlog and an immediate retry fails
  // again: without a pause the accept loop spins a core and logs each failure (2.7 million lines
  // in 20 s with 1,000 watchers and a limit of 512). Go's net/http pauses the same way.
  std::chrono::milliseconds accept_delay{0};
  uint64_t accept_failures = 0;  // in a row
  std::unique_ptr<asio::ssl::context> tls;
  std::vector<std::thread> threads;
  uint16_t port = 0;
  bool started = false;
  bool stopped = false;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::unordered_map<SessionBase*, std::weak_ptr<SessionBase>> sessions;
  std::atomic<bool> stopping{false};

  Impl(const ServerOptions& o, Handler& h)
      : options(o),
        handler(h),
        work(asio::make_work_guard(io)),
        accept_strand(asio::make_strand(io)),
        acceptor(accept_strand),
        accept_timer(accept_strand) {}

  void accept();
  void accept_failed(const asio::error_code& ec);

  void add(SessionBase* s, std::weak_ptr<SessionBase> w) {
    std::lock_guard lock(mu);
    sessions.emplace(s, std::move(w));
  }
  void remove(SessionBase* s) {
    std::lock_guard lock(mu);
    sessions.erase(s);
    cv.notify_all();
  }
  size_t connections_open() const {
    std::lock_guard lock(mu);
    return sessions.size();
  }
};

namespace {

std::string json_error(std::string_view message) {
  return nlohmann::json{{"error", message}}.dump() + "\n";
}

bool has_body(int status, std::string_view method) {
  return method != "HEAD" && status != 204 && status != 304 && !(status >= 100 && status < 200);
}

// The shared state behind a Respond. A request that is answered later (a parked long poll) has no
// I/O pending, so the session keeps itself alive (`self_`) until it is answered, or until every
// copy of its Respond is gone unanswered (then the connection is closed), or the server stops.
class Answerable {
 public:
  virtual ~Answerable() = default;
  virtual void post_answer(HttpResponse resp) = 0;
  virtual void post_abandon() = 0;
};

class Responder {
 public:
  explicit Responder(std::weak_ptr<Answerable> session) : session_(std::move(session)) {}
  ~Responder() {
    if (done_.load()) return;
    if (auto s = session_.lock()) s->post_abandon();
  }
  void answer(HttpResponse resp) {
    if (done_.exchange(true)) return;
    if (auto s = session_.lock()) s->post_answer(std::move(resp));
  }
  bool done() const { return done_.load(); }

 private:
  std::weak_ptr<Answerable> session_;
  std::atomic<bool> done_{false};
};

// One client connection. All of its work runs on its strand; `Respond` posts back to it.
template <class Stream>
class Session final : public SessionBase,
                      public Answerable,
                      public http::MessageSink,
                      public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(Stream stream, Server::Impl& server, std::string peer)
      : stream_(std::move(stream)),
        server_(server),
        timer_(stream_.get_executor()),
        parser_(http::Parser::Kind::kRequest, *this, limits(server.options)),
        peer_(std::move(peer)) {}

  ~Session() override { server_.remove(this); }

  void start() {
    if constexpr (std::is_same_v<Stream, TlsStream>) {
      arm_timer(server_.options.idle_timeout);
      stream_.async_handshake(asio::ssl::stream_base::server, [self = this->shared_from_this()](
                                                                  const asio::error_code& ec) {
        self->timer_.cancel();
        if (ec) {
          core::log(core::LogLevel::kDebug, "control: TLS handshake with {} failed: {}",
                    self->peer_, ec.message());
          self->close();
          return;
        }
        self->read();
      });
    } else {
      read();
    }
  }

  void request_stop() override {
    asio::post(stream_.get_executor(), [self = this->shared_from_this()] {
      self->stopping_ = true;
      // A response being written finishes first; a connection waiting for a request (or for a
      // parked answer, which the API has already given during its shutdown) closes now.
      if (self->state_ != State::kWriting) self->close();
    });
  }

  void post_answer(HttpResponse resp) override {
    asio::post(stream_.get_executor(),
               [self = this->shared_from_this(), resp = std::move(resp)]() mutable {
                 self->self_.reset();
                 if (self->state_ == State::kHandling) self->write(std::move(resp));
               });
  }

  void post_abandon() override {
    asio::post(stream_.get_executor(), [self = this->shared_from_this()] {
      self->self_.reset();
      if (self->state_ == State::kHandling) self->close();
    });
  }

  // MessageSink.
  void on_head(http::MessageHead& head) override {
    request_ = HttpRequest{};
    request_.method = head.method;
    method_ = head.method;
    request_.path = std::string(head.path());
    request_.query = std::string(head.query());
    request_.authorization = std::string(head.headers.get("authorization"));
    request_.content_type = std::string(head.headers.get("content-type"));
    request_.peer = peer_;
    keep_alive_ = head.keep_alive;
    expect_continue_ = head.expect_continue && head.version_minor >= 1;
    continue_sent_ = false;
  }
  void on_body(std::string_view data) override { request_.body.append(data); }
  void on_complete() override { complete_ = true; }

 private:
  enum class State { kReading, kHandling, kWriting, kClosed };

  static http::ParserLimits limits(const ServerOptions& o) {
    http::ParserLimits l;
    l.max_header_bytes = o.max_header_bytes;
    l.max_uri_bytes = std::min<size_t>(8192, o.max_header_bytes);
    l.max_body_bytes = o.max_body_bytes;
    return l;
  }

  void arm_timer(core::Duration d) {
    timer_.expires_after(d);
    timer_.async_wait([weak = this->weak_from_this()](const asio::error_code& ec) {
      if (ec) return;
      if (auto self = weak.lock()) self->close();
    });
  }

  void read() {
    if (state_ == State::kClosed) return;
    state_ = State::kReading;
    arm_timer(server_.options.idle_timeout);
    stream_.async_read_some(asio::buffer(buf_), [self = this->shared_from_this()](
                                                    const asio::error_code& ec, size_t n) {
      if (ec) {
        self->close();
        return;
      }
      self->pending_.append(self->buf_.data(), n);
      self->process();
    });
  }

  // Parses what has arrived; dispatches at most one complete request.
  void process() {
    if (state_ == State::kClosed) return;
    if (!pending_.empty()) {
      auto r = parser_.feed(pending_.data(), pending_.size());
      if (r.status == http::Parser::Status::kError) {
        timer_.cancel();
        keep_alive_ = false;
        HttpResponse resp;
        resp.status = http::status_for(parser_.error());
        resp.body = json_error(parser_.error_reason());
        if (method_.empty()) method_ = "GET";
        write(std::move(resp));
        return;
      }
      pending_.erase(0, r.consumed);
      if (r.status == http::Parser::Status::kComplete || complete_) {
        complete_ = false;
        dispatch();
        return;
      }
    }
    if (expect_continue_ && parser_.head_done() && !continue_sent_) {
      continue_sent_ = true;
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      state_ = State::kWriting;
      asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                        [self = this->shared_from_this()](const asio::error_code& ec, size_t) {
                          if (ec) {
                            self->close();
                            return;
                          }
                          self->read();
                        });
      return;
    }
    if (stopping_ && !parser_.in_message()) {
      close();
      return;
    }
    read();
  }

  void dispatch() {
    timer_.cancel();
    state_ = State::kHandling;
    expect_continue_ = false;
    self_ = this->shared_from_this();
    auto responder =
        std::make_shared<Responder>(std::static_pointer_cast<Answerable>(this->shared_from_this()));
    Respond respond = [responder](HttpResponse resp) { responder->answer(std::move(resp)); };
    try {
      server_.handler.handle(std::move(request_), std::move(respond));
    } catch (const std::exception& e) {
      // Handlers answer their own errors; this is a bug, but the client still gets an answer.
      core::log_error("control: handler failed: {}", e.what());
      HttpResponse resp;
      resp.status = 500;
      resp.body = json_error(std::string("internal error: ") + e.what());
      responder->answer(std::move(resp));
    }
  }

  void write(HttpResponse resp) {
    if (state_ == State::kClosed) return;
    state_ = State::kWriting;
    const bool close_after = !keep_alive_ || stopping_;
    out_.clear();
    http::append_status_line(out_, resp.status);
    for (const auto& [name, value] : resp.headers) http::append_header(out_, name, value);
    const bool body = has_body(resp.status, method_);
    const std::string& content = resp.shared_body ? *resp.shared_body : resp.body;
    if (resp.status != 304 && resp.status != 204) {
      if (!resp.content_type.empty()) http::append_header(out_, "Content-Type", resp.content_type);
      http::append_header(out_, "Content-Length", static_cast<uint64_t>(content.size()));
    }
    http::append_header(out_, "Cache-Control", "no-store");
    if (close_after) out_.append("Connection: close\r\n");
    out_.append("\r\n");
    out_shared_.reset();
    if (body && resp.shared_body) {
      out_shared_ = std::move(resp.shared_body);  // kept until written
    } else if (body) {
      out_.append(resp.body);
    }
    std::array<asio::const_buffer, 2> buffers = {
        asio::buffer(out_), out_shared_ ? asio::buffer(*out_shared_) : asio::const_buffer()};
    asio::async_write(
        stream_, buffers,
        [self = this->shared_from_this(), close_after](const asio::error_code& ec, size_t) {
          self->out_shared_.reset();
          if (ec || close_after) {
            self->close();
            return;
          }
          self->request_ = HttpRequest{};
          self->method_.clear();
          self->state_ = State::kReading;
          self->process();
        });
  }

  void close() {
    self_.reset();
    if (state_ == State::kClosed) return;
    state_ = State::kClosed;
    timer_.cancel();
    asio::error_code ignored;
    auto& sock = stream_.lowest_layer();
    sock.shutdown(tcp::socket::shutdown_both, ignored);
    sock.close(ignored);
  }

  Stream stream_;
  Server::Impl& server_;
  asio::steady_timer timer_;
  http::Parser parser_;
  std::string peer_;
  std::array<char, 16384> buf_;
  std::string pending_;  // received, not yet parsed (pipelined requests wait here)
  std::string out_;
  std::shared_ptr<const std::string> out_shared_;  // the shared body being written, if any
  HttpRequest request_;
  std::string method_;
  std::shared_ptr<Session> self_;  // set while a request waits for its answer
  State state_ = State::kReading;
  bool keep_alive_ = true;
  bool complete_ = false;
  bool expect_continue_ = false;
  bool continue_sent_ = false;
  bool stopping_ = false;
};

}  // namespace

void Server::Impl::accept() {
  acceptor.async_accept(asio::make_strand(io), [this](const asio::error_code& ec,
                                                      tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
    if (ec) {
      accept_failed(ec);
      return;
    }
    if (accept_failures > 0) {
      core::log_info("control: accepting connections again after {} failed attempt{}",
                     accept_failures, accept_failures == 1 ? "" : "s");
      accept_failures = 0;
      accept_delay = std::chrono::milliseconds(0);
    }
    if (!stopping.load()) {
      asio::error_code pe;
      auto remote = socket.remote_endpoint(pe);
      std::string peer =
          pe ? "?" : fmt::format("{}:{}", remote.address().to_string(), remote.port());
      asio::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      if (tls) {
        auto s = std::make_shared<Session<TlsStream>>(TlsStream(std::move(socket), *tls), *this,
                                                      std::move(peer));
        add(s.get(), s);
        s->start();
      } else {
        auto s = std::make_shared<Session<tcp::socket>>(std::move(socket), *this, std::move(peer));
        add(s.get(), s);
        s->start();
      }
    }
    accept();
  });
}

void Server::Impl::accept_failed(const asio::error_code& ec) {
  constexpr std::chrono::milliseconds kFirstDelay{5}, kMaxDelay{1000};
  accept_delay = accept_delay.count() == 0 ? kFirstDelay : std::min(2 * accept_delay, kMaxDelay);
  // The first failure of a run, then one line per second at most.
  if (accept_failures++ == 0 || accept_delay == kMaxDelay) {
    core::log_warn("control: accept failed: {} ({} connections open); retrying in {} ms",
                   ec.message(), connections_open(), accept_delay.count());
  }
  accept_timer.expires_after(accept_delay);
  accept_timer.async_wait([this](const asio::error_code& e) {
    if (e || !acceptor.is_open()) return;
    accept();
  });
}

Server::Server(const ServerOptions& options, Handler& handler)
    : impl_(std::make_unique<Impl>(options, handler)) {
  Impl& m = *impl_;
  if (!options.tls_cert.empty() || !options.tls_key.empty()) {
    m.tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    m.tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
    asio::error_code ec;
    m.tls->use_certificate_chain_file(options.tls_cert, ec);
    if (ec)
      throw std::runtime_error(
          fmt::format("tls.cert {}: cannot load: {}", options.tls_cert, ec.message()));
    m.tls->use_private_key_file(options.tls_key, asio::ssl::context::pem, ec);
    if (ec)
      throw std::runtime_error(
          fmt::format("tls.key {}: cannot load: {}", options.tls_key, ec.message()));
  }
  try {
    tcp::endpoint ep(asio::ip::make_address(options.listen.host), options.listen.port);
    m.acceptor.open(ep.protocol());
    m.acceptor.set_option(tcp::acceptor::reuse_address(true));
    m.acceptor.bind(ep);
    m.acceptor.listen();
    m.port = m.acceptor.local_endpoint().port();
  } catch (const std::system_error& e) {
    throw std::runtime_error(
        fmt::format("cannot listen on {}: {}", options.listen.to_string(), e.code().message()));
  }
}

Server::~Server() {
  stop(0s);
}

uint16_t Server::port() const {
  return impl_->port;
}

size_t Server::connections() const {
  std::lock_guard lock(impl_->mu);
  return impl_->sessions.size();
}

void Server::post(std::function<void()> fn) {
  asio::post(impl_->io, std::move(fn));
}

void Server::start() {
  Impl& m = *impl_;
  if (m.started) return;
  m.started = true;
  m.accept();
  unsigned n = std::max(1u, m.options.threads);
  for (unsigned i = 0; i < n; ++i) m.threads.emplace_back([&m] { m.io.run(); });
}

void Server::stop(core::Duration grace) {
  Impl& m = *impl_;
  if (m.stopped) return;
  m.stopped = true;
  m.stopping = true;
  if (!m.started) return;
  asio::post(m.accept_strand, [&m] {
    asio::error_code ignored;
    m.acceptor.close(ignored);
    m.accept_timer.cancel();
  });
  // Collected first: the last reference to a session may drop here, and its destructor takes
  // the lock.
  std::vector<std::shared_ptr<SessionBase>> live;
  {
    std::lock_guard lock(m.mu);
    for (auto& [ptr, weak] : m.sessions) {
      if (auto s = weak.lock()) live.push_back(std::move(s));
    }
  }
  for (auto& s : live) s->request_stop();
  live.clear();
  {
    std::unique_lock lock(m.mu);
    m.cv.wait_for(lock, grace, [&m] { return m.sessions.empty(); });
  }
  m.work.reset();
  m.io.stop();
  for (auto& t : m.threads) t.join();
  m.threads.clear();
}

std::string percent_decode(std::string_view s, bool plus_as_space) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%' && i + 2 < s.size()) {
      int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_as_space && c == '+' ? ' ' : c);
  }
  return out;
}

std::optional<std::string> query_param(std::string_view query, std::string_view name) {
  auto raw = http::find_query_param(query, name);
  if (!raw) return std::nullopt;
  return percent_decode(*raw, /*plus_as_space=*/true);
}

}  // namespace sluice::control
