// RedisLink against a real redis-server, and against a fake one that answers with hostile bytes:
// every reply is bounded in size and every round trip in time, and a bad peer only costs the
// connection.
#include "governance/redis_link.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "unit/governance/redis_server.h"

namespace sluice::governance {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

RedisLink::Options link_options(uint16_t port, std::vector<std::string> scripts) {
  RedisLink::Options o;
  o.address.host = "127.0.0.1";
  o.address.port = port;
  o.timeout = 50ms;
  o.scripts = std::move(scripts);
  return o;
}

TEST(RedisLinkTest, LoadsScriptsAndCallsThemBySha) {
  test::RedisServer redis;
  ASSERT_TRUE(redis.start());
  core::ManualClock clock;
  RedisLink link(link_options(redis.port(), {"return {1, 2, ARGV[1]}", "return KEYS[1]"}), clock);
  ASSERT_TRUE(link.connect());
  EXPECT_TRUE(link.up());
  std::vector<RedisLink::Call> calls;
  calls.push_back(link.evalsha(0, "k", {"42"}));
  calls.push_back(link.evalsha(1, "key", {}));
  calls.push_back(link.evalsha(7, "k", {}));  // no such script: an empty SHA, an error reply
  calls.push_back({{"HSET", "h", "f", "v"}, {}});
  ASSERT_TRUE(link.round_trip(calls));
  EXPECT_EQ(calls[0].reply.type, RedisReply::Type::kArray);
  ASSERT_EQ(calls[0].reply.count, 3u);
  EXPECT_EQ(calls[0].reply.at(2), 42);  // a string holding an integer
  EXPECT_EQ(calls[1].reply.type, RedisReply::Type::kString);
  EXPECT_EQ(calls[1].reply.text, "key");
  EXPECT_TRUE(calls[2].reply.is_error());
  EXPECT_EQ(calls[3].reply.type, RedisReply::Type::kInteger);
  EXPECT_EQ(link.calls(), 2u + 4u);  // SCRIPT LOAD x2, then the pipeline
  EXPECT_EQ(link.busy_since(), 0);

  // Redis forgets its scripts (SCRIPT FLUSH, a restart without them): NOSCRIPT says so.
  EXPECT_EQ(redis.command({"SCRIPT", "FLUSH"}), "OK");
  calls.clear();
  calls.push_back(link.evalsha(0, "k", {"1"}));
  ASSERT_TRUE(link.round_trip(calls));
  EXPECT_TRUE(calls[0].reply.noscript());
  link.fail();  // what the quota client does then; the next connect loads them again
  EXPECT_FALSE(link.up());
  const auto deadline = Steady::now() + 2s;  // after the reconnect backoff (25 ms + jitter)
  while (!link.connect() && Steady::now() < deadline) std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(link.up());
  calls.clear();
  calls.push_back(link.evalsha(0, "k", {"5"}));
  ASSERT_TRUE(link.round_trip(calls));
  EXPECT_EQ(calls[0].reply.at(2), 5);
  EXPECT_EQ(link.reconnects(), 1u);
}

// A flat array longer than the quota scripts ever answer, or an element that is not an integer,
// is not taken apart: the caller sees kOther and counts the call as failed.
TEST(RedisLinkTest, RepliesOfOtherShapesAreNotTakenApart) {
  test::RedisServer redis;
  ASSERT_TRUE(redis.start());
  core::ManualClock clock;
  RedisLink link(link_options(redis.port(), {"return {1, 2, 3, 4, 5, 6, 7, 8, 9}",
                                             "return {1, 'x'}", "return string.rep('a', 1000)"}),
                 clock);
  ASSERT_TRUE(link.connect());
  std::vector<RedisLink::Call> calls;
  for (size_t i = 0; i < 3; ++i) calls.push_back(link.evalsha(i, "k", {}));
  ASSERT_TRUE(link.round_trip(calls));
  for (auto& c : calls) {
    EXPECT_EQ(c.reply.type, RedisReply::Type::kOther);
    EXPECT_EQ(c.reply.count, 0u);
  }
}

// A fake Redis on loopback: accepts one connection, reads what comes, and once it has seen
// `after` bytes sends `reply` (then, with drip, one byte of `tail` every 10 ms until stopped).
class FakeRedis {
 public:
  FakeRedis(std::string reply, std::string tail = "", bool drip = false)
      : reply_(std::move(reply)), tail_(std::move(tail)), drip_(drip) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(fd_, 4);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeRedis() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }

 private:
  void serve() {
    int c = ::accept(fd_, nullptr, nullptr);
    if (c < 0) return;
    timeval tv{0, 100'000};
    ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n > 0) break;
      if (n == 0 || stop_) {
        ::close(c);
        return;
      }
    }
    ::send(c, reply_.data(), reply_.size(), MSG_NOSIGNAL);
    size_t i = 0;
    while (!stop_) {
      if (drip_ && i < tail_.size()) {
        if (::send(c, tail_.data() + i++, 1, MSG_NOSIGNAL) < 0) break;
      } else if (!drip_ && !tail_.empty()) {
        if (::send(c, tail_.data(), tail_.size(), MSG_NOSIGNAL) < 0) break;  // as fast as it can
        continue;
      }
      std::this_thread::sleep_for(10ms);
    }
    ::close(c);
  }

  std::string reply_, tail_;
  bool drip_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Each case: the connect (which loads one script) fails, quickly, with the connection dropped.
void expect_refused(FakeRedis& fake, std::chrono::milliseconds within) {
  core::ManualClock clock;
  RedisLink link(link_options(fake.port(), {"return 1"}), clock);
  const auto t0 = Steady::now();
  EXPECT_FALSE(link.connect());
  EXPECT_LT(Steady::now() - t0, within);
  EXPECT_FALSE(link.connected());
  EXPECT_FALSE(link.up());
  EXPECT_GE(link.errors(), 1u);
  EXPECT_GT(link.connect_wait_ns(), 0);  // backoff before the next attempt
}

TEST(RedisLinkTest, HugeArrayHeaderIsRefusedBeforeItAllocates) {
  FakeRedis fake("*2147483647\r\n");  // 16 GiB of element pointers in hiredis 0.14
  expect_refused(fake, 2s);
}

TEST(RedisLinkTest, HugeBulkIsRefusedOnceItOutgrowsTheBound) {
  // Announces 512 MiB and sends it as fast as it can: refused after 4 KiB per call buffered.
  FakeRedis fake("$536870912\r\n", std::string(64 * 1024, 'x'));
  expect_refused(fake, 2s);
}

TEST(RedisLinkTest, DrippingPeerIsCutOffByTheRoundTripDeadline) {
  // One byte every 10 ms never trips the 50 ms read timeout; the round trip's deadline
  // (10 x timeout, at least 1 s) ends it.
  FakeRedis fake("$4000\r\n", std::string(4096, 'a'), /*drip=*/true);
  expect_refused(fake, 3s);
}

TEST(RedisLinkTest, SilentPeerTimesOut) {
  FakeRedis fake("");  // reads the request, never answers
  expect_refused(fake, 1s);
}

}  // namespace
}  // namespace sluice::governance
