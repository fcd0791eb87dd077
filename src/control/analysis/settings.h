// The analysis that runs between a rollout's stages and a release's steps: which measurements,
// their thresholds and minimum samples (a change_policy's `rollout.analysis`, a release's
// `analysis`). docs/changes.md has the contract.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sluice::control::analysis {

// What is wrong with `settings` (a JSON object), each message naming its field with `prefix`;
// empty when it is acceptable.
std::vector<std::string> check_settings(const nlohmann::json& settings, const std::string& prefix);

}  // namespace sluice::control::analysis
