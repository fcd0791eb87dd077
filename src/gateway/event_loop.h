// The worker's event loop: one thread, edge-triggered epoll, and readiness tracked per socket the
// way nginx does it. Asio's reactor re-tries every read speculatively before it waits, and on a
// proxy every read follows a request to the peer, so that try nearly always fails: 1.8 wasted
// recv(2) calls per proxied request, a third of the gateway's system calls (bench/syscall_count.sh:
// 5.9 per request on Asio, 4.0 here; a syscall costs about 1.1 us on the virtual machines we run
// on). Here a socket is read only when epoll said it became readable or the last read filled the
// buffer, and written at once, waiting for EPOLLOUT only after a short write.
//
// The same interface runs on io_uring where the kernel allows it (the default): every read, write
// and connect becomes a submission, and one io_uring_enter per loop iteration submits all of them
// and collects what completed, where epoll needs a system call per socket operation (1.6 calls
// per proxied request instead of 4.3, and 1.09x-1.30x the requests per CPU second of the epoll
// backend in the proxy benchmark; docs/benchmarks.md). An operation owns
// its handler until the kernel is done with it, so the buffers the handler keeps alive outlive
// the operation even when its stream is closed or destroyed first.
//
// Completion handlers are never called from inside the call that started the operation (as with
// asio): an operation that completes at once has its handler run after the current handler.
// Everything here is for the loop's own thread, except EventLoop::post.
#pragma once

#include <sys/epoll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/inline_function.h"

struct io_uring_sqe;  // liburing.h, kept out of here

namespace sluice::gateway {

// kAuto: io_uring when the kernel offers what the loop needs (Linux 6.1: single issuer, deferred
// task running), else epoll.
enum class IoBackend : uint8_t { kAuto, kEpoll, kUring };
std::string_view to_string(IoBackend b);

struct UringOp;
enum class UringOpKind : uint8_t;

// Watched by the loop (EventLoop::add); told which events arrived.
class IoWatcher {
 public:
  virtual void on_io(uint32_t events) = 0;

 protected:
  ~IoWatcher() = default;
};

// err is 0 or an errno value (ECANCELED: the stream was closed first); n is the byte count.
// Move-only and allocation-free for targets of up to 32 bytes (a shared_ptr and a counter): the
// request path starts four operations per proxied request (docs/benchmarks.md, "Handlers").
using IoHandler = core::InlineFunction<void(int err, size_t n), 32>;

class EventLoop {
 public:
  // Throws std::system_error, or std::runtime_error when kUring is asked for and unavailable.
  explicit EventLoop(IoBackend backend = IoBackend::kAuto);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Runs until stop(); then runs what is left to run (handlers of closed streams) and returns.
  // It may be run again afterwards; on io_uring always by the thread that ran it first (the
  // ring's only submitter).
  void run();
  // Thread-safe: `fn` runs on the loop thread.
  void post(std::function<void()> fn);
  // Loop thread: run() returns after the current iteration.
  void stop() { stopping_ = true; }

  // Loop thread: runs after the current handler, before the loop waits again.
  void defer(std::function<void()> fn);
  void defer(IoHandler h, int err, size_t n);
  // Loop thread: `fn` every `interval` (first after one interval) until cancel_timers().
  void every(std::chrono::nanoseconds interval, std::function<void()> fn);
  void cancel_timers() { timers_.clear(); }

  // kEpoll or kUring: what the loop runs on.
  IoBackend backend() const { return uring_ ? IoBackend::kUring : IoBackend::kEpoll; }
  // Why io_uring was not used when kAuto asked for it (empty otherwise).
  const std::string& fallback_reason() const { return fallback_reason_; }
  // SOCK_* flags for sockets handed to this loop's streams (accept4, socket): non-blocking on
  // epoll; blocking on io_uring, whose operations never block anyway, so that a kernel's handling
  // of O_NONBLOCK there (EAGAIN instead of waiting) cannot matter.
  int socket_flags() const;

  // Interest in a socket becoming readable (epoll: edge-triggered input, output and peer
  // shutdown; io_uring: a multishot poll for input, so for listeners and event counters).
  // Returns 0 or an errno value.
  int add(int fd, IoWatcher* w);
  // Drops events still to be delivered to `w` in the current batch (it is closing or gone).
  void forget(IoWatcher* w);

