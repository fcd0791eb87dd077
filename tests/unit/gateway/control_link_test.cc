#include "gateway/control_link.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "gateway/gateway.h"  // ReloadResult

namespace sluice::gateway {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// A control plane answered by the test. Polls (GET /v1/gateway-config) take the queued replies in
// order; a poll with none queued is parked until one is queued or the link cancels it. Every
// other call (status, stats, events) is answered `post_status`.
class FakeControlPlane : public ControlTransport {
 public:
  struct Call {
    std::string method, path, body;
  };

  net::HttpReply call(const std::string&, const std::string& method, const std::string& path,
                      const std::string* body, const net::HttpOptions& options) override {
    std::unique_lock lock(mu_);
    calls_.push_back({method, path, body ? *body : ""});
    cv_.notify_all();
    if (method != "GET") {
      net::HttpReply r;
      r.status = post_status_;
      return r;
    }
    ++parked_;
    cv_.notify_all();
    while (polls_.empty()) {
      if (options.canceller && options.canceller->cancelled()) {
        --parked_;
        net::HttpReply r;
        r.error = "cancelled";
        return r;
      }
      // The canceller has no wait of its own: look again every few milliseconds.
      cv_.wait_for(lock, 5ms);
    }
    --parked_;
    net::HttpReply r = std::move(polls_.front());
    polls_.pop_front();
    return r;
  }

  void reply(int status, std::string body = {}, std::string error = {}) {
    net::HttpReply r;
    r.status = status;
    r.body = std::move(body);
    r.error = std::move(error);
    std::lock_guard lock(mu_);
    polls_.push_back(std::move(r));
    cv_.notify_all();
  }
  void set_post_status(int status) {
    std::lock_guard lock(mu_);
    post_status_ = status;
  }

  // The n-th call (1-based) of `method` whose path starts with `prefix`, once it was made.
  Call wait_call(const std::string& method, const std::string& prefix, size_t n) {
    std::unique_lock lock(mu_);
    Call found;
    bool ok = cv_.wait_for(lock, 5s, [&] {
      size_t seen = 0;
      for (const auto& c : calls_) {
        if (c.method == method && c.path.rfind(prefix, 0) == 0 && ++seen == n) {
          found = c;
          return true;
        }
      }
      return false;
    });
    EXPECT_TRUE(ok) << "no call " << n << " of " << method << " " << prefix;
    return found;
  }
  Call wait_poll(size_t n) { return wait_call("GET", "/v1/gateway-config", n); }
  Call wait_status(size_t n) { return wait_call("POST", "/v1/gateways/", n); }
  size_t count(const std::string& method, const std::string& prefix) const {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (const auto& c : calls_) n += c.method == method && c.path.rfind(prefix, 0) == 0;
    return n;
  }
  bool wait_parked() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 5s, [&] { return parked_ > 0 && polls_.empty(); });
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Call> calls_;
  std::deque<net::HttpReply> polls_;
  int parked_ = 0;
  int post_status_ = 200;
};

// The gateway side: every pushed config is applied with the verdict the test set.
class FakeHost : public LinkHost {
 public:
  void apply_pushed(PushedConfig pushed, Applied done) override {
    ReloadResult r;
    {
      std::lock_guard lock(mu_);
      applied_.push_back(pushed.version);
      r.ok = errors_.empty();
      r.errors = errors_;
    }
    done(std::move(r));
  }
  std::shared_ptr<const Snapshot> snapshot() const override { return nullptr; }
  json versions_json() const override { return json::object(); }
  size_t connection_count() const override { return 0; }

