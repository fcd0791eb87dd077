#include "gateway/event_loop_uring.h"

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "core/log.h"

namespace sluice::gateway {

namespace {
// Submissions per enter: more than one iteration's worth at any load we have measured.
constexpr unsigned kSqEntries = 2048;
// Completions are kept by the kernel beyond this (IORING_FEAT_NODROP), only more slowly.
constexpr unsigned kCqEntries = 16384;
// How long run() waits, when told to stop, for what it cancelled to come back.
constexpr auto kStopDrain = std::chrono::seconds(1);
}  // namespace

std::unique_ptr<EventLoop::Uring> EventLoop::Uring::open(std::string& why) {
  auto u = std::make_unique<Uring>();
  io_uring_params p{};
  // SINGLE_ISSUER + DEFER_TASKRUN: completions are produced in this thread's own io_uring_enter
  // instead of interrupting it; R_DISABLED: the loop's thread, not the constructing one, issues.
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED |
            IORING_SETUP_CQSIZE;
  p.cq_entries = kCqEntries;
  if (int rc = io_uring_queue_init_params(kSqEntries, &u->ring, &p); rc < 0) {
    why = std::string("io_uring_setup: ") + std::strerror(-rc);
    return nullptr;
  }
  constexpr unsigned kNeeded = IORING_FEAT_NODROP | IORING_FEAT_EXT_ARG | IORING_FEAT_FAST_POLL;
  if ((p.features & kNeeded) != kNeeded) {
    io_uring_queue_exit(&u->ring);
    why = "io_uring lacks no-drop completions, timed waits or fast poll";
    return nullptr;
  }
  return u;
}

EventLoop::Uring::~Uring() {
  if (!exiting) shutdown();
}

void EventLoop::Uring::shutdown() {
  if (exiting) return;
  exiting = true;
  // Closes still queued (streams closed after the loop last ran) would be lost with the ring.
  for (unsigned i = ring.sq.sqe_head; i != ring.sq.sqe_tail; ++i) {
    const io_uring_sqe& s = ring.sq.sqes[i & ring.sq.ring_mask];
    if (s.opcode == IORING_OP_CLOSE) ::close(s.fd);
  }
  io_uring_queue_exit(&ring);
  // Dropping a handler may close streams (their cancel() is a no-op now) and free the buffers
  // the kernel would have filled: the ring is gone, so nothing fills them any more.
  for (UringOp& op : ops_) {
    IoHandler h = std::move(op.h);
    op.h = nullptr;
  }
}

io_uring_sqe* EventLoop::Uring::sqe() {
  if (exiting) return nullptr;
  io_uring_sqe* s = io_uring_get_sqe(&ring);
  if (!s && enabled) {
    io_uring_submit(&ring);
    s = io_uring_get_sqe(&ring);
  }
  if (!s) core::log_error("event loop: io_uring submission queue full");
  return s;
}

UringOp* EventLoop::Uring::start(UringOp::Kind kind, Stream* stream, IoHandler&& h,
                                 io_uring_sqe*& s) {
  s = sqe();
  if (!s) return nullptr;
  UringOp* op;
  if (free_.empty()) {
    op = &ops_.emplace_back();
  } else {
    op = free_.back();
    free_.pop_back();
  }
  op->kind = kind;
  op->harvested = false;
  op->stream = stream;
  op->fd = stream ? stream->fd() : -1;
  op->h = std::move(h);
  io_uring_sqe_set_data(s, op);
  return op;
}

void EventLoop::Uring::release(UringOp* op) {
  bool cancelled = op->cancelled;
  if (cancelled) --cancelled_in_flight;
  op->cancelled = false;
  op->harvested = false;
  op->stream = nullptr;
  op->watcher = nullptr;
  op->h = nullptr;
  op->data = nullptr;
  op->len = op->done = 0;
  (cancelled ? quarantine_ : free_).push_back(op);
}

void EventLoop::Uring::cancel(UringOp* op) {
  if (op->cancelled) return;
  op->cancelled = true;
  op->stream = nullptr;
  op->watcher = nullptr;
  ++cancelled_in_flight;
  if (io_uring_sqe* s = sqe()) {
    io_uring_prep_cancel64(s, reinterpret_cast<uint64_t>(op), 0);
    io_uring_sqe_set_data64(s, 0);  // the cancel's own completion is not looked at
  }
}

void EventLoop::Uring::arm_poll(UringOp* op) {
  io_uring_sqe* s = sqe();
  if (!s) {
    core::log_error("event loop: cannot watch fd {}: no submission slot", op->fd);
    return;
  }
  io_uring_prep_poll_multishot(s, op->fd, POLLIN);
  io_uring_sqe_set_data(s, op);
}

int EventLoop::Uring::watch(int fd, IoWatcher* w) {
  io_uring_sqe* s;
  UringOp* op = start(UringOp::Kind::kPoll, nullptr, nullptr, s);
  if (!op) return ENOBUFS;
  op->fd = fd;
  op->watcher = w;
  io_uring_prep_poll_multishot(s, fd, POLLIN);
  polls_.emplace_back(w, op);
  return 0;
}

void EventLoop::Uring::forget(IoWatcher* w) {
  std::erase_if(polls_, [&](const std::pair<IoWatcher*, UringOp*>& p) {
    if (p.first != w) return false;
    cancel(p.second);
    return true;
  });
}

void EventLoop::Uring::dispatch() {
  // Called right after an enter, which submitted every cancel queued before it.
  free_.insert(free_.end(), quarantine_.begin(), quarantine_.end());
  quarantine_.clear();
  batch_.clear();
  unsigned head;
  unsigned count = 0;
  io_uring_cqe* cqe;
  io_uring_for_each_cqe(&ring, head, cqe) {
    batch_.push_back(Completion{cqe->user_data, cqe->res, cqe->flags});
    if (cqe->user_data != 0) reinterpret_cast<UringOp*>(cqe->user_data)->harvested = true;
    ++count;
  }
  io_uring_cq_advance(&ring, count);
  // Handlers run after the ring is advanced, from a copy: they may queue submissions freely.
  for (const Completion& c : batch_) {
    if (c.user_data == 0) continue;  // a cancel request's own completion
    complete(reinterpret_cast<UringOp*>(c.user_data), c);
  }
}

void EventLoop::Uring::complete(UringOp* op, const Completion& c) {
  switch (op->kind) {
    case UringOp::Kind::kPoll: {
      if (!op->cancelled && c.res > 0) op->watcher->on_io(static_cast<uint32_t>(c.res));
      if (c.flags & IORING_CQE_F_MORE) return;
      if (!op->cancelled && c.res >= 0) {
        arm_poll(op);  // the kernel ended the multishot poll (it may): start another
        return;
      }
      if (!op->cancelled) {
        core::log_error("event loop: watching fd {} failed: {}", op->fd, std::strerror(-c.res));
        std::erase_if(polls_, [&](const auto& p) { return p.second == op; });
      }
      release(op);
      return;
    }
    case UringOp::Kind::kWrite:
      if (!op->cancelled && c.res > 0 && op->done + static_cast<size_t>(c.res) < op->len) {
        // A short send (the socket buffer filled): the rest goes in a new submission.
        op->done += static_cast<size_t>(c.res);
        if (io_uring_sqe* s = sqe()) {
          io_uring_prep_send(s, op->fd, op->data + op->done, op->len - op->done, MSG_NOSIGNAL);
          io_uring_sqe_set_data(s, op);
          return;
        }
        finish(op, ENOBUFS, 0);
        return;
      }
      if (c.res > 0) op->done += static_cast<size_t>(c.res);
      // A send that took nothing of a non-empty buffer would only be repeated: report it.
      finish(op, c.res < 0 ? -c.res : (c.res == 0 && op->len > 0 ? EPIPE : 0), 0);
      return;
    case UringOp::Kind::kRead:
    case UringOp::Kind::kConnect:
      finish(op, c.res < 0 ? -c.res : 0, c.res > 0 ? static_cast<size_t>(c.res) : 0);
      return;
  }
}

void EventLoop::Uring::finish(UringOp* op, int err, size_t n) {
  if (op->kind == UringOp::Kind::kWrite) n = op->done;
  if (op->cancelled) {
    err = ECANCELED;
    n = 0;
  } else if (Stream* s = op->stream) {
    UringOp*& slot = op->kind == UringOp::Kind::kRead    ? s->read_op_
                     : op->kind == UringOp::Kind::kWrite ? s->write_op_
                                                         : s->connect_op_;
    slot = nullptr;
  }
  IoHandler h = std::move(op->h);
  release(op);  // first: the handler may start the next operation with it
  h(err, n);
}

void EventLoop::run_uring() {
  Uring& u = *uring_;
  if (!u.enabled) {
    // The calling thread becomes the ring's only submitter.
    if (::syscall(__NR_io_uring_register, u.ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr,
                  0) != 0) {
      int err = errno;
      core::log_error("event loop: cannot enable the io_uring ring: {}", std::strerror(err));
      throw std::system_error(err, std::generic_category(), "io_uring enable");
    }
    u.enabled = true;
    u.issuer = std::this_thread::get_id();
  } else if (u.issuer != std::this_thread::get_id()) {
    // Every enter from here would fail (EEXIST): say so once instead of spinning.
    throw std::logic_error("event loop: an io_uring loop is run by the thread that ran it first");
  }
  auto enter = [&](int ms) {
    int rc;
    if (ms == 0) {
      rc = io_uring_submit_and_get_events(&u.ring);
    } else if (ms < 0) {
      rc = io_uring_submit_and_wait(&u.ring, 1);
    } else {
      __kernel_timespec ts{ms / 1000, (ms % 1000) * 1000000LL};
      io_uring_cqe* cqe = nullptr;
      rc = io_uring_submit_and_wait_timeout(&u.ring, &cqe, 1, &ts, nullptr);
    }
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) {
      core::log_error("event loop: io_uring_enter failed: {}", std::strerror(-rc));
    }
    u.dispatch();
  };
  while (!stopping_) {
    enter(wait_ms());
    run_deferred();
    run_timers();
    run_deferred();
  }
  // What stop closed comes back cancelled: its handlers hold the buffers the kernel had.
  auto until = std::chrono::steady_clock::now() + kStopDrain;
  run_deferred();
  while (u.cancelled_in_flight > 0 && std::chrono::steady_clock::now() < until) {
    enter(100);
    run_deferred();
  }
  io_uring_submit(&u.ring);  // closes queued last (a later run, or the ring's end, may be far)
  stopping_ = false;
}

UringOp* Stream::start_uring(EventLoop::Uring& u, UringOp::Kind kind, IoHandler& h,
                             io_uring_sqe*& sqe) {
  UringOp* op = u.start(kind, this, std::move(h), sqe);
  if (!op) loop_.defer(std::move(h), ENOBUFS, 0);  // h was left alone
  return op;
}

void Stream::close_uring() {
  EventLoop::Uring& u = *loop_.uring_;
  for (UringOp** slot : {&read_op_, &write_op_, &connect_op_}) {
    if (*slot) u.cancel(*slot);
    *slot = nullptr;
  }
  // Closed with the next enter, after the cancels (a system call fewer per connection); the
  // socket itself goes when the last operation lets go of it.
  if (io_uring_sqe* s = u.sqe()) {
    io_uring_prep_close(s, fd_);
    io_uring_sqe_set_data64(s, 0);
  } else {
    ::close(fd_);
  }
  fd_ = -1;
}

}  // namespace sluice::gateway
