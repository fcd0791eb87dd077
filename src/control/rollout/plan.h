// A change's rollout plan, as written in a change_policy's `rollout` section: the stages that
// select gateways ({gateways: "city=a,count=1"}, {percent: 50}, {city: b}, {all: true}) and the
// analysis run between them (control/analysis/settings.h). docs/changes.md has the contract.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sluice::control::rollout {

// What is wrong with `rollout` (a JSON object), each message naming its field with `prefix`
// ("rollout.stages[1].percent: ..."); empty when it is acceptable.
std::vector<std::string> check_plan(const nlohmann::json& rollout, const std::string& prefix);

}  // namespace sluice::control::rollout
