#include "control/rollout/plan.h"

#include "control/analysis/settings.h"

namespace sluice::control::rollout {

std::vector<std::string> check_plan(const nlohmann::json& rollout, const std::string& prefix) {
  std::vector<std::string> errors;
  if (!rollout.is_object()) {
    errors.push_back(prefix + ": expected an object");
    return errors;
  }
  if (auto it = rollout.find("stages"); it != rollout.end() && !it->is_array())
    errors.push_back(prefix + ".stages: expected a list");
  if (auto it = rollout.find("analysis"); it != rollout.end()) {
    for (std::string& e : analysis::check_settings(*it, prefix + ".analysis"))
      errors.push_back(std::move(e));
  }
  return errors;
}

}  // namespace sluice::control::rollout
