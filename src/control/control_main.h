// `sluice control --config control.yaml`: the control plane process (store, admin token
// bootstrap, API server, periodic work) until SIGTERM or SIGINT.
#pragma once

#include <string>

namespace sluice::control {

// Returns the process exit code: 0 after a clean stop on SIGTERM/SIGINT, 1 when the config is
// invalid or the store, token file or listener cannot be set up (the reason on stderr).
int run_control(const std::string& config_path);

}  // namespace sluice::control
