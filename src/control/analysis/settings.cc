#include "control/analysis/settings.h"

namespace sluice::control::analysis {

std::vector<std::string> check_settings(const nlohmann::json& settings, const std::string& prefix) {
  std::vector<std::string> errors;
  if (!settings.is_object()) errors.push_back(prefix + ": expected an object");
  return errors;
}

}  // namespace sluice::control::analysis
