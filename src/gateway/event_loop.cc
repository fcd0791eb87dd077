#include "gateway/event_loop.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "core/log.h"
#include "gateway/event_loop_uring.h"

namespace sluice::gateway {

namespace {
constexpr int kMaxEvents = 256;
}  // namespace

std::string_view to_string(IoBackend b) {
  switch (b) {
    case IoBackend::kAuto:
      return "auto";
    case IoBackend::kEpoll:
      return "epoll";
    case IoBackend::kUring:
      return "io_uring";
  }
  return "?";
}

EventLoop::EventLoop(IoBackend backend) : events_(kMaxEvents) {
  event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  wakeup_.loop = this;
  if (backend != IoBackend::kEpoll) {
    uring_ = Uring::open(fallback_reason_);
    if (!uring_ && backend == IoBackend::kUring) {
      ::close(event_fd_);
      throw std::runtime_error("io_uring unavailable: " + fallback_reason_);
    }
  }
  if (uring_) {
    if (int err = uring_->watch(event_fd_, &wakeup_); err != 0) {
      ::close(event_fd_);
      throw std::system_error(err, std::generic_category(), "io_uring poll(eventfd)");
    }
    return;
  }
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) {
    int err = errno;
    ::close(event_fd_);
    throw std::system_error(err, std::generic_category(), "epoll_create1");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;  // level-triggered: read until drained, and nothing is missed
  ev.data.ptr = static_cast<IoWatcher*>(&wakeup_);
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, event_fd_, &ev) != 0) {
    int err = errno;
    ::close(event_fd_);
    ::close(epoll_fd_);
    throw std::system_error(err, std::generic_category(), "epoll_ctl(eventfd)");
  }
}

EventLoop::~EventLoop() {
  // Left only if the loop never ran again after streams were closed: destroying a task may
  // close another stream, which defers more.
  auto drop_tasks = [this] {
    while (!tasks_.empty()) {
      std::vector<Task> tasks;
      tasks.swap(tasks_);
    }
  };
  drop_tasks();
  if (uring_) {
    uring_->shutdown();
    drop_tasks();
    uring_.reset();
  }
  ::close(event_fd_);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

int EventLoop::socket_flags() const {
  return uring_ ? SOCK_CLOEXEC : SOCK_NONBLOCK | SOCK_CLOEXEC;
}

void EventLoop::Wakeup::on_io(uint32_t) {
  uint64_t count;
  while (::read(loop->event_fd_, &count, sizeof count) > 0) {
  }
  std::vector<std::function<void()>> posted;
  {
    std::lock_guard lock(loop->posted_mutex_);
    posted.swap(loop->posted_);
  }
  for (auto& fn : posted) loop->defer(std::move(fn));
}

void EventLoop::post(std::function<void()> fn) {
  bool first;
  {
    std::lock_guard lock(posted_mutex_);
    first = posted_.empty();
    posted_.push_back(std::move(fn));
  }
  if (first) {
    uint64_t one = 1;
    // Can only fail if the counter would overflow, and then the loop is being woken anyway.
    [[maybe_unused]] ssize_t n = ::write(event_fd_, &one, sizeof one);
  }
}

void EventLoop::defer(std::function<void()> fn) {
  tasks_.push_back(Task{nullptr, std::move(fn), 0, 0});
}

void EventLoop::defer(IoHandler h, int err, size_t n) {
  tasks_.push_back(Task{std::move(h), nullptr, err, n});
}

void EventLoop::every(std::chrono::nanoseconds interval, std::function<void()> fn) {
  timers_.push_back(Timer{std::chrono::steady_clock::now() + interval, interval, std::move(fn)});
}

int EventLoop::add(int fd, IoWatcher* w) {
  if (uring_) return uring_->watch(fd, w);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = w;
  return ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : errno;
}

void EventLoop::forget(IoWatcher* w) {
  if (uring_) {
    uring_->forget(w);
    return;
  }
  for (int i = 0; i < batch_size_; ++i) {
    if (events_[i].data.ptr == w) events_[i].data.ptr = nullptr;
  }
}

void EventLoop::run_deferred() {
  // Tasks may defer more tasks: run rounds until none is left, oldest first.
  while (!tasks_.empty()) {
    running_.swap(tasks_);
    for (Task& t : running_) {
      if (t.io) {
        t.io(t.err, t.n);
      } else {
        t.fn();
      }
    }
    running_.clear();
  }
}

int EventLoop::wait_ms() const {
  if (!tasks_.empty()) return 0;
  if (timers_.empty()) return -1;
  auto now = std::chrono::steady_clock::now();
  auto next = timers_.front().next;
  for (const Timer& t : timers_) next = std::min(next, t.next);
  if (next <= now) return 0;
  // Round up: waking early would only wait again.
  return static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(next - now).count());
}

