#include "governance/circuit_breaker.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace sluice::governance {
namespace {

using namespace std::chrono_literals;
using Admit = CircuitBreaker::Admit;
using State = CircuitBreaker::State;

config::CircuitBreaker base_config() {
  config::CircuitBreaker c;
  c.enabled = true;
  c.window = 10s;
  c.min_requests = 20;
  c.error_ratio = 0.5;
  c.slow_call_duration = 1s;
  c.slow_call_ratio = 0.8;
  c.open_duration = 5s;
  c.max_open_duration = 60s;
  c.half_open_probes = 3;
  return c;
}

// Time aligned to a bucket boundary (1s buckets for a 10s window), far from the clock's epoch.
const core::MonoTime kT0 = core::MonoTime(1000s);

// One admitted call with the given outcome.
void call(CircuitBreaker& cb, core::MonoTime now, bool failure,
          std::chrono::nanoseconds latency = 10ms) {
  const Admit how = cb.admit(now);
  ASSERT_NE(how, Admit::kRejected);
  cb.record(how, failure, latency, now);
}

// Trips a fresh breaker at `now`: 20 failures.
void trip(CircuitBreaker& cb, core::MonoTime now) {
  for (int i = 0; i < 20; ++i) call(cb, now, true);
  ASSERT_EQ(cb.state(), State::kOpen);
}

TEST(CircuitBreakerTest, DoesNotTripBelowMinRequests) {
  CircuitBreaker cb(base_config());
  for (int i = 0; i < 19; ++i) call(cb, kT0, true);
  EXPECT_EQ(cb.state(), State::kClosed);
  EXPECT_EQ(cb.admit(kT0), Admit::kAllowed);
  cb.record(Admit::kAllowed, true, 10ms, kT0);  // the 20th call
  EXPECT_EQ(cb.state(), State::kOpen);
  EXPECT_EQ(cb.snapshot(kT0).opened_total, 1u);
}

TEST(CircuitBreakerTest, TripsExactlyAtErrorRatio) {
  // The ratio is judged at every outcome from the 20th call on, with >=.
  {
    CircuitBreaker cb(base_config());
    for (int i = 0; i < 11; ++i) call(cb, kT0, false);
    for (int i = 0; i < 9; ++i) call(cb, kT0, true);
    EXPECT_EQ(cb.state(), State::kClosed);
    call(cb, kT0, true);  // 10 / 21 = 0.476
    EXPECT_EQ(cb.state(), State::kClosed);
    call(cb, kT0, true);  // 11 / 22 = 0.5
    EXPECT_EQ(cb.state(), State::kOpen);
  }
  {
    CircuitBreaker cb(base_config());
    for (int i = 0; i < 10; ++i) call(cb, kT0, false);
    for (int i = 0; i < 9; ++i) call(cb, kT0, true);
    EXPECT_EQ(cb.state(), State::kClosed);
    call(cb, kT0, true);  // 10 / 20 = 0.5
    EXPECT_EQ(cb.state(), State::kOpen);
  }
}

TEST(CircuitBreakerTest, TripsOnSlowCallRatio) {
  CircuitBreaker cb(base_config());                         // slow ratio 0.8, slow >= 1s
  for (int i = 0; i < 4; ++i) call(cb, kT0, false, 999ms);  // just under: not slow
  for (int i = 0; i < 15; ++i) call(cb, kT0, false, 1s);    // exactly 1s: slow
  EXPECT_EQ(cb.state(), State::kClosed);                    // 15 / 19, below min_requests
  EXPECT_EQ(cb.snapshot(kT0).slow, 15u);
  call(cb, kT0, false, 1s);  // 16 / 20 = 0.8
  EXPECT_EQ(cb.state(), State::kOpen);
}

TEST(CircuitBreakerTest, OpenRejectsUntilOpenDurationElapsed) {
  CircuitBreaker cb(base_config());
  trip(cb, kT0);
  EXPECT_EQ(cb.admit(kT0), Admit::kRejected);
  EXPECT_EQ(cb.admit(kT0 + 5s - 1ns), Admit::kRejected);
  EXPECT_EQ(cb.snapshot(kT0 + 2s).open_for, 3s);
  EXPECT_EQ(cb.state(), State::kOpen);
  EXPECT_EQ(cb.admit(kT0 + 5s), Admit::kProbe);
  EXPECT_EQ(cb.state(), State::kHalfOpen);
}

TEST(CircuitBreakerTest, HalfOpenAdmitsExactlyTheProbeCount) {
  CircuitBreaker cb(base_config());  // 3 probes
  trip(cb, kT0);
  const core::MonoTime t = kT0 + 5s;
  EXPECT_EQ(cb.admit(t), Admit::kProbe);
  EXPECT_EQ(cb.admit(t), Admit::kProbe);
  EXPECT_EQ(cb.admit(t), Admit::kProbe);
  EXPECT_EQ(cb.admit(t), Admit::kRejected);
  EXPECT_EQ(cb.admit(t + 1s), Admit::kRejected);
  // A cancelled probe gives its slot back; one that finished does not.
  cb.cancel(Admit::kProbe);
  EXPECT_EQ(cb.admit(t), Admit::kProbe);
  EXPECT_EQ(cb.admit(t), Admit::kRejected);
  cb.record(Admit::kProbe, false, 10ms, t);
  EXPECT_EQ(cb.admit(t), Admit::kRejected);
  EXPECT_EQ(cb.state(), State::kHalfOpen);
}

TEST(CircuitBreakerTest, AllProbesSucceedingCloses) {
  CircuitBreaker cb(base_config());
  trip(cb, kT0);
  const core::MonoTime t = kT0 + 5s;
  for (int i = 0; i < 3; ++i) ASSERT_EQ(cb.admit(t), Admit::kProbe);
  cb.record(Admit::kProbe, false, 10ms, t);
  cb.record(Admit::kProbe, false, 10ms, t);
  EXPECT_EQ(cb.state(), State::kHalfOpen);
  cb.record(Admit::kProbe, false, 10ms, t);
  EXPECT_EQ(cb.state(), State::kClosed);
  EXPECT_EQ(cb.admit(t), Admit::kAllowed);
  // The window was cleared: the 20 failures that tripped it are gone.
  const auto s = cb.snapshot(t);
  EXPECT_EQ(s.calls, 0u);
  EXPECT_EQ(s.failures, 0u);
  // And it takes min_requests again to trip.
  for (int i = 0; i < 19; ++i) call(cb, t, true);
  EXPECT_EQ(cb.state(), State::kClosed);
}

TEST(CircuitBreakerTest, ProbeFailureReopensWithDoubledDurationCappedAndCloseResets) {
  config::CircuitBreaker c = base_config();
  c.open_duration = 5s;
  c.max_open_duration = 30s;
  c.half_open_probes = 1;
  CircuitBreaker cb(c);
  trip(cb, kT0);
  core::MonoTime t = kT0;
  // Open periods: 5s, then 10s, 20s, 30s (capped), 30s.
  const std::chrono::nanoseconds expected[] = {10s, 20s, 30s, 30s};
  std::chrono::nanoseconds period = 5s;
  for (auto next : expected) {
    EXPECT_EQ(cb.admit(t + period - 1ns), Admit::kRejected);
    t += period;
    ASSERT_EQ(cb.admit(t), Admit::kProbe);
    cb.record(Admit::kProbe, true, 10ms, t);
    EXPECT_EQ(cb.state(), State::kOpen);
    EXPECT_EQ(cb.snapshot(t).open_for, next);
    period = next;
  }
  EXPECT_EQ(cb.snapshot(t).opened_total, 5u);
  // A successful probe closes and resets the backoff: the next trip opens for 5s.
  t += period;
  ASSERT_EQ(cb.admit(t), Admit::kProbe);
  cb.record(Admit::kProbe, false, 10ms, t);
  ASSERT_EQ(cb.state(), State::kClosed);
  trip(cb, t);
  EXPECT_EQ(cb.snapshot(t).open_for, 5s);
}

TEST(CircuitBreakerTest, SlowProbeReopens) {
  CircuitBreaker cb(base_config());
  trip(cb, kT0);
  const core::MonoTime t = kT0 + 5s;
  ASSERT_EQ(cb.admit(t), Admit::kProbe);
  cb.record(Admit::kProbe, false, 1s, t);
  EXPECT_EQ(cb.state(), State::kOpen);
  EXPECT_EQ(cb.snapshot(t).open_for, 10s);
}

TEST(CircuitBreakerTest, ProbesOfAnEndedRoundDoNotCountInTheNext) {
  CircuitBreaker cb(base_config());  // 3 probes
  trip(cb, kT0);
  core::MonoTime t = kT0 + 5s;
  for (int i = 0; i < 3; ++i) ASSERT_EQ(cb.admit(t), Admit::kProbe);
  cb.record(Admit::kProbe, true, 10ms, t);  // round over; 2 probes still in flight
  ASSERT_EQ(cb.state(), State::kOpen);
  t += 10s;
  for (int i = 0; i < 3; ++i) ASSERT_EQ(cb.admit(t), Admit::kProbe);
  EXPECT_EQ(cb.admit(t), Admit::kRejected);
  // The two stale outcomes arrive: discarded, even though they succeeded.
  cb.record(Admit::kProbe, false, 10ms, t);
  cb.cancel(Admit::kProbe);
  EXPECT_EQ(cb.admit(t), Admit::kRejected);  // the cancel did not free a slot of this round
  cb.record(Admit::kProbe, false, 10ms, t);
  cb.record(Admit::kProbe, false, 10ms, t);
  EXPECT_EQ(cb.state(), State::kHalfOpen);
  cb.record(Admit::kProbe, false, 10ms, t);
  EXPECT_EQ(cb.state(), State::kClosed);
}

TEST(CircuitBreakerTest, AllowedCallsFinishingWhileOpenAreIgnored) {
  CircuitBreaker cb(base_config());
  trip(cb, kT0);
  for (int i = 0; i < 5; ++i) cb.record(Admit::kAllowed, true, 10ms, kT0);
  EXPECT_EQ(cb.snapshot(kT0).calls, 20u);
  // Nor do they count as probes while half-open.
  const core::MonoTime t = kT0 + 5s;
  for (int i = 0; i < 3; ++i) ASSERT_EQ(cb.admit(t), Admit::kProbe);
  cb.record(Admit::kAllowed, true, 10ms, t);
  EXPECT_EQ(cb.state(), State::kHalfOpen);
}

TEST(CircuitBreakerTest, WindowSlidesOldBucketsOut) {
  CircuitBreaker cb(base_config());  // 10s window, 1s buckets
  // 10 failures in the bucket [kT0, kT0+1s).
  for (int i = 0; i < 10; ++i) call(cb, kT0 + 500ms, true);
  EXPECT_EQ(cb.snapshot(kT0 + 9s + 999ms).failures, 10u);  // 10th bucket: still in the window
  EXPECT_EQ(cb.snapshot(kT0 + 10s).failures, 0u);          // 11th bucket: dropped
  // 10 successes at kT0+10s: the old failures are out, 10 calls is below min_requests...
  for (int i = 0; i < 10; ++i) call(cb, kT0 + 10s, false);
  EXPECT_EQ(cb.snapshot(kT0 + 10s).calls, 10u);
  // ...and 10 more failures make 10/20 = 0.5 only with nothing older counted.
  for (int i = 0; i < 9; ++i) call(cb, kT0 + 10s, true);
  EXPECT_EQ(cb.state(), State::kClosed);
  call(cb, kT0 + 10s, true);
  EXPECT_EQ(cb.state(), State::kOpen);
}

TEST(CircuitBreakerTest, WindowAddsUpAcrossBuckets) {
  CircuitBreaker cb(base_config());
  // Two failures a second for 10 seconds: 20 calls spread over all 10 buckets.
  for (int s = 0; s < 10; ++s) {
    call(cb, kT0 + std::chrono::seconds(s), true);
    if (s < 9) call(cb, kT0 + std::chrono::seconds(s), true);
  }
  EXPECT_EQ(cb.snapshot(kT0 + 9s).calls, 19u);
  EXPECT_EQ(cb.state(), State::kClosed);
  call(cb, kT0 + 9s, true);
  EXPECT_EQ(cb.state(), State::kOpen);
}

TEST(CircuitBreakerTest, ListenerHearsEveryTransitionWithReasons) {
  CircuitBreaker cb(base_config());
  std::vector<std::pair<std::pair<State, State>, std::string>> seen;
  cb.set_listener([&](const CircuitBreaker::Transition& tr) {
    seen.push_back({{tr.from, tr.to}, std::string(tr.reason)});
  });
  for (int i = 0; i < 15; ++i) call(cb, kT0, false);
  for (int i = 0; i < 14; ++i) call(cb, kT0, true);  // 14 / 29
  EXPECT_TRUE(seen.empty());
  call(cb, kT0, true);  // 15 / 30
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].first, std::make_pair(State::kClosed, State::kOpen));
  EXPECT_EQ(seen[0].second, "error ratio 0.50 >= 0.50 over 30 calls");

  core::MonoTime t = kT0 + 5s;
  ASSERT_EQ(cb.admit(t), Admit::kProbe);
  cb.record(Admit::kProbe, true, 10ms, t);
  t += 10s;
  for (int i = 0; i < 3; ++i) ASSERT_EQ(cb.admit(t), Admit::kProbe);
  for (int i = 0; i < 3; ++i) cb.record(Admit::kProbe, false, 10ms, t);

  ASSERT_EQ(seen.size(), 5u);
  EXPECT_EQ(seen[1].first, std::make_pair(State::kOpen, State::kHalfOpen));
  EXPECT_EQ(seen[1].second, "open period of 5000ms elapsed");
  EXPECT_EQ(seen[2].first, std::make_pair(State::kHalfOpen, State::kOpen));
  EXPECT_EQ(seen[2].second, "probe failed; open for 10000ms");
  EXPECT_EQ(seen[3].first, std::make_pair(State::kOpen, State::kHalfOpen));
  EXPECT_EQ(seen[3].second, "open period of 10000ms elapsed");
  EXPECT_EQ(seen[4].first, std::make_pair(State::kHalfOpen, State::kClosed));
  EXPECT_EQ(seen[4].second, "3 of 3 probes succeeded");
}

