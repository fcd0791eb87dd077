#include "upstream/locality.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "upstream/round_robin.h"

namespace sluice::upstream {
namespace {

config::Endpoint ep(std::string city, std::string zone = "", uint32_t weight = 1) {
  config::Endpoint e;
  e.address = core::HostPort{"127.0.0.1", 9000};
  e.city = std::move(city);
  e.zone = std::move(zone);
  e.weight = weight;
  return e;
}

config::Locality locality(config::Locality::Prefer prefer, double failover = 0.7,
                          double panic = 0.25) {
  config::Locality l;
  l.prefer = prefer;
  l.failover_threshold = failover;
  l.panic_threshold = panic;
  return l;
}

constexpr auto kNone = config::Locality::Prefer::kNone;
constexpr auto kSameCity = config::Locality::Prefer::kSameCity;
constexpr auto kSameZone = config::Locality::Prefer::kSameZone;

// A service's endpoints with the per-request inputs of apply().
struct Service {
  Service(const config::Locality& cfg, std::string_view city, std::string_view zone,
          std::vector<config::Endpoint> eps)
      : endpoints(std::move(eps)),
        plan(cfg, city, zone, endpoints),
        states(endpoints.size()),
        available(endpoints.size(), 1) {
    for (size_t i = 0; i < endpoints.size(); ++i) states[i].weight = endpoints[i].weight;
  }

  LocalityPlan::Choice apply(double u, std::vector<uint32_t> tried = {},
                             std::string_view only_city = {}) {
    return plan.apply(states, available, tried, u, only_city);
  }
  // Indices marked healthy by the last apply, e.g. "023".
  std::string healthy() const {
    std::string s;
    for (size_t i = 0; i < states.size(); ++i) {
      if (states[i].healthy) s += static_cast<char>('0' + i);
    }
    return s;
  }
  void down(std::initializer_list<size_t> which) {
    for (size_t i : which) available[i] = 0;
  }

