#include "core/inline_function.h"

#include <gtest/gtest.h>

#include <array>
#include <memory>

namespace sluice::core {
namespace {

using Handler = InlineFunction<void(int, size_t), 32>;

TEST(InlineFunctionTest, EventLoopHandlersFitInline) {
  auto self = std::make_shared<int>(1);
  uint64_t gen = 7;
  auto read = [self](int, size_t) {};
  auto write = [self, gen](int, size_t) {};
  static_assert(Handler::fits<decltype(read)>);
  static_assert(Handler::fits<decltype(write)>);
  auto big = [a = std::array<char, 64>{}](int, size_t) {};
  static_assert(!Handler::fits<decltype(big)>);
  SUCCEED();
}

TEST(InlineFunctionTest, CallsWithArgumentsAndReturns) {
  int seen_err = 0;
  size_t seen_n = 0;
  Handler h = [&](int err, size_t n) {
    seen_err = err;
    seen_n = n;
  };
  ASSERT_TRUE(h);
  h(5, 42);
  EXPECT_EQ(seen_err, 5);
  EXPECT_EQ(seen_n, 42u);
  InlineFunction<int(int)> twice = [](int x) { return 2 * x; };
  EXPECT_EQ(twice(21), 42);
}

TEST(InlineFunctionTest, EmptyAndReset) {
  Handler h;
  EXPECT_FALSE(h);
  Handler n = nullptr;
  EXPECT_FALSE(n);
  auto owner = std::make_shared<int>(0);
  h = [owner](int, size_t) {};
  EXPECT_EQ(owner.use_count(), 2);
  h = nullptr;
  EXPECT_FALSE(h);
  EXPECT_EQ(owner.use_count(), 1) << "the target is destroyed when the handler is emptied";
}

TEST(InlineFunctionTest, MoveTransfersOwnershipExactlyOnce) {
  auto owner = std::make_shared<int>(0);
  int calls = 0;
  Handler a = [owner, &calls](int, size_t) { ++calls; };
  Handler b = std::move(a);
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from is empty, by contract
  EXPECT_TRUE(b);
  EXPECT_EQ(owner.use_count(), 2);
  Handler c;
  c = std::move(b);
  EXPECT_EQ(owner.use_count(), 2);
  c(0, 0);
  EXPECT_EQ(calls, 1);
  { Handler d = std::move(c); }
  EXPECT_EQ(owner.use_count(), 1);
}

TEST(InlineFunctionTest, MoveOnlyTargetsAndLargeTargetsOnTheHeap) {
  auto p = std::make_unique<int>(9);
  int got = 0;
  Handler h = [p = std::move(p), &got](int, size_t) { got = *p; };
  h(0, 0);
  EXPECT_EQ(got, 9);

  auto owner = std::make_shared<int>(0);
  std::array<char, 100> big{};
  big[99] = 'z';
  char seen = 0;
  Handler large = [big, owner, &seen](int, size_t) { seen = big[99]; };
  Handler moved = std::move(large);
  moved(0, 0);
  EXPECT_EQ(seen, 'z');
  EXPECT_EQ(owner.use_count(), 2);
  moved = nullptr;
  EXPECT_EQ(owner.use_count(), 1);
}

TEST(InlineFunctionTest, SelfAssignmentKeepsTarget) {
  int calls = 0;
  Handler h = [&calls](int, size_t) { ++calls; };
  Handler& alias = h;
  h = std::move(alias);
  ASSERT_TRUE(h);
  h(0, 0);
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace sluice::core