  void refuse_with(std::vector<std::string> errors) {
    std::lock_guard lock(mu_);
    errors_ = std::move(errors);
  }
  std::vector<std::string> applied() const {
    std::lock_guard lock(mu_);
    return applied_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> errors_;
  std::vector<std::string> applied_;
};

class ControlLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice-control-link-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::ofstream(dir_ + "/token") << "secret-token\n";
    cfg_.node = {"gw-t", "a", "a1"};
    cfg_.control_plane.enabled = true;
    cfg_.control_plane.address = "http://127.0.0.1:1";
    cfg_.control_plane.token_file = dir_ + "/token";
    cfg_.control_plane.cache_dir = dir_;
    cfg_.control_plane.poll_wait = 30s;
    // Stats reports would count as contact; these tests look at the polls alone.
    cfg_.control_plane.report_interval = 24h;
  }
  void TearDown() override {
    link_.reset();
    std::filesystem::remove_all(dir_);
  }

  ControlLink& start(const std::string& applied = "",
                     const std::optional<PushedConfig>& refused = std::nullopt,
                     const std::vector<std::string>& refused_errors = {}) {
    link_ = std::make_unique<ControlLink>(host_, cfg_, cp_, clock_);
    link_->start(applied, refused, refused_errors);
    return *link_;
  }
  json state() const { return json::parse(link_->state_json()); }

  // Waits until the watcher is in its backoff after poll `n`; returns how long it waits.
  core::Duration backoff_after(size_t n) {
    cp_.wait_poll(n);
    const auto end = std::chrono::steady_clock::now() + 5s;
    while (!link_->retry_at() && std::chrono::steady_clock::now() < end) std::this_thread::yield();
    auto at = link_->retry_at();
    EXPECT_TRUE(at.has_value()) << "no backoff after poll " << n;
    return at ? *at - clock_.now() : core::Duration::zero();
  }
  // Moves the clock to the end of the current backoff.
  void end_backoff() {
    auto at = link_->retry_at();
    ASSERT_TRUE(at.has_value());
    clock_.set(at->time_since_epoch());
    link_->wake();
  }

  std::string dir_;
  config::GatewayConfig cfg_;
  core::ManualClock clock_;
  FakeControlPlane cp_;
  FakeHost host_;
  std::unique_ptr<ControlLink> link_;
};

bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// Issue 11: after the control plane returns, the link says so at its first answer, and keeps
// saying so while the next poll is parked (a long poll is a working link, not a silent one).
TEST_F(ControlLinkTest, ConnectedFromTheFirstAnswerAndWhileAPollIsParked) {
  cp_.reply(0, "", "connection refused");
  start();
  // Starts with a poll that does not wait.
  EXPECT_TRUE(has(cp_.wait_poll(1).path, "wait=0ms"));
  backoff_after(1);
  json s = state();
  EXPECT_FALSE(s["connected"]);
  EXPECT_EQ(s["last_error"], "connection refused");
  EXPECT_EQ(s["poll_errors"], 1);

  cp_.reply(304);
  end_backoff();
  // The poll after a failure does not wait: its 304 proves the link is back.
  EXPECT_TRUE(has(cp_.wait_poll(2).path, "wait=0ms"));
  // Then the long polls resume; while one is parked the link is connected.
  EXPECT_TRUE(has(cp_.wait_poll(3).path, "wait=30000ms"));
  ASSERT_TRUE(cp_.wait_parked());
  s = state();
  EXPECT_TRUE(s["connected"]);
  EXPECT_EQ(s["last_error"], "");
  EXPECT_GT(s["last_contact_ms"].get<int64_t>(), 0);
  EXPECT_FALSE(link_->retry_at().has_value());

  // Stop aborts the parked poll and reports the exit.
  link_->stop();
  auto exit = json::parse(cp_.wait_status(1).body);
  EXPECT_EQ(exit["status"], "exited");
  EXPECT_EQ(cp_.count("GET", "/v1/gateway-config"), 3u);
}

TEST_F(ControlLinkTest, UnreachableControlPlaneIsRetriedWithin250msDoublingToOneSecond) {
  for (int i = 0; i < 5; ++i) cp_.reply(0, "", "connection refused");
  start();
  const core::Duration expected[] = {250ms, 500ms, 1s, 1s, 1s};
  for (size_t i = 0; i < 5; ++i) {
    core::Duration d = backoff_after(i + 1);
    EXPECT_GE(d, expected[i]) << "backoff " << i;
    EXPECT_LT(d, expected[i] * 3 / 2) << "backoff " << i << " (jitter is under 50 %)";
    if (i + 1 < 5) end_backoff();
  }
  EXPECT_EQ(state()["poll_errors"], 5);
  EXPECT_EQ(cp_.count("GET", "/v1/gateway-config"), 5u);
}

