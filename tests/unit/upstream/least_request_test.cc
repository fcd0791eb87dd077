#include "upstream/least_request.h"

#include <gtest/gtest.h>

#include <vector>

namespace sluice::upstream {
namespace {

TEST(LeastRequestTest, SpreadsEvenlyAtIdle) {
  std::vector<EndpointState> eps(4);
  LeastRequest lb(eps, 42);
  std::vector<int> c(4, 0);
  for (int i = 0; i < 10000; ++i) ++c[lb.pick({})];
  for (int n : c) EXPECT_NEAR(n, 2500, 250);
}

TEST(LeastRequestTest, PrefersIdleEndpoints) {
  std::vector<EndpointState> eps(4);
  eps[0].active = 10;
  eps[1].active = 10;
  eps[2].active = 10;
  eps[3].active = 0;
  LeastRequest lb(eps, 7);
  int idle = 0;
  for (int i = 0; i < 10000; ++i) idle += lb.pick({}) == 3;
  // Endpoint 3 wins every pair it is drawn into: 1 - P(not drawn) = 1 - (3/4 * 2/3) = 1/2.
  EXPECT_NEAR(idle, 5000, 300);
  EXPECT_GT(idle, 2500 + 1000);  // clearly more than its uniform share
}

TEST(LeastRequestTest, BalancesLoadAsRequestsStayInFlight) {
  std::vector<EndpointState> eps(5);
  LeastRequest lb(eps, 99);
  for (int i = 0; i < 1000; ++i) ++eps[lb.pick({})].active;
  for (const EndpointState& e : eps) EXPECT_NEAR(e.active, 200, 10);
}

TEST(LeastRequestTest, WeightsCountAtIdleAndUnderLoad) {
  std::vector<EndpointState> eps = {{1, 0, true}, {3, 0, true}};
  LeastRequest lb(eps, 5);
  int heavy = 0;
  for (int i = 0; i < 1000; ++i) heavy += lb.pick({}) == 1;
  EXPECT_EQ(heavy, 1000);  // two endpoints: always both drawn, (0+1)/3 < (0+1)/1

  // In flight: load settles in proportion to weight.
  for (int i = 0; i < 4000; ++i) ++eps[lb.pick({})].active;
  EXPECT_NEAR(eps[0].active, 1000, 5);
  EXPECT_NEAR(eps[1].active, 3000, 5);
}

TEST(LeastRequestTest, SkipsUnhealthyWeightZeroAndTried) {
  std::vector<EndpointState> eps(6);
  eps[0].healthy = false;
  eps[1].weight = 0;
  eps[2].healthy = false;
  eps[4].healthy = false;
  const uint32_t tried[] = {5};
  PickContext ctx;
  ctx.tried = tried;
  LeastRequest lb(eps, 3);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(lb.pick(ctx), 3);
}

TEST(LeastRequestTest, AllHealthyTriedReturnsATriedOne) {
  std::vector<EndpointState> eps(3);
  eps[1].healthy = false;
  const uint32_t tried[] = {0, 2};
  PickContext ctx;
  ctx.tried = tried;
  LeastRequest lb(eps, 3);
  for (int i = 0; i < 100; ++i) {
    int p = lb.pick(ctx);
    EXPECT_TRUE(p == 0 || p == 2) << p;
  }
}

TEST(LeastRequestTest, NoHealthyEndpointGivesMinusOne) {
  std::vector<EndpointState> eps(3);
  for (auto& e : eps) e.healthy = false;
  LeastRequest lb(eps, 1);
  EXPECT_EQ(lb.pick({}), -1);
  std::vector<EndpointState> none;
  LeastRequest empty(none, 1);
  EXPECT_EQ(empty.pick({}), -1);
}

TEST(LeastRequestTest, SingleEndpoint) {
  std::vector<EndpointState> eps(1);
  eps[0].active = 100;
  LeastRequest lb(eps, 1);
  EXPECT_EQ(lb.pick({}), 0);
}

TEST(LeastRequestTest, SameSeedSameChoices) {
  std::vector<EndpointState> eps(8);
  LeastRequest a(eps, 2024), b(eps, 2024), c(eps, 2025);
  int differ = 0;
  for (int i = 0; i < 200; ++i) {
    int pa = a.pick({});
    EXPECT_EQ(pa, b.pick({}));
    differ += pa != c.pick({});
  }
  EXPECT_GT(differ, 50);
}

}  // namespace
}  // namespace sluice::upstream
