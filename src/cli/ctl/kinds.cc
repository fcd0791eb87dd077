#include "cli/ctl/kinds.h"

#include <algorithm>

#include "cli/ctl/output.h"

namespace sluice::cli::ctl {

std::optional<std::string> canonical_kind(const std::string& word) {
  std::string k = lower(word);
  std::replace(k.begin(), k.end(), '-', '_');
  if (k == "service" || k == "services" || k == "svc") return "service";
  if (k == "route" || k == "routes") return "route";
  if (k == "rate_limit" || k == "rate_limits" || k == "ratelimit" || k == "ratelimits" || k == "rl")
    return "rate_limit";
  if (k == "units" || k == "unit") return "units";
  if (k == "change_policy" || k == "change_policies" || k == "policy" || k == "policies")
    return "change_policy";
  if (k == "freeze_window" || k == "freeze_windows" || k == "freeze") return "freeze_window";
  if (k == "release" || k == "releases") return "release";
  if (k == "probe" || k == "probes") return "probe";
  if (k == "slo" || k == "slos") return "slo";
  if (k == "maintenance_window" || k == "maintenance_windows" || k == "maintenance")
    return "maintenance_window";
  return std::nullopt;
}

}  // namespace sluice::cli::ctl
