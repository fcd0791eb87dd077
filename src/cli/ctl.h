// `sluice ctl`: the command-line client of the control plane (kubectl-like). Talks to
// `sluice control`'s JSON API (docs/control-plane.md) over plain HTTP.
#pragma once

#include <string>
#include <vector>

namespace sluice::cli {

// `args` are the words after `ctl`. Prints results on stdout and problems on stderr; returns the
// exit code: 0 success, 1 the control plane refused or could not be reached, 2 usage or local
// input errors (bad flags, missing --reason, unreadable or malformed file).
int run_ctl(const std::vector<std::string>& args);

}  // namespace sluice::cli