TEST_F(ControlLinkTest, ErrorAnswersBackOffToTenSecondsAndAnAnswerResetsTheBackoff) {
  for (int i = 0; i < 7; ++i) cp_.reply(503);
  cp_.reply(304);
  cp_.reply(401);
  start();
  const core::Duration expected[] = {250ms, 500ms, 1s, 2s, 4s, 8s, 10s};
  for (size_t i = 0; i < 7; ++i) {
    core::Duration d = backoff_after(i + 1);
    EXPECT_GE(d, expected[i]) << "backoff " << i;
    EXPECT_LT(d, expected[i] * 3 / 2) << "backoff " << i;
    EXPECT_EQ(state()["last_error"], "HTTP 503");
    end_backoff();
  }
  // Poll 8 answers 304 (the backoff starts over); poll 9, a long one, gets 401.
  EXPECT_TRUE(has(cp_.wait_poll(8).path, "wait=0ms"));
  EXPECT_TRUE(has(cp_.wait_poll(9).path, "wait=30000ms"));
  core::Duration d = backoff_after(9);
  EXPECT_GE(d, 250ms);
  EXPECT_LT(d, 375ms);
  std::string error = state()["last_error"];
  EXPECT_TRUE(has(error, "HTTP 401")) << error;
  EXPECT_TRUE(has(error, cfg_.control_plane.token_file)) << error;
}

// Long-poll reconnect: a parked poll that breaks is followed, after the backoff, by one that
// does not wait, and then by long polls again.
TEST_F(ControlLinkTest, BrokenLongPollReconnectsWithAPollThatDoesNotWait) {
  cp_.reply(304);
  start();
  EXPECT_TRUE(has(cp_.wait_poll(2).path, "wait=30000ms"));
  ASSERT_TRUE(cp_.wait_parked());
  EXPECT_TRUE(state()["connected"]);
  cp_.reply(0, "", "connection reset by peer");
  core::Duration d = backoff_after(2);
  EXPECT_GE(d, 250ms);
  EXPECT_LT(d, 375ms);
  EXPECT_FALSE(state()["connected"]);
  EXPECT_EQ(state()["last_error"], "connection reset by peer");
  // Nothing is polled before the backoff has passed.
  EXPECT_EQ(cp_.count("GET", "/v1/gateway-config"), 2u);
  cp_.reply(304);
  end_backoff();
  EXPECT_TRUE(has(cp_.wait_poll(3).path, "wait=0ms"));
  EXPECT_TRUE(has(cp_.wait_poll(4).path, "wait=30000ms"));
  ASSERT_TRUE(cp_.wait_parked());
  EXPECT_TRUE(state()["connected"]);
  EXPECT_EQ(state()["polls"], 3);  // the fourth is still parked
}

