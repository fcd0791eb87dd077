// `ctl gateways`: each gateway's versions, status and health as it last reported them.
#include <cstdio>

#include "cli/ctl/output.h"
#include "cli/ctl/verb.h"

namespace sluice::cli::ctl {

namespace {

int run(const Ctx& c, const Args& a, const CLI::App&) {
  int rc = 0;
  if (!a.words.empty()) return usage_error("gateways takes no arguments");
  json answer;
  if (!call(c, "GET", "/v1/gateways", nullptr, "gateways", &answer, &rc)) return rc;
  if (structured(a)) {
    print_output(a, answer);
    return kOk;
  }
  if (!answer.is_array() || answer.empty()) {
    std::printf("no gateways have connected\n");
    return kOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& g : answer) {
    // The version names of docs/operations.md ("Version numbers"), as the gateway's /ready and
    // /stats show them: "N.R" when this control plane has heard it, else the config version N.
    std::string applied = str_of(g, "control_plane_version", str_of(g, "applied"));
    if (applied.empty()) applied = str_of(g, "applied_version", "-");
    std::vector<std::string> row = {str_of(g, "id"),
                                    str_of(g, "city", "-"),
                                    str_of(g, "zone", "-"),
                                    applied,
                                    str_of(g, "status", "-"),
                                    str_of(g, "health", "-"),
                                    str_of(g, "local_version", "-"),
                                    str_of(g, "units_version", "-"),
                                    ago(g.value("seen_ms", 0LL)),
                                    wide(a) ? str_of(g, "error") : shorten(str_of(g, "error"))};
    if (wide(a)) {  // and the config version, the time last seen; the error in full (above)
      row.insert(row.end() - 1, str_of(g, "config_version", str_of(g, "applied_version", "-")));
      row.insert(row.end() - 1, str_of(g, "seen", "-"));
    }
    rows.push_back(std::move(row));
  }
  if (wide(a)) {
    print_table({"GATEWAY", "CITY", "ZONE", "CONTROL_PLANE_VERSION", "STATUS", "HEALTH",
                 "LOCAL_VERSION", "UNITS_VERSION", "SEEN", "CONFIG_VERSION", "SEEN_AT", "ERROR"},
                rows);
  } else {
    print_table({"GATEWAY", "CITY", "ZONE", "CONTROL_PLANE_VERSION", "STATUS", "HEALTH",
                 "LOCAL_VERSION", "UNITS_VERSION", "SEEN", "ERROR"},
                rows);
  }
  return kOk;
}

}  // namespace

const Verb kGateways = {
    "gateways",
    "gateways [-o yaml|json|wide]",
    "each gateway's applied version and health",
    "Gateways that have reported, with the version they applied, their status and health\n"
    "(ok, behind, pending, refused, stale, draining, exited) and the last error (-o wide: in\n"
    "full, with the config version number and the time last seen).",
    [](CLI::App& cmd, Args& a) {
      add_output(cmd, a, /*tables=*/true);
      add_words(cmd, a, "(none)");
    },
    run,
};

}  // namespace sluice::cli::ctl
