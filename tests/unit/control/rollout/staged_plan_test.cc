// The VersionPlan of a staged rollout: what each gateway is served in each phase, generation
// moves, JSON round trip and refusal of damaged records, and readers racing a writer (run it
// under TSan: `make tsan`).
#include "control/rollout/staged_plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace sluice::control::rollout {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

TEST(StagedPlan, WhatEachGatewayIsServed) {
  StagedPlan plan;
  EXPECT_EQ(plan.version_for("gw-1", "a", 7), 7);  // idle: the latest
  EXPECT_EQ(plan.version_for("", "", 7), 7);
  int64_t g = plan.generation();

  plan.start("chg-1", 4, 5);
  EXPECT_GT(plan.generation(), g);
  EXPECT_EQ(plan.version_for("gw-1", "a", 5), 4);  // nobody selected yet

  g = plan.generation();
  plan.reach(1, Selection{{"gw-1"}, false});
  EXPECT_GT(plan.generation(), g);
  EXPECT_EQ(plan.version_for("gw-1", "a", 5), 5);
  EXPECT_EQ(plan.version_for("gw-2", "a", 5), 4);
  EXPECT_EQ(plan.version_for("newcomer", "a", 5), 4);
  EXPECT_EQ(plan.version_for("", "a", 5), 4);  // an anonymous poll never sees the change early

  plan.reach(2, Selection{{"gw-1"}, true});
  EXPECT_EQ(plan.version_for("gw-2", "b", 5), 5);
  EXPECT_EQ(plan.version_for("newcomer", "", 5), 5);
  EXPECT_EQ(plan.version_for("", "", 5), 5);

  g = plan.generation();
  plan.rollback();
  EXPECT_GT(plan.generation(), g);
  EXPECT_EQ(plan.version_for("gw-1", "a", 5), 4);
  EXPECT_EQ(plan.version_for("", "", 5), 4);
  EXPECT_EQ(plan.state().phase, StagedPlan::Phase::kRolledBack);
  // A stage after a rollback is ignored (the driver's late write cannot undo it).
  g = plan.generation();
  plan.reach(3, Selection{{"gw-1"}, true});
  EXPECT_EQ(plan.generation(), g);
  EXPECT_EQ(plan.version_for("gw-1", "a", 5), 4);

  plan.finish();
  EXPECT_EQ(plan.version_for("gw-1", "a", 6), 6);
  EXPECT_EQ(plan.state().phase, StagedPlan::Phase::kIdle);
}

TEST(StagedPlan, JsonRoundTrip) {
  StagedPlan plan;
  plan.start("chg-9", 11, 12);
  plan.reach(2, Selection{{"gw-b", "gw-a"}, false});
  Json j = plan.to_json();
  EXPECT_EQ(j["phase"], "rolling_out");
  EXPECT_EQ(j["change"], "chg-9");
  EXPECT_EQ(j["base_version"], 11);
  EXPECT_EQ(j["target_version"], 12);
  EXPECT_EQ(j["stage"], 2);
  EXPECT_EQ(j["selected"], Json({"gw-a", "gw-b"}));  // sorted: the same text every time
  EXPECT_EQ(j["all"], false);

  StagedPlan reloaded;
  EXPECT_TRUE(reloaded.load(Json::parse(j.dump())).empty());
  EXPECT_EQ(reloaded.to_json(), j);
  EXPECT_EQ(reloaded.version_for("gw-a", "", 12), 12);
  EXPECT_EQ(reloaded.version_for("gw-c", "", 12), 11);

  plan.rollback();
  EXPECT_TRUE(reloaded.load(plan.to_json()).empty());
  EXPECT_EQ(reloaded.version_for("gw-a", "", 12), 11);
}

TEST(StagedPlan, DamagedRecordChangesNothing) {
  StagedPlan plan;
  plan.start("chg-1", 1, 2);
  plan.reach(1, Selection{{"gw-1"}, false});
  const Json before = plan.to_json();
  const int64_t g = plan.generation();
  Json bad = before;
  bad["phase"] = "sideways";
  bad["base_version"] = -1;
  bad["selected"] = Json::array({"ok", "not ok", 3});
  bad.erase("stage");
  std::vector<std::string> errors = plan.load(bad);
  EXPECT_THAT(errors, ::testing::ElementsAre(HasSubstr("phase: expected idle"),
                                             HasSubstr("base_version: expected a version"),
                                             HasSubstr("stage: missing"),
                                             HasSubstr("selected[1]: expected a gateway id"),
                                             HasSubstr("selected[2]: expected a gateway id")));
  EXPECT_EQ(plan.to_json(), before);
  EXPECT_EQ(plan.generation(), g);
  EXPECT_FALSE(plan.load(Json::array()).empty());
  EXPECT_FALSE(plan.load(nullptr).empty());
  EXPECT_EQ(plan.to_json(), before);
}

// Readers poll as the fleet does while a writer moves through the stages and back; each answer
// is one of the two versions, and once the writer is done every reader sees the final state.
TEST(StagedPlan, ConcurrentReadersAndAWriter) {
  StagedPlan plan;
  plan.start("chg", 1, 2);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> wrong{0}, reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      const std::string id = "gw-" + std::to_string(t);
      while (!stop.load()) {
        int64_t g = plan.generation();
        int64_t v = plan.version_for(id, "a", 2);
        if (v != 1 && v != 2) ++wrong;
        (void)g;
        ++reads;
      }
    });
  }
  while (reads.load() == 0) std::this_thread::yield();  // a reader is running
  for (int round = 0; round < 200; ++round) {
    Selection s;
    for (int t = 0; t < 4; ++t)
      if ((round >> t) & 1) s.ids.insert("gw-" + std::to_string(t));
    plan.reach(static_cast<size_t>(round % kMaxStages), s);
    (void)plan.to_json();
  }
  plan.reach(1, Selection{{"gw-0", "gw-1", "gw-2", "gw-3"}, false});
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(wrong.load(), 0);
  for (int t = 0; t < 4; ++t) EXPECT_EQ(plan.version_for("gw-" + std::to_string(t), "a", 2), 2);
  EXPECT_EQ(plan.generation(), 202);
}

}  // namespace
}  // namespace sluice::control::rollout
