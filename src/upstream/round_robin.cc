#include "upstream/round_robin.h"

namespace sluice::upstream {

RoundRobin::RoundRobin(std::span<const EndpointState> endpoints, uint64_t seed)
    : endpoints_(endpoints), current_(endpoints.size(), 0) {
  if (!endpoints.empty()) start_ = static_cast<uint32_t>(seed % endpoints.size());
}

int RoundRobin::pick(const PickContext& ctx) {
  int best = pick_pass(ctx, /*allow_tried=*/false);
  if (best < 0 && !ctx.tried.empty()) best = pick_pass(ctx, /*allow_tried=*/true);
  return best;
}

// Every eligible endpoint gains its weight; the one with the most current weight wins and pays
// back the total. Ineligible endpoints neither gain nor pay, so they rejoin without a burst.
int RoundRobin::pick_pass(const PickContext& ctx, bool allow_tried) {
  const uint32_t n = static_cast<uint32_t>(endpoints_.size());
  int64_t total = 0;
  int best = -1;
  uint32_t i = start_;
  for (uint32_t k = 0; k < n; ++k, ++i) {
    if (i == n) i = 0;
    const EndpointState& e = endpoints_[i];
    if (!e.healthy || e.weight == 0) continue;
    if (!allow_tried && was_tried(ctx, i)) continue;
    current_[i] += e.weight;
    total += e.weight;
    if (best < 0 || current_[i] > current_[best]) best = static_cast<int>(i);
  }
  if (best >= 0) current_[best] -= total;
  return best;
}

}  // namespace sluice::upstream
