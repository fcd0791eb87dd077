// Consistent hashing on a ring (ketama style): each endpoint owns weight-proportional points on a
// 64-bit ring and a key goes to the owner of the first point at or after its hash. Taking an
// endpoint out moves only the keys it owned; they walk on to the next point's owner.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "upstream/load_balancer.h"
#include "core/random.h"

namespace sluice::upstream {

class RingHash final : public LoadBalancer {
 public:
  // Points per unit of weight; ~8% spread of load between equal endpoints.
  static constexpr uint32_t kPointsPerWeight = 160;
  // The ring holds at most max(kMaxPoints, kPointsPerWeight * endpoints) points (<= 20 bytes each
  // with the lookup table); beyond that, points are scaled down in proportion to weight.
  static constexpr uint32_t kMaxPoints = 16384;

  RingHash(std::span<const EndpointState> endpoints, uint64_t seed);
  int pick(const PickContext& ctx) override;

  size_t ring_size() const { return hashes_.size(); }

 private:
  // First eligible endpoint walking the ring from `pos`; -1 if none.
  int walk(const PickContext& ctx, size_t pos, bool allow_tried);
  int scan(const PickContext& ctx, bool allow_tried) const;

  std::span<const EndpointState> endpoints_;
  std::vector<uint64_t> hashes_;  // sorted ring points
  std::vector<uint32_t> owners_;  // endpoint index of each point
  // starts_[b]: first point whose top `bits_` bits are >= b, so a lookup searches one bucket
  // (about one point) instead of the whole ring.
  std::vector<uint32_t> starts_;
  int bits_ = 0;
  std::vector<uint32_t> seen_;  // epoch stamps: each endpoint is judged once per walk
  uint32_t epoch_ = 0;
  uint32_t on_ring_ = 0;  // distinct endpoints with points
  core::Rng rng_;
};

}  // namespace sluice::upstream
