#include "gateway/upstream_pool.h"

#include <sys/socket.h>

namespace sluice::gateway {

void UpstreamConnection::arm_wait() {
  if (wait_armed_ || !socket_.is_open()) return;
  wait_armed_ = true;
  socket_.async_wait(asio::ip::tcp::socket::wait_read,
                     [self = shared_from_this()](const asio::error_code& ec) {
                       self->wait_armed_ = false;
                       if (self->user_) {
                         self->user_->on_upstream_readable();
                         return;
                       }
                       if (ec || !self->socket_.is_open()) return;
                       // Idle: the upstream closed the connection or sent unsolicited bytes.
                       char probe;
                       ssize_t n = ::recv(self->socket_.native_handle(), &probe, 1,
                                          MSG_PEEK | MSG_DONTWAIT);
                       if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                         self->arm_wait();
                         return;
                       }
                       if (self->pool_) self->pool_->remove(self.get());
                       self->close();
                     });
}

void UpstreamConnection::close() {
  asio::error_code ignored;
  if (socket_.is_open()) socket_.close(ignored);
}

std::shared_ptr<UpstreamConnection> UpstreamPool::take(const std::string& key) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  auto& stack = it->second;
  while (!stack.empty()) {
    auto conn = std::move(stack.back());
    stack.pop_back();
    conn->pool_ = nullptr;
    if (conn->is_open()) return conn;
  }
  return nullptr;
}

void UpstreamPool::put(std::shared_ptr<UpstreamConnection> conn, size_t max_idle,
                       std::chrono::nanoseconds idle_timeout, core::MonoTime now) {
  conn->detach();
  if (!conn->is_open()) return;
  auto& stack = idle_[conn->key()];
  if (stack.size() >= max_idle) {
    conn->close();
    return;
  }
  conn->pool_ = this;
  conn->idle_since = now;
  conn->idle_timeout = idle_timeout;
  conn->arm_wait();
  stack.push_back(std::move(conn));
}

void UpstreamPool::remove(UpstreamConnection* conn) {
  auto it = idle_.find(conn->key());
  if (it == idle_.end()) return;
  std::erase_if(it->second, [conn](const auto& c) { return c.get() == conn; });
  conn->pool_ = nullptr;
}

void UpstreamPool::sweep(core::MonoTime now) {
  for (auto& [key, stack] : idle_) {
    std::erase_if(stack, [&](const std::shared_ptr<UpstreamConnection>& c) {
      if (!c->is_open() || now - c->idle_since > c->idle_timeout) {
        c->pool_ = nullptr;
        c->close();
        return true;
      }
      return false;
    });
  }
}

void UpstreamPool::close_all() {
  for (auto& [key, stack] : idle_) {
    for (auto& c : stack) {
      c->pool_ = nullptr;
      c->close();
    }
  }
  idle_.clear();
}

size_t UpstreamPool::idle_count() const {
  size_t n = 0;
  for (const auto& [key, stack] : idle_) n += stack.size();
  return n;
}

}  // namespace sluice::gateway
