#include "control/cmdb/accuracy.h"

#include <gtest/gtest.h>

namespace sluice::control::cmdb {
namespace {

TEST(CmdbAccuracy, RatioOfNothingIsOneAndKeepsItsCounts) {
  EXPECT_DOUBLE_EQ((Ratio{0, 0}).value(), 1.0);
  EXPECT_DOUBLE_EQ((Ratio{3, 4}).value(), 0.75);
  Ratio r{1, 2};
  r += Ratio{2, 3};
  EXPECT_EQ(r, (Ratio{3, 5}));
}

TEST(CmdbAccuracy, ScoreIsTheMeanOfTheFiveOverallFigures) {
  Accuracy a;
  a.correctness = {17, 18};
  a.completeness = {12, 14};
  a.freshness = {6, 7};
  a.precision = {1, 1};
  a.recall = {1, 2};
  EXPECT_DOUBLE_EQ(a.score(), (17.0 / 18 + 12.0 / 14 + 6.0 / 7 + 1.0 + 0.5) / 5);
}

TEST(CmdbAccuracy, JsonHasOverallAndPerTypeFigures) {
  Accuracy a;
  a.types.push_back({"instance", {17, 18}, {6, 6}, {2, 3}});
  a.correctness = {17, 18};
  a.completeness = {6, 6};
  a.freshness = {2, 3};
  auto j = to_json(a);
  EXPECT_DOUBLE_EQ(j["score"].get<double>(), a.score());
  EXPECT_EQ(j["overall"]["correctness"]["num"], 17);
  EXPECT_EQ(j["overall"]["correctness"]["den"], 18);
  EXPECT_DOUBLE_EQ(j["overall"]["recall"]["value"].get<double>(), 1.0);
  EXPECT_EQ(j["overall"]["recall"]["den"], 0);
  EXPECT_DOUBLE_EQ(j["types"]["instance"]["freshness"]["value"].get<double>(), 2.0 / 3);
}

}  // namespace
}  // namespace sluice::control::cmdb
