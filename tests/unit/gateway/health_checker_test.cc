#include "gateway/health_checker.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace sluice::gateway {
namespace {

using namespace std::chrono_literals;

// ---- The threshold state machine (pure) ----

TEST(HealthStateTest, StartsHealthyWithNoCounts) {
  HealthState s(2, 3);
  EXPECT_TRUE(s.healthy());
  EXPECT_EQ(s.consecutive_passes(), 0u);
  EXPECT_EQ(s.consecutive_failures(), 0u);
}

TEST(HealthStateTest, UnhealthyAfterExactlyUnhealthyThresholdFailures) {
  HealthState s(2, 3);
  EXPECT_EQ(s.record(false), std::nullopt);
  EXPECT_EQ(s.record(false), std::nullopt);
  EXPECT_TRUE(s.healthy());
  EXPECT_EQ(s.record(false), std::optional<bool>(false));
  EXPECT_FALSE(s.healthy());
  EXPECT_EQ(s.consecutive_failures(), 3u);
  // Further failures are no change.
  EXPECT_EQ(s.record(false), std::nullopt);
  EXPECT_FALSE(s.healthy());
}

TEST(HealthStateTest, HealthyAgainAfterExactlyHealthyThresholdPasses) {
  HealthState s(2, 1);
  EXPECT_EQ(s.record(false), std::optional<bool>(false));
  EXPECT_EQ(s.record(true), std::nullopt);
  EXPECT_FALSE(s.healthy());
  EXPECT_EQ(s.record(true), std::optional<bool>(true));
  EXPECT_TRUE(s.healthy());
  EXPECT_EQ(s.record(true), std::nullopt);
}

TEST(HealthStateTest, OnlyConsecutiveResultsCount) {
  HealthState s(3, 3);
  // F F P F F: the pass breaks the failure run.
  EXPECT_EQ(s.record(false), std::nullopt);
  EXPECT_EQ(s.record(false), std::nullopt);
  EXPECT_EQ(s.record(true), std::nullopt);
  EXPECT_EQ(s.consecutive_failures(), 0u);
  EXPECT_EQ(s.record(false), std::nullopt);
  EXPECT_EQ(s.record(false), std::nullopt);
  EXPECT_TRUE(s.healthy());
  EXPECT_EQ(s.record(false), std::optional<bool>(false));
  // P P F P P: the failure breaks the pass run.
  EXPECT_EQ(s.record(true), std::nullopt);
  EXPECT_EQ(s.record(true), std::nullopt);
  EXPECT_EQ(s.record(false), std::nullopt);
  EXPECT_EQ(s.consecutive_passes(), 0u);
  EXPECT_EQ(s.record(true), std::nullopt);
  EXPECT_EQ(s.record(true), std::nullopt);
  EXPECT_FALSE(s.healthy());
  EXPECT_EQ(s.record(true), std::optional<bool>(true));
}

TEST(HealthStateTest, ThresholdOneFlipsOnEveryChangeOfResult) {
  HealthState s(1, 1);
  EXPECT_EQ(s.record(true), std::nullopt);  // already healthy
  EXPECT_EQ(s.record(false), std::optional<bool>(false));
  EXPECT_EQ(s.record(true), std::optional<bool>(true));
  EXPECT_EQ(s.record(false), std::optional<bool>(false));
}

TEST(HealthStateTest, CanStartUnhealthy) {
  HealthState s(2, 2, /*healthy=*/false);
  EXPECT_FALSE(s.healthy());
  EXPECT_EQ(s.record(true), std::nullopt);
  EXPECT_EQ(s.record(true), std::optional<bool>(true));
}

TEST(HealthStateTest, NewThresholdsJudgeTheNextResultWithTheCountersKept) {
  HealthState s(2, 5);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(s.record(false), std::nullopt);
  s.set_thresholds(2, 3);
  EXPECT_TRUE(s.healthy());  // no change without a result
  EXPECT_EQ(s.consecutive_failures(), 3u);
  EXPECT_EQ(s.record(false), std::optional<bool>(false));
}

TEST(HealthStateTest, ZeroThresholdsActAsOne) {
  HealthState s(0, 0);
  EXPECT_EQ(s.record(false), std::optional<bool>(false));
  EXPECT_EQ(s.record(true), std::optional<bool>(true));
  s.set_thresholds(0, 0);
  EXPECT_EQ(s.record(false), std::optional<bool>(false));
}

TEST(NextCheckDelayTest, NoJitterIsExactlyTheInterval) {
  core::Rng rng(1);
  EXPECT_EQ(next_check_delay(1s, 0ns, rng), core::Duration(1s));
  EXPECT_EQ(next_check_delay(0ns, 0ns, rng), core::Duration(0));
  EXPECT_EQ(next_check_delay(-5ms, -1ms, rng), core::Duration(0));
}

TEST(NextCheckDelayTest, JitterIsWithinZeroInclusiveToJitterExclusive) {
  core::Rng rng(42);
  core::Duration lo = core::Duration::max(), hi = core::Duration::min();
  for (int i = 0; i < 10000; ++i) {
    core::Duration d = next_check_delay(100ms, 10ns, rng);
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  EXPECT_EQ(lo, core::Duration(100ms));
  EXPECT_EQ(hi, core::Duration(100ms) + core::Duration(9ns));
}

// ---- With real sockets on loopback ----

// A loopback HTTP server answering each request as a script says (n = 1 for the first).
class ScriptedServer {
 public:
  enum class Reply { k200, k302, k404, k503, kGarbage, kSilent, kClose, kHuge };

  explicit ScriptedServer(std::function<Reply(int n)> script) : script_(std::move(script)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 64) != 0) {
      ADD_FAILURE() << "cannot listen on loopback";
    }
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { loop(); });
  }

  ~ScriptedServer() {
    stop_ = true;
    thread_.join();
    for (int fd : held_) ::close(fd);
    ::close(fd_);
  }

  asio::ip::tcp::endpoint endpoint() const { return {asio::ip::make_address("127.0.0.1"), port_}; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int requests() const { return requests_.load(); }
  std::string last_request() const {
    std::lock_guard lock(mutex_);
    return last_request_;
  }

 private:
  void loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 5) <= 0) continue;
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      std::string req = read_head(c);
      {
        std::lock_guard lock(mutex_);
        last_request_ = req;
      }
      const int n = ++requests_;
      answer(c, script_(n));
    }
  }

  static std::string read_head(int c) {
    std::string req;
    char buf[1024];
    while (req.find("\r\n\r\n") == std::string::npos) {
      pollfd p{c, POLLIN, 0};
      if (::poll(&p, 1, 1000) <= 0) break;
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      req.append(buf, static_cast<size_t>(n));
    }
    return req;
  }

  static void send_all(int c, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::send(c, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }

  void answer(int c, Reply reply) {
    switch (reply) {
      case Reply::k200:
        send_all(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        break;
      case Reply::k302:
        send_all(c, "HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n");
        break;
      case Reply::k404:
        send_all(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        break;
      case Reply::k503:
        // An interim response first: the final status decides.
        send_all(c, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n");
        send_all(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        break;
      case Reply::kGarbage: {
        static const char kJunk[] = "\x16\x03\x01\x00\xa5garbage\r\n\r\n\0\xff";
        send_all(c, std::string(kJunk, sizeof kJunk - 1));
        break;
      }
      case Reply::kSilent:
      case Reply::kHuge:
        if (reply == Reply::kHuge) {
          // A head that never ends: the checker must stop reading at its bound.
          send_all(c, "HTTP/1.1 200 OK\r\nX-Pad: " + std::string(200 * 1024, 'a'));
        }
        held_.push_back(c);  // open, never answered (further)
        return;
      case Reply::kClose:
        break;
    }
    ::close(c);
  }

  std::function<Reply(int)> script_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::vector<int> held_;  // server thread until joined
  mutable std::mutex mutex_;
  std::string last_request_;
};

using Reply = ScriptedServer::Reply;

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds deadline = 2000ms) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

config::HealthCheck fast_check(uint32_t healthy_threshold, uint32_t unhealthy_threshold) {
  config::HealthCheck c;
  c.enabled = true;
  c.path = "/healthz";
  c.interval = 20ms;
  c.jitter = 5ms;
  c.timeout = 200ms;
  c.healthy_threshold = healthy_threshold;
  c.unhealthy_threshold = unhealthy_threshold;
  return c;
}

// What an on_change saw: the new state, how many requests the server had answered and the
// checker's totals at that moment.
struct Change {
  bool healthy;
  int requests;
  uint64_t passes, failures;
};

class Changes {
 public:
  std::function<void(bool)> callback(HealthChecker& checker, const ScriptedServer& server,
                                     size_t index = 0) {
    return [this, &checker, &server, index](bool healthy) {
      auto st = checker.status();  // must not deadlock from the callback
      std::lock_guard lock(mutex_);
      list_.push_back({healthy, server.requests(), st.at(index).passes, st.at(index).failures});
    };
  }
  std::vector<Change> get() const {
    std::lock_guard lock(mutex_);
    return list_;
  }
  size_t size() const { return get().size(); }

 private:
  mutable std::mutex mutex_;
  std::vector<Change> list_;
};

HealthChecker::Target make_target(const ScriptedServer& server, config::HealthCheck check,
                                  std::function<void(bool)> on_change,
                                  std::string service = "svc") {
  return HealthChecker::Target{std::move(service), server.address(), server.endpoint(),
                               std::move(check), std::move(on_change)};
}

TEST(HealthCheckerTest, UnhealthyAfterExactlyThresholdFailuresAndHealthyAfterThresholdPasses) {
  ScriptedServer server([](int n) { return n <= 3 ? Reply::k503 : Reply::k200; });
  HealthChecker checker;
  Changes changes;
  checker.set_targets({make_target(server, fast_check(2, 3), changes.callback(checker, server))});
  checker.start();
  ASSERT_TRUE(wait_until([&] { return server.requests() >= 8; }));
  checker.stop();

  auto got = changes.get();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_FALSE(got[0].healthy);
  EXPECT_EQ(got[0].requests, 3);
  EXPECT_EQ(got[0].failures, 3u);
  EXPECT_EQ(got[0].passes, 0u);
  EXPECT_TRUE(got[1].healthy);
  EXPECT_EQ(got[1].requests, 5);
  EXPECT_EQ(got[1].passes, 2u);

  auto st = checker.status();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].service, "svc");
  EXPECT_EQ(st[0].address, server.address());
  EXPECT_TRUE(st[0].healthy);
  EXPECT_EQ(st[0].failures, 3u);
  EXPECT_GE(st[0].passes, 4u);  // the 8th check may have been cut short by stop()
  EXPECT_EQ(st[0].last_error, "status 503");
}

TEST(HealthCheckerTest, SendsTheConfiguredRequest) {
  ScriptedServer server([](int) { return Reply::k200; });
  HealthChecker checker;
  auto check = fast_check(1, 1);
  check.path = "/ready?deep=1";
  check.host = "backend.internal";
  checker.set_targets({make_target(server, check, nullptr)});
  checker.start();
  ASSERT_TRUE(wait_until([&] { return server.requests() >= 1; }));
  checker.stop();
  EXPECT_EQ(server.last_request(),
            "GET /ready?deep=1 HTTP/1.1\r\nHost: backend.internal\r\n"
            "User-Agent: sluice-health-check\r\nConnection: close\r\n\r\n");

  // Without a configured host, the Host header is the endpoint address.
  check.host.clear();
  checker.set_targets({make_target(server, check, nullptr)});
  const int before = server.requests();
  checker.start();
  ASSERT_TRUE(wait_until([&] { return server.requests() >= before + 1; }));
  checker.stop();
  EXPECT_NE(server.last_request().find("\r\nHost: " + server.address() + "\r\n"), std::string::npos)
      << server.last_request();
}

TEST(HealthCheckerTest, RedirectPassesAndNotFoundFails) {
  // 404 and 302 alternate: with unhealthy_threshold 2 the endpoint never goes down.
  ScriptedServer server([](int n) { return n % 2 ? Reply::k404 : Reply::k302; });
  HealthChecker checker;
  Changes changes;
  checker.set_targets({make_target(server, fast_check(1, 2), changes.callback(checker, server))});
  checker.start();
  ASSERT_TRUE(wait_until([&] { return checker.status()[0].passes >= 3; }));
  checker.stop();
  EXPECT_EQ(changes.size(), 0u);
  auto st = checker.status();
  EXPECT_TRUE(st[0].healthy);
  EXPECT_GE(st[0].failures, 3u);
  EXPECT_LE(st[0].failures, st[0].passes + 1);
  EXPECT_EQ(st[0].last_error, "status 404");
}

TEST(HealthCheckerTest, TimeoutCountsAsFailure) {
  ScriptedServer server([](int) { return Reply::kSilent; });
  HealthChecker checker;
  Changes changes;
  auto check = fast_check(1, 3);
  check.timeout = 30ms;
  checker.set_targets({make_target(server, check, changes.callback(checker, server))});
  checker.start();
  ASSERT_TRUE(wait_until([&] { return changes.size() >= 1; }));
  checker.stop();
  auto got = changes.get();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_FALSE(got[0].healthy);
  EXPECT_EQ(got[0].requests, 3);
  EXPECT_EQ(got[0].failures, 3u);
  EXPECT_EQ(checker.status()[0].last_error, "timeout");
}

TEST(HealthCheckerTest, GarbageAnswerIsAFailure) {
  ScriptedServer server([](int) { return Reply::kGarbage; });
  HealthChecker checker;
  Changes changes;
  checker.set_targets({make_target(server, fast_check(1, 2), changes.callback(checker, server))});
  checker.start();
  ASSERT_TRUE(wait_until([&] { return changes.size() >= 1; }));
  checker.stop();
  auto got = changes.get();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].requests, 2);
  EXPECT_EQ(checker.status()[0].last_error.rfind("bad response: ", 0), 0u)
      << checker.status()[0].last_error;
}

