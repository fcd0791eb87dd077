#include "gateway/worker.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include <fmt/format.h>

#include "core/log.h"
#include "gateway/connection.h"
#include "gateway/shared.h"

namespace sluice::gateway {

namespace {
constexpr auto kSweepInterval = std::chrono::milliseconds(100);
constexpr size_t kScratchBytes = 64 * 1024;
}  // namespace

Worker::Worker(GatewayShared& shared, unsigned index)
    : shared_(shared),
      index_(index),
      loop_(shared.io_backend),
      scratch_(kScratchBytes),
      shared_drain_(&shared.draining) {
  access_log_ = std::make_unique<observability::AccessLogger>(shared_.access_sink);
  now_ = std::chrono::steady_clock::now();
}

Worker::~Worker() {
  if (thread_.joinable()) {
    stop();
    join();
  }
  close_listeners();
}

void Worker::open_listeners() {
  for (const auto& l : shared_.listeners) {
    asio::ip::tcp::endpoint ep(asio::ip::make_address(l.address.host), l.address.port);
    auto fail = [&](const char* what) {
      int err = errno;  // before anything else can change it
      throw std::system_error(
          err, std::generic_category(),
          fmt::format("listener {} ({}:{}): {}", l.name, l.address.host, l.address.port, what));
    };
    auto listener = std::make_unique<Listener>();
    listener->worker = this;
    listener->index = listeners_.size();
    listener->fd = ::socket(ep.protocol().family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listener->fd < 0) fail("socket");
    listeners_.push_back(std::move(listener));  // closed by close_listeners from here on
    int fd = listeners_.back()->fd;
    int one = 1;
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) fail("SO_REUSEADDR");
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) fail("SO_REUSEPORT");
    // Accepted sockets inherit it (Linux): one call here instead of one per connection.
    if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) fail("TCP_NODELAY");
    if (::bind(fd, ep.data(), static_cast<socklen_t>(ep.size())) != 0) fail("bind");
    if (::listen(fd, SOMAXCONN) != 0) fail("listen");
    if (int err = loop_.add(fd, listeners_.back().get()); err != 0) {
      errno = err;
      fail("watch with the event loop");
    }
  }
}

void Worker::close_listeners() {
  for (auto& l : listeners_) {
    if (l->fd >= 0) {
      loop_.forget(l.get());
      ::close(l->fd);
      l->fd = -1;
    }
  }
}

