#include "gateway/worker.h"

#include <asio/post.hpp>

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
      // Only this worker's thread does I/O on its sockets (other threads only post), so the
      // reactor can skip its per-descriptor locking.
      io_(ASIO_CONCURRENCY_HINT_UNSAFE_IO),
      sweep_timer_(io_),
      scratch_(kScratchBytes) {
  access_log_ = std::make_unique<observability::AccessLogger>(shared_.access_sink);
  now_ = std::chrono::steady_clock::now();
}

Worker::~Worker() {
  stop();
  join();
}

void Worker::open_listeners() {
  for (const auto& l : shared_.listeners) {
    auto acceptor = std::make_unique<asio::ip::tcp::acceptor>(io_);
    asio::ip::tcp::endpoint ep(asio::ip::make_address(l.address.host), l.address.port);
    acceptor->open(ep.protocol());
    acceptor->set_option(asio::ip::tcp::acceptor::reuse_address(true));
    int one = 1;
    if (::setsockopt(acceptor->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
      throw std::system_error(errno, std::generic_category(), "SO_REUSEPORT");
    }
    acceptor->bind(ep);
    acceptor->listen(asio::socket_base::max_listen_connections);
    acceptors_.push_back(std::move(acceptor));
    peers_.emplace_back();
  }
}

void Worker::start(std::shared_ptr<const Snapshot> snapshot) {
  apply(std::move(snapshot));
  for (size_t i = 0; i < acceptors_.size(); ++i) accept(i);
  schedule_sweep();
  thread_ = std::thread([this] {
    observability::set_thread_slot(index_);
    io_.run();
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
    services_ = std::move(ws);
  };
  if (!thread_.joinable()) {
    swap();  // not started yet: the caller's thread owns the worker
  } else {
    asio::post(io_, std::move(swap));
  }
}

void Worker::apply_units(std::shared_ptr<const router::UnitTable> units) {
  if (!thread_.joinable()) {
    units_ = std::move(units);  // not started yet: the caller's thread owns the worker
    return;
  }
  asio::post(io_, [this, units = std::move(units)]() {
    units_ = units;
    for (Connection* c = connections_; c;) {
      Connection* next = c->next;
      auto keep = c->shared_from_this();
      c->on_units_changed();
      c = next;
    }
  });
}

void Worker::accept(size_t listener) {
  // The peer address comes with accept(2) itself: no getpeername per connection.
  acceptors_[listener]->async_accept(
      peers_[listener], [this, listener](const asio::error_code& ec, asio::ip::tcp::socket socket) {
        if (ec == asio::error::operation_aborted || draining_ || stopped_) return;
        if (!ec) {
          refresh_now();
          if (shared_.connections.load(std::memory_order_relaxed) >= shared_.max_connections) {
            shared_.reject(RejectReason::kTooManyConnections);
            asio::error_code ignored;
            socket.close(ignored);
          } else {
            auto conn =
                std::make_shared<Connection>(*this, std::move(socket), listener, peers_[listener]);
            conn->start();
          }
        } else if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space) {
          core::log_warn("worker {}: accept failed: {}", index_, ec.message());
        }
        accept(listener);
      });
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

void Worker::schedule_sweep() {
  sweep_timer_.expires_after(kSweepInterval);
  sweep_timer_.async_wait([this](const asio::error_code& ec) {
    if (ec || stopped_) return;
    sweep();
    schedule_sweep();
  });
}

void Worker::sweep() {
  core::MonoTime now = refresh_now();
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

void Worker::begin_drain() {
  asio::post(io_, [this] {
    draining_ = true;
    asio::error_code ignored;
    for (auto& a : acceptors_) a->close(ignored);
    for (Connection* c = connections_; c;) {
      Connection* next = c->next;
      auto keep = c->shared_from_this();
      c->drain();
      c = next;
    }
  });
}

void Worker::stop() {
  asio::post(io_, [this] {
    stopped_ = true;
    asio::error_code ignored;
    for (auto& a : acceptors_) a->close(ignored);
    sweep_timer_.cancel();
    for (Connection* c = connections_; c;) {
      Connection* next = c->next;
      auto keep = c->shared_from_this();
      c->close();
      c = next;
    }
    pool_.close_all();
    access_log_->flush();
  });
}

}  // namespace sluice::gateway
