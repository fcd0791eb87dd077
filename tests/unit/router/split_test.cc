#include "router/split.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "router/router.h"
#include "upstream/load_balancer.h"

namespace sluice::router {
namespace {

config::Route split_route(std::vector<std::pair<uint32_t, bool>> weights) {
  config::Route r;
  r.name = "api";
  for (size_t i = 0; i < weights.size(); ++i) {
    r.services.push_back({"s" + std::to_string(i), weights[i].first, weights[i].second, 10 + i});
  }
  return r;
}

// Slot counts of n random picks.
std::vector<int> pick_many(const WeightedSplit& split, int n, uint64_t seed) {
  core::Rng rng(seed);
  std::vector<int> counts(split.size());
  http::HeaderMap none;
  for (int i = 0; i < n; ++i) ++counts[split.choose(none, rng)];
  return counts;
}

// |count - n p| within 5 standard deviations of Binomial(n, p): a correct picker fails this
// about once in 1.7 million runs; a picker off by a tenth of p fails it for these n.
void ExpectBinomial(int count, int n, double p) {
  const double mean = n * p;
  const double sd = std::sqrt(n * p * (1 - p));
  EXPECT_LE(std::abs(count - mean), 5 * sd) << count << " of " << n << ", p = " << p;
}

TEST(WeightedSplit, RandomChoiceFollowsTheWeights) {
  config::Route r = split_route({{90, false}, {10, false}});
  WeightedSplit split(r);
  EXPECT_EQ(split.total_weight(), 100u);
  EXPECT_EQ(split.entry(1).service_index, 11u);
  constexpr int kN = 200000;
  for (uint64_t seed : {1u, 2u, 3u}) {
    auto counts = pick_many(split, kN, seed);
    ExpectBinomial(counts[0], kN, 0.9);
    ExpectBinomial(counts[1], kN, 0.1);
  }
  // Three ways, uneven.
  config::Route r3 = split_route({{1, false}, {2, false}, {7, false}});
  WeightedSplit split3(r3);
  auto counts = pick_many(split3, kN, 42);
  ExpectBinomial(counts[0], kN, 0.1);
  ExpectBinomial(counts[1], kN, 0.2);
  ExpectBinomial(counts[2], kN, 0.7);
}

TEST(WeightedSplit, WeightZeroGetsNothing) {
  for (auto weights :
       std::vector<std::vector<std::pair<uint32_t, bool>>>{{{0, false}, {5, false}},
                                                           {{5, false}, {0, false}},
                                                           {{3, false}, {0, false}, {4, false}},
                                                           {{0, true}, {1, false}, {0, false}}}) {
    config::Route r = split_route(weights);
    WeightedSplit split(r);
    auto counts = pick_many(split, 50000, 7);
    for (size_t i = 0; i < weights.size(); ++i) {
      if (weights[i].first == 0) EXPECT_EQ(counts[i], 0) << "slot " << i;
      if (weights[i].first > 0) EXPECT_GT(counts[i], 0) << "slot " << i;
    }
    // Including the very ends of the point range.
    EXPECT_NE(weights[split.slot_at(0)].first, 0u);
    EXPECT_NE(weights[split.slot_at(UINT64_MAX)].first, 0u);
  }
}

TEST(WeightedSplit, SharesAreLaidOutInListOrder) {
  config::Route r = split_route({{1, false}, {1, false}, {2, false}});
  WeightedSplit split(r);
  const uint64_t quarter = uint64_t{1} << 62;
  EXPECT_EQ(split.slot_at(0), 0u);
  EXPECT_EQ(split.slot_at(quarter - 1), 0u);
  EXPECT_EQ(split.slot_at(quarter), 1u);
  EXPECT_EQ(split.slot_at(2 * quarter - 1), 1u);
  EXPECT_EQ(split.slot_at(2 * quarter), 2u);
  EXPECT_EQ(split.slot_at(UINT64_MAX), 2u);
}

TEST(WeightedSplit, StickyValueAlwaysTheSameSide) {
  config::Route r = split_route({{50, false}, {50, false}});
  r.split.sticky_header = "x-customer-id";
  WeightedSplit split(r);
  core::Rng rng(3);
  std::vector<int> per_side(2);
  for (int c = 0; c < 1000; ++c) {
    http::HeaderMap h;
    h.add("X-Customer-Id", "customer-" + std::to_string(c));
    const size_t first = split.choose(h, rng);
    for (int i = 0; i < 20; ++i) ASSERT_EQ(split.choose(h, rng), first);
    ++per_side[first];
  }
  // Customers spread by weight too (Binomial(1000, 0.5)).
  ExpectBinomial(per_side[0], 1000, 0.5);
}

// The point of a customer does not move with the weights, so raising the canary only adds
// customers to it: every customer on the canary at 5% is still there at 25%, 50% and 100%,
// and every customer on the stable side at 25% was there at 5%. Both list orders.
TEST(WeightedSplit, StickyAssignmentIsConsistentAsWeightsMove) {
  for (bool canary_last : {true, false}) {
    const std::vector<uint32_t> steps = {0, 1, 5, 25, 50, 100};
    std::vector<std::vector<size_t>> side(steps.size());
    constexpr int kCustomers = 20000;
    for (size_t k = 0; k < steps.size(); ++k) {
      const uint32_t c = steps[k], s = 100 - c;
      config::Route r =
          canary_last ? split_route({{s, false}, {c, true}}) : split_route({{c, true}, {s, false}});
      // A weight of 0 on both sides is refused by the loader; at 0% or 100% one side is empty.
      WeightedSplit split(r);
      const size_t canary = canary_last ? 1 : 0;
      for (int i = 0; i < kCustomers; ++i) {
        const std::string id = std::to_string(i * 7919);
        side[k].push_back(split.pick_sticky(id) == canary ? 1 : 0);
      }
    }
    for (size_t k = 1; k < steps.size(); ++k) {
      int on_canary = 0;
      for (int i = 0; i < kCustomers; ++i) {
        if (side[k - 1][i] == 1) {
          ASSERT_EQ(side[k][i], 1u) << "customer " << i << " left the canary going from "
                                    << steps[k - 1] << "% to " << steps[k] << "%";
        }
        on_canary += static_cast<int>(side[k][i]);
      }
      ExpectBinomial(on_canary, kCustomers, steps[k] / 100.0);
    }
    // The same consistency when the total changes (weights are not percentages).
    config::Route a = split_route({{950, false}, {50, true}});
    config::Route b = split_route({{75, false}, {25, true}});
    WeightedSplit sa(a), sb(b);
    for (int i = 0; i < kCustomers; ++i) {
      const std::string id = "c" + std::to_string(i);
      if (sa.pick_sticky(id) == 1) ASSERT_EQ(sb.pick_sticky(id), 1u) << id;
    }
  }
}

TEST(WeightedSplit, StickyCookieWhenNoHeader) {
  config::Route r = split_route({{1, false}, {1, false}});
  r.split.sticky_header = "x-customer-id";
  r.split.sticky_cookie = "sid";
  WeightedSplit split(r);
  core::Rng rng(5);
  // Find two cookie values on different sides.
  std::string sides[2];
  for (int i = 0; sides[0].empty() || sides[1].empty(); ++i) {
    const std::string v = "v" + std::to_string(i);
    sides[split.pick_sticky(v)] = v;
  }
  for (size_t want : {0u, 1u}) {
    http::HeaderMap h;
    h.add("cookie", "theme=dark; sid=" + sides[want] + "; lang=en");
    for (int i = 0; i < 50; ++i) EXPECT_EQ(split.choose(h, rng), want);
    // The header, when present, wins over the cookie.
    h.add("x-customer-id", sides[1 - want]);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(split.choose(h, rng), 1 - want);
  }
  // An empty sticky value is no value: random, so both sides show up.
  http::HeaderMap empty;
  empty.add("x-customer-id", "");
  empty.add("cookie", "sid=");
  std::vector<int> counts(2);
  for (int i = 0; i < 200; ++i) ++counts[split.choose(empty, rng)];
  EXPECT_GT(counts[0], 0);
  EXPECT_GT(counts[1], 0);
}

TEST(WeightedSplit, CookieValueParsing) {
  http::HeaderMap h;
  h.add("Cookie", "a=1;b=2");
  h.add("cookie", "  sid = x y ;c=3");
  EXPECT_EQ(cookie_value(h, "a"), "1");
  EXPECT_EQ(cookie_value(h, "b"), "2");
  EXPECT_EQ(cookie_value(h, "sid"), "x y");
  EXPECT_EQ(cookie_value(h, "c"), "3");
  EXPECT_EQ(cookie_value(h, "A"), std::nullopt);  // names are case-sensitive
  EXPECT_EQ(cookie_value(h, "d"), std::nullopt);
  http::HeaderMap odd;
  odd.add("cookie", ";;novalue; =x; e=");
  EXPECT_EQ(cookie_value(odd, "e"), "");
  EXPECT_EQ(cookie_value(odd, "novalue"), std::nullopt);
  EXPECT_EQ(cookie_value(odd, ""), "x");
}

TEST(WeightedSplit, OverrideHeaderSendsToTheCanaryEvenAtWeightZero) {
  config::Route r = split_route({{100, false}, {0, true}});
  r.split.sticky_header = "x-customer-id";
  WeightedSplit split(r);
  ASSERT_EQ(split.canary_slot(), 1u);
  core::Rng rng(9);
  http::HeaderMap tester;
  tester.add("X-Canary", "1");
  tester.add("x-customer-id", "42");  // the override wins over stickiness
  for (int i = 0; i < 100; ++i) EXPECT_EQ(split.choose(tester, rng), 1u);
  // Any other value is the normal choice, which never picks weight 0.
  for (std::string_view v : {"0", "true", "yes", "11", "", " 1x"}) {
    http::HeaderMap h;
    h.add("x-canary", v);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(split.choose(h, rng), 0u) << "'" << v << "'";
  }
  // Only the first field counts.
  http::HeaderMap two;
  two.add("x-canary", "0");
  two.add("x-canary", "1");
  EXPECT_EQ(split.choose(two, rng), 0u);
}

TEST(WeightedSplit, OverrideNeedsACanaryAndAHeaderName) {
  core::Rng rng(11);
  http::HeaderMap tester;
  tester.add("x-canary", "1");
  config::Route no_canary = split_route({{1, false}, {0, false}});
  WeightedSplit a(no_canary);
  EXPECT_FALSE(a.canary_slot());
  for (int i = 0; i < 50; ++i) EXPECT_EQ(a.choose(tester, rng), 0u);
  config::Route off = split_route({{1, false}, {0, true}});
  off.split.override_header.clear();
  WeightedSplit b(off);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(b.choose(tester, rng), 0u);
  config::Route renamed = split_route({{1, false}, {0, true}});
  renamed.split.override_header = "x-tester";
  WeightedSplit c(renamed);
  EXPECT_EQ(c.choose(tester, rng), 0u);
  http::HeaderMap h;
  h.add("X-Tester", "1");
  EXPECT_EQ(c.choose(h, rng), 1u);
}

// The sticky point is not the ring-hash position of the same value: a 5% canary's customers
// spread over the whole ring of its endpoints.
TEST(WeightedSplit, StickyPointIsIndependentOfTheLoadBalancerHash) {
  config::Route r = split_route({{95, false}, {5, true}});
  WeightedSplit split(r);
  int canary = 0, top_half = 0;
  for (int i = 0; i < 20000; ++i) {
    const std::string id = std::to_string(i);
    if (split.pick_sticky(id) != 1) continue;
    ++canary;
    if (upstream::hash_key(id) >> 63) ++top_half;
  }
  ExpectBinomial(top_half, canary, 0.5);
}

TEST(WeightedSplit, RouterCarriesTheSplit) {
  config::GatewayConfig cfg;
  config::Route r = split_route({{3, false}, {1, true}});
  r.match.path_prefix = "/";
  r.service_index = 10;
  cfg.routes.push_back(r);
  config::Route plain;
  plain.name = "plain";
  plain.match.path_prefix = "/plain";
  cfg.routes.push_back(plain);
  Router router(cfg);
  EXPECT_EQ(router.routes()[0].split.size(), 2u);
  EXPECT_EQ(router.routes()[0].split.canary_slot(), 1u);
  EXPECT_TRUE(router.routes()[1].split.empty());
}

}  // namespace
}  // namespace sluice::router