void Worker::start(std::shared_ptr<const Snapshot> snapshot) {
  apply(std::move(snapshot));
  loop_.every(kSweepInterval, [this] { sweep(); });
  thread_ = std::thread([this] {
    observability::set_thread_slot(index_);
    loop_.run();
    access_log_->flush();
  });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::apply(std::shared_ptr<const Snapshot> snapshot) {
  auto swap = [this, snapshot = std::move(snapshot)]() {
    auto ws = std::make_shared<WorkerServices>();
    ws->snapshot = snapshot;
    ws->services.resize(snapshot->services.size());
    for (size_t i = 0; i < snapshot->services.size(); ++i) {
      const ServiceInfo& si = snapshot->services[i];
      WorkerService& w = ws->services[i];
      w.states.resize(si.endpoints.size());
      for (size_t e = 0; e < si.endpoints.size(); ++e) {
        w.states[e].weight = si.endpoints[e].cfg.weight;
        w.states[e].id = upstream::hash_key(si.endpoints[e].address);
      }
      w.lb = upstream::make_load_balancer(si.cfg->load_balancer, w.states,
                                          0x5eed0000ull + index_ * 7919 + i);
    }
    // This worker's share of the idle upstream connection budget (limits are per gateway).
    const config::GatewayConfig& cfg = *snapshot->config;
    pool_.set_max_idle_total(cfg.limits.max_idle_upstream_bytes /
                             std::max<uint32_t>(1, cfg.workers) /
                             config::kIdleUpstreamConnectionBytes);
    services_ = std::move(ws);
  };
  if (!thread_.joinable()) {
    swap();  // not started yet: the caller's thread owns the worker
  } else {
    loop_.post(std::move(swap));
  }
}

void Worker::apply_units(std::shared_ptr<const router::UnitTable> units) {
  if (!thread_.joinable()) {
    units_ = std::move(units);  // not started yet: the caller's thread owns the worker
    return;
  }
  loop_.post([this, units = std::move(units)]() {
    units_ = units;
    for (Connection* c = connections_; c;) {
      Connection* next = c->next;
      auto keep = c->shared_from_this();
      c->on_units_changed();
      c = next;
    }
  });
}

void Worker::Listener::on_io(uint32_t) {
  worker->accept(*this);
}

void Worker::accept(Listener& l) {
  if (draining() || stopped_ || l.fd < 0) return;
  refresh_now();
  for (;;) {
    // The peer address comes with accept4 itself: no getpeername per connection.
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    int fd = ::accept4(l.fd, reinterpret_cast<sockaddr*>(&peer), &len, loop_.socket_flags());
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINVAL) return;  // shut down by stop_accepting(): the drain is on its way
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // What waits stays in the backlog; with no new edge to come, the sweep tries again.
        if (!accept_paused_) {
          core::log_warn("worker {}: accept failed: {}", index_, std::strerror(errno));
        }
        accept_paused_ = true;
        return;
      }
      core::log_warn("worker {}: accept failed: {}", index_, std::strerror(errno));
      return;
    }
    accept_paused_ = false;
    if (shared_.connections.load(std::memory_order_relaxed) >= shared_.max_connections) {
      shared_.reject(RejectReason::kTooManyConnections);
      ::close(fd);
      continue;
    }
    auto conn = std::make_shared<Connection>(*this, fd, l.index, peer);
    conn->start();
  }
}

void Worker::link(Connection* c) {
  c->next = connections_;
  c->prev = nullptr;
  if (connections_) connections_->prev = c;
  connections_ = c;
  connection_count_.fetch_add(1, std::memory_order_relaxed);
  shared_.connections.fetch_add(1, std::memory_order_relaxed);
}

void Worker::unlink(Connection* c) {
  if (c->prev) c->prev->next = c->next;
  if (c->next) c->next->prev = c->prev;
  if (connections_ == c) connections_ = c->next;
  c->prev = c->next = nullptr;
  connection_count_.fetch_sub(1, std::memory_order_relaxed);
  shared_.connections.fetch_sub(1, std::memory_order_relaxed);
}

void Worker::sweep() {
  if (stopped_) return;
  core::MonoTime now = refresh_now();
  if (accept_paused_) {
    for (auto& l : listeners_) accept(*l);
  }
  // on_tick may close a connection, which unlinks it: hold it and read `next` first.
  for (Connection* c = connections_; c;) {
    Connection* next = c->next;
    auto keep = c->shared_from_this();
    c->on_tick(now);
    c = next;
  }
  pool_.sweep(now);
  idle_upstreams_.store(pool_.idle_count(), std::memory_order_relaxed);
  access_log_->flush();
}

void Worker::stop_accepting() {
  for (auto& l : listeners_) {
    // Not close(): the fd stays the worker's (its loop watches it) until begin_drain closes it.
    if (l->fd >= 0 && ::shutdown(l->fd, SHUT_RD) != 0 && errno != ENOTCONN) {
      core::log_warn("worker {}: stop accepting: {}", index_, std::strerror(errno));
    }
  }
}

void Worker::begin_drain() {
  loop_.post([this] {
    draining_ = true;
    close_listeners();
    for (Connection* c = connections_; c;) {
      Connection* next = c->next;
      auto keep = c->shared_from_this();
      c->drain();
      c = next;
    }
  });
}

void Worker::stop() {
  loop_.post([this] {
    stopped_ = true;
    close_listeners();
    loop_.cancel_timers();
    for (Connection* c = connections_; c;) {
      Connection* next = c->next;
      auto keep = c->shared_from_this();
      c->close();
      c = next;
    }
    pool_.close_all();
    access_log_->flush();
    loop_.stop();
  });
}

}  // namespace sluice::gateway
