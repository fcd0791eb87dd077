#include "upstream/load_balancer.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace sluice::upstream {
namespace {

// Reference values of XXH64 with seed 0 (xxhsum -H1).
TEST(HashKeyTest, IsXxHash64) {
  EXPECT_EQ(hash_key(""), 0xEF46DB3751D8E999ULL);
  EXPECT_EQ(hash_key("a"), 0xD24EC4F1A98C6E5BULL);
  EXPECT_EQ(hash_key("abc"), 0x44BC2CF5AD770999ULL);
  EXPECT_EQ(hash_key("Nobody inspects the spammish repetition"), 0xFBCEA83C8A378BF1ULL);
}

TEST(HashKeyTest, SpreadsSimilarKeys) {
  std::set<uint64_t> low_bits;
  for (int i = 0; i < 4096; ++i) low_bits.insert(hash_key(std::to_string(i)) & 0xFFFF);
  EXPECT_GT(low_bits.size(), 3900u);  // ~3970 expected for a random function
}

TEST(MakeLoadBalancerTest, BuildsEveryPolicy) {
  std::vector<EndpointState> eps(3);
  for (auto policy : {config::LbPolicy::kRoundRobin, config::LbPolicy::kLeastRequest,
                      config::LbPolicy::kRingHash}) {
    config::LoadBalancer cfg;
    cfg.policy = policy;
    auto lb = make_load_balancer(cfg, eps, 1);
    ASSERT_NE(lb, nullptr);
    std::set<int> seen;
    for (int i = 0; i < 300; ++i) seen.insert(lb->pick({}));
    EXPECT_EQ(seen, (std::set<int>{0, 1, 2}));
  }
}

TEST(MakeLoadBalancerTest, EveryPolicyGivesMinusOneWithoutHealthyEndpoints) {
  std::vector<EndpointState> eps(3);
  for (auto& e : eps) e.healthy = false;
  const uint32_t tried[] = {1};
  PickContext ctx;
  ctx.tried = tried;
  ctx.has_hash = true;
  ctx.hash = 42;
  for (auto policy : {config::LbPolicy::kRoundRobin, config::LbPolicy::kLeastRequest,
                      config::LbPolicy::kRingHash}) {
    config::LoadBalancer cfg;
    cfg.policy = policy;
    auto lb = make_load_balancer(cfg, eps, 1);
    EXPECT_EQ(lb->pick({}), -1);
    EXPECT_EQ(lb->pick(ctx), -1);
  }
}

}  // namespace
}  // namespace sluice::upstream
