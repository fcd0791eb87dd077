// What a change affects, computed from the config before and after it: the resources it touches,
// the routes and services whose traffic it can change, and the cities they serve.
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

#include "control/store.h"

namespace sluice::control::changes {

// {"resources": ["service/a", ...], "routes": [...], "services": [...], "cities": [...]}, each
// sorted. A service change affects the routes pointing at it; a route change the services it
// points at (before and after); a rate_limit the routes it matches (all when it names none);
// units every route and service; change_policy and freeze_window nothing a gateway serves.
// Cities: of the affected services' endpoints (static, before and after, and registered).
nlohmann::json affected(const std::vector<Resource>& before, const std::vector<Resource>& after,
                        const nlohmann::json& diff, const std::vector<Instance>& instances);

// The (kind, name) pairs a resource_diff touches.
std::vector<std::pair<std::string, std::string>> touched(const nlohmann::json& diff);

}  // namespace sluice::control::changes
