// Smooth weighted round robin (the nginx algorithm): over any window of sum(weights) picks each
// endpoint is chosen weight times, and heavy endpoints are interleaved rather than bunched.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "upstream/load_balancer.h"

namespace sluice::upstream {

class RoundRobin final : public LoadBalancer {
 public:
  // `seed` rotates where ties start, so workers of one gateway do not all begin on endpoint 0.
  RoundRobin(std::span<const EndpointState> endpoints, uint64_t seed);
  int pick(const PickContext& ctx) override;

 private:
  int pick_pass(const PickContext& ctx, bool allow_tried);

  std::span<const EndpointState> endpoints_;
  std::vector<int64_t> current_;  // nginx's current_weight, one per endpoint
  uint32_t start_ = 0;
};

}  // namespace sluice::upstream
