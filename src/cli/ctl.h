// `sluice ctl`: the command-line client of the control plane (kubectl-like). Talks to
// `sluice control`'s JSON API (docs/control-plane.md) over HTTP or HTTPS. One verb per file in
// src/cli/ctl/ (verb.h), parsed with CLI11 as the rest of `sluice` is.
#pragma once

#include <string>
#include <vector>

namespace sluice::cli {

// `args` are the words after `ctl`. Prints results on stdout and problems on stderr; returns the
// exit code: 0 success, 1 the control plane refused or could not be reached, 2 usage or local
// input errors (bad flags, missing --reason, unreadable or malformed file).
int run_ctl(const std::vector<std::string>& args);

// "apply, diff, get, ...": every verb, for `sluice --help`.
std::string ctl_verb_names();

}  // namespace sluice::cli
