#include "gateway/upstream_pool.h"

#include <cerrno>

namespace sluice::gateway {

const char* to_string(PoolCloseReason r) {
  switch (r) {
    case PoolCloseReason::kUpstreamClosed:
      return "upstream_closed";
    case PoolCloseReason::kUnsolicited:
      return "unsolicited_bytes";
    case PoolCloseReason::kUnclean:
      return "unclean_on_reuse";
    case PoolCloseReason::kIdleTimeout:
      return "idle_timeout";
    case PoolCloseReason::kOverCap:
      return "over_cap";
    case PoolCloseReason::kOverMemory:
      return "over_memory";
    case PoolCloseReason::kCount:
      break;
  }
  return "unknown";
}

void UpstreamConnection::read() {
  if (reading_ || !socket_.is_open()) return;
  reading_ = true;
  auto on_read = [self = shared_from_this()](int err, size_t n) {
    self->reading_ = false;
    if (self->user_) {
      self->user_->on_upstream_data(err, self->buf_.get(), n);
      return;
    }
    if (err == ECANCELED) return;
    // Idle: the upstream closed, failed, or sent bytes nobody asked for.
    if (self->pool_) {
      self->pool_->remove(self.get(), err == 0 && n > 0 ? PoolCloseReason::kUnsolicited
                                                        : PoolCloseReason::kUpstreamClosed);
    }
    self->close();
  };
  static_assert(IoHandler::fits<decltype(on_read)>, "a request-path handler must not allocate");
  socket_.async_read_some(buf_.get(), kReadBufferBytes, std::move(on_read));
}

bool UpstreamConnection::clean() {
  // The read armed when it went idle must still be waiting: if it completed, its handler (with
  // the bytes or the EOF) has not run yet and would be given to the next user.
  if (!reading_ || !socket_.read_pending()) return false;
  // Bytes that arrived since the loop last asked the kernel. One recv(MSG_PEEK) per reuse: the
  // price of never handing a request someone else's response.
  return !socket_.has_unread_input();
}

void UpstreamConnection::close() {
  socket_.close();
}

void UpstreamPool::acquire(UpstreamConnection& conn, PoolEntry& e, core::MonoTime now) {
  conn.entry_ = &e;
  e.cap.acquire(now);
}

void UpstreamPool::release(UpstreamConnection& conn, core::MonoTime now) {
  if (conn.entry_ == nullptr) return;
  conn.entry_->cap.release(now);
  conn.entry_ = nullptr;
}

std::shared_ptr<UpstreamConnection> UpstreamPool::take(const std::string& key, core::MonoTime now) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  auto& stack = it->second.idle;
  while (!stack.empty()) {
    auto conn = std::move(stack.back());
    stack.pop_back();
    --idle_total_;
    conn->pool_ = nullptr;
    if (!conn->is_open()) continue;
    if (!conn->clean()) {
      count(PoolCloseReason::kUnclean);
      conn->close();
      continue;
    }
    acquire(*conn, it->second, now);
    return conn;
  }
  return nullptr;
}

std::shared_ptr<UpstreamConnection> UpstreamPool::create(EventLoop& loop, const std::string& key,
                                                         core::MonoTime now) {
  auto conn = std::make_shared<UpstreamConnection>(loop, key);
  acquire(*conn, entries_[key], now);
  return conn;
}

void UpstreamPool::put(std::shared_ptr<UpstreamConnection> conn, const upstream::IdleCapConfig& cap,
                       std::chrono::nanoseconds idle_timeout, core::MonoTime now) {
  conn->detach();
  PoolEntry* e = conn->entry_;
  release(*conn, now);
  if (!conn->is_open() || e == nullptr) {
    conn->close();
    return;
  }
  e->cap.configure(cap);
  switch (e->cap.keep(e->idle.size(), idle_total_, max_idle_total_, now)) {
    case upstream::KeepDecision::kKeep:
      break;
    case upstream::KeepDecision::kOverCap:
      count(PoolCloseReason::kOverCap);
      conn->close();
      return;
    case upstream::KeepDecision::kOverMemory:
      count(PoolCloseReason::kOverMemory);
      conn->close();
      return;
  }
  conn->pool_ = this;
  conn->idle_since = now;
  conn->idle_timeout = idle_timeout;
  conn->read();
  e->idle.push_back(std::move(conn));
  ++idle_total_;
}

void UpstreamPool::discard(std::shared_ptr<UpstreamConnection> conn, core::MonoTime now) {
  conn->detach();
  release(*conn, now);
  conn->close();
}

void UpstreamPool::remove(UpstreamConnection* conn, PoolCloseReason why) {
  auto it = entries_.find(conn->key());
  conn->pool_ = nullptr;
  if (it == entries_.end()) return;
  size_t before = it->second.idle.size();
  std::erase_if(it->second.idle, [conn](const auto& c) { return c.get() == conn; });
  size_t removed = before - it->second.idle.size();
  idle_total_ -= removed;
  if (removed) count(why);
}

void UpstreamPool::sweep(core::MonoTime now) {
  for (auto& [key, e] : entries_) {
    size_t before = e.idle.size();
    std::erase_if(e.idle, [&](const std::shared_ptr<UpstreamConnection>& c) {
      if (!c->is_open()) {
        c->pool_ = nullptr;
        return true;
      }
      if (now - c->idle_since > c->idle_timeout) {
        count(PoolCloseReason::kIdleTimeout);
        c->pool_ = nullptr;
        c->close();
        return true;
      }
      return false;
    });
    idle_total_ -= before - e.idle.size();
  }
}

void UpstreamPool::close_all() {
  for (auto& [key, e] : entries_) {
    for (auto& c : e.idle) {
      c->pool_ = nullptr;
      c->close();
    }
    e.idle.clear();
  }
  idle_total_ = 0;
}

}  // namespace sluice::gateway
