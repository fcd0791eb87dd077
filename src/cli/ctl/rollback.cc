// `ctl rollback N --reason R`: a new version whose resources are those of version N.
#include <cstdio>
#include <string>

#include "cli/ctl/output.h"
#include "cli/ctl/verb.h"

namespace sluice::cli::ctl {

namespace {

int run(const Ctx& c, const Args& a, const CLI::App&) {
  int rc = 0;
  if (a.words.size() != 1) return usage_error("rollback N --reason R");
  const std::string& n = a.words[0];
  if (!all_digits(n, 0) || n.size() > 18)
    return usage_error("rollback: not a version number: '" + n + "'");
  if (!need_reason(a, &rc)) return rc;
  json body = {{"version", std::stoll(n)}};
  if (a.reason && !a.reason->empty()) body["reason"] = *a.reason;
  if (a.dry_run) body["dry_run"] = true;
  if (a.emergency) body["emergency"] = true;
  json answer;
  if (!call(c, "POST", "/v1/rollback", &body, "rollback to version " + n + " refused", &answer,
            &rc))
    return rc;
  const json diff = answer.value("diff", json::array());
  if (structured(a)) {
    print_output(a, answer);
  } else if (a.dry_run) {
    std::printf("dry run: rolling back to version %s would change:\n", n.c_str());
    print_diff_summary(diff, "  ");
  } else if (answer.value("unchanged", false) || diff.empty()) {
    std::printf("unchanged: version %s already has version %s's resources\n",
                str_of(answer, "version").c_str(), n.c_str());
  } else {
    print_diff_summary(diff, "");
    if (!print_held(answer)) {
      std::printf("rolled back to version %s: now version %s\n", n.c_str(),
                  str_of(answer, "version").c_str());
      print_committed(answer);
    }
  }
  return kOk;
}

}  // namespace

const Verb kRollback = {
    "rollback",
    "rollback N --reason R [--dry-run] [--emergency] [-o json|yaml]",
    "make version N's resources the current ones",
    "Writes a new version whose resources are those of version N. --reason is required unless\n"
    "--dry-run, which shows what would change. --emergency skips the approval a change_policy\n"
    "asks for (the change is flagged for review).",
    [](CLI::App& cmd, Args& a) {
      add_reason(cmd, a);
      add_dry_run(cmd, a);
      add_emergency(cmd, a);
      add_output(cmd, a, /*tables=*/false);
      add_words(cmd, a, "N");
    },
    run,
};

}  // namespace sluice::cli::ctl
