// The io_uring half of the event loop (event_loop.h): the ring and the operations in flight.
// Only event_loop*.cc include this; liburing's header stays out of the rest of the gateway.
#pragma once

#include <liburing.h>
#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gateway/event_loop.h"

namespace sluice::gateway {

// One submission and its handler. It lives until its last completion arrives, whatever happened
// to the stream or watcher meanwhile: the handler (and the buffers it keeps alive) goes with it.
enum class UringOpKind : uint8_t { kRead, kWrite, kConnect, kPoll };

struct UringOp {
  using Kind = UringOpKind;
  Kind kind = Kind::kRead;
  bool cancelled = false;  // its stream was closed (or its watcher forgotten): ECANCELED
  bool harvested = false;  // its completion was taken from the ring; the handler may not have run
  int fd = -1;
  Stream* stream = nullptr;  // null once cancelled: the stream may be gone
  IoWatcher* watcher = nullptr;
  IoHandler h;
  const char* data = nullptr;  // a write: what is left is [done, len)
  size_t len = 0;
  size_t done = 0;
  sockaddr_storage addr{};  // a connect: the kernel may read it after the submission call
  socklen_t addr_len = 0;
};

struct EventLoop::Uring {
  // Null, with the reason in `why`, when this kernel (or a seccomp policy, or
  // kernel.io_uring_disabled) does not offer what the loop needs.
  static std::unique_ptr<Uring> open(std::string& why);
  ~Uring();

  // A free submission slot, submitting what is queued if there is none; null if still none.
  io_uring_sqe* sqe();
  // An operation for `stream` with its submission slot, or null (the caller reports ENOBUFS).
  UringOp* start(UringOp::Kind kind, Stream* stream, IoHandler&& h, io_uring_sqe*& sqe);
  void release(UringOp* op);
  // Asks the kernel to end `op` soon; its handler then gets ECANCELED.
  void cancel(UringOp* op);
  int watch(int fd, IoWatcher* w);
  void forget(IoWatcher* w);
  // Moves the completions that arrived out of the ring and runs them.
  void dispatch();
  // Before the loop goes: the ring is torn down and the handlers of what was in flight dropped.
  void shutdown();

  io_uring ring{};
  bool enabled = false;    // created disabled; the thread that first runs the loop submits
  std::thread::id issuer;  // that thread
  bool exiting = false;    // shutdown() ran: nothing is submitted any more
  size_t cancelled_in_flight = 0;

 private:
  struct Completion {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
  };
  void arm_poll(UringOp* op);
  void complete(UringOp* op, const Completion& c);
  void finish(UringOp* op, int err, size_t n);

  std::deque<UringOp> ops_;  // stable addresses; grows to the most operations ever in flight
  std::vector<UringOp*> free_;
  // Cancelled operations wait here until their cancel was submitted. The kernel runs a batch of
  // submissions in order, so a reused operation's new submission already comes after the cancel
  // meant for its previous use; this keeps that true even if a cancel were ever held back.
  std::vector<UringOp*> quarantine_;
  std::vector<std::pair<IoWatcher*, UringOp*>> polls_;
  std::vector<Completion> batch_;
};

}  // namespace sluice::gateway
