// `ctl slos` (every SLO's error budget and burn rates, per city and overall) and `ctl alerts`
// (the SLO alerts firing, or with --all the recently resolved ones too). docs/slo.md.
#include <cstdio>

#include <fmt/format.h>

#include "cli/ctl/output.h"
#include "cli/ctl/verb.h"

namespace sluice::cli::ctl {

namespace {

std::string percent(const json& v) {
  if (!v.is_number()) return "-";
  return fmt::format("{:.1f}%", v.get<double>() * 100);
}

std::string burn(const json& figures, const char* window) {
  const json b = figures.value("burn_rate", json::object());
  if (!b.contains(window) || !b[window].is_number()) return "-";
  return fmt::format("{:.2f}", b[window].get<double>());
}

std::string sli_of(const json& f) {
  if (!f.contains("sli") || !f["sli"].is_number()) return "-";
  return fmt::format("{:.3f}%", f["sli"].get<double>());
}

int slos(const Ctx& c, const Args& a, const CLI::App&) {
  int rc = 0;
  if (!a.words.empty()) return usage_error("slos takes no arguments");
  json answer;
  if (!call(c, "GET", "/v1/slos", nullptr, "slos", &answer, &rc)) return rc;
  if (structured(a)) {
    print_output(a, answer);
    return kOk;
  }
  const json list = answer.value("slos", json::array());
  if (!list.is_array() || list.empty()) {
    std::printf("no slos\n");
    return kOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : list) {
    std::string target;
    const json t = s.value("target", json::object());
    if (t.is_object() && t.size() == 1 && t.begin()->is_string())
      target = t.begin().key() + "/" + t.begin()->get<std::string>();
    std::string objective = str_of(s, "objective") + "% " + str_of(s, "sli");
    auto row = [&](const std::string& city, const json& f, const std::string& alert) {
      std::vector<std::string> r = {str_of(s, "name"),
                                    target,
                                    objective,
                                    city,
                                    sli_of(f),
                                    percent(f.value("error_budget_remaining", json())),
                                    burn(f, "5m"),
                                    burn(f, "1h"),
                                    burn(f, "6h"),
                                    burn(f, "3d"),
                                    alert};
      if (wide(a)) {
        r.insert(r.end() - 1, {burn(f, "30m"), burn(f, "1d"), str_of(f, "requests")});
      }
      rows.push_back(std::move(r));
    };
    row("all", s.value("overall", json::object()), "");
    for (const auto& cf : s.value("cities", json::array())) {
      std::string alert = str_of(cf, "alert");
      if (cf.contains("maintenance")) alert += " (maintenance " + str_of(cf, "maintenance") + ")";
      if (cf.value("guarded", false)) alert += " (under min_requests)";
      row(str_of(cf, "city"), cf, alert);
    }
  }
  std::vector<std::string> header = {"NAME",    "TARGET",      "OBJECTIVE", "CITY",
                                     "SLI",     "BUDGET LEFT", "BURN 5M",   "BURN 1H",
                                     "BURN 6H", "BURN 3D",     "ALERT"};
  if (wide(a)) header.insert(header.end() - 1, {"BURN 30M", "BURN 1D", "REQUESTS"});
  print_table(header, rows);
  return kOk;
}

int alerts(const Ctx& c, const Args& a, const CLI::App& cmd) {
  int rc = 0;
  if (!a.words.empty()) return usage_error("alerts takes no arguments");
  const bool all = cmd.count("--all") > 0;
  json answer;
  if (!call(c, "GET", all ? "/v1/alerts?state=all" : "/v1/alerts", nullptr, "alerts", &answer, &rc))
    return rc;
  if (structured(a)) {
    print_output(a, answer);
    return kOk;
  }
  const json list = answer.value("alerts", json::array());
  if (!list.is_array() || list.empty()) {
    std::printf(all ? "no alerts\n" : "no alerts firing\n");
    return kOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& al : list) {
    rows.push_back({str_of(al, "slo"), str_of(al, "city"), str_of(al, "severity"),
                    str_of(al, "state"), str_of(al, "rule"),
                    fmt::format("{:.2f}/{:.2f} >= {}", al.value("burn_long", 0.0),
                                al.value("burn_short", 0.0), str_of(al, "factor")),
                    ago(al.value("since_ms", 0LL)), ago(al.value("resolved_ms", 0LL))});
  }
  print_table({"SLO", "CITY", "SEVERITY", "STATE", "RULE", "BURN LONG/SHORT", "SINCE", "RESOLVED"},
              rows);
  return kOk;
}

}  // namespace

const Verb kSlos = {
    "slos",
    "slos [-o yaml|json|wide]",
    "SLOs: error budget left and burn rates per city and overall",
    "Every `slo` resource as the control plane last evaluated it: per city and overall (all), the\n"
    "SLI over the SLO window, the error budget left, burn rates over 5m, 1h, 6h and 3d (scaled\n"
    "with the SLO's window; -o wide adds 30m, 1d and requests) and the alert in force (page,\n"
    "ticket or none; maintenance and min_requests say why a burn does not page).",
    [](CLI::App& cmd, Args& a) {
      add_output(cmd, a, /*tables=*/true);
      add_words(cmd, a, "(none)");
    },
    slos,
};

const Verb kAlerts = {
    "alerts",
    "alerts [--all] [-o yaml|json]",
    "SLO alerts firing (page, ticket), per SLO and city",
    "The multiwindow burn-rate alerts firing now: SLO, city, severity, the rule that holds\n"
    "(1h+5m, 6h+30m, 3d+6h) and its burn rates against the factor. --all: the recently resolved\n"
    "ones too.",
    [](CLI::App& cmd, Args& a) {
      cmd.add_flag("--all")->description("Resolved alerts too");
      add_output(cmd, a, /*tables=*/true);
      add_words(cmd, a, "(none)");
    },
    alerts,
};

}  // namespace sluice::cli::ctl
