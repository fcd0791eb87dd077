// YAML -> GatewayConfig with every error at once, each naming file:line and the key path.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace sluice::config {

struct ConfigError {
  std::string file;
  int line = 0;                   // 1-based; 0 when unknown
  std::string path;               // "services[2].retry.attempts"
  std::string message;            // "must be 0..10"
  std::string to_string() const;  // "file:line: path: message"
};

struct LoadResult {
  std::shared_ptr<const GatewayConfig> config;  // null when errors is not empty
  std::vector<ConfigError> errors;
  bool ok() const { return errors.empty(); }
};

LoadResult load_file(const std::string& path);
LoadResult load_string(std::string_view yaml, const std::string& source_name);
// A gateway file with `control_plane` merged with the sections the control plane pushed (the JSON
// object `config` of GET /v1/gateway-config: services, routes, rate_limits, units). Errors in
// pushed sections name `pushed_name` (e.g. "control plane config 4.17") and the key path.
LoadResult load_with_pushed(std::string_view local_yaml, const std::string& local_name,
                            std::string_view pushed_json, const std::string& pushed_name);

// The effective config (defaults filled in) as JSON, for GET /config.
std::string to_json(const GatewayConfig& config);

// What a reload from `before` to `after` would change that only a restart can (settings bound to
// sockets and threads made at start), one "<key>: cannot change on reload; restart the gateway
// to apply" per setting; empty when the reload can apply everything. From the field tables.
std::vector<std::string> restart_only_changes(const GatewayConfig& before,
                                              const GatewayConfig& after);

}  // namespace sluice::config
