// Weighted split of a route between services (canary releases): which service of
// `routes[].services` serves one request. Pure selection: request values and a generator in, a
// slot (position in the route's list) out; no I/O, no allocation.
//
// Semantics, exactly:
// - Services with weight 0 never get a request by weight; only the override can reach them.
// - Override: when the split has a service marked `canary: true` and the request carries the
//   override header (default `x-canary`) with the value exactly "1" (first field of that name,
//   after the parser's whitespace trim), the canary serves it, whatever its weight. Any other
//   value, or no header, means the normal choice below. The header is not removed: the service
//   sees it too (docs/config.md says why).
// - Sticky: the sticky header's value (first field), else the sticky cookie's value, if
//   non-empty, is hashed to a point f in [0, 1) and the request goes to the service whose share
//   of [0, 1) holds f. Shares are laid out in list order: service i holds
//   [W(i) / T, W(i+1) / T) where W(i) is the sum of the weights before it and T the total. So a
//   customer stays on one side while the weights stay, and when they move only the customers
//   whose point crosses a boundary move: in a two-service split, raising the second service from
//   5% to 25% keeps every customer it had (the first 5% of points from the top are inside the
//   first 25%), and the same holds for the first service of the list as its share grows.
// - Otherwise the choice is random: P(service i) = weight_i / T.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "core/random.h"
#include "http/header_map.h"

namespace sluice::router {

class WeightedSplit {
 public:
  struct Entry {
    size_t service_index = 0;  // into config.services
    uint32_t weight = 0;
  };

  WeightedSplit() = default;
  // `route` must be validated: 1..kMaxSplitServices services, at least one weight > 0.
  explicit WeightedSplit(const config::Route& route);

  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  const Entry& entry(size_t slot) const { return entries_[slot]; }
  uint64_t total_weight() const { return total_; }
  std::optional<size_t> canary_slot() const { return canary_; }

  // The slot whose share holds f = point / 2^64 (so `point` is f in 64-bit fixed point).
  size_t slot_at(uint64_t point) const;
  // A slot at random, by weight.
  size_t pick_random(core::Rng& rng) const { return slot_at(rng.next_u64()); }
  // The slot of a sticky value (the same value, the same point, always).
  size_t pick_sticky(std::string_view value) const { return slot_at(sticky_point(value)); }

  // The request's slot per the contract at the top of this file.
  size_t choose(const http::HeaderMap& headers, core::Rng& rng) const;

  // f for a sticky value. The value's hash is mixed once more so that it is independent of the
  // hash the load balancer's ring_hash takes of the same value: otherwise the customers of a
  // 5% canary would all sit on 5% of its ring, i.e. on one or two of its endpoints.
  static uint64_t sticky_point(std::string_view value);

 private:
  std::vector<Entry> entries_;
  std::vector<uint64_t> bounds_;  // bounds_[i] = end of slot i's share, in 64-bit fixed point
  uint64_t total_ = 0;
  std::optional<size_t> canary_;
  std::string_view override_header_;  // views into the config::Route, which outlives this
  std::string_view sticky_header_;
  std::string_view sticky_cookie_;
};

// The value of cookie `name` in the request's Cookie header fields (RFC 6265 "a=b; c=d"), first
// occurrence; nullopt when absent. Case-sensitive name; the value is not unquoted.
std::optional<std::string_view> cookie_value(const http::HeaderMap& headers, std::string_view name);

}  // namespace sluice::router
