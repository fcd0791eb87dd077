// `ctl delete KIND NAME --reason R`: removes one resource as a new version.
#include <cstdio>

#include "cli/ctl/kinds.h"
#include "cli/ctl/output.h"
#include "cli/ctl/verb.h"
#include "net/http_client.h"

namespace sluice::cli::ctl {

namespace {

int run(const Ctx& c, const Args& a, const CLI::App&) {
  int rc = 0;
  if (a.words.size() != 2) return usage_error("delete KIND NAME --reason R");
  auto kind = canonical_kind(a.words[0]);
  if (!kind) return usage_error("delete: unknown kind '" + a.words[0] + "'");
  if (!need_reason(a, &rc)) return rc;
  const std::string& name = a.words[1];
  std::string path = "/v1/resources/" + *kind + "/" + net::url_encode(name) + "?";
  if (a.reason && !a.reason->empty()) path += "reason=" + net::url_encode(*a.reason);
  if (a.dry_run) path += "&dry_run=true";
  if (a.emergency) path += "&emergency=true";
  json answer;
  if (!call(c, "DELETE", path, nullptr, "delete " + *kind + "/" + name + " refused", &answer, &rc))
    return rc;
  if (structured(a)) {
    print_output(a, answer);
  } else if (a.dry_run) {
    std::printf("dry run: %s/%s can be deleted (current version %s)\n", kind->c_str(), name.c_str(),
                str_of(answer, "version").c_str());
  } else if (!print_held(answer)) {
    std::printf("%s/%s deleted\nversion %s\n", kind->c_str(), name.c_str(),
                str_of(answer, "version").c_str());
    print_committed(answer);
  }
  return kOk;
}

}  // namespace

const Verb kDelete = {
    "delete",
    "delete KIND NAME --reason R [--dry-run] [--emergency] [-o json|yaml]",
    "delete one resource",
    "Deletes KIND/NAME as a new version. --reason is required unless --dry-run. --emergency\n"
    "skips the approval a change_policy asks for (the change is flagged for review).",
    [](CLI::App& cmd, Args& a) {
      add_reason(cmd, a);
      add_dry_run(cmd, a);
      add_emergency(cmd, a);
      add_output(cmd, a, /*tables=*/false);
      add_words(cmd, a, "KIND NAME");
    },
    run,
};

}  // namespace sluice::cli::ctl
