// Dual-city locality: which endpoints of a service the balancer may pick for one attempt, by
// preference tiers (same zone / same city / other cities) with proportional spill to the next tier
// as the available share of a tier drops (Envoy priority levels with overprovisioning).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "upstream/load_balancer.h"

namespace sluice::upstream {

// Built once per service from config (at snapshot build); apply() is pure, const, O(endpoints),
// does not allocate or throw, so one plan may be shared by every worker.
class LocalityPlan {
 public:
  static constexpr int kMaxTiers = 3;

  // Tiers from this gateway's node city/zone:
  //   same_zone: 0 = same city and zone, 1 = same city other zone, 2 = other cities;
  //   same_city: 0 = same city, 1 = other cities;
  //   none, or an empty node_city: every endpoint is tier 0.
  // same_zone with an empty node_zone behaves as same_city (there is no zone to prefer).
  // Tier weights come from the configured endpoint weights.
  LocalityPlan(const config::Locality& cfg, std::string_view node_city, std::string_view node_zone,
               std::span<const config::Endpoint> endpoints);

  struct Choice {
    int tier = -1;       // the tier whose endpoints were made pickable; -1 = none
    bool panic = false;  // health was ignored
  };

  // Decides which endpoints the balancer may pick for this attempt and writes it into
  // states[i].healthy (true only for those); the balancer then picks among healthy ones as usual.
  //   available[i] != 0: health checks and outlier ejection allow endpoint i. An endpoint whose
  //     states[i].weight is 0 (drained) counts as unavailable.
  //   tried: endpoints already tried by this request. u: uniform random in [0, 1).
  //   only_city: when not empty, only endpoints of that city count at all (unit services: served by
  //     the shard owner's city only, never spilled elsewhere).
  // Tier k with available share a_k (available weight / weight of the tier) keeps
  // min(1, a_k / failover_threshold) of the traffic that reaches it and passes the rest on; the
  // last tier with any available endpoint keeps whatever reaches it; u picks the tier. Inside the
  // chosen tier eligible = available && !tried; when none is, the next tier with an eligible
  // endpoint is used, then earlier tiers (most preferred first); when nothing untried is available
  // anywhere, the available endpoints of the chosen tier are eligible even if tried.
  // Panic: when the available share (by weight) of all the service's endpoints (only_city or not)
  // is below panic_threshold,
  // health is ignored: the first tier with an untried allowed endpoint is used (all tried: the
  // first non-empty tier, tried ones included). tier == -1 when nothing may be picked: no allowed
  // endpoint (e.g. only_city has none), or none available while panic is off (panic_threshold 0).
  // Preconditions: states.size() == available.size() == number of endpoints given at construction.
  Choice apply(std::span<EndpointState> states, std::span<const uint8_t> available,
               std::span<const uint32_t> tried, double u, std::string_view only_city = {}) const;

  // City of endpoint i (for cross-city metrics), and whether it is the gateway's own city. A
  // gateway without a node city treats every endpoint as local (it cannot tell).
  std::string_view city(size_t i) const { return cities_[info_[i].city]; }
  bool local_city(size_t i) const { return info_[i].local; }
  int tier(size_t i) const { return info_[i].tier; }
  // Number of preference levels (1, 2 or 3); a level may hold no endpoint.
  int tiers() const { return tiers_; }
  size_t size() const { return info_.size(); }

 private:
  using TierWeights = std::array<uint64_t, kMaxTiers>;

  struct Info {
    uint32_t weight = 0;  // configured weight
    uint32_t city = 0;    // index into cities_
    uint8_t tier = 0;
    bool local = false;
  };

  double failover_threshold_;
  double panic_threshold_;
  int tiers_ = 1;
  std::vector<Info> info_;
  std::vector<std::string> cities_;        // distinct endpoint cities, first-seen order
  std::vector<TierWeights> city_weights_;  // [city][tier] total configured weight
  TierWeights tier_weights_{};             // [tier] total configured weight
};

}  // namespace sluice::upstream
