#include "sample/worker.h"

#include <random>

#include "core/log.h"
#include "sample/connection.h"

namespace sluice::sample {

namespace {

std::string header_safe(std::string_view v) {
  std::string out(v);
  for (char& c : out) {
    if (c == '\r' || c == '\n' || c == '\0') c = ' ';
  }
  return out;
}

}  // namespace

void SharedState::identify(std::string_view service, std::string_view city, std::string_view zone,
                           std::string_view instance) {
  body = BodyBuilder(service, city, zone, instance);
  instance_header = "x-sample-instance: " + header_safe(instance) + "\r\n";
}

SharedState::Stats SharedState::stats() const {
  Stats s;
  for (const Worker* w : workers) {
    s.requests += w->requests();
    s.health_checks += w->health_checks();
    s.connections += w->connections();
    s.active_connections += w->active();
  }
  return s;
}

Worker::Worker(SharedState& shared, unsigned index) : shared_(shared) {
  std::random_device rd;
  rng_ = (uint64_t{rd()} << 32 | rd()) ^ (0x9E3779B97F4A7C15ull * (index + 1));
  if (rng_ == 0) rng_ = 1;
}

Worker::~Worker() = default;

void Worker::listen(const asio::ip::tcp::endpoint& endpoint) {
  using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.set_option(reuse_port(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections);
}

void Worker::start() {
  asio::co_spawn(ioc_, accept_loop(), asio::detached);
}

void Worker::request_stop() {
  asio::post(ioc_, [this] { stop(); });
}

void Worker::stop() {
  stopping_ = true;
  std::error_code ignored;
  acceptor_.close(ignored);
  accept_backoff_.cancel();
  for (Connection* c = conns_; c != nullptr; c = c->next_) c->close();
}

bool Worker::inject_error(double rate) {
  if (rate <= 0) return false;
  if (rate >= 1) return true;
  // xorshift64*: plenty for picking a fraction of requests, and per worker so there is no sharing.
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  uint64_t x = rng_ * 0x2545F4914F6CDD1Dull;
  return static_cast<double>(x >> 11) * 0x1.0p-53 < rate;
}

void Worker::add(Connection* c) {
  c->next_ = conns_;
  c->prev_ = nullptr;
  if (conns_ != nullptr) conns_->prev_ = c;
  conns_ = c;
  bump(connections_);
  bump(active_);
}

void Worker::remove(Connection* c) {
  if (c->prev_ != nullptr) {
    c->prev_->next_ = c->next_;
  } else {
    conns_ = c->next_;
  }
  if (c->next_ != nullptr) c->next_->prev_ = c->prev_;
  bump(active_, -1);
}

asio::awaitable<void> Worker::accept_loop() {
  for (;;) {
    std::error_code ec;
    asio::ip::tcp::socket socket =
        co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      // Out of descriptors or memory: back off instead of spinning on the same error.
      core::log_warn("sample-service: accept: {}", ec.message());
      accept_backoff_.expires_after(std::chrono::milliseconds(50));
      co_await accept_backoff_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (stopping_) co_return;
      continue;
    }
    socket.set_option(asio::ip::tcp::no_delay(true), ec);
    Connection::start(std::make_shared<Connection>(*this, std::move(socket)));
  }
}

}  // namespace sluice::sample
