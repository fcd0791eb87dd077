// A change's states: only the documented moves.
#include "control/changes/states.h"

#include <gtest/gtest.h>

namespace sluice::control::changes {
namespace {

TEST(ChangeStates, OnlyTheDocumentedMoves) {
  EXPECT_TRUE(may_move("", "proposed"));
  EXPECT_TRUE(may_move("proposed", "approved"));
  EXPECT_TRUE(may_move("approved", "rolling_out"));
  EXPECT_TRUE(may_move("rolling_out", "done"));
  EXPECT_TRUE(may_move("done", "rolled_back"));
  EXPECT_TRUE(may_move("done", "done"));  // a review entry
  EXPECT_FALSE(may_move("proposed", "done"));
  EXPECT_FALSE(may_move("done", "approved"));
  EXPECT_FALSE(may_move("rejected", "approved"));
  EXPECT_FALSE(may_move("", "done"));
  EXPECT_TRUE(is_final("rolled_back"));
  EXPECT_FALSE(is_final("done"));
}

}  // namespace
}  // namespace sluice::control::changes
