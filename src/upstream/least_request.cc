#include "upstream/least_request.h"

namespace sluice::upstream {

namespace {
// Random draws spent looking for eligible endpoints before falling back to a scan. With half the
// endpoints ineligible a pick still needs the scan only ~6% of the time.
constexpr int kDraws = 4;
}  // namespace

LeastRequest::LeastRequest(std::span<const EndpointState> endpoints, uint64_t seed)
    : endpoints_(endpoints), rng_(seed) {}

bool LeastRequest::eligible(const PickContext& ctx, uint32_t i) const {
  const EndpointState& e = endpoints_[i];
  return e.healthy && e.weight != 0 && !was_tried(ctx, i);
}

// (active + 1) / weight rather than active / weight: at idle (everything at 0) the heavier
// endpoint still wins, so weights matter even under light load. Equal weights reduce to
// "fewer active". Cross-multiplied in 64 bits: no division, no overflow.
bool LeastRequest::less_loaded(uint32_t a, uint32_t b) const {
  const EndpointState& ea = endpoints_[a];
  const EndpointState& eb = endpoints_[b];
  return (uint64_t{ea.active} + 1) * eb.weight < (uint64_t{eb.active} + 1) * ea.weight;
}

int LeastRequest::pick(const PickContext& ctx) {
  const uint32_t n = static_cast<uint32_t>(endpoints_.size());
  if (n == 0) return -1;
  int first = -1;
  for (int d = 0; d < kDraws; ++d) {
    uint32_t i = static_cast<uint32_t>(rng_.uniform(n));
    if (eligible(ctx, i)) {
      first = static_cast<int>(i);
      break;
    }
  }
  if (first < 0) {
    // Most endpoints are out (unhealthy, tried, or weight 0): look at all of them.
    int best = scan(ctx, /*allow_tried=*/false);
    if (best < 0 && !ctx.tried.empty()) best = scan(ctx, /*allow_tried=*/true);
    return best;
  }
  if (n == 1) return first;
  const uint32_t a = static_cast<uint32_t>(first);
  for (int d = 0; d < kDraws; ++d) {
    uint32_t b = static_cast<uint32_t>(rng_.uniform(n - 1));  // any index but `a`
    if (b >= a) ++b;
    if (eligible(ctx, b)) return less_loaded(b, a) ? static_cast<int>(b) : first;
  }
  return first;  // no second candidate found quickly: one random eligible pick is still fair
}

// Full least-loaded scan from a random start, so ties do not always go to the lowest index.
int LeastRequest::scan(const PickContext& ctx, bool allow_tried) {
  const uint32_t n = static_cast<uint32_t>(endpoints_.size());
  int best = -1;
  uint32_t i = static_cast<uint32_t>(rng_.uniform(n));
  for (uint32_t k = 0; k < n; ++k, ++i) {
    if (i == n) i = 0;
    const EndpointState& e = endpoints_[i];
    if (!e.healthy || e.weight == 0) continue;
    if (!allow_tried && was_tried(ctx, i)) continue;
    if (best < 0 || less_loaded(i, static_cast<uint32_t>(best))) best = static_cast<int>(i);
  }
  return best;
}

}  // namespace sluice::upstream
