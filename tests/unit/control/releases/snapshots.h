// Stats snapshots of a gateway with a split route, as POST /v1/stats carries them
// (docs/control-plane.md "Stats"), for the releases tests.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace sluice::control::releases::test {

// The gateways' histogram bounds, seconds.
inline constexpr const char* kBounds = "0.005 0.01 0.025 0.05 0.1 0.25 0.5 1";

struct Traffic {
  uint64_t requests = 0;
  uint64_t errors = 0;
  size_t bucket = 0;  // every request's latency falls in this bucket (0: under 5 ms)
};

inline nlohmann::json entry(const Traffic& t, uint32_t weight) {
  nlohmann::json buckets = nlohmann::json::array();
  for (size_t i = 0; i < 9; ++i) buckets.push_back(i == t.bucket ? t.requests : 0);
  return {{"weight", weight},
          {"requests", t.requests},
          {"errors", t.errors},
          {"throttled", 0},
          {"latency", {{"le", kBounds}, {"buckets", buckets}, {"count", t.requests}}}};
}

// One snapshot of `gateway` with route `route` split between `stable` and `canary`.
inline nlohmann::json split_snapshot(const std::string& gateway, int64_t at_ms,
                                     const std::string& route, const std::string& stable,
                                     const Traffic& s, const std::string& canary,
                                     const Traffic& c) {
  return {
      {"gateway", gateway},
      {"at_ms", at_ms},
      {"routes",
       {{route,
         {{"requests", s.requests + c.requests},
          {"errors", s.errors + c.errors},
          {"services", {{stable, entry(s, 0)}, {canary, entry(c, 0)}}}}}}},
      {"services", {{stable, {{"requests", s.requests}}}, {canary, {{"requests", c.requests}}}}}};
}

}  // namespace sluice::control::releases::test
