#include "gateway/event_loop.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <memory>
#include <string>
#include <thread>
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
  int peer = l.accept();
  loop.run();
  EXPECT_EQ(err, 0);
  return peer;
}

TEST(EventLoopTest, PostedWorkRunsOnTheLoopThread) {
  EventLoop loop;
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

TEST(EventLoopTest, DeferredRunsInOrderAfterTheCurrentHandler) {
  EventLoop loop;
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

TEST(EventLoopTest, TimerRepeatsUntilCancelled) {
  EventLoop loop;
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

TEST(StreamTest, AcceptedSocketsInheritNoDelayFromTheListener) {
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

TEST(StreamTest, ConnectRefusedReportsTheError) {
  EventLoop loop;
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

TEST(StreamTest, ReadWaitsForDataThenSeesEof) {
  EventLoop loop;
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

TEST(StreamTest, HandlersNeverRunInsideTheCallThatStartsThem) {
  EventLoop loop;
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

TEST(StreamTest, LargeWriteWaitsForThePeerAndArrivesWhole) {
  EventLoop loop;
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

TEST(StreamTest, ClosingCancelsPendingOperations) {
  EventLoop loop;
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

TEST(StreamTest, AStreamMayBeDestroyedByItsOwnHandler) {
  // The owner of a stream often goes away in the handler (the last reference to it was in the
  // handler); events for it later in the same batch must then be dropped, not delivered.
  EventLoop loop;
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

}  // namespace
}  // namespace sluice::gateway