TEST_F(ControlLinkTest, AppliedAndRefusedVersionsAreReportedAndPolledAfter) {
  cp_.reply(200, R"({"version": "3.1", "config": {"services": []}})");
  start();
  // Applied: reported, cached, and the next poll asks for what comes after it.
  auto status = json::parse(cp_.wait_status(1).body);
  EXPECT_EQ(status["status"], "applied");
  EXPECT_EQ(status["applied_version"], "3.1");
  EXPECT_EQ(status["error"], "");
  EXPECT_EQ(cp_.wait_status(1).path, "/v1/gateways/gw-t/status");
  auto poll = cp_.wait_poll(2);
  EXPECT_TRUE(has(poll.path, "after=3.1")) << poll.path;
  EXPECT_TRUE(has(poll.path, "gateway=gw-t&city=a&zone=a1")) << poll.path;
  std::string error;
  auto cached = read_cache(cfg_.control_plane, &error);
  ASSERT_TRUE(cached) << error;
  EXPECT_EQ(cached->version, "3.1");
  EXPECT_EQ(host_.applied(), std::vector<std::string>{"3.1"});

  // Refused: reported with the errors; the gateway keeps 3.1 and does not ask for 4.1 again.
  host_.refuse_with({"routes[0].service: no service named 'x'"});
  cp_.reply(200, R"({"version": "4.1", "config": {}})");
  status = json::parse(cp_.wait_status(2).body);
  EXPECT_EQ(status["status"], "refused");
  EXPECT_EQ(status["applied_version"], "4.1");
  EXPECT_EQ(status["error"], "routes[0].service: no service named 'x'");
  EXPECT_TRUE(has(cp_.wait_poll(3).path, "after=4.1"));
  ASSERT_TRUE(cp_.wait_parked());
  json s = state();
  EXPECT_EQ(s["applied_version"], "3.1");
  EXPECT_EQ(s["seen_version"], "4.1");
  EXPECT_EQ(s["applied"], 1);
  EXPECT_EQ(s["refused"], 1);
  cached = read_cache(cfg_.control_plane, &error);
  ASSERT_TRUE(cached) << error;
  EXPECT_EQ(cached->version, "3.1");  // a refused version is not cached

  link_->stop();
  auto exit = json::parse(cp_.wait_status(3).body);
  EXPECT_EQ(exit["status"], "exited");
  EXPECT_EQ(exit["applied_version"], "3.1");
}

TEST_F(ControlLinkTest, StartUpVersionsAreCountedAndARefusalAtStartIsReportedFirst) {
  cp_.reply(304);
  start("2.1", PushedConfig{"2.2", "{}"}, {"e1", "e2"});
  auto status = json::parse(cp_.wait_status(1).body);
  EXPECT_EQ(status["status"], "refused");
  EXPECT_EQ(status["applied_version"], "2.2");
  EXPECT_EQ(status["error"], "e1\ne2");
  EXPECT_TRUE(has(cp_.wait_poll(1).path, "after=2.2"));
  ASSERT_TRUE(cp_.wait_parked());
  json s = state();
  EXPECT_EQ(s["applied_version"], "2.1");
  EXPECT_EQ(s["seen_version"], "2.2");
  EXPECT_EQ(s["applied"], 1);
  EXPECT_EQ(s["refused"], 1);
}

TEST_F(ControlLinkTest, UnsendableStatusNeverStopsThePolling) {
  cp_.set_post_status(403);  // e.g. a viewer token
  cp_.reply(200, R"({"version": "5.1", "config": {}})");
  start();
  cp_.wait_status(1);
  // The poll goes on regardless, and the status is tried again before the next one.
  EXPECT_TRUE(has(cp_.wait_poll(2).path, "after=5.1"));
  cp_.reply(304);
  cp_.wait_status(2);
  cp_.wait_poll(3);
  EXPECT_TRUE(has(state()["last_error"].get<std::string>(), "cannot report the status"));
}

TEST_F(ControlLinkTest, AnswerThatIsNotAConfigIsAProblem) {
  cp_.reply(200, "not json");
  start();
  core::Duration d = backoff_after(1);
  EXPECT_GE(d, 250ms);
  EXPECT_EQ(state()["last_error"], "the control plane's answer is not {version, config}");
  EXPECT_TRUE(host_.applied().empty());
  cp_.reply(304);
  end_backoff();
  EXPECT_TRUE(has(cp_.wait_poll(2).path, "wait=0ms"));
}

TEST_F(ControlLinkTest, DrainingIsReportedAtOnceWithoutWaitingForTheClock) {
  cp_.reply(304);
  start("1.1");
  cp_.wait_status(1);  // the start-up version
  ASSERT_TRUE(cp_.wait_parked());
  link_->draining();
  auto status = json::parse(cp_.wait_status(2).body);
  EXPECT_EQ(status["status"], "draining");
  EXPECT_EQ(status["applied_version"], "1.1");
  EXPECT_EQ(state()["state"], "draining");
  link_->stop();
  EXPECT_EQ(json::parse(cp_.wait_status(3).body)["status"], "exited");
}

}  // namespace
}  // namespace sluice::gateway