 private:
  struct Task {
    IoHandler io;
    std::function<void()> fn;
    int err = 0;
    size_t n = 0;
  };
  struct Timer {
    std::chrono::steady_clock::time_point next;
    std::chrono::nanoseconds interval;
    std::function<void()> fn;
  };
  struct Wakeup final : IoWatcher {
    EventLoop* loop = nullptr;
    void on_io(uint32_t events) override;
  };
  struct Uring;
  friend class Stream;
  void run_deferred();
  void run_timers();
  int wait_ms() const;
  void run_epoll();
  void run_uring();

  int epoll_fd_ = -1;
  int event_fd_ = -1;
  Wakeup wakeup_;
  bool stopping_ = false;
  std::vector<Task> tasks_;
  std::vector<Task> running_;
  std::vector<Timer> timers_;
  std::vector<epoll_event> events_;
  int batch_size_ = 0;  // events_[0, batch_size_) are being delivered
  std::mutex posted_mutex_;
  std::vector<std::function<void()>> posted_;
  std::unique_ptr<Uring> uring_;  // null: epoll
  std::string fallback_reason_;
};

// A TCP socket on an EventLoop: one read, one write and one connect may be pending
// at a time. Destroying or closing it cancels what is pending (handlers get ECANCELED).
class Stream final : public IoWatcher {
 public:
  explicit Stream(EventLoop& loop) : loop_(loop) {}
  // Adopts a connected non-blocking socket (from accept4); check is_open() afterwards.
  Stream(EventLoop& loop, int fd);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  bool is_open() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  // Opens a socket and connects it to `addr`; h(err, 0) when connected or failed.
  void async_connect(const sockaddr* addr, socklen_t len, IoHandler h);
  // Reads what is there, up to `len` bytes, waiting for some if there is none; h(0, 0) = EOF.
  void async_read_some(char* buf, size_t len, IoHandler h);
  // Reads now without waiting: bytes read, 0 at EOF, or -1 with err set (EAGAIN: nothing there).
  ssize_t read_some(char* buf, size_t len, int& err);
  // A read was started and its completion has not been taken from the kernel yet (it may be
  // taken, with its handler still to run, after the loop last waited).
  bool read_pending() const;
  // Whether a read now would find bytes or the end of the stream (recv MSG_PEEK, one system
  // call). False only when the socket is open and has nothing to read.
  bool has_unread_input() const;
  // Writes all `len` bytes (they must stay valid until h runs); h(err, bytes written).
  void async_write(const char* data, size_t len, IoHandler h);
  void set_no_delay();
  void close();

 private:
  void on_io(uint32_t events) override;
  // Runs a handler taken out of its slot; false if this stream was destroyed by it (`alive` is
  // on_io's flag, which the destructor clears).
  bool complete(IoHandler& slot, int err, size_t n, const bool& alive);
  friend struct EventLoop::Uring;
  // Starts an operation for this stream, or reports ENOBUFS to `h` (later) and returns null.
  UringOp* start_uring(EventLoop::Uring& u, UringOpKind kind, IoHandler& h, io_uring_sqe*& sqe);
  void close_uring();
  // One recv into the pending read; updates readable_.
  ssize_t recv_once(char* buf, size_t len, int& err);
  // Sends as much of the pending write as the socket takes; true when it is done (or failed).
  bool send_pending(int& err);

  EventLoop& loop_;
  int fd_ = -1;
  bool readable_ = false;  // a read may find data (epoll said so, or the last read filled up)
  bool writable_ = true;
  bool eof_ = false;       // the peer shut down (or an error): reads never wait again
  bool* alive_ = nullptr;  // set by on_io while it runs: cleared by the destructor
  char* rbuf_ = nullptr;
  size_t rlen_ = 0;
  IoHandler read_h_;
  const char* wdata_ = nullptr;
  size_t wlen_ = 0;
  size_t wdone_ = 0;
  IoHandler write_h_;
  IoHandler connect_h_;
  // io_uring: the operations in flight (they outlive the stream if it goes first).
  UringOp* read_op_ = nullptr;
  UringOp* write_op_ = nullptr;
  UringOp* connect_op_ = nullptr;
};

}  // namespace sluice::gateway
