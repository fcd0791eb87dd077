// One probe's results in one city: the recent ones (bounded in time and count), the figures over
// a window (runs, success ratio, p50/p99 latency), and whether the probe is failing there.
//
// Semantics, exactly: the probe is "pending" until its first result; "failing" once `fail_after`
// results in a row are failures (the result that makes it so returns kFailing); "ok" again at
// the first good result after that (which returns kRecovered). A failure short of `fail_after`
// leaves the state as it was. Time is the result's own `at_ms`: nothing here reads a clock.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::control::probes {

struct Result {
  int64_t at_ms = 0;
  bool ok = false;
  int status = 0;  // 0: no answer
  int64_t latency_ms = 0;
  std::string reason;  // empty when ok
};

enum class Transition { kNone, kFailing, kRecovered };

struct WindowFigures {
  int64_t runs = 0;
  int64_t good = 0;
  double success_ratio = 0;        // good / runs; 0 without runs
  int64_t p50_ms = 0, p99_ms = 0;  // nearest rank, over every run in the window
};

// Results older than this, or beyond this many, are dropped.
inline constexpr int64_t kKeepMs = 3'600'000;
inline constexpr size_t kMaxResults = 3'600;

class History {
 public:
  explicit History(int fail_after) : fail_after_(fail_after < 1 ? 1 : fail_after) {}
  void set_fail_after(int n) { fail_after_ = n < 1 ? 1 : n; }

  Transition record(Result r);
  // Over the results with at_ms in (now - span_ms, now].
  WindowFigures window(int64_t now, int64_t span_ms) const;

  std::string_view state() const;  // pending | ok | failing
  bool failing() const { return failing_; }
  int64_t since_ms() const { return since_ms_; }  // when the state last changed
  const Result* last() const { return recent_.empty() ? nullptr : &recent_.back(); }
  const std::optional<Result>& last_failure() const { return last_failure_; }
  const std::deque<Result>& recent() const { return recent_; }

 private:
  int fail_after_;
  std::deque<Result> recent_;
  std::optional<Result> last_failure_;
  int failures_in_row_ = 0;
  bool failing_ = false;
  int64_t since_ms_ = 0;
};

}  // namespace sluice::control::probes
