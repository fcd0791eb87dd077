#include "upstream/round_robin.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice::upstream {
namespace {

std::vector<int> counts(LoadBalancer& lb, size_t n, int picks, const PickContext& ctx = {}) {
  std::vector<int> c(n, 0);
  for (int i = 0; i < picks; ++i) {
    int p = lb.pick(ctx);
    EXPECT_GE(p, 0);
    if (p >= 0) ++c[p];
  }
  return c;
}

TEST(RoundRobinTest, EqualWeightsRotate) {
  std::vector<EndpointState> eps(3);
  RoundRobin rr(eps, 0);
  std::string seq;
  for (int i = 0; i < 6; ++i) seq += std::to_string(rr.pick({}));
  EXPECT_EQ(seq, "012012");
}

TEST(RoundRobinTest, SmoothWeightedSequence) {
  // nginx's example: weights 5,1,1 give a a b a c a a, not a a a a a b c.
  std::vector<EndpointState> eps = {{5, 0, true}, {1, 0, true}, {1, 0, true}};
  RoundRobin rr(eps, 0);
  std::string seq;
  for (int i = 0; i < 7; ++i) seq += static_cast<char>('a' + rr.pick({}));
  EXPECT_EQ(seq, "aabacaa");
}

TEST(RoundRobinTest, WeightedDistributionIsExactOverFullCycles) {
  std::vector<EndpointState> eps = {{1, 0, true}, {2, 0, true}, {7, 0, true}};
  RoundRobin rr(eps, 12345);
  auto c = counts(rr, eps.size(), 10000);
  EXPECT_EQ(c[0], 1000);
  EXPECT_EQ(c[1], 2000);
  EXPECT_EQ(c[2], 7000);
}

TEST(RoundRobinTest, SkipsUnhealthyAndWeightZero) {
  std::vector<EndpointState> eps = {{1, 0, true}, {1, 0, false}, {0, 0, true}, {1, 0, true}};
  RoundRobin rr(eps, 0);
  auto c = counts(rr, eps.size(), 1000);
  EXPECT_EQ(c[0], 500);
  EXPECT_EQ(c[1], 0);
  EXPECT_EQ(c[2], 0);
  EXPECT_EQ(c[3], 500);
}

TEST(RoundRobinTest, RecoveredEndpointRejoinsWithoutBurst) {
  std::vector<EndpointState> eps(2);
  RoundRobin rr(eps, 0);
  eps[1].healthy = false;
  for (int i = 0; i < 100; ++i) EXPECT_EQ(rr.pick({}), 0);
  eps[1].healthy = true;
  auto c = counts(rr, 2, 10);
  EXPECT_EQ(c[0], 5);
  EXPECT_EQ(c[1], 5);
}

TEST(RoundRobinTest, SkipsTriedEndpoints) {
  std::vector<EndpointState> eps(3);
  RoundRobin rr(eps, 0);
  const uint32_t tried[] = {0, 2};
  PickContext ctx;
  ctx.tried = tried;
  for (int i = 0; i < 10; ++i) EXPECT_EQ(rr.pick(ctx), 1);
}

TEST(RoundRobinTest, AllHealthyTriedReturnsATriedOne) {
  std::vector<EndpointState> eps = {{1, 0, true}, {1, 0, false}};
  RoundRobin rr(eps, 0);
  const uint32_t tried[] = {0};
  PickContext ctx;
  ctx.tried = tried;
  EXPECT_EQ(rr.pick(ctx), 0);
}

TEST(RoundRobinTest, NoHealthyEndpointGivesMinusOne) {
  std::vector<EndpointState> eps = {{1, 0, false}, {1, 0, false}};
  RoundRobin rr(eps, 0);
  EXPECT_EQ(rr.pick({}), -1);
  const uint32_t tried[] = {0, 1};
  PickContext ctx;
  ctx.tried = tried;
  EXPECT_EQ(rr.pick(ctx), -1);
  std::vector<EndpointState> none;
  RoundRobin empty(none, 0);
  EXPECT_EQ(empty.pick({}), -1);
}

TEST(RoundRobinTest, SeedRotatesTheStartButIsDeterministic) {
  std::vector<EndpointState> eps(4);
  RoundRobin a(eps, 1), b(eps, 1), c(eps, 2);
  EXPECT_EQ(a.pick({}), 1);
  EXPECT_EQ(b.pick({}), 1);
  EXPECT_EQ(c.pick({}), 2);
}

}  // namespace
}  // namespace sluice::upstream
