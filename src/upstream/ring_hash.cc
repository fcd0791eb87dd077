#include "upstream/ring_hash.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace sluice::upstream {

namespace {

uint64_t point_hash(uint64_t id, uint32_t replica) {
  char buf[12];
  std::memcpy(buf, &id, 8);
  std::memcpy(buf + 8, &replica, 4);
  return hash_key(std::string_view(buf, sizeof buf));
}

}  // namespace

RingHash::RingHash(std::span<const EndpointState> endpoints, uint64_t seed)
    : endpoints_(endpoints), seen_(endpoints.size(), 0), rng_(seed) {
  const size_t n = endpoints.size();
  uint64_t total_weight = 0;
  for (const EndpointState& e : endpoints) total_weight += e.weight;
  if (total_weight == 0) return;

  const uint64_t cap = std::max<uint64_t>(kMaxPoints, uint64_t{kPointsPerWeight} * n);
  const uint64_t wanted = total_weight * kPointsPerWeight;
  struct Point {
    uint64_t hash;
    uint32_t owner;
  };
  std::vector<Point> points;
  points.reserve(std::min(wanted, cap) + n);
  for (uint32_t i = 0; i < n; ++i) {
    const EndpointState& e = endpoints[i];
    if (e.weight == 0) continue;
    uint64_t count = uint64_t{e.weight} * kPointsPerWeight;
    if (wanted > cap) count = std::max<uint64_t>(1, count * cap / wanted);
    const uint64_t id = e.id != 0 ? e.id : i;
    for (uint32_t r = 0; r < count; ++r) points.push_back({point_hash(id, r), i});
    ++on_ring_;
  }
  // Ties (vanishingly rare) go to the lower index, so the ring does not depend on sort stability.
  std::sort(points.begin(), points.end(), [](const Point& a, const Point& b) {
    return a.hash != b.hash ? a.hash < b.hash : a.owner < b.owner;
  });
  hashes_.reserve(points.size());
  owners_.reserve(points.size());
  for (const Point& p : points) {
    hashes_.push_back(p.hash);
    owners_.push_back(p.owner);
  }
  bits_ = std::bit_width(hashes_.size());  // >= 1 here; buckets of ~0.5..1 point
  const size_t buckets = size_t{1} << bits_;
  starts_.resize(buckets + 1);
  size_t pos = 0;
  for (size_t b = 0; b < buckets; ++b) {
    while (pos < hashes_.size() && (hashes_[pos] >> (64 - bits_)) < b) ++pos;
    starts_[b] = static_cast<uint32_t>(pos);
  }
  starts_[buckets] = static_cast<uint32_t>(hashes_.size());
}

int RingHash::pick(const PickContext& ctx) {
  if (!hashes_.empty()) {
    // Without a key, a random point: still weight-proportional.
    const uint64_t h = ctx.has_hash ? ctx.hash : rng_.next_u64();
    const size_t b = static_cast<size_t>(h >> (64 - bits_));
    const auto first = hashes_.begin() + starts_[b];
    const auto last = hashes_.begin() + starts_[b + 1];
    size_t pos = static_cast<size_t>(std::lower_bound(first, last, h) - hashes_.begin());
    if (pos == hashes_.size()) pos = 0;
    int chosen = walk(ctx, pos, /*allow_tried=*/false);
    // All healthy ones tried: the same walk picks the key's usual (tried) endpoint again.
    if (chosen < 0 && !ctx.tried.empty()) chosen = walk(ctx, pos, /*allow_tried=*/true);
    if (chosen >= 0) return chosen;
  }
  // Only endpoints that were off the ring at construction (weight 0 then) may be left.
  int chosen = scan(ctx, /*allow_tried=*/false);
  if (chosen < 0 && !ctx.tried.empty()) chosen = scan(ctx, /*allow_tried=*/true);
  return chosen;
}

int RingHash::walk(const PickContext& ctx, size_t pos, bool allow_tried) {
  if (++epoch_ == 0) {  // wrapped: old stamps could look current
    std::fill(seen_.begin(), seen_.end(), 0);
    epoch_ = 1;
  }
  const size_t size = hashes_.size();
  uint32_t distinct = 0;
  for (size_t step = 0; step < size; ++step, ++pos) {
    if (pos == size) pos = 0;
    const uint32_t i = owners_[pos];
    if (seen_[i] == epoch_) continue;
    seen_[i] = epoch_;
    const EndpointState& e = endpoints_[i];
    if (e.healthy && e.weight != 0 && (allow_tried || !was_tried(ctx, i))) {
      return static_cast<int>(i);
    }
    if (++distinct == on_ring_) break;  // every endpoint judged: no need to finish the lap
  }
  return -1;
}

int RingHash::scan(const PickContext& ctx, bool allow_tried) const {
  for (uint32_t i = 0; i < endpoints_.size(); ++i) {
    const EndpointState& e = endpoints_[i];
    if (e.healthy && e.weight != 0 && (allow_tried || !was_tried(ctx, i))) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

}  // namespace sluice::upstream
