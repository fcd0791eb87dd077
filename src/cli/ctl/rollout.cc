// `ctl rollout status ID`: a staged rollout as the control plane drives it (GET
// /v1/changes/{id}/rollout): the stage, the gateways on each version, and every analysis so far
// with its sentences.
#include <cstdio>

#include "cli/ctl/output.h"
#include "cli/ctl/verb.h"

namespace sluice::cli::ctl {

namespace {

int run(const Ctx& c, const Args& a, const CLI::App&) {
  int rc = 0;
  if (a.words.size() != 2 || a.words[0] != "status") return usage_error("rollout status ID");
  const std::string& id = a.words[1];
  if (!all_digits(id, 0) || id.size() > 18)
    return usage_error("rollout: not a change id: '" + id + "'");
  json st;
  if (!call(c, "GET", "/v1/changes/" + id + "/rollout", nullptr, "rollout of change " + id, &st,
            &rc))
    return rc;
  if (structured(a)) {
    print_output(a, st);
    return kOk;
  }
  std::printf("change %s: %s (change state %s), stage %s of %s, version %s -> %s\n", id.c_str(),
              str_of(st, "phase").c_str(), str_of(st, "state", "-").c_str(),
              str_of(st, "stage").c_str(), str_of(st, "stages", "-").c_str(),
              str_of(st, "base_version").c_str(), str_of(st, "target_version").c_str());
  if (!str_of(st, "stage_since").empty())
    std::printf("stage since %s\n", str_of(st, "stage_since").c_str());
  if (!str_of(st, "reason").empty()) std::printf("reason: %s\n", str_of(st, "reason").c_str());
  std::vector<std::vector<std::string>> gw;
  const json on = st.value("gateways_on_versions", json::object());  // items() needs it alive
  for (const auto& [v, ids] : on.items()) {
    std::string list;
    for (const auto& g : ids) list += (list.empty() ? "" : ",") + g.get<std::string>();
    gw.push_back({v == "-1" ? "none applied" : v, std::to_string(ids.size()), list});
  }
  if (!gw.empty()) {
    std::printf("\n");
    print_table({"VERSION", "GATEWAYS", "IDS"}, gw);
  }
  std::vector<std::vector<std::string>> rows;
  const json analyses = st.value("analyses", json::array());
  for (const auto& an : analyses)
    rows.push_back({str_of(an, "at"), str_of(an, "stage"), str_of(an, "verdict"),
                    str_of(an, "step"),
                    wide(a) ? str_of(an, "summary") : shorten(str_of(an, "summary"))});
  if (!rows.empty()) {
    std::printf("\n");
    print_table({"AT", "STAGE", "VERDICT", "STEP", "ANALYSIS"}, rows);
  }
  return kOk;
}

}  // namespace

const Verb kRollout = {
    "rollout",
    "rollout status ID [-o yaml|json|wide]",
    "a change's staged rollout: stage, gateways per version, analyses",
    "status: the stage reached of the change's rollout plan, the gateways on each config\n"
    "version, and each analysis between stages (verdict, next step, its sentences; -o wide: in\n"
    "full). `sluice ctl change abort ID --reason R` rolls a rolling change back.",
    [](CLI::App& cmd, Args& a) {
      add_output(cmd, a, /*tables=*/true);
      add_words(cmd, a, "status ID");
    },
    run,
};

}  // namespace sluice::cli::ctl