void EventLoop::run_timers() {
  if (timers_.empty()) return;
  auto now = std::chrono::steady_clock::now();
  for (size_t i = 0; i < timers_.size(); ++i) {
    if (timers_[i].next > now) continue;
    timers_[i].next = now + timers_[i].interval;
    auto fn = timers_[i].fn;  // a copy: the timer may cancel every timer while it runs
    fn();
  }
}

void EventLoop::run() {
  if (uring_) {
    run_uring();
  } else {
    run_epoll();
  }
}

void EventLoop::run_epoll() {
  while (!stopping_) {
    int n = ::epoll_wait(epoll_fd_, events_.data(), kMaxEvents, wait_ms());
    if (n < 0) {
      if (errno != EINTR) core::log_error("event loop: epoll_wait failed: errno {}", errno);
      n = 0;
    }
    batch_size_ = n;
    for (int i = 0; i < n; ++i) {
      auto* w = static_cast<IoWatcher*>(events_[i].data.ptr);
      if (w) w->on_io(events_[i].events);
    }
    batch_size_ = 0;
    run_deferred();
    run_timers();
    run_deferred();
  }
  // What stop left behind: handlers of what it closed, holding references.
  run_deferred();
  stopping_ = false;  // a later run() runs again
}

Stream::Stream(EventLoop& loop, int fd) : loop_(loop), fd_(fd) {
  if (fd_ >= 0 && !loop_.uring_ && loop_.add(fd_, this) != 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

Stream::~Stream() {
  if (alive_) *alive_ = false;
  close();
}

void Stream::set_no_delay() {
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void Stream::close() {
  if (fd_ < 0) return;
  if (loop_.uring_) {
    close_uring();
    return;
  }
  loop_.forget(this);
  ::close(fd_);  // also leaves the epoll set (never duplicated)
  fd_ = -1;
  readable_ = false;
  if (read_h_) loop_.defer(std::move(read_h_), ECANCELED, 0);
  if (write_h_) loop_.defer(std::move(write_h_), ECANCELED, 0);
  if (connect_h_) loop_.defer(std::move(connect_h_), ECANCELED, 0);
  read_h_ = nullptr;
  write_h_ = nullptr;
  connect_h_ = nullptr;
}

void Stream::async_connect(const sockaddr* addr, socklen_t len, IoHandler h) {
  close();
  int fd = ::socket(addr->sa_family, SOCK_STREAM | loop_.socket_flags(), 0);
  if (fd < 0) {
    loop_.defer(std::move(h), errno, 0);
    return;
  }
  if (auto* u = loop_.uring_.get()) {
    io_uring_sqe* sqe;
    UringOp* op = start_uring(*u, UringOp::Kind::kConnect, h, sqe);
    if (!op) {
      ::close(fd);
      return;
    }
    std::memcpy(&op->addr, addr, std::min<size_t>(len, sizeof op->addr));
    op->addr_len = len;
    op->fd = fd;
    io_uring_prep_connect(sqe, fd, reinterpret_cast<const sockaddr*>(&op->addr), len);
    fd_ = fd;
    connect_op_ = op;
    return;
  }
  int rc = ::connect(fd, addr, len);
  if (rc != 0 && errno != EINPROGRESS) {
    int err = errno;
    ::close(fd);
    loop_.defer(std::move(h), err, 0);
    return;
  }
  // Registered only now: an unconnected socket polls as hung up.
  if (int err = loop_.add(fd, this); err != 0) {
    ::close(fd);
    loop_.defer(std::move(h), err, 0);
    return;
  }
  fd_ = fd;
  eof_ = false;
  readable_ = false;
  writable_ = rc == 0;
  if (rc == 0) {
    loop_.defer(std::move(h), 0, 0);
  } else {
    connect_h_ = std::move(h);
  }
}

ssize_t Stream::recv_once(char* buf, size_t len, int& err) {
  ssize_t n = ::recv(fd_, buf, len, 0);
  if (n < 0) {
    err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      err = EAGAIN;
      readable_ = false;
    }
  } else if (static_cast<size_t>(n) < len && !eof_) {
    // A short read emptied the socket: the next data comes with a new edge.
    readable_ = false;
  }
  return n;
}

ssize_t Stream::read_some(char* buf, size_t len, int& err) {
  if (fd_ < 0) {
    err = EBADF;
    return -1;
  }
  if (loop_.uring_) {
    // No readiness is tracked here: ask the socket, without waiting.
    ssize_t n = ::recv(fd_, buf, len, MSG_DONTWAIT);
    if (n < 0) err = errno == EWOULDBLOCK ? EAGAIN : errno;
    return n;
  }
  if (!readable_) {
    err = EAGAIN;
    return -1;
  }
  return recv_once(buf, len, err);
}

void Stream::async_read_some(char* buf, size_t len, IoHandler h) {
  if (fd_ < 0) {
    loop_.defer(std::move(h), EBADF, 0);
    return;
  }
  if (auto* u = loop_.uring_.get()) {
    io_uring_sqe* sqe;
    read_op_ = start_uring(*u, UringOp::Kind::kRead, h, sqe);
    if (read_op_) io_uring_prep_recv(sqe, fd_, buf, len, 0);
    return;
  }
  if (readable_) {
    int err = 0;
    ssize_t n = recv_once(buf, len, err);
    if (n >= 0 || err != EAGAIN) {
      loop_.defer(std::move(h), n >= 0 ? 0 : err, n >= 0 ? static_cast<size_t>(n) : 0);
      return;
    }
  }
  rbuf_ = buf;
  rlen_ = len;
  read_h_ = std::move(h);
}

bool Stream::read_pending() const {
  if (fd_ < 0) return false;
  if (loop_.uring_) return read_op_ != nullptr && !read_op_->harvested;
  return static_cast<bool>(read_h_);
}

bool Stream::has_unread_input() const {
  if (fd_ < 0) return true;
  char probe;
  ssize_t n = ::recv(fd_, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return true;
  if (n == 0) return true;  // the peer closed
  return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

bool Stream::send_pending(int& err) {
  while (wdone_ < wlen_) {
    ssize_t n = ::send(fd_, wdata_ + wdone_, wlen_ - wdone_, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        writable_ = false;
        return false;
      }
      err = errno;
      return true;
    }
    wdone_ += static_cast<size_t>(n);
  }
  err = 0;
  return true;
}

void Stream::async_write(const char* data, size_t len, IoHandler h) {
  if (fd_ < 0) {
    loop_.defer(std::move(h), EBADF, 0);
    return;
  }
  if (auto* u = loop_.uring_.get()) {
    io_uring_sqe* sqe;
    write_op_ = start_uring(*u, UringOp::Kind::kWrite, h, sqe);
    if (!write_op_) return;
    write_op_->data = data;
    write_op_->len = len;
    io_uring_prep_send(sqe, fd_, data, len, MSG_NOSIGNAL);
    return;
  }
  wdata_ = data;
  wlen_ = len;
  wdone_ = 0;
  int err = 0;
  if (writable_ && send_pending(err)) {
    loop_.defer(std::move(h), err, wdone_);
    return;
  }
  write_h_ = std::move(h);
}

bool Stream::complete(IoHandler& slot, int err, size_t n, const bool& alive) {
  {
    IoHandler h = std::move(slot);
    slot = nullptr;
    h(err, n);
  }  // h, and what it holds (maybe the last reference to this stream's owner), is gone here
  return alive;
}

void Stream::on_io(uint32_t events) {
  if (fd_ < 0) return;
  bool alive = true;
  alive_ = &alive;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) readable_ = true;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) eof_ = true;
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) writable_ = true;

  if (connect_h_ && writable_) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == 0 && (events & (EPOLLHUP | EPOLLERR))) err = ECONNREFUSED;
    if (!complete(connect_h_, err, 0, alive)) return;
  }
  if (write_h_ && writable_ && fd_ >= 0) {
    int err = 0;
    if (send_pending(err) && !complete(write_h_, err, wdone_, alive)) return;
  }
  if (read_h_ && readable_ && fd_ >= 0) {
    int err = 0;
    ssize_t n = recv_once(rbuf_, rlen_, err);
    if (n >= 0 || err != EAGAIN) {
      if (!complete(read_h_, n >= 0 ? 0 : err, n >= 0 ? static_cast<size_t>(n) : 0, alive)) {
        return;
      }
    }
  }
  alive_ = nullptr;
}

}  // namespace sluice::gateway