TEST(HealthCheckerTest, ResponseBytesAreBounded) {
  ScriptedServer server([](int) { return Reply::kHuge; });
  HealthChecker checker;
  Changes changes;
  auto check = fast_check(1, 1);
  check.timeout = 1500ms;  // the bound, not the timeout, must end the check
  checker.set_targets({make_target(server, check, changes.callback(checker, server))});
  const auto t0 = std::chrono::steady_clock::now();
  checker.start();
  ASSERT_TRUE(wait_until([&] { return changes.size() >= 1; }));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1000ms);
  checker.stop();
  EXPECT_NE(checker.status()[0].last_error.find("too large"), std::string::npos)
      << checker.status()[0].last_error;
}

TEST(HealthCheckerTest, CloseWithoutAnswerAndRefusedConnectAreFailures) {
  ScriptedServer server([](int) { return Reply::kClose; });
  // A port nothing listens on: take one from a listener, then close it.
  uint16_t dead_port;
  {
    asio::io_context io;
    asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    dead_port = a.local_endpoint().port();
  }
  HealthChecker checker;
  Changes closed, refused;
  auto dead = make_target(server, fast_check(1, 1), refused.callback(checker, server, 1), "dead");
  dead.endpoint.port(dead_port);
  dead.address = "127.0.0.1:" + std::to_string(dead_port);
  checker.set_targets(
      {make_target(server, fast_check(1, 1), closed.callback(checker, server, 0)), dead});
  checker.start();
  ASSERT_TRUE(wait_until([&] { return closed.size() >= 1 && refused.size() >= 1; }));
  checker.stop();
  auto st = checker.status();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_FALSE(st[0].healthy);
  EXPECT_FALSE(st[0].last_error.empty());
  EXPECT_EQ(st[1].service, "dead");
  EXPECT_FALSE(st[1].healthy);
  EXPECT_EQ(st[1].last_error.rfind("connect: ", 0), 0u) << st[1].last_error;
}

