#include "core/random.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <set>
#include <thread>
#include <vector>

namespace sluice::core {
namespace {

TEST(RngTest, SeededSequencesRepeat) {
  Rng a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    uint64_t x = a.next_u64();
    EXPECT_EQ(x, b.next_u64());
    differs |= x != c.next_u64();
  }
  EXPECT_TRUE(differs);
}

TEST(RngTest, EntropySeededGeneratorsDiffer) {
  Rng a, b;
  EXPECT_NE(a.next_u64(), b.next_u64());
}

TEST(RngTest, ZeroSeedIsNotDegenerate) {
  Rng r(0);
  std::set<uint64_t> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(r.next_u64());
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(RngTest, UniformStaysInRange) {
  Rng r(7);
  EXPECT_EQ(r.uniform(1), 0u);
  for (uint64_t n : {2ull, 3ull, 10ull, 1000ull, (1ull << 63) + 1, ~0ull}) {
    for (int i = 0; i < 1000; ++i) EXPECT_LT(r.uniform(n), n);
  }
}

TEST(RngTest, UniformIsRoughlyUniform) {
  Rng r(12345);
  constexpr int kBins = 10;
  constexpr int kDraws = 100000;
  int counts[kBins] = {};
  for (int i = 0; i < kDraws; ++i) ++counts[r.uniform(kBins)];
  // Chi-square with 9 degrees of freedom; 27.9 is the 0.999 quantile.
  double chi2 = 0;
  for (int c : counts) {
    double d = c - kDraws / kBins;
    chi2 += d * d / (kDraws / kBins);
  }
  EXPECT_LT(chi2, 27.9);
}

TEST(RngTest, NextDoubleInUnitInterval) {
  Rng r(99);
  double sum = 0;
  for (int i = 0; i < 100000; ++i) {
    double d = r.next_double();
    ASSERT_GE(d, 0.0);
    ASSERT_LT(d, 1.0);
    sum += d;
  }
  EXPECT_NEAR(sum / 100000, 0.5, 0.01);
}

TEST(RngTest, WorksWithStandardDistributions) {
  Rng r(5);
  std::vector<int> v(50);
  std::iota(v.begin(), v.end(), 0);
  std::shuffle(v.begin(), v.end(), r);
  EXPECT_TRUE(std::is_permutation(v.begin(), v.end(), std::vector<int>(v).begin()));
  std::uniform_int_distribution<int> dist(1, 6);
  for (int i = 0; i < 100; ++i) {
    int x = dist(r);
    EXPECT_GE(x, 1);
    EXPECT_LE(x, 6);
  }
}

TEST(RngTest, ThreadRngIsPerThread) {
  Rng* main_rng = &thread_rng();
  EXPECT_EQ(main_rng, &thread_rng());
  Rng* other = nullptr;
  uint64_t other_first = 0;
  std::thread t([&] {
    other = &thread_rng();
    other_first = other->next_u64();
  });
  t.join();
  EXPECT_NE(main_rng, other);
  EXPECT_NE(main_rng->next_u64(), other_first);
}

}  // namespace
}  // namespace sluice::core
