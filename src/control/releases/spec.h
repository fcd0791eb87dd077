// A `release` resource: a canary release of an application, moving one route's traffic from a
// stable service to a canary service in steps, with the same analysis as a staged rollout
// (control/analysis/) between steps. The resource is config (versioned, never sent to
// gateways); its progress is the releases domain's state (releases_service.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/analysis/settings.h"
#include "control/store.h"

namespace sluice::control::releases {

inline constexpr size_t kMaxSteps = 20;

struct ReleaseSpec {
  std::string route;
  std::string stable;
  std::string canary;
  std::vector<uint32_t> steps = {1, 5, 25, 50, 100};  // canary percent, ascending, ends at 100
  analysis::Settings analysis;
  nlohmann::json split;  // copied onto the route while it is split; null = the route's own
};

// What is wrong with a release's spec (an object), each message naming its key with `prefix`
// ("release/pay: spec.steps: ..."); `all` is the resource set it belongs to (the route and the
// services must be in it). Empty when acceptable.
std::vector<std::string> check_release(const nlohmann::json& spec, const std::string& prefix,
                                       const std::vector<Resource>& all);

// Throws std::invalid_argument with the first problem (a spec that passed check_release does not
// throw).
ReleaseSpec parse_release(const nlohmann::json& spec);

// The route's spec with its traffic at `percent` to the canary: a plain `service: stable` at 0
// (the split keys dropped), `service: canary` at 100, else a split {stable 100-p, canary p,
// canary: true} with the release's split settings.
nlohmann::json route_at(const nlohmann::json& route_spec, const ReleaseSpec& r, uint32_t percent);

}  // namespace sluice::control::releases