TEST(CircuitBreakerTest, ListenerReasonForSlowCalls) {
  CircuitBreaker cb(base_config());
  std::string reason;
  cb.set_listener([&](const CircuitBreaker::Transition& tr) { reason = tr.reason; });
  for (int i = 0; i < 20; ++i) call(cb, kT0, false, 2s);
  EXPECT_EQ(reason, "slow call ratio 1.00 >= 0.80 over 20 calls");
}

TEST(CircuitBreakerTest, DisabledNeverTripsButCapsWork) {
  config::CircuitBreaker c = base_config();
  c.enabled = false;
  c.max_concurrent = 2;
  CircuitBreaker cb(c);
  for (int i = 0; i < 100; ++i) call(cb, kT0, true);
  EXPECT_EQ(cb.state(), State::kClosed);
  EXPECT_EQ(cb.snapshot(kT0).calls, 0u);
  EXPECT_TRUE(cb.try_acquire_concurrent());
  EXPECT_TRUE(cb.try_acquire_concurrent());
  EXPECT_FALSE(cb.try_acquire_concurrent());
}

TEST(CircuitBreakerTest, ConcurrencyAndPendingCaps) {
  config::CircuitBreaker c = base_config();
  c.max_concurrent = 3;
  c.max_pending = 1;
  CircuitBreaker cb(c);
  EXPECT_TRUE(cb.try_acquire_concurrent());
  EXPECT_TRUE(cb.try_acquire_concurrent());
  EXPECT_TRUE(cb.try_acquire_concurrent());
  EXPECT_FALSE(cb.try_acquire_concurrent());
  EXPECT_EQ(cb.concurrent(), 3u);
  cb.release_concurrent();
  EXPECT_EQ(cb.concurrent(), 2u);
  EXPECT_TRUE(cb.try_acquire_concurrent());
  EXPECT_FALSE(cb.try_acquire_concurrent());

  EXPECT_TRUE(cb.try_acquire_pending());
  EXPECT_FALSE(cb.try_acquire_pending());
  cb.release_pending();
  EXPECT_TRUE(cb.try_acquire_pending());

  // 0 = no cap, still counted.
  CircuitBreaker open(base_config());
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(open.try_acquire_concurrent());
  EXPECT_EQ(open.concurrent(), 1000u);
}

