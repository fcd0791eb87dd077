// control.yaml: where the control plane listens, its store, the admin token file, optional TLS
// and retention. Loaded like the gateway file: every error at once, each with file:line and key.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/loader.h"
#include "core/address.h"
#include "core/duration.h"

namespace sluice::control {

using namespace std::chrono_literals;

struct ControlConfig {
  std::string source_file;
  core::HostPort listen{"127.0.0.1", 7070};
  std::string store;             // "sqlite:///path", "sqlite::memory:", "postgres://..."
  std::string admin_token_file;  // auth.admin_token_file
  bool tls = false;
  std::string tls_cert;                    // PEM file (chain allowed)
  std::string tls_key;                     // PEM file
  core::Duration stats_retention = 24h;    // 1-minute rollups kept this long
  core::Duration events_retention = 168h;  // events kept this long
  uint32_t threads = 2;                    // API server threads
  // cmdb: the reconciler (docs/cmdb.md): a pass at least this often; how long an observation
  // and a traffic call edge stay current.
  core::Duration cmdb_reconcile_interval = 10s;
  core::Duration cmdb_window = 30s;
  core::Duration cmdb_traffic_window = 5min;
  core::Duration slo_interval = 10s;  // slo.interval: how often SLOs are evaluated
};

struct ControlConfigResult {
  std::shared_ptr<const ControlConfig> config;  // null when errors is not empty
  std::vector<config::ConfigError> errors;
  bool ok() const { return errors.empty(); }
};

ControlConfigResult load_control_string(std::string_view yaml, const std::string& source_name);
ControlConfigResult load_control_file(const std::string& path);

}  // namespace sluice::control
