#include "upstream/ring_hash.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice::upstream {
namespace {

std::vector<EndpointState> endpoints_with_ids(int n) {
  std::vector<EndpointState> eps(n);
  for (int i = 0; i < n; ++i) eps[i].id = hash_key("10.0.0." + std::to_string(i) + ":9101");
  return eps;
}

PickContext key(const std::string& k) {
  PickContext ctx;
  ctx.hash = hash_key(k);
  ctx.has_hash = true;
  return ctx;
}

TEST(RingHashTest, SameKeySameEndpoint) {
  auto eps = endpoints_with_ids(5);
  RingHash lb(eps, 1);
  RingHash other(eps, 999);  // the seed only matters for keyless picks
  for (int i = 0; i < 1000; ++i) {
    PickContext ctx = key("customer-" + std::to_string(i));
    int p = lb.pick(ctx);
    ASSERT_GE(p, 0);
    EXPECT_EQ(lb.pick(ctx), p);
    EXPECT_EQ(other.pick(ctx), p);
  }
}

TEST(RingHashTest, KeysSpreadByWeight) {
  std::vector<EndpointState> eps = endpoints_with_ids(3);
  eps[2].weight = 2;
  RingHash lb(eps, 1);
  EXPECT_EQ(lb.ring_size(), 4 * RingHash::kPointsPerWeight);
  std::vector<int> c(3, 0);
  for (int i = 0; i < 20000; ++i) ++c[lb.pick(key("k" + std::to_string(i)))];
  // Expected 5000 / 5000 / 10000; 160 points per weight unit leave some spread.
  EXPECT_NEAR(c[0], 5000, 1000);
  EXPECT_NEAR(c[1], 5000, 1000);
  EXPECT_NEAR(c[2], 10000, 1500);
}

TEST(RingHashTest, RemovingAnEndpointMovesOnlyItsKeys) {
  const int n = 10;
  auto eps = endpoints_with_ids(n);
  RingHash before(eps, 1);
  std::vector<EndpointState> fewer(eps.begin(), eps.end());
  fewer.erase(fewer.begin() + 3);  // indices after 3 shift down; ids keep placement stable
  RingHash after(fewer, 1);
  const int keys = 10000;
  int moved = 0;
  for (int i = 0; i < keys; ++i) {
    PickContext ctx = key("user" + std::to_string(i));
    const int b = before.pick(ctx);
    const uint64_t id_after = fewer[after.pick(ctx)].id;
    if (b == 3) continue;  // its keys have to move
    moved += eps[b].id != id_after;
  }
  EXPECT_EQ(moved, 0);
}

TEST(RingHashTest, AddingAnEndpointMovesAboutOneNth) {
  const int n = 10;
  auto eps = endpoints_with_ids(n + 1);
  std::vector<EndpointState> fewer(eps.begin(), eps.begin() + n);
  RingHash small(fewer, 1), big(eps, 1);
  const int keys = 20000;
  int moved = 0;
  for (int i = 0; i < keys; ++i) {
    PickContext ctx = key("acct-" + std::to_string(i));
    const int a = small.pick(ctx);
    const int b = big.pick(ctx);
    if (a != b) {
      EXPECT_EQ(b, n);  // keys only move to the new endpoint
      ++moved;
    }
  }
  EXPECT_NEAR(moved, keys / (n + 1), keys / (n + 1) / 3);
}

TEST(RingHashTest, UnhealthyEndpointsKeysWalkOnOthersStay) {
  auto eps = endpoints_with_ids(6);
  RingHash lb(eps, 1);
  std::vector<int> home(3000);
  for (int i = 0; i < 3000; ++i) home[i] = lb.pick(key(std::to_string(i)));
  eps[2].healthy = false;
  int moved = 0;
  for (int i = 0; i < 3000; ++i) {
    int p = lb.pick(key(std::to_string(i)));
    EXPECT_NE(p, 2);
    if (home[i] != 2) {
      EXPECT_EQ(p, home[i]);
    }
    moved += p != home[i];
  }
  EXPECT_NEAR(moved, 500, 200);
}

TEST(RingHashTest, TriedEndpointIsSkippedThenReusedWhenAllTried) {
  auto eps = endpoints_with_ids(3);
  RingHash lb(eps, 1);
  PickContext ctx = key("retry-me");
  const uint32_t first = static_cast<uint32_t>(lb.pick(ctx));
  uint32_t tried[3] = {first};
  ctx.tried = std::span<const uint32_t>(tried, 1);
  const int second = lb.pick(ctx);
  ASSERT_GE(second, 0);
  EXPECT_NE(static_cast<uint32_t>(second), first);
  tried[1] = static_cast<uint32_t>(second);
  ctx.tried = std::span<const uint32_t>(tried, 2);
  const int third = lb.pick(ctx);
  ASSERT_GE(third, 0);
  EXPECT_NE(static_cast<uint32_t>(third), first);
  EXPECT_NE(third, second);
  tried[2] = static_cast<uint32_t>(third);
  ctx.tried = std::span<const uint32_t>(tried, 3);
  EXPECT_EQ(lb.pick(ctx), static_cast<int>(first));  // all tried: the key's own endpoint
}

TEST(RingHashTest, NoHealthyEndpointGivesMinusOne) {
  auto eps = endpoints_with_ids(4);
  for (auto& e : eps) e.healthy = false;
  RingHash lb(eps, 1);
  EXPECT_EQ(lb.pick(key("x")), -1);
  EXPECT_EQ(lb.pick({}), -1);
  std::vector<EndpointState> none;
  RingHash empty(none, 1);
  EXPECT_EQ(empty.pick(key("x")), -1);
}

TEST(RingHashTest, WithoutKeyPicksRandomlyAndDeterministicallyBySeed) {
  auto eps = endpoints_with_ids(4);
  RingHash a(eps, 77), b(eps, 77);
  std::vector<int> c(4, 0);
  for (int i = 0; i < 8000; ++i) {
    int p = a.pick({});
    EXPECT_EQ(p, b.pick({}));
    ++c[p];
  }
  for (int n : c) EXPECT_NEAR(n, 2000, 600);
}

TEST(RingHashTest, WithoutIdsTheIndexPlacesEndpoints) {
  std::vector<EndpointState> eps(4);
  RingHash lb(eps, 1);
  std::vector<int> c(4, 0);
  for (int i = 0; i < 8000; ++i) ++c[lb.pick(key(std::to_string(i)))];
  for (int n : c) EXPECT_NEAR(n, 2000, 600);
}

TEST(RingHashTest, RingSizeIsCapped) {
  std::vector<EndpointState> eps = endpoints_with_ids(20);
  for (auto& e : eps) e.weight = 1000;
  RingHash lb(eps, 1);
  EXPECT_LE(lb.ring_size(), RingHash::kMaxPoints + eps.size());
  EXPECT_GE(lb.ring_size(), RingHash::kMaxPoints - eps.size());
  std::vector<int> c(20, 0);
  for (int i = 0; i < 20000; ++i) ++c[lb.pick(key(std::to_string(i)))];
  for (int n : c) EXPECT_NEAR(n, 1000, 400);
}

TEST(RingHashTest, WeightZeroAtConstructionStillServesWhenItIsAllThatIsLeft) {
  std::vector<EndpointState> eps = endpoints_with_ids(2);
  eps[1].weight = 0;
  RingHash lb(eps, 1);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(lb.pick(key(std::to_string(i))), 0);
  eps[0].healthy = false;
  eps[1].weight = 1;
  EXPECT_EQ(lb.pick(key("a")), 1);
}

}  // namespace
}  // namespace sluice::upstream