TEST(CircuitBreakerTest, TwoThreadsCountExactly) {
  config::CircuitBreaker c = base_config();
  c.min_requests = 1'000'000;  // never trips: every outcome must land in the window
  c.max_concurrent = 7;
  CircuitBreaker cb(c);
  constexpr int kPerThread = 50000;
  std::atomic<int> over_cap{0};
  auto work = [&](int id) {
    for (int i = 0; i < kPerThread; ++i) {
      const core::MonoTime now = kT0 + std::chrono::milliseconds(i % 5000);
      const Admit how = cb.admit(now);
      cb.record(how, i % 4 == id, (i % 10 == 0) ? 2s : 1ms, now);
      if (cb.try_acquire_concurrent()) {
        if (cb.concurrent() > 7) over_cap.fetch_add(1);
        cb.release_concurrent();
      }
    }
  };
  std::thread a(work, 0), b(work, 1);
  a.join();
  b.join();
  const auto s = cb.snapshot(kT0 + 4999ms);
  EXPECT_EQ(s.calls, 2u * kPerThread);
  EXPECT_EQ(s.failures, 2u * kPerThread / 4);
  EXPECT_EQ(s.slow, 2u * kPerThread / 10);
  EXPECT_EQ(over_cap.load(), 0);
  EXPECT_EQ(cb.concurrent(), 0u);
}

TEST(CircuitBreakerTest, TwoThreadsTripOnceAndAdmitExactProbes) {
  config::CircuitBreaker c = base_config();
  c.half_open_probes = 100;
  CircuitBreaker cb(c);
  std::atomic<int> transitions{0};
  cb.set_listener([&](const CircuitBreaker::Transition&) { transitions.fetch_add(1); });
  auto fail = [&] {
    for (int i = 0; i < 1000; ++i) {
      const Admit how = cb.admit(kT0);
      if (how != Admit::kRejected) cb.record(how, true, 1ms, kT0);
    }
  };
  std::thread a(fail), b(fail);
  a.join();
  b.join();
  EXPECT_EQ(cb.state(), State::kOpen);
  EXPECT_EQ(transitions.load(), 1);
  EXPECT_EQ(cb.snapshot(kT0).calls, 20u);

  std::atomic<int> probes{0};
  auto probe = [&] {
    for (int i = 0; i < 1000; ++i) probes += cb.admit(kT0 + 5s) == Admit::kProbe;
  };
  std::thread p(probe), q(probe);
  p.join();
  q.join();
  EXPECT_EQ(probes.load(), 100);
  EXPECT_EQ(transitions.load(), 2);
}

}  // namespace
}  // namespace sluice::governance
