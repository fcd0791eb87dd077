#include "gateway/upstream_pool.h"

#include <cerrno>

namespace sluice::gateway {

void UpstreamConnection::read() {
  if (reading_ || !socket_.is_open()) return;
  reading_ = true;
  socket_.async_read_some(buf_.get(), kReadBufferBytes,
                          [self = shared_from_this()](int err, size_t n) {
                            self->reading_ = false;
                            if (self->user_) {
                              self->user_->on_upstream_data(err, self->buf_.get(), n);
                              return;
                            }
                            if (err == ECANCELED) return;
                            // Idle: the upstream closed, failed, or sent bytes nobody asked for.
                            if (self->pool_) self->pool_->remove(self.get());
                            self->close();
                          });
}

void UpstreamConnection::close() {
  socket_.close();
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
  conn->read();
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
