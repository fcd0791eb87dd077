// Load balancers are pure selection: endpoint states (+ what was already tried) in, an index out.
// One instance per worker per service, so no synchronisation is needed inside.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace sluice::upstream {

// Per-endpoint state a balancer reads. Owned by the caller (the worker's service object);
// `active` is maintained by the caller (requests in flight to this endpoint from this worker).
// Weight 0 takes an endpoint out of selection (like unhealthy) without touching its health.
struct EndpointState {
  uint32_t weight = 1;
  uint32_t active = 0;
  bool healthy = true;
  // Stable identity for ring_hash placement, e.g. hash_key("10.0.0.7:9101"). With 0 the index is
  // used, so removing one endpoint would also move keys of every endpoint after it.
  uint64_t id = 0;
};

struct PickContext {
  uint64_t hash = 0;                // ring_hash: hash of the request's key (ignored by others)
  bool has_hash = false;            // false: ring_hash falls back to a random pick
  std::span<const uint32_t> tried;  // endpoint indices already tried for this request
};

inline bool was_tried(const PickContext& ctx, uint32_t index) {
  for (uint32_t t : ctx.tried) {
    if (t == index) return true;
  }
  return false;
}

class LoadBalancer {
 public:
  virtual ~LoadBalancer() = default;
  // Index into the endpoint span of a healthy endpoint (weight > 0), preferring ones not in
  // ctx.tried. When every such endpoint was tried, a tried one is returned (a retry may reuse an
  // endpoint rather than fail); -1 only when there is no healthy endpoint at all.
  // Does not allocate, throw or block.
  virtual int pick(const PickContext& ctx) = 0;
};

// `endpoints` must outlive the balancer; its size is fixed for the balancer's life. `healthy`,
// `active` and `weight` are read at every pick, except that ring_hash places endpoints on its ring
// by the weights and ids seen here (build a new balancer when those change). `seed` makes every
// policy deterministic; give each worker a different one so they do not move in lock step.
std::unique_ptr<LoadBalancer> make_load_balancer(const config::LoadBalancer& cfg,
                                                 std::span<const EndpointState> endpoints,
                                                 uint64_t seed);

// 64-bit hash used for ring_hash keys: exactly XXH64 with seed 0, so stable across processes,
// versions and machines, and usable wherever the design says "xxHash64(key)".
uint64_t hash_key(std::string_view key);

}  // namespace sluice::upstream
