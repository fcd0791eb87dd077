// One `sluice ctl` verb: its help (the list in `ctl --help`, and `ctl VERB --help`), its options
// (declared on its CLI11 subcommand) and what it does. Each verb lives in its own file
// (src/cli/ctl/<verb>.cc); a new verb is one file plus one line in all_verbs() (ctl.cc).
#pragma once

#include <CLI/CLI.hpp>

#include <span>

#include "cli/ctl/context.h"

namespace sluice::cli::ctl {

struct Verb {
  const char* name;
  const char* synopsis;  // after "sluice ctl"
  const char* summary;   // one line, for the list
  const char* details;   // for VERB --help
  // Declares the verb's options and words on `cmd`, bound to `a` (context.h's add_* helpers).
  void (*define)(CLI::App& cmd, Args& a);
  // Runs it once the words are parsed and the server and token are known; returns the exit code.
  int (*run)(const Ctx& c, const Args& a, const CLI::App& cmd);
};

extern const Verb kApply;
extern const Verb kDiff;
extern const Verb kGet;
extern const Verb kDelete;
extern const Verb kVersions;
extern const Verb kRollback;
extern const Verb kInstances;
extern const Verb kGateways;
extern const Verb kEvents;
extern const Verb kTokens;
extern const Verb kChanges;
extern const Verb kChange;
extern const Verb kRollout;
extern const Verb kReleases;
extern const Verb kRelease;
extern const Verb kProbes;
extern const Verb kCmdb;
extern const Verb kSlos;
extern const Verb kAlerts;

// Every verb, in the order `ctl --help` lists them.
std::span<const Verb* const> all_verbs();

}  // namespace sluice::cli::ctl