TEST(HealthCheckerTest, HealthyEndpointCausesNoChange) {
  ScriptedServer server([](int) { return Reply::k200; });
  HealthChecker checker;
  Changes changes;
  checker.set_targets({make_target(server, fast_check(2, 1), changes.callback(checker, server))});
  checker.start();
  ASSERT_TRUE(wait_until([&] { return server.requests() >= 4; }));
  checker.stop();
  EXPECT_EQ(changes.size(), 0u);
  EXPECT_TRUE(checker.status()[0].healthy);
  EXPECT_EQ(checker.status()[0].failures, 0u);
  EXPECT_EQ(checker.status()[0].last_error, "");
}

TEST(HealthCheckerTest, SetTargetsKeepsStateOfTheSameTarget) {
  ScriptedServer server([](int) { return Reply::k503; });
  HealthChecker checker;
  Changes first, second, other;
  checker.set_targets({make_target(server, fast_check(1, 2), first.callback(checker, server))});
  checker.start();
  ASSERT_TRUE(wait_until([&] { return first.size() >= 1; }));
  const uint64_t failures_before = checker.status()[0].failures;
  ASSERT_GE(failures_before, 2u);

  // A reload: same (service, address, path) with other settings and a new consumer, plus a new
  // target with another path on the same server.
  auto kept = fast_check(1, 2);
  kept.interval = 25ms;
  auto fresh = fast_check(1, 3);
  fresh.path = "/other";
  checker.set_targets({make_target(server, kept, second.callback(checker, server, 0)),
                       make_target(server, fresh, other.callback(checker, server, 1))});
  auto st = checker.status();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_FALSE(st[0].healthy);
  EXPECT_GE(st[0].failures, failures_before);

  // The new consumer of the kept target learns once that it is down; the new target starts
  // from scratch and needs its own three failures.
  ASSERT_TRUE(wait_until([&] { return second.size() >= 1 && other.size() >= 1; }));
  ASSERT_TRUE(wait_until([&] { return checker.status()[0].failures >= failures_before + 3; }));
  checker.stop();
  EXPECT_EQ(first.size(), 1u);
  auto got = second.get();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_FALSE(got[0].healthy);
  auto o = other.get();
  ASSERT_EQ(o.size(), 1u);
  EXPECT_FALSE(o[0].healthy);
  EXPECT_EQ(o[0].failures, 3u);
}

