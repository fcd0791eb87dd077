#include "gateway/event_loop.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace sluice::gateway {
namespace {

// A listening loopback socket on an ephemeral port; accept() is blocking.
class TestListener {
 public:
  TestListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    addr_.sin_family = AF_INET;
    addr_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, addr(), sizeof addr_), 0);
    socklen_t len = sizeof addr_;
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr_), &len), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
  }
  ~TestListener() { ::close(fd_); }
  const sockaddr* addr() const { return reinterpret_cast<const sockaddr*>(&addr_); }
  socklen_t len() const { return sizeof addr_; }
  int fd() const { return fd_; }
  int accept() { return ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC); }
  // A port nothing listens on: this listener's, once closed.
  void close() {
    ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  sockaddr_in addr_{};
};

void write_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    ASSERT_GT(n, 0);
    off += static_cast<size_t>(n);
  }
}

// Connects `s` to `l` by running the loop; returns the accepted peer socket.
int connect_pair(EventLoop& loop, Stream& s, TestListener& l) {
  int err = -1;
  s.async_connect(l.addr(), l.len(), [&](int e, size_t) {
    err = e;
    loop.stop();
  });
  loop.run();  // io_uring submits the connect only here
  EXPECT_EQ(err, 0);
  return l.accept();
}

// Every test runs on both backends; io_uring ones are skipped where the kernel refuses it.
class LoopTest : public ::testing::TestWithParam<IoBackend> {
 protected:
  void SetUp() override {
    if (GetParam() == IoBackend::kUring) {
      EventLoop probe(IoBackend::kAuto);
      if (probe.backend() != IoBackend::kUring) {
        GTEST_SKIP() << "io_uring unavailable: " << probe.fallback_reason();
      }
    }
  }
};

INSTANTIATE_TEST_SUITE_P(Backends, LoopTest,
                         ::testing::Values(IoBackend::kEpoll, IoBackend::kUring),
                         [](const auto& info) {
                           return info.param == IoBackend::kUring ? "io_uring" : "epoll";
                         });

TEST_P(LoopTest, RunsOnTheBackendAskedFor) {
  EventLoop loop(GetParam());
  EXPECT_EQ(loop.backend(), GetParam());
  EXPECT_EQ(loop.fallback_reason(), "");
  EXPECT_EQ(loop.socket_flags() & SOCK_NONBLOCK,
            GetParam() == IoBackend::kEpoll ? SOCK_NONBLOCK : 0);
}

TEST(EventLoopTest, AutoPrefersIoUringAndSaysWhyNot) {
  EventLoop loop(IoBackend::kAuto);
  if (loop.backend() == IoBackend::kEpoll) {
    EXPECT_NE(loop.fallback_reason(), "");
  } else {
    EXPECT_EQ(loop.fallback_reason(), "");
  }
  EXPECT_EQ(EventLoop(IoBackend::kEpoll).backend(), IoBackend::kEpoll);
}

TEST(EventLoopTest, AnIoUringLoopIsOnlyRunByTheThreadThatRanItFirst) {
  EventLoop loop(IoBackend::kAuto);
  if (loop.backend() != IoBackend::kUring) GTEST_SKIP() << loop.fallback_reason();
  loop.post([&] { loop.stop(); });
  loop.run();
  bool refused = false;
  std::thread other([&] {
    try {
      loop.run();
    } catch (const std::logic_error&) {
      refused = true;
    }
  });
  other.join();
  EXPECT_TRUE(refused);
  loop.post([&] { loop.stop(); });
  loop.run();  // the first thread still can
}

// How many file descriptors this process has open.
size_t open_fds() {
  size_t n = 0;
  for (int fd = 0; fd < 4096; ++fd) n += ::fcntl(fd, F_GETFD) >= 0;
  return n;
}

TEST_P(LoopTest, StreamsClosedWhenTheLoopIsNotRunAgainCloseTheirSockets) {
  // io_uring closes sockets with a submission: one closed after the loop's last run must still
  // be closed, by the loop's end at the latest.
  size_t before = open_fds();
  {
    EventLoop loop(GetParam());
    TestListener l;
    Stream s(loop);
    int peer = connect_pair(loop, s, l);
    ::close(peer);
    s.close();
  }
  EXPECT_EQ(open_fds(), before);
}

