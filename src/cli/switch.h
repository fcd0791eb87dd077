// `sluice gateway switch`: moves shard ownership between cities through the admin API of one or
// more gateways. With several gateways the change is made in two phases (prepare everywhere,
// then commit everywhere), so no two cities serve a shard at once and no request fails: requests
// for the moving shards wait (units.hold_timeout) between the phases.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace sluice::cli {

struct SwitchOptions {
  std::vector<std::string> admins;  // host:port of each gateway's admin listener
  std::string from;
  std::string to;
  std::string shards;  // empty = every shard `from` owns
  double timeout_seconds = 5;
  // Gateways fed by a control plane get their units section from it: the new ownership is
  // written there too (units resource, reason "switch ..."), or a restarted gateway would take the
  // old one. Checked before anything moves.
  std::string control_plane;
  std::string token_file;
  std::string ca_file;
  // The gateways' admin token (admin.token_file): --admin-token-file, else $SLUICE_ADMIN_TOKEN.
  std::string admin_token_file;
  std::string admin_token;  // resolved by run_switch
};

// Declares `switch` under `gateway` with its options bound to `options` (the options are
// defined here, next to the code that reads them, as each `sluice ctl` verb declares its own).
CLI::App* add_switch_command(CLI::App& gateway, SwitchOptions& options);

// Prints what it did (or why not) and returns the process exit code.
int run_switch(const SwitchOptions& options);

}  // namespace sluice::cli
