#include "gateway/health_checker.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
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

// ---- The checker's schedule and state machine: a manual clock and a probe answered by hand ----

// Probes the test answers: each start() is recorded; answer() calls its `done` from the test
// thread, as a transport on another thread would.
class FakeProbe : public HealthProbe {
 public:
  struct Started {
    uint64_t id;
    ProbeRequest request;
    Done done;
  };

  void start(uint64_t id, const ProbeRequest& request, Done done) override {
    std::lock_guard lock(mutex_);
    started_.push_back({id, request, std::move(done)});
    cv_.notify_all();
  }
  void cancel(uint64_t id) override {
    std::lock_guard lock(mutex_);
    cancelled_.push_back(id);
    cv_.notify_all();
  }

  // Waits (bounded) until `n` probes have started; false when they did not.
  bool wait_started(size_t n) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, 5s, [&] { return started_.size() >= n; });
  }
  size_t started() const {
    std::lock_guard lock(mutex_);
    return started_.size();
  }
  ProbeRequest request(size_t i) const {
    std::lock_guard lock(mutex_);
    return started_.at(i).request;
  }
  uint64_t id(size_t i) const {
    std::lock_guard lock(mutex_);
    return started_.at(i).id;
  }
  void answer(size_t i, bool pass, std::string error = {}) {
    Done done;
    {
      std::lock_guard lock(mutex_);
      done = started_.at(i).done;
    }
    done(pass, std::move(error));
  }
  std::vector<uint64_t> cancelled() const {
    std::lock_guard lock(mutex_);
    return cancelled_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Started> started_;
  std::vector<uint64_t> cancelled_;
};

// Waits (bounded) for something another thread does after an event the test caused.
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds deadline = 5000ms) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// The schedule of a check: exact on an injected clock, or fast and jittered on the real one.
struct Schedule {
  std::chrono::nanoseconds interval, jitter, timeout;
};
constexpr Schedule kOnTheTestClock{1s, 0ns, 500ms};
constexpr Schedule kFastRealTime{20ms, 5ms, 200ms};

config::HealthCheck make_check(uint32_t healthy_threshold, uint32_t unhealthy_threshold,
                               Schedule schedule = kOnTheTestClock) {
  config::HealthCheck c;
  c.enabled = true;
  c.path = "/healthz";
  c.interval = std::chrono::duration_cast<decltype(c.interval)>(schedule.interval);
  c.jitter = std::chrono::duration_cast<decltype(c.jitter)>(schedule.jitter);
  c.timeout = std::chrono::duration_cast<decltype(c.timeout)>(schedule.timeout);
  c.healthy_threshold = healthy_threshold;
  c.unhealthy_threshold = unhealthy_threshold;
  return c;
}

HealthChecker::Target clocked_target(config::HealthCheck check,
                                     std::function<void(bool)> on_change = nullptr,
                                     std::string service = "svc",
                                     std::string address = "10.0.0.1:80") {
  HealthChecker::Target t;
  t.service = std::move(service);
  t.address = std::move(address);
  t.endpoint = {asio::ip::make_address("10.0.0.1"), 80};
  t.check = std::move(check);
  t.on_change = std::move(on_change);
  return t;
}

