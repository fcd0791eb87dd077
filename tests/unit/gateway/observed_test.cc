// The observed-traffic tables: value checks, the cap on distinct values, counting per worker
// row and from other threads.
#include "gateway/observed.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "observability/metrics.h"

namespace sluice::gateway {
namespace {

using T = ObservedTable;

TEST(ObservedValue, ServiceNameCharactersOnly) {
  EXPECT_TRUE(observed_value_ok("accounts"));
  EXPECT_TRUE(observed_value_ok("a.b_c-D9"));
  EXPECT_TRUE(observed_value_ok(std::string(T::kMaxValueBytes, 'x')));
  EXPECT_FALSE(observed_value_ok(std::string(T::kMaxValueBytes + 1, 'x')));
  EXPECT_FALSE(observed_value_ok(""));
  for (std::string bad : {"a b", "a/b", "a\"b", "ü", "a\x01", "<script>", "a,b"})
    EXPECT_FALSE(observed_value_ok(bad)) << bad;
}

TEST(ObservedTable, InternsValuesAndCountsThem) {
  T t(3);
  EXPECT_EQ(t.intern(""), T::kNone);
  const uint32_t web = t.intern("web");
  const uint32_t app = t.intern("app");
  EXPECT_NE(web, app);
  EXPECT_EQ(t.intern("web"), web);
  EXPECT_EQ(t.name(web), "web");
  EXPECT_EQ(t.intern("bad value"), T::kInvalid);
  EXPECT_EQ(t.intern(std::string(100, 'a')), T::kInvalid);
  EXPECT_EQ(t.name(T::kInvalid), "invalid");
  EXPECT_EQ(t.name(T::kOther), "other");
  EXPECT_EQ(t.name(5), "");  // not claimed

  t.count(web, false);
  t.count(web, true);
  t.count(app, false);
  t.count(T::kNone, true);  // ignored
  EXPECT_EQ(t.requests(web), 2u);
  EXPECT_EQ(t.errors(web), 1u);
  EXPECT_EQ(t.requests(app), 1u);
  EXPECT_EQ(t.errors(app), 0u);
  EXPECT_EQ(t.requests(T::kNone), 0u);
}

TEST(ObservedTable, DistinctValuesAreCappedAndTheRestIsOther) {
  T t(2);
  for (uint32_t i = 0; i < T::kMaxValues; ++i) EXPECT_EQ(t.intern("v" + std::to_string(i)), i);
  EXPECT_EQ(t.intern("one-too-many"), T::kOther);
  EXPECT_EQ(t.intern("another"), T::kOther);
  EXPECT_EQ(t.intern("v7"), 7u);  // known values keep their entry
  // Every name a table can show: the kMaxValues values, other and invalid.
  size_t names = 0;
  for (uint32_t c = 0; c < T::kColumns; ++c) names += t.name(c).empty() ? 0 : 1;
  EXPECT_EQ(names, T::kColumns);
}

TEST(ObservedTable, WorkersAndOtherThreadsAddUp) {
  T t(3);  // two worker rows and the shared one
  const uint32_t c = t.intern("mobile");
  constexpr int kEach = 10'000;
  std::vector<std::thread> threads;
  for (unsigned slot : {0u, 1u, observability::kSharedSlot, observability::kSharedSlot, 5u}) {
    threads.emplace_back([&t, c, slot] {
      observability::set_thread_slot(slot);  // 5: beyond this table's rows, shares the last
      for (int i = 0; i < kEach; ++i) t.count(c, i % 2 == 0);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(t.requests(c), 5u * kEach);
  EXPECT_EQ(t.errors(c), 5u * kEach / 2);
}

TEST(ObservedTable, ConcurrentInternsStayWithinTheCap) {
  T t(1);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&t, k] {
      for (int i = 0; i < 200; ++i) {
        uint32_t c = t.intern("k" + std::to_string(k) + "-" + std::to_string(i));
        EXPECT_TRUE(c < T::kMaxValues || c == T::kOther);
        t.count(c, false);
      }
    });
  }
  for (auto& th : threads) th.join();
  uint64_t total = 0;
  for (uint32_t c = 0; c < T::kColumns; ++c) total += t.requests(c);
  EXPECT_EQ(total, 800u);
  EXPECT_EQ(t.requests(T::kOther), 800u - T::kMaxValues);
}

}  // namespace
}  // namespace sluice::gateway
