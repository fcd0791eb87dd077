// `ctl apply` and `ctl diff`: every resource of every -f in one /v1/apply (diff: a dry run that
// prints the line diff of each resource).
#include <cstdio>

#include "cli/ctl/output.h"
#include "cli/ctl/resource_files.h"
#include "cli/ctl/verb.h"

namespace sluice::cli::ctl {

namespace {

int apply_or_diff(const Ctx& c, const Args& a, bool diff_only) {
  int rc = 0;
  if (!a.words.empty()) return usage_error("unexpected argument '" + a.words[0] + "'");
  if (!diff_only && !need_reason(a, &rc)) return rc;
  json resources = json::array();
  if (!load_files(a, &resources, &rc)) return rc;
  json body = {{"resources", resources}};
  if (diff_only || a.dry_run) body["dry_run"] = true;
  if (a.emergency && !diff_only) body["emergency"] = true;
  if (a.reason && !a.reason->empty()) body["reason"] = *a.reason;
  json answer;
  if (!call(c, "POST", "/v1/apply", &body, diff_only ? "diff" : "apply refused", &answer, &rc))
    return rc;
  const json diff = answer.value("diff", json::array());
  if (diff_only) {
    if (diff.empty()) {
      std::printf("no changes (current version %s)\n", str_of(answer, "version").c_str());
    } else {
      print_diff(diff);
    }
    return kOk;
  }
  if (structured(a)) {
    print_output(a, answer);
    return kOk;
  }
  if (a.dry_run) {
    if (diff.empty()) {
      std::printf("dry run: no changes (current version %s)\n", str_of(answer, "version").c_str());
    } else {
      std::printf("dry run: valid; would change (current version %s):\n",
                  str_of(answer, "version").c_str());
      print_diff_summary(diff, "  ");
    }
    return kOk;
  }
  if (answer.value("unchanged", false) || diff.empty()) {
    std::printf("unchanged (version %s)\n", str_of(answer, "version").c_str());
    return kOk;
  }
  print_diff_summary(diff, "");
  if (print_held(answer)) return kOk;
  std::printf("version %s\n", str_of(answer, "version").c_str());
  print_committed(answer);
  return kOk;
}

}  // namespace

const Verb kApply = {
    "apply",
    "apply -f FILE|DIR|- --reason R [--dry-run] [--emergency] [-o json|yaml]",
    "create or replace the resources in FILE (YAML)",
    "Sends every resource of every -f in one request: validated and applied together, all or\n"
    "nothing, as one new version. -f may repeat; -f DIR reads DIR's *.yaml and *.yml files in "
    "name\n"
    "order (not subdirectories); -f - reads standard input. Each YAML document is one\n"
    "{kind, name, spec} resource, or a list of them. --reason is recorded with the version\n"
    "(required unless --dry-run). --dry-run validates and shows what would change.\n"
    "A write that a change_policy governs is held as a proposed change (its id is printed) until\n"
    "it is approved (sluice ctl change approve ID); --emergency skips the approval and flags the\n"
    "change for review.",
    [](CLI::App& cmd, Args& a) {
      add_files(cmd, a);
      add_reason(cmd, a);
      add_dry_run(cmd, a);
      add_emergency(cmd, a);
      add_output(cmd, a, /*tables=*/false);
      add_words(cmd, a, "(none)");
    },
    [](const Ctx& c, const Args& a, const CLI::App&) { return apply_or_diff(c, a, false); },
};

const Verb kDiff = {
    "diff",
    "diff -f FILE|DIR|-",
    "show what apply would change",
    "A dry-run apply: prints each resource that would be added (+), changed (~) or removed (-)\n"
    "with a line diff of its YAML. Exit status 0 with or without changes.",
    [](CLI::App& cmd, Args& a) {
      add_files(cmd, a);
      add_words(cmd, a, "(none)");
    },
    [](const Ctx& c, const Args& a, const CLI::App&) { return apply_or_diff(c, a, true); },
};

}  // namespace sluice::cli::ctl
