// Least request by the power of two choices: draw two endpoints at random, send to the less
// loaded by (active + 1) / weight. O(1) per pick, and no herding onto one idle endpoint the way
// a full scan for the minimum does when many workers decide at once.
#pragma once

#include <cstdint>
#include <span>

#include "upstream/load_balancer.h"
#include "core/random.h"

namespace sluice::upstream {

class LeastRequest final : public LoadBalancer {
 public:
  LeastRequest(std::span<const EndpointState> endpoints, uint64_t seed);
  int pick(const PickContext& ctx) override;

 private:
  bool eligible(const PickContext& ctx, uint32_t i) const;
  // True when endpoint a is strictly less loaded than b, weights considered.
  bool less_loaded(uint32_t a, uint32_t b) const;
  int scan(const PickContext& ctx, bool allow_tried);

  std::span<const EndpointState> endpoints_;
  core::Rng rng_;
};

}  // namespace sluice::upstream