TEST(HealthCheckerTest, ThrowingConsumerDoesNotStopTheChecks) {
  ScriptedServer server([](int n) { return n == 1 ? Reply::k503 : Reply::k200; });
  HealthChecker checker;
  std::atomic<int> calls{0};
  checker.set_targets({make_target(server, fast_check(1, 1), [&](bool) {
    ++calls;
    throw std::runtime_error("consumer bug");
  })});
  checker.start();
  // Down after check 1, up after check 2: both changes delivered although the first threw.
  ASSERT_TRUE(wait_until([&] { return calls.load() >= 2 && server.requests() >= 4; }));
  checker.stop();
  EXPECT_EQ(calls.load(), 2);
}

TEST(HealthCheckerTest, RemovedTargetsAreNoLongerChecked) {
  ScriptedServer server([](int) { return Reply::k200; });
  HealthChecker checker;
  checker.set_targets({make_target(server, fast_check(1, 1), nullptr)});
  checker.start();
  ASSERT_TRUE(wait_until([&] { return server.requests() >= 2; }));
  checker.set_targets({});
  EXPECT_TRUE(checker.status().empty());
  std::this_thread::sleep_for(30ms);  // a check in flight at the removal may still land
  const int after = server.requests();
  std::this_thread::sleep_for(100ms);  // five intervals
  EXPECT_EQ(server.requests(), after);
  checker.stop();
}

TEST(HealthCheckerTest, StopCancelsChecksInFlight) {
  ScriptedServer server([](int) { return Reply::kSilent; });
  auto check = fast_check(1, 1);
  check.timeout = 3s;
  const auto t0 = std::chrono::steady_clock::now();
  {
    HealthChecker checker;
    checker.set_targets({make_target(server, check, nullptr)});
    checker.start();
    ASSERT_TRUE(wait_until([&] { return server.requests() >= 1; }));
    checker.stop();
    EXPECT_EQ(checker.status()[0].failures, 0u);  // a cancelled check is no result
    // Restart resumes checking the same targets; the destructor stops again.
    checker.start();
    ASSERT_TRUE(wait_until([&] { return server.requests() >= 2; }));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

}  // namespace
}  // namespace sluice::gateway
