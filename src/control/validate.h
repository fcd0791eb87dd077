// The one validator: a resource set is turned into a gateway config document and checked by the
// gateway's own loader (config::load_string), so the control plane accepts exactly what gateways
// accept. Errors are mapped back from key paths to resources ("service/accounts: spec.retry...").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/store.h"

namespace sluice::control {

// Stand-in endpoint of a registry-backed service during validation, so a service may be applied
// before any instance registers (the loader requires endpoints in a file). In the pushed config a
// service with no alive instance has an empty endpoint list, which a gateway accepts from a
// control plane and answers with 503 until an instance registers.
inline constexpr const char* kPlaceholderEndpoint = "127.0.0.1:1";

// Routes are matched first to last; resources have no order, so a route may carry `spec.order`
// (an integer, default 0): ascending order, then name. The key is removed before the loader.
inline constexpr const char* kRouteOrderKey = "order";

// Checks a complete resource set (what a version would hold). Returns every problem, each naming
// the resource and the key inside its spec; empty when the set is valid.
std::vector<std::string> validate_resources(const std::vector<Resource>& resources);

// The resource sections as the gateway file writes them: {"services", "routes", "rate_limits"}
// and "units" when present. A service without `endpoints` gets the alive registry instances of
// its name (sorted by id, duplicate addresses dropped), or none (an empty list).
// `instances` must already be filtered to the alive ones. Assumes a set that passed validation;
// resources it cannot place are skipped.
nlohmann::ordered_json gateway_sections(const std::vector<Resource>& resources,
                                        const std::vector<Instance>& instances);

// True when the service spec takes its endpoints from the registry (no, null or empty
// `endpoints`).
bool uses_registry(const nlohmann::json& service_spec);

// A JSON value as error messages name it: "an object", "a list", "'text'", "null", "12", "true".
std::string describe_json(const nlohmann::json& j);

// Whether `name` is acceptable as a resource, service, instance, city or zone name (the
// gateway's rule: 1..128 of letters, digits, '_', '.', '-').
bool is_valid_name(std::string_view name);

}  // namespace sluice::control