TEST_P(LoopTest, PostedWorkRunsOnTheLoopThread) {
  EventLoop loop(GetParam());
  std::thread::id ran_on;
  std::thread poster([&] {
    loop.post([&] {
      ran_on = std::this_thread::get_id();
      loop.stop();
    });
  });
  loop.run();
  poster.join();
  EXPECT_EQ(ran_on, std::this_thread::get_id());
}

TEST_P(LoopTest, DeferredRunsInOrderAfterTheCurrentHandler) {
  EventLoop loop(GetParam());
  std::string order;
  loop.post([&] {
    loop.defer([&] {
      order += "b";
      loop.defer([&] {
        order += "d";
        loop.stop();
      });
    });
    loop.defer([&] { order += "c"; });
    order += "a";
  });
  loop.run();
  EXPECT_EQ(order, "abcd");
}

TEST_P(LoopTest, TimerRepeatsUntilCancelled) {
  EventLoop loop(GetParam());
  int ticks = 0;
  auto start = std::chrono::steady_clock::now();
  loop.every(std::chrono::milliseconds(5), [&] {
    if (++ticks == 3) {
      loop.cancel_timers();
      loop.stop();
    }
  });
  loop.run();
  EXPECT_EQ(ticks, 3);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(15));
}

TEST(SocketTest, AcceptedSocketsInheritNoDelayFromTheListener) {
  // Worker::open_listeners sets TCP_NODELAY once on the listener and relies on this (Linux)
  // instead of a setsockopt per accepted connection.
  TestListener l;
  int one = 1;
  ASSERT_EQ(::setsockopt(l.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one), 0);
  int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(::connect(c, l.addr(), l.len()), 0);
  int a = l.accept();
  ASSERT_GE(a, 0);
  int value = 0;
  socklen_t len = sizeof value;
  ASSERT_EQ(::getsockopt(a, IPPROTO_TCP, TCP_NODELAY, &value, &len), 0);
  EXPECT_NE(value, 0);
  ::close(a);
  ::close(c);
}

TEST_P(LoopTest, ConnectRefusedReportsTheError) {
  EventLoop loop(GetParam());
  TestListener l;
  sockaddr_in addr = *reinterpret_cast<const sockaddr_in*>(l.addr());
  l.close();
  Stream s(loop);
  int err = 0;
  s.async_connect(reinterpret_cast<const sockaddr*>(&addr), sizeof addr, [&](int e, size_t) {
    err = e;
    loop.stop();
  });
  loop.run();
  EXPECT_EQ(err, ECONNREFUSED);
}

TEST_P(LoopTest, ReadWaitsForDataThenSeesEof) {
  EventLoop loop(GetParam());
  TestListener l;
  Stream s(loop);
  int peer = connect_pair(loop, s, l);
  char buf[64];
  std::string got;
  bool eof = false;
  std::function<void()> read_more = [&] {
    s.async_read_some(buf, sizeof buf, [&](int err, size_t n) {
      ASSERT_EQ(err, 0);
      if (n == 0) {
        eof = true;
        loop.stop();
        return;
      }
      got.append(buf, n);
      read_more();
    });
  };
  read_more();
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    write_all(peer, "hello ");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    write_all(peer, std::string(1000, 'x'));  // more than one buffer: read in several pieces
    ::shutdown(peer, SHUT_WR);
  });
  loop.run();
  writer.join();
  EXPECT_TRUE(eof);
  EXPECT_EQ(got, "hello " + std::string(1000, 'x'));
  ::close(peer);
}

TEST_P(LoopTest, HandlersNeverRunInsideTheCallThatStartsThem) {
  EventLoop loop(GetParam());
  TestListener l;
  Stream s(loop);
  int peer = connect_pair(loop, s, l);
  write_all(peer, std::string(100, 'y'));
  // Let the data arrive and epoll say so, so the read below can complete at once.
  char buf[16];
  bool inside = true;
  bool read_done = false, write_done = false;
  loop.post([&] {
    s.async_read_some(buf, sizeof buf, [&](int err, size_t n) {
      EXPECT_FALSE(inside);
      EXPECT_EQ(err, 0);
      EXPECT_EQ(n, sizeof buf);
      read_done = true;
    });
    s.async_write("ping", 4, [&](int err, size_t n) {
      EXPECT_FALSE(inside);
      EXPECT_EQ(err, 0);
      EXPECT_EQ(n, 4u);
      write_done = true;
      loop.stop();
    });
    inside = false;
  });
  loop.run();
  EXPECT_TRUE(read_done);
  EXPECT_TRUE(write_done);
  ::close(peer);
}

