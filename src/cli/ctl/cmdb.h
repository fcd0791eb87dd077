// `sluice ctl cmdb ACTION ...`: one verb, its actions in a table (cmdb_actions(), one line each),
// so the reconciler's actions (findings, accuracy, impact, fix) are a file and a line too.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "cli/ctl/context.h"

namespace sluice::cli::ctl {

struct CmdbAction {
  const char* name;      // get, import, history, ...
  const char* synopsis;  // after "sluice ctl cmdb"
  const char* summary;   // one line, for `ctl cmdb --help`
  // `words` are the words after the action. Returns the exit code.
  int (*run)(const Ctx& c, const Args& a, const std::vector<std::string>& words);
};

extern const CmdbAction kCmdbGet;
extern const CmdbAction kCmdbImport;
extern const CmdbAction kCmdbHistory;
// The reconciler's (cmdb_reconcile.cc).
extern const CmdbAction kCmdbFindings;
extern const CmdbAction kCmdbFix;
extern const CmdbAction kCmdbIgnore;
extern const CmdbAction kCmdbAccuracy;
extern const CmdbAction kCmdbImpact;

std::span<const CmdbAction* const> cmdb_actions();

// "TYPE/KEY" or "TYPE KEY" (words) as a path "/TYPE/KEY" (each part URL-encoded); false and a
// usage message in *error when the words are not that.
bool cmdb_ref(const std::vector<std::string>& words, std::string* type, std::string* key,
              std::string* error);

}  // namespace sluice::cli::ctl
