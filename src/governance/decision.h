// What one rate-limit rule decided for one request; shared by the node and cluster limiters and
// used by the request path to build 429 responses and RateLimit-* headers.
#pragma once

#include <chrono>
#include <cstdint>

namespace sluice::governance {

struct RateDecision {
  bool allowed = true;
  uint64_t limit = 0;                       // RateLimit-Limit: the quota of the key's limit
  uint64_t remaining = 0;                   // RateLimit-Remaining after this decision
  std::chrono::nanoseconds reset{0};        // RateLimit-Reset: until the quota is back in full
  std::chrono::nanoseconds retry_after{0};  // when rejected: earliest time a retry can pass
};

}  // namespace sluice::governance