TEST_P(LoopTest, LargeWriteWaitsForThePeerAndArrivesWhole) {
  EventLoop loop(GetParam());
  TestListener l;
  Stream s(loop);
  int peer = connect_pair(loop, s, l);
  std::string data(8 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 + (i >> 12));
  std::atomic<bool> written{false};
  size_t reported = 0;
  s.async_write(data.data(), data.size(), [&](int err, size_t n) {
    EXPECT_EQ(err, 0);
    reported = n;
    written = true;
    loop.stop();
  });
  std::string received;
  std::thread reader([&] {
    // Nothing read for a while: the socket buffers fill and the write must wait.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_FALSE(written.load());
    char buf[65536];
    while (received.size() < data.size()) {
      ssize_t n = ::recv(peer, buf, sizeof buf, 0);
      if (n <= 0) break;
      received.append(buf, static_cast<size_t>(n));
    }
  });
  loop.run();
  reader.join();
  EXPECT_EQ(reported, data.size());
  EXPECT_TRUE(received == data);
  ::close(peer);
}

TEST_P(LoopTest, ClosingCancelsPendingOperations) {
  EventLoop loop(GetParam());
  TestListener l;
  Stream s(loop);
  int peer = connect_pair(loop, s, l);
  char buf[16];
  int err = 0;
  s.async_read_some(buf, sizeof buf, [&](int e, size_t) {
    err = e;
    loop.stop();
  });
  loop.post([&] { s.close(); });
  loop.run();
  EXPECT_EQ(err, ECANCELED);
  EXPECT_FALSE(s.is_open());
  ::close(peer);
}

TEST_P(LoopTest, AStreamMayBeDestroyedByItsOwnHandler) {
  // The owner of a stream often goes away in the handler (the last reference to it was in the
  // handler); events for it later in the same batch must then be dropped, not delivered.
  EventLoop loop(GetParam());
  TestListener l;
  auto a = std::make_unique<Stream>(loop);
  auto b = std::make_unique<Stream>(loop);
  int peer_a = connect_pair(loop, *a, l);
  int peer_b = connect_pair(loop, *b, l);
  char buf_a[8], buf_b[8];
  std::vector<int> errs;
  a->async_read_some(buf_a, sizeof buf_a, [&](int err, size_t) {
    errs.push_back(err);
    b.reset();  // b's event may be in this batch too
    a.reset();
    loop.defer([&] { loop.stop(); });
  });
  b->async_read_some(buf_b, sizeof buf_b, [&](int err, size_t) {
    errs.push_back(err);
    a.reset();
    b.reset();
    loop.defer([&] { loop.stop(); });
  });
  write_all(peer_a, "x");
  write_all(peer_b, "y");
  std::this_thread::sleep_for(std::chrono::milliseconds(10));  // both readable in one batch
  loop.run();
  // The first handler read its byte; the other stream was destroyed with its read pending.
  EXPECT_EQ(errs, (std::vector<int>{0, ECANCELED}));
  EXPECT_FALSE(a);
  EXPECT_FALSE(b);
  ::close(peer_a);
  ::close(peer_b);
}

TEST_P(LoopTest, AClosedStreamsHandlerKeepsItsBufferUntilTheReadEnds) {
  // The connection code keeps its read buffer alive through the handler (a shared_ptr to its
  // owner). On io_uring the kernel may write to the buffer until the read is really over, so the
  // handler, and the buffer with it, must live until then, even when the stream is gone.
  EventLoop loop(GetParam());
  TestListener l;
  auto s = std::make_unique<Stream>(loop);
  int peer = connect_pair(loop, *s, l);
  auto buf = std::make_shared<std::array<char, 64>>();
  std::weak_ptr<std::array<char, 64>> watch = buf;
  int err = -1;
  s->async_read_some(buf->data(), buf->size(), [&err, buf](int e, size_t) { err = e; });
  buf.reset();
  loop.post([&] {
    s.reset();  // closes with the read in flight
    EXPECT_FALSE(watch.expired());
    loop.stop();
  });
  loop.run();
  EXPECT_EQ(err, ECANCELED);
  EXPECT_TRUE(watch.expired());
  ::close(peer);
}