  std::vector<config::Endpoint> endpoints;
  LocalityPlan plan;
  std::vector<EndpointState> states;
  std::vector<uint8_t> available;
};

constexpr int kSteps = 100000;

// How many of kSteps evenly spaced u in [0, 1) land on each tier.
std::vector<int> tier_counts(Service& s, int tiers) {
  std::vector<int> counts(tiers, 0);
  for (int i = 0; i < kSteps; ++i) {
    auto c = s.apply((i + 0.5) / kSteps);
    EXPECT_GE(c.tier, 0);
    if (c.tier >= 0) ++counts[c.tier];
  }
  return counts;
}

std::vector<double> tier_shares(Service& s, int tiers) {
  std::vector<double> shares;
  for (int c : tier_counts(s, tiers)) shares.push_back(static_cast<double>(c) / kSteps);
  return shares;
}

TEST(LocalityTest, AllLocalWhileHealthy) {
  Service s(locality(kSameCity), "a", "a1", {ep("a"), ep("b"), ep("a"), ep("b")});
  EXPECT_EQ(s.plan.tiers(), 2);
  EXPECT_EQ(s.plan.tier(0), 0);
  EXPECT_EQ(s.plan.tier(1), 1);
  EXPECT_EQ(s.plan.city(1), "b");
  EXPECT_TRUE(s.plan.local_city(2));
  EXPECT_FALSE(s.plan.local_city(3));
  for (double u : {0.0, 0.3, 0.7, 0.999999}) {
    auto c = s.apply(u);
    EXPECT_EQ(c.tier, 0);
    EXPECT_FALSE(c.panic);
    EXPECT_EQ(s.healthy(), "02");
  }
}

TEST(LocalityTest, HealthyShareAboveThresholdKeepsEverythingLocal) {
  // 3 of 4 local endpoints (75% >= 70%): no spill.
  Service s(locality(kSameCity), "a", "", {ep("a"), ep("a"), ep("a"), ep("a"), ep("b")});
  s.down({3});
  EXPECT_EQ(tier_counts(s, 2)[0], kSteps);
}

TEST(LocalityTest, HalfLocalAvailableKeepsShareOverThreshold) {
  Service s(locality(kSameCity, 0.7), "a", "", {ep("a"), ep("a"), ep("b"), ep("b")});
  s.down({1});
  // Local keeps 0.5 / 0.7 = 71.4% of the traffic; u below that stays, from it on spills.
  const double keep = 0.5 / 0.7;
  auto c = s.apply(std::nextafter(keep, 0.0));
  EXPECT_EQ(c.tier, 0);
  EXPECT_EQ(s.healthy(), "0");
  c = s.apply(keep);
  EXPECT_EQ(c.tier, 1);
  EXPECT_EQ(s.healthy(), "23");
  c = s.apply(0.0);
  EXPECT_EQ(c.tier, 0);
  c = s.apply(std::nextafter(1.0, 0.0));
  EXPECT_EQ(c.tier, 1);
  auto shares = tier_shares(s, 2);
  EXPECT_NEAR(shares[0], keep, 1e-4);
  EXPECT_NEAR(shares[1], 1 - keep, 1e-4);
}

TEST(LocalityTest, LocalFullyDownSendsEverythingToOtherCity) {
  Service s(locality(kSameCity), "a", "", {ep("a"), ep("a"), ep("b"), ep("b")});
  s.down({0, 1});
  for (double u : {0.0, 0.5, 0.999999}) {
    auto c = s.apply(u);
    EXPECT_EQ(c.tier, 1);
    EXPECT_FALSE(c.panic);  // half of all endpoints are up
    EXPECT_EQ(s.healthy(), "23");
  }
}

TEST(LocalityTest, LastTierKeepsWhatReachesItEvenWhenPartlyDown) {
  Service s(locality(kSameCity, 0.7, 0.0), "a", "", {ep("a"), ep("a"), ep("b"), ep("b")});
  s.down({0, 1, 3});
  EXPECT_EQ(tier_counts(s, 2)[1], kSteps);
  EXPECT_EQ(s.healthy(), "2");
}

TEST(LocalityTest, ZonePreference) {
  // Node in city a, zone a1: same zone first, then the other zone of the city, then city b.
  Service s(locality(kSameZone), "a", "a1",
            {ep("a", "a1"), ep("a", "a2"), ep("b", "b1"), ep("a", "a1")});
  EXPECT_EQ(s.plan.tiers(), 3);
  EXPECT_EQ(s.plan.tier(0), 0);
  EXPECT_EQ(s.plan.tier(1), 1);
  EXPECT_EQ(s.plan.tier(2), 2);
  EXPECT_TRUE(s.plan.local_city(1));
  EXPECT_EQ(s.apply(0.99).tier, 0);
  EXPECT_EQ(s.healthy(), "03");

  s.down({0, 3});
  EXPECT_EQ(s.apply(0.99).tier, 1);
  EXPECT_EQ(s.healthy(), "1");

  s.down({1});
  EXPECT_EQ(s.apply(0.0).tier, 2);
  EXPECT_EQ(s.healthy(), "2");
}

TEST(LocalityTest, ZoneSpillCascadesThroughTiers) {
  // Tiers 0 and 1 each half available: tier 0 keeps k = 0.5/0.7, tier 1 keeps k of the rest,
  // city b gets what is left.
  Service s(locality(kSameZone, 0.7), "a", "a1",
            {ep("a", "a1"), ep("a", "a1"), ep("a", "a2"), ep("a", "a2"), ep("b", "b1")});
  s.down({1, 3});
  const double k = 0.5 / 0.7;
  auto shares = tier_shares(s, 3);
  EXPECT_NEAR(shares[0], k, 1e-4);
  EXPECT_NEAR(shares[1], (1 - k) * k, 1e-4);
  EXPECT_NEAR(shares[2], (1 - k) * (1 - k), 1e-4);
}

TEST(LocalityTest, ZoneFallsBackToCityWithoutNodeZone) {
  Service s(locality(kSameZone), "a", "", {ep("a", "a1"), ep("a", "a2"), ep("b", "b1")});
  EXPECT_EQ(s.plan.tiers(), 2);
  EXPECT_EQ(s.apply(0.5).tier, 0);
  EXPECT_EQ(s.healthy(), "01");
}

TEST(LocalityTest, WeightsMatter) {
  // Local share is counted by weight, not by endpoint count.
  Service s(locality(kSameCity, 0.7), "a", "", {ep("a", "", 3), ep("a", "", 1), ep("b")});
  s.down({1});  // 3 of 4 weight available: 75% >= 70%, all local
  EXPECT_EQ(tier_counts(s, 2)[0], kSteps);

  s.available = {0, 1, 1};  // 1 of 4 weight available: local keeps 0.25 / 0.7
  const double keep = 0.25 / 0.7;
  EXPECT_EQ(s.apply(std::nextafter(keep, 0.0)).tier, 0);
  EXPECT_EQ(s.healthy(), "1");
  EXPECT_EQ(s.apply(keep).tier, 1);
  EXPECT_EQ(s.healthy(), "2");
}

TEST(LocalityTest, DrainedEndpointCountsAsUnavailable) {
  Service s(locality(kSameCity, 0.7), "a", "", {ep("a"), ep("a"), ep("b")});
  s.states[1].weight = 0;
  const double keep = 0.5 / 0.7;
  EXPECT_EQ(s.apply(std::nextafter(keep, 0.0)).tier, 0);
  EXPECT_EQ(s.healthy(), "0");
  EXPECT_EQ(s.apply(keep).tier, 1);
}

TEST(LocalityTest, TriedEndpointsPushToTheNextTier) {
  Service s(locality(kSameCity), "a", "", {ep("a"), ep("a"), ep("b"), ep("b")});
  EXPECT_EQ(s.apply(0.1, {0}).tier, 0);
  EXPECT_EQ(s.healthy(), "1");
  // Retry after connect failures on every city-a endpoint: city b.
  EXPECT_EQ(s.apply(0.1, {0, 1}).tier, 1);
  EXPECT_EQ(s.healthy(), "23");
  EXPECT_EQ(s.apply(0.1, {1, 0, 2}).tier, 1);
  EXPECT_EQ(s.healthy(), "3");
  // Everything tried: the chosen tier's available endpoints may be reused.
  EXPECT_EQ(s.apply(0.1, {0, 1, 2, 3}).tier, 0);
  EXPECT_EQ(s.healthy(), "01");
}

TEST(LocalityTest, TriedSpillTierFallsBackToEarlierTier) {
  Service s(locality(kSameCity, 0.7), "a", "", {ep("a"), ep("a"), ep("b")});
  s.down({1});
  // u lands in the spill share (tier 1), but b was tried: back to the untried local endpoint.
  EXPECT_EQ(s.apply(0.9, {2}).tier, 0);
  EXPECT_EQ(s.healthy(), "0");
  // Nothing untried is available: tier 1 again, reusing b; the unavailable a1 is never offered.
  EXPECT_EQ(s.apply(0.9, {0, 2}).tier, 1);
  EXPECT_EQ(s.healthy(), "2");
}

TEST(LocalityTest, RetryGoesToOtherCityThroughTheBalancer) {
  Service s(locality(kSameCity), "a", "", {ep("a"), ep("b"), ep("a")});
  RoundRobin rr(s.states, 0);
  std::vector<uint32_t> tried;
  for (int attempt = 0; attempt < 3; ++attempt) {
    s.apply(0.2, tried);
    PickContext ctx;
    ctx.tried = tried;
    int idx = rr.pick(ctx);
    ASSERT_GE(idx, 0);
    tried.push_back(static_cast<uint32_t>(idx));
  }
  EXPECT_EQ(s.plan.city(tried[0]), "a");
  EXPECT_EQ(s.plan.city(tried[1]), "a");
  EXPECT_NE(tried[0], tried[1]);
  EXPECT_EQ(tried[2], 1u);
}

TEST(LocalityTest, PanicBelowThresholdIgnoresHealth) {
  Service s(locality(kSameCity, 0.7, 0.5), "a", "", {ep("a"), ep("a"), ep("b"), ep("b")});
  s.down({0, 1, 2});  // 25% available < 50%
  auto c = s.apply(0.9);
  EXPECT_TRUE(c.panic);
  EXPECT_EQ(c.tier, 0);
  EXPECT_EQ(s.healthy(), "01");  // the preferred tier, health ignored
  c = s.apply(0.9, {0, 1});
  EXPECT_TRUE(c.panic);
  EXPECT_EQ(c.tier, 1);
  EXPECT_EQ(s.healthy(), "23");
  c = s.apply(0.9, {0, 1, 2, 3});
  EXPECT_EQ(c.tier, 0);
  EXPECT_EQ(s.healthy(), "01");

  s.available = {0, 1, 0, 1};  // 50%: not below the threshold
  c = s.apply(0.0);
  EXPECT_FALSE(c.panic);
  EXPECT_EQ(s.healthy(), "1");
}

TEST(LocalityTest, NothingAvailableWithoutPanicPicksNothing) {
  Service s(locality(kSameCity, 0.7, 0.0), "a", "", {ep("a"), ep("b")});
  s.down({0, 1});
  auto c = s.apply(0.5);
  EXPECT_EQ(c.tier, -1);
  EXPECT_FALSE(c.panic);
  EXPECT_EQ(s.healthy(), "");
}

TEST(LocalityTest, OnlyCityRestrictsAndNeverSpills) {
  Service s(locality(kSameCity, 0.7), "a", "", {ep("a"), ep("b"), ep("b"), ep("a")});
  auto c = s.apply(0.0, {}, "b");
  EXPECT_EQ(c.tier, 1);
  EXPECT_EQ(s.healthy(), "12");

  // Half of b down: all of it still stays in b.
  s.down({1});
  for (double u : {0.0, 0.9, 0.999999}) {
    c = s.apply(u, {}, "b");
    EXPECT_EQ(c.tier, 1);
    EXPECT_EQ(s.healthy(), "2");
  }
  // Every b endpoint tried: reuse b rather than go to a.
  c = s.apply(0.0, {2}, "b");
  EXPECT_EQ(c.tier, 1);
  EXPECT_EQ(s.healthy(), "2");

  // City a fully down, panic disabled: nothing rather than city b.
  Service t(locality(kSameCity, 0.7, 0.0), "a", "", {ep("a"), ep("b"), ep("a")});
  t.down({0, 2});
  c = t.apply(0.5, {}, "a");
  EXPECT_EQ(c.tier, -1);
  EXPECT_EQ(t.healthy(), "");
  // Panic is judged on the whole service: one of three endpoints (city b) is up, a third of
  // the weight, above 0.25: no panic, so nothing (the caller answers 503 at once).
  Service q(locality(kSameCity, 0.7, 0.25), "a", "", {ep("a"), ep("b"), ep("a")});
  q.down({0, 2});
  c = q.apply(0.5, {}, "a");
  EXPECT_EQ(c.tier, -1);
  EXPECT_FALSE(c.panic);
  // Below the threshold (a third < 0.5), the city's own endpoints are offered despite health.
  Service p(locality(kSameCity, 0.7, 0.5), "a", "", {ep("a"), ep("b"), ep("a")});
  p.down({0, 2});
  c = p.apply(0.5, {}, "a");
  EXPECT_TRUE(c.panic);
  EXPECT_EQ(p.healthy(), "02");
}

TEST(LocalityTest, OnlyCityWithoutEndpointsReturnsNone) {
  Service s(locality(kSameCity), "a", "", {ep("a"), ep("b")});
  auto c = s.apply(0.0, {}, "c");
  EXPECT_EQ(c.tier, -1);
  EXPECT_EQ(s.healthy(), "");
}

TEST(LocalityTest, PreferNoneTreatsAllAlike) {
  Service s(locality(kNone), "a", "a1", {ep("a", "a1"), ep("b", "b1"), ep("a", "a2")});
  EXPECT_EQ(s.plan.tiers(), 1);
  EXPECT_EQ(s.plan.tier(1), 0);
  EXPECT_FALSE(s.plan.local_city(1));  // still reported as cross-city for metrics
  EXPECT_EQ(s.apply(0.9).tier, 0);
  EXPECT_EQ(s.healthy(), "012");
}

TEST(LocalityTest, EmptyNodeCityTreatsAllAlike) {
  Service s(locality(kSameZone), "", "", {ep("a", "a1"), ep("b", "b1")});
  EXPECT_EQ(s.plan.tiers(), 1);
  EXPECT_TRUE(s.plan.local_city(0));
  EXPECT_TRUE(s.plan.local_city(1));
  EXPECT_EQ(s.apply(0.9).tier, 0);
  EXPECT_EQ(s.healthy(), "01");
  s.down({0});
  EXPECT_EQ(s.apply(0.0).tier, 0);
  EXPECT_EQ(s.healthy(), "1");
}

TEST(LocalityTest, NoEndpoints) {
  Service s(locality(kSameCity), "a", "", {});
  EXPECT_EQ(s.apply(0.5).tier, -1);
}

}  // namespace
}  // namespace sluice::upstream
