#include "upstream/locality.h"

#include <algorithm>
#include <cassert>

namespace sluice::upstream {

namespace {

constexpr uint32_t kAnyCity = UINT32_MAX;

bool in_tried(std::span<const uint32_t> tried, size_t index) {
  for (uint32_t t : tried) {
    if (t == index) return true;
  }
  return false;
}

}  // namespace

LocalityPlan::LocalityPlan(const config::Locality& cfg, std::string_view node_city,
                           std::string_view node_zone, std::span<const config::Endpoint> endpoints)
    : failover_threshold_(cfg.failover_threshold), panic_threshold_(cfg.panic_threshold) {
  using Prefer = config::Locality::Prefer;
  const bool by_city = cfg.prefer != Prefer::kNone && !node_city.empty();
  const bool by_zone = by_city && cfg.prefer == Prefer::kSameZone && !node_zone.empty();
  tiers_ = by_zone ? 3 : by_city ? 2 : 1;

  info_.reserve(endpoints.size());
  for (const config::Endpoint& ep : endpoints) {
    Info e;
    e.weight = ep.weight;
    auto it = std::find(cities_.begin(), cities_.end(), ep.city);
    e.city = static_cast<uint32_t>(it - cities_.begin());
    if (it == cities_.end()) {
      cities_.push_back(ep.city);
      city_weights_.push_back(TierWeights{});
    }
    const bool same_city = ep.city == node_city;
    e.local = node_city.empty() || same_city;
    if (by_zone) {
      e.tier = same_city ? (ep.zone == node_zone ? 0 : 1) : 2;
    } else if (by_city) {
      e.tier = same_city ? 0 : 1;
    }
    city_weights_[e.city][e.tier] += e.weight;
    tier_weights_[e.tier] += e.weight;
    info_.push_back(e);
  }
}

LocalityPlan::Choice LocalityPlan::apply(std::span<EndpointState> states,
                                         std::span<const uint8_t> available,
                                         std::span<const uint32_t> tried, double u,
                                         std::string_view only_city) const {
  assert(states.size() == info_.size() && available.size() == info_.size());
  const size_t n = std::min({info_.size(), states.size(), available.size()});
  for (size_t i = n; i < states.size(); ++i) states[i].healthy = false;
  auto none = [&](bool panic) {
    for (size_t i = 0; i < n; ++i) states[i].healthy = false;
    return Choice{-1, panic};
  };

  uint32_t only = kAnyCity;
  if (!only_city.empty()) {
    auto it = std::find(cities_.begin(), cities_.end(), only_city);
    if (it == cities_.end()) return none(false);
    only = static_cast<uint32_t>(it - cities_.begin());
  }
  const TierWeights& total = only == kAnyCity ? tier_weights_ : city_weights_[only];

  // One pass for what each tier has: available weight, and counts of endpoints the balancer could
  // take at all (weight > 0), untried ones, and untried available ones.
  TierWeights avail{};
  std::array<uint32_t, kMaxTiers> live{}, untried_live{}, untried_avail{};
  size_t allowed = 0;
  // Panic is judged on the whole service: a unit service whose owner city is down answers 503
  // at once rather than sending every request to instances known to be dead.
  uint64_t service_avail = 0;
  for (size_t i = 0; i < n; ++i) {
    const Info& e = info_[i];
    if (available[i] && states[i].weight != 0) service_avail += e.weight;
    if (only != kAnyCity && e.city != only) continue;
    ++allowed;
    if (states[i].weight == 0) continue;
    const bool fresh = !in_tried(tried, i);
    ++live[e.tier];
    untried_live[e.tier] += fresh;
    if (available[i]) {
      avail[e.tier] += e.weight;
      untried_avail[e.tier] += fresh;
    }
  }
  if (allowed == 0) return none(false);
  uint64_t avail_weight = 0;
  for (int k = 0; k < tiers_; ++k) avail_weight += avail[k];

  int chosen = -1;
  bool allow_tried = false;
  bool ignore_health = false;
  uint64_t service_total = 0;
  for (int k = 0; k < tiers_; ++k) service_total += tier_weights_[k];
  const double share =
      service_total == 0 ? 0.0
                         : static_cast<double>(service_avail) / static_cast<double>(service_total);
  if (share < panic_threshold_) {
    // Panic: health is ignored, but the preference order still holds (a mostly-down service is
    // not also flooded with the other city's traffic).
    ignore_health = true;
    for (int k = 0; k < tiers_ && chosen < 0; ++k) {
      if (untried_live[k] > 0) chosen = k;
    }
    for (int k = 0; k < tiers_ && chosen < 0; ++k) {
      if (live[k] > 0) chosen = k;
    }
    if (chosen < 0) return none(true);
    allow_tried = untried_live[chosen] == 0;
  } else {
    if (avail_weight == 0) return none(false);
    int last = 0;
    for (int k = 0; k < tiers_; ++k) {
      if (avail[k] > 0) last = k;
    }
    // Tier k keeps min(1, a_k / threshold) of what reaches it; `cum` is where its slice of [0, 1)
    // starts. The last tier with anything available takes the rest (including rounding dust).
    chosen = last;
    double reach = 1.0;
    double cum = 0.0;
    for (int k = 0; k < last; ++k) {
      if (avail[k] == 0) continue;
      const double a = static_cast<double>(avail[k]) / static_cast<double>(total[k]);
      const double keep = reach * std::min(1.0, a / failover_threshold_);
      if (u < cum + keep) {
        chosen = k;
        break;
      }
      cum += keep;
      reach -= keep;
    }
    // The chosen tier has available endpoints; prefer untried ones, in the next tiers first (the
    // spill direction), then the earlier, more preferred ones.
    if (untried_avail[chosen] == 0) {
      int next = -1;
      for (int k = chosen + 1; k < tiers_ && next < 0; ++k) {
        if (untried_avail[k] > 0) next = k;
      }
      for (int k = 0; k < chosen && next < 0; ++k) {
        if (untried_avail[k] > 0) next = k;
      }
      if (next >= 0) {
        chosen = next;
      } else {
        allow_tried = true;  // a retry may reuse an endpoint rather than fail
      }
    }
  }

  for (size_t i = 0; i < n; ++i) {
    const Info& e = info_[i];
    states[i].healthy = e.tier == chosen && (only == kAnyCity || e.city == only) &&
                        states[i].weight > 0 && (ignore_health || available[i] != 0) &&
                        (allow_tried || !in_tried(tried, i));
  }
  return Choice{chosen, ignore_health};
}

}  // namespace sluice::upstream