TEST_P(LoopTest, AStreamStartedRightAfterAnotherClosedIsNotCancelledWithIt) {
  // On io_uring a closed stream's read is cancelled by a request submitted later, and the
  // cancel must not reach the next read that reuses the operation. Here the first handler
  // closes the other stream, whose read completes in the same batch, and after the batch a read
  // starts on a third stream: it must complete normally.
  EventLoop loop(GetParam());
  TestListener l;
  auto a = std::make_unique<Stream>(loop);
  auto b = std::make_unique<Stream>(loop);
  Stream c(loop);
  int peer_a = connect_pair(loop, *a, l);
  int peer_b = connect_pair(loop, *b, l);
  int peer_c = connect_pair(loop, c, l);
  char buf_a[8], buf_b[8], buf_c[8];
  int c_err = -1;
  size_t c_n = 0;
  bool first = true;
  auto start_c = [&] {
    c.async_read_some(buf_c, sizeof buf_c, [&](int err, size_t n) {
      c_err = err;
      c_n = n;
      loop.stop();
    });
    write_all(peer_c, "z");
  };
  a->async_read_some(buf_a, sizeof buf_a, [&](int, size_t) {
    if (!std::exchange(first, false)) return;
    b.reset();
    loop.defer(start_c);
  });
  b->async_read_some(buf_b, sizeof buf_b, [&](int, size_t) {
    if (!std::exchange(first, false)) return;
    a.reset();
    loop.defer(start_c);
  });
  write_all(peer_a, "x");
  write_all(peer_b, "y");
  std::this_thread::sleep_for(std::chrono::milliseconds(10));  // both readable in one batch
  loop.run();
  EXPECT_EQ(c_err, 0);
  EXPECT_EQ(c_n, 1u);
  ::close(peer_a);
  ::close(peer_b);
  ::close(peer_c);
}

struct CountingWatcher final : IoWatcher {
  int calls = 0;
  std::function<void()> on_call;
  void on_io(uint32_t) override {
    ++calls;
    if (on_call) on_call();
  }
};

TEST_P(LoopTest, AWatchedListenerIsToldOfEachConnectionUntilForgotten) {
  EventLoop loop(GetParam());
  TestListener l;
  int flags = ::fcntl(l.fd(), F_GETFL);
  ASSERT_EQ(::fcntl(l.fd(), F_SETFL, flags | O_NONBLOCK), 0);
  CountingWatcher w;
  std::vector<int> accepted;
  w.on_call = [&] {
    for (int fd; (fd = ::accept4(l.fd(), nullptr, nullptr, SOCK_CLOEXEC)) >= 0;) {
      accepted.push_back(fd);
    }
    loop.stop();
  };
  ASSERT_EQ(loop.add(l.fd(), &w), 0);
  int c1 = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(::connect(c1, l.addr(), l.len()), 0);
  loop.run();
  EXPECT_EQ(accepted.size(), 1u);
  int c2 = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(::connect(c2, l.addr(), l.len()), 0);
  loop.run();  // a second connection: told again
  EXPECT_EQ(accepted.size(), 2u);
  // As a worker closes a listener: forgotten, then closed, with a connection still waiting.
  int c3 = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(::connect(c3, l.addr(), l.len()), 0);
  int calls = w.calls;
  loop.forget(&w);
  l.close();
  loop.every(std::chrono::milliseconds(30), [&] { loop.stop(); });
  loop.run();
  EXPECT_EQ(w.calls, calls);
  EXPECT_EQ(accepted.size(), 2u);
  for (int fd : accepted) ::close(fd);
  for (int fd : {c1, c2, c3}) ::close(fd);
}

}  // namespace
}  // namespace sluice::gateway
