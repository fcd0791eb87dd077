// The DORA figures from change records: which changes count, and the numbers, exactly.
#include "control/changes/dora.h"

#include <gtest/gtest.h>

namespace sluice::control::changes {
namespace {

constexpr int64_t kDay = 86'400'000;

// A change proposed at `at` that went through `steps` ({ms after `at`, to-state}).
ChangeRecord change(int64_t at, std::vector<std::pair<int64_t, std::string>> steps,
                    std::string op = "apply") {
  ChangeRecord c;
  c.operation = std::move(op);
  c.proposed_ms = at;
  std::string from;
  c.transitions.push_back({at, "", "proposed", "a", "r"});
  from = "proposed";
  for (auto& [ms, to] : steps) {
    c.transitions.push_back({at + ms, from, to, "b", "r"});
    from = to;
  }
  c.state = from;
  return c;
}

TEST(Dora, FiguresOverAWindow) {
  const int64_t t0 = 100 * kDay;
  std::vector<ChangeRecord> all = {
      // Done 10 s after proposal.
      change(t0, {{1'000, "approved"}, {5'000, "rolling_out"}, {10'000, "done"}}),
      // Done after 100 s, rolled back 60 s after done.
      change(t0 + kDay,
             {{0, "approved"}, {0, "rolling_out"}, {100'000, "done"}, {160'000, "rolled_back"}}),
      // A rollback change, done after 4 s.
      change(t0 + 2 * kDay, {{0, "approved"}, {0, "rolling_out"}, {4'000, "done"}}, "rollback"),
      // Aborted after approval: failed. Aborted while proposed: not counted at all.
      change(t0 + 3 * kDay, {{0, "approved"}, {1'000, "aborted"}}),
      change(t0 + 3 * kDay, {{1'000, "aborted"}}),
      // Rejected: not counted.
      change(t0 + 3 * kDay, {{1'000, "rejected"}}),
      // Done before the window: not counted.
      change(t0 - 5 * kDay, {{0, "approved"}, {0, "rolling_out"}, {1, "done"}}),
  };
  all[2].emergency = true;
  all[2].review_required = true;
  const Figures f = figures(all, t0 - kDay, t0 + 9 * kDay);  // a 10-day window
  EXPECT_EQ(f.deployments, 3);
  EXPECT_DOUBLE_EQ(f.per_day, 0.3);
  EXPECT_DOUBLE_EQ(*f.lead_p50_s, 10.0);  // of 4, 10, 100: nearest rank 2
  EXPECT_DOUBLE_EQ(*f.lead_p90_s, 100.0);
  EXPECT_EQ(f.failed, 2);    // the rolled back one, the one aborted after approval
  EXPECT_EQ(f.attempts, 4);  // 3 deployments + 1 aborted after approval
  EXPECT_DOUBLE_EQ(f.failure_rate, 0.5);
  EXPECT_DOUBLE_EQ(*f.restore_p50_s, 60.0);
  EXPECT_EQ(f.rollbacks, 1);
  EXPECT_EQ(f.failed_rollbacks, 0);
  EXPECT_DOUBLE_EQ(f.rollback_failure_rate, 0.0);
  EXPECT_EQ(f.emergency, 1);
  EXPECT_EQ(f.review_pending, 1);
}

TEST(Dora, NothingToMeasure) {
  const Figures f = figures({}, 0, kDay);
  EXPECT_EQ(f.deployments, 0);
  EXPECT_FALSE(f.lead_p50_s);
  EXPECT_DOUBLE_EQ(f.failure_rate, 0);
  EXPECT_TRUE(f.to_json()["lead_time_seconds"]["p50"].is_null());
}

TEST(Dora, PercentileIsNearestRank) {
  EXPECT_FALSE(percentile({}, 0.5));
  EXPECT_DOUBLE_EQ(*percentile({5}, 0.9), 5);
  EXPECT_DOUBLE_EQ(*percentile({4, 1, 3, 2}, 0.5), 2);
  EXPECT_DOUBLE_EQ(*percentile({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.9), 9);
}

}  // namespace
}  // namespace sluice::control::changes