// The changes an on_change saw, in order.
class Seen {
 public:
  std::function<void(bool)> callback() {
    return [this](bool healthy) {
      std::lock_guard lock(mutex_);
      list_.push_back(healthy);
    };
  }
  std::vector<bool> get() const {
    std::lock_guard lock(mutex_);
    return list_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<bool> list_;
};

// One probe cycle: the next check starts once the clock reaches it (not a nanosecond before),
// and is answered.
void next_check(core::ManualClock& clock, HealthChecker& checker, FakeProbe& probe, size_t n,
                core::Duration wait, bool pass, std::string error = {}) {
  if (wait > core::Duration::zero()) {
    clock.advance(wait - 1ns);
    checker.wake();  // returns once the checker has looked at the clock
    EXPECT_EQ(probe.started(), n - 1) << "check " << n << " started before its time";
    clock.advance(1ns);
    checker.wake();
  }
  ASSERT_TRUE(probe.wait_started(n)) << "check " << n << " did not start";
  const uint64_t total = checker.status()[0].passes + checker.status()[0].failures;
  probe.answer(n - 1, pass, std::move(error));
  ASSERT_TRUE(wait_until([&] {
    auto st = checker.status();
    return st[0].passes + st[0].failures == total + 1;
  }));
}

TEST(HealthCheckerClockTest, UnhealthyAfterNFailuresHealthyAfterMPassesOnTheInterval) {
  core::ManualClock clock;
  FakeProbe probe;
  HealthChecker checker(clock, probe);
  Seen seen;
  checker.set_targets({clocked_target(make_check(2, 3), seen.callback())});
  checker.start();
  // The first check at once (no jitter), then one per interval after the previous one ended.
  next_check(clock, checker, probe, 1, 0s, false, "status 503");
  next_check(clock, checker, probe, 2, 1s, false, "status 503");
  EXPECT_TRUE(checker.status()[0].healthy);
  EXPECT_TRUE(seen.get().empty());
  next_check(clock, checker, probe, 3, 1s, false, "connect: refused");
  EXPECT_FALSE(checker.status()[0].healthy);
  // on_change runs after the counts are visible (outside the checker's lock): wait for it.
  EXPECT_TRUE(wait_until([&] { return seen.get() == std::vector<bool>{false}; }));
  EXPECT_EQ(checker.status()[0].last_error, "connect: refused");
  next_check(clock, checker, probe, 4, 1s, true);
  EXPECT_FALSE(checker.status()[0].healthy);
  next_check(clock, checker, probe, 5, 1s, true);
  EXPECT_TRUE(checker.status()[0].healthy);
  EXPECT_TRUE(wait_until([&] { return seen.get() == std::vector<bool>{false, true}; }));
  checker.stop();
  auto st = checker.status();
  EXPECT_EQ(st[0].passes, 2u);
  EXPECT_EQ(st[0].failures, 3u);
  EXPECT_EQ(st[0].last_error, "connect: refused");  // kept after the recovery
}

TEST(HealthCheckerClockTest, ProbeAsksForThePathAndHost) {
  core::ManualClock clock;
  FakeProbe probe;
  HealthChecker checker(clock, probe);
  auto check = make_check(1, 1);
  check.path = "/ready?deep=1";
  checker.set_targets({clocked_target(check),
                       clocked_target(make_check(1, 1), nullptr, "other", "backend:8080")});
  checker.start();
  ASSERT_TRUE(probe.wait_started(2));
  std::vector<ProbeRequest> r = {probe.request(0), probe.request(1)};
  if (r[0].path != "/ready?deep=1") std::swap(r[0], r[1]);
  EXPECT_EQ(r[0].path, "/ready?deep=1");
  EXPECT_EQ(r[0].host, "10.0.0.1:80");  // the endpoint address when check.host is empty
  EXPECT_EQ(r[0].endpoint.port(), 80);
  EXPECT_EQ(r[1].path, "/healthz");
  EXPECT_EQ(r[1].host, "backend:8080");
  checker.stop();

  check.host = "backend.internal";
  HealthChecker with_host(clock, probe);
  with_host.set_targets({clocked_target(check)});
  with_host.start();
  ASSERT_TRUE(probe.wait_started(3));
  EXPECT_EQ(probe.request(2).host, "backend.internal");
}

TEST(HealthCheckerClockTest, NoAnswerWithinTheTimeoutIsAFailureAndTheProbeIsCancelled) {
  core::ManualClock clock;
  FakeProbe probe;
  HealthChecker checker(clock, probe);
  Seen seen;
  checker.set_targets({clocked_target(make_check(1, 1), seen.callback())});
  checker.start();
  ASSERT_TRUE(probe.wait_started(1));
  clock.advance(500ms - 1ns);
  checker.wake();
  EXPECT_EQ(checker.status()[0].failures, 0u);
  clock.advance(1ns);
  checker.wake();
  ASSERT_TRUE(wait_until([&] { return checker.status()[0].failures == 1; }));
  EXPECT_EQ(checker.status()[0].last_error, "timeout");
  EXPECT_EQ(probe.cancelled(), std::vector<uint64_t>{probe.id(0)});
  // on_change runs after the counts are visible (outside the checker's lock): wait for it.
  EXPECT_TRUE(wait_until([&] { return seen.get() == std::vector<bool>{false}; }));
  // A late answer of the cancelled probe counts for nothing.
  probe.answer(0, true);
  // The next check is an interval after the timeout, and its answer does count.
  next_check(clock, checker, probe, 2, 1s, true);
  auto st = checker.status();
  EXPECT_EQ(st[0].passes, 1u);
  EXPECT_EQ(st[0].failures, 1u);
  EXPECT_TRUE(st[0].healthy);
  checker.stop();
}

TEST(HealthCheckerClockTest, ChecksAreSpreadOverTheJitter) {
  core::ManualClock clock;
  FakeProbe probe;
  HealthChecker checker(clock, probe);
  auto check = make_check(1, 1);
  check.jitter = 100ms;
  std::vector<HealthChecker::Target> targets;
  for (int i = 0; i < 20; ++i)
    targets.push_back(clocked_target(check, nullptr, "s" + std::to_string(i)));
  checker.set_targets(std::move(targets));
  checker.start();
  checker.wake();  // the targets are armed, at this instant
  // Each first check is within the jitter: all of them once it has passed.
  clock.advance(100ms);
  checker.wake();
  ASSERT_TRUE(probe.wait_started(20));
  for (size_t i = 0; i < 20; ++i) probe.answer(i, true);
  ASSERT_TRUE(wait_until([&] {
    uint64_t passes = 0;
    for (const auto& st : checker.status()) passes += st.passes;
    return passes == 20;
  }));
  // Each next check is due within [interval, interval + jitter) after its answer.
  clock.advance(1s - 1ns);
  checker.wake();
  EXPECT_EQ(probe.started(), 20u);
  clock.advance(100ms);
  checker.wake();
  ASSERT_TRUE(probe.wait_started(40));
  checker.stop();
}

TEST(HealthCheckerClockTest, ReloadKeepsStateAndTellsTheNewConsumerOnce) {
  core::ManualClock clock;
  FakeProbe probe;
  HealthChecker checker(clock, probe);
  Seen first, second, fresh;
  checker.set_targets({clocked_target(make_check(1, 2), first.callback())});
  checker.start();
  next_check(clock, checker, probe, 1, 0s, false, "status 500");
  next_check(clock, checker, probe, 2, 1s, false, "status 500");
  ASSERT_EQ(first.get(), std::vector<bool>{false});

  auto other_path = make_check(1, 2);
  other_path.path = "/other";
  checker.set_targets({clocked_target(make_check(1, 2), second.callback()),
                       clocked_target(other_path, fresh.callback())});
  ASSERT_TRUE(wait_until([&] { return second.get().size() == 1; }));
  EXPECT_EQ(second.get(), std::vector<bool>{false});
  auto st = checker.status();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_FALSE(st[0].healthy);
  EXPECT_EQ(st[0].failures, 2u);
  EXPECT_TRUE(st[1].healthy);  // new: from scratch, optimistic
  EXPECT_EQ(st[1].failures, 0u);
  // The new target is checked at once; the kept one keeps its schedule.
  ASSERT_TRUE(probe.wait_started(3));
  EXPECT_EQ(probe.request(2).path, "/other");
  checker.stop();
  EXPECT_EQ(first.get(), std::vector<bool>{false});
  EXPECT_TRUE(fresh.get().empty());
}

TEST(HealthCheckerClockTest, RemovedTargetIsCancelledAndNotCheckedAgain) {
  core::ManualClock clock;
  FakeProbe probe;
  HealthChecker checker(clock, probe);
  checker.set_targets({clocked_target(make_check(1, 1))});
  checker.start();
  ASSERT_TRUE(probe.wait_started(1));
  checker.set_targets({});
  ASSERT_TRUE(wait_until([&] { return probe.cancelled().size() == 1; }));
  EXPECT_EQ(probe.cancelled()[0], probe.id(0));
  probe.answer(0, false, "late");  // ignored
  clock.advance(1h);
  checker.wake();
  EXPECT_TRUE(checker.status().empty());
  checker.stop();
  EXPECT_EQ(probe.started(), 1u);
}

TEST(HealthCheckerClockTest, StopCancelsTheCheckInFlightAndStartResumes) {
  core::ManualClock clock;
  FakeProbe probe;
  HealthChecker checker(clock, probe);
  checker.set_targets({clocked_target(make_check(1, 1))});
  checker.start();
  ASSERT_TRUE(probe.wait_started(1));
  checker.stop();
  EXPECT_EQ(probe.cancelled(), std::vector<uint64_t>{probe.id(0)});
  probe.answer(0, false, "after stop");  // no result while stopped
  EXPECT_EQ(checker.status()[0].failures, 0u);
  checker.start();
  ASSERT_TRUE(probe.wait_started(2));  // re-armed: checked at once again
  probe.answer(1, false, "status 503");
  ASSERT_TRUE(wait_until([&] { return checker.status()[0].failures == 1; }));
  EXPECT_FALSE(checker.status()[0].healthy);
  checker.stop();
}

TEST(HealthCheckerClockTest, ThrowingConsumerDoesNotStopTheChecks) {
  core::ManualClock clock;
  FakeProbe probe;
  HealthChecker checker(clock, probe);
  std::atomic<int> calls{0};
  checker.set_targets({clocked_target(make_check(1, 1), [&](bool) {
    ++calls;
    throw std::runtime_error("consumer bug");
  })});
  checker.start();
  next_check(clock, checker, probe, 1, 0s, false, "status 503");
  next_check(clock, checker, probe, 2, 1s, true);
  next_check(clock, checker, probe, 3, 1s, true);
  checker.stop();
  EXPECT_EQ(calls.load(), 2);
}

// ---- The HTTP probe, with real sockets on loopback ----

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

// What one probe reported.
struct Outcome {
  int calls = 0;
  bool pass = false;
  std::string error;
};

ProbeRequest probe_request(const ScriptedServer& server, std::string path = "/healthz",
                           std::string host = "") {
  return ProbeRequest{server.endpoint(), host.empty() ? server.address() : std::move(host),
                      std::move(path)};
}

// Runs one probe to its end: the context runs out of work once the probe has answered and let go
// of its socket (bounded, in case it does not).
Outcome run_probe(const ProbeRequest& request) {
  asio::io_context io;
  HttpHealthProbe probe(io);
  Outcome out;
  probe.start(7, request, [&](bool pass, std::string error) {
    ++out.calls;
    out.pass = pass;
    out.error = std::move(error);
  });
  io.run_for(5s);
  EXPECT_TRUE(io.stopped()) << "the probe still has work after its answer";
  EXPECT_EQ(probe.in_flight(), 0u);
  EXPECT_EQ(out.calls, 1);
  return out;
}

TEST(HttpHealthProbeTest, SendsTheConfiguredRequest) {
  ScriptedServer server([](int) { return Reply::k200; });
  Outcome o = run_probe(probe_request(server, "/ready?deep=1", "backend.internal"));
  EXPECT_TRUE(o.pass);
  EXPECT_EQ(o.error, "");
  EXPECT_EQ(server.last_request(),
            "GET /ready?deep=1 HTTP/1.1\r\nHost: backend.internal\r\n"
            "User-Agent: sluice-health-check\r\nConnection: close\r\n\r\n");
}

TEST(HttpHealthProbeTest, TwoAndThreeHundredsPassOthersFailOnTheFinalStatus) {
  ScriptedServer server([](int n) {
    static const Reply kOrder[] = {Reply::k200, Reply::k302, Reply::k404, Reply::k503};
    return kOrder[(n - 1) % 4];
  });
  Outcome ok = run_probe(probe_request(server));
  Outcome redirect = run_probe(probe_request(server));
  Outcome not_found = run_probe(probe_request(server));
  Outcome unavailable = run_probe(probe_request(server));  // after a 103 interim response
  EXPECT_TRUE(ok.pass);
  EXPECT_TRUE(redirect.pass);
  EXPECT_FALSE(not_found.pass);
  EXPECT_EQ(not_found.error, "status 404");
  EXPECT_FALSE(unavailable.pass);
  EXPECT_EQ(unavailable.error, "status 503");
}

TEST(HttpHealthProbeTest, GarbageAnswerIsAFailure) {
  ScriptedServer server([](int) { return Reply::kGarbage; });
  Outcome o = run_probe(probe_request(server));
  EXPECT_FALSE(o.pass);
  EXPECT_EQ(o.error.rfind("bad response: ", 0), 0u) << o.error;
}

TEST(HttpHealthProbeTest, ResponseBytesAreBounded) {
  // A head that never ends and a connection that stays open: only the bound ends the probe.
  ScriptedServer server([](int) { return Reply::kHuge; });
  Outcome o = run_probe(probe_request(server));
  EXPECT_FALSE(o.pass);
  EXPECT_EQ(o.error, "response head too large");
}

TEST(HttpHealthProbeTest, CloseWithoutAnswerAndRefusedConnectAreFailures) {
  ScriptedServer server([](int) { return Reply::kClose; });
  Outcome closed = run_probe(probe_request(server));
  EXPECT_FALSE(closed.pass);
  EXPECT_FALSE(closed.error.empty());

  // A port nothing listens on: take one from a listener, then close it.
  uint16_t dead_port;
  {
    asio::io_context io;
    asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    dead_port = a.local_endpoint().port();
  }
  ProbeRequest dead = probe_request(server);
  dead.endpoint.port(dead_port);
  Outcome refused = run_probe(dead);
  EXPECT_FALSE(refused.pass);
  EXPECT_EQ(refused.error.rfind("connect: ", 0), 0u) << refused.error;
}

TEST(HttpHealthProbeTest, CancelledProbeNeverAnswersAndLetsGo) {
  ScriptedServer server([](int) { return Reply::kSilent; });
  asio::io_context io;
  HttpHealthProbe probe(io);
  int calls = 0;
  probe.start(1, probe_request(server), [&](bool, std::string) { ++calls; });
  const auto end = std::chrono::steady_clock::now() + 5s;
  while (server.requests() < 1 && std::chrono::steady_clock::now() < end) io.run_one_for(10ms);
  ASSERT_EQ(server.requests(), 1);
  probe.cancel(1);
  probe.cancel(99);  // unknown: ignored
  EXPECT_EQ(probe.in_flight(), 0u);
  io.restart();
  io.run_for(5s);
  EXPECT_TRUE(io.stopped()) << "work left after the cancel";
  EXPECT_EQ(calls, 0);
}

// The production wiring end to end: the default checker (steady clock, HTTP probes) against a
// real server. Waits on conditions only; the checks run every 20 ms.
TEST(HealthCheckerTest, ProductionCheckerFollowsARealEndpointDownAndUp) {
  ScriptedServer server([](int n) { return n <= 3 ? Reply::k503 : Reply::k200; });
  HealthChecker checker;
  Changes changes;
  checker.set_targets({make_target(server, make_check(2, 3, kFastRealTime), changes.callback(checker, server))});
  checker.start();
  ASSERT_TRUE(wait_until([&] { return changes.size() >= 2; }, 5000ms));
  checker.stop();
  auto got = changes.get();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_FALSE(got[0].healthy);
  EXPECT_EQ(got[0].failures, 3u);
  EXPECT_TRUE(got[1].healthy);
  EXPECT_EQ(got[1].passes, 2u);
  EXPECT_EQ(checker.status()[0].last_error, "status 503");
}

TEST(HealthCheckerTest, ProductionCheckerTimesOutASilentEndpointAndStopsAtOnce) {
  ScriptedServer server([](int) { return Reply::kSilent; });
  auto check = make_check(1, 1, kFastRealTime);
  check.timeout = 30ms;
  HealthChecker checker;
  Changes changes;
  checker.set_targets({make_target(server, check, changes.callback(checker, server))});
  checker.start();
  ASSERT_TRUE(wait_until([&] { return changes.size() >= 1; }, 5000ms));
  EXPECT_EQ(checker.status()[0].last_error, "timeout");
  check.timeout = 1h;
  checker.set_targets({make_target(server, check, nullptr)});
  const int before = server.requests();
  ASSERT_TRUE(wait_until([&] { return server.requests() > before; }, 5000ms));
  const auto t0 = std::chrono::steady_clock::now();
  checker.stop();  // the check in flight (an hour's timeout) is cancelled
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

}  // namespace
}  // namespace sluice::gateway
