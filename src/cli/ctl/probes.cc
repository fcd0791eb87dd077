// `ctl probes [NAME]`: every synthetic probe per city (state, last status, success share and
// latency over the last 5 minutes, the last failure's reason), or one probe's recent runs.
#include <cctype>
#include <cstdio>

#include <fmt/format.h>

#include "cli/ctl/output.h"
#include "cli/ctl/verb.h"
#include "net/http_client.h"

namespace sluice::cli::ctl {

namespace {

bool plausible_name(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  for (char ch : s)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.' || ch == '-'))
      return false;
  return true;
}

std::string last_status(const json& t) {
  if (!t.contains("last")) return "-";
  const json& l = t["last"];
  const long long s = l.value("status", 0LL);
  return (l.value("ok", false) ? "ok " : "FAIL ") + (s == 0 ? std::string("-") : std::to_string(s));
}

std::string percent(const json& w) {
  if (w.value("runs", 0LL) == 0) return "-";
  return fmt::format("{:.1f}% ({})", 100.0 * w.value("success_ratio", 0.0), w.value("runs", 0LL));
}

std::string ms(const json& w, const char* key) {
  if (w.value("runs", 0LL) == 0) return "-";
  return std::to_string(w.value(key, 0LL)) + "ms";
}

std::vector<std::string> row(const json& t, const Args& a, bool with_probe) {
  const json w = t.value("windows", json::object()).value("5m", json::object());
  const json f = t.value("last_failure", json::object());
  std::string failure = f.empty() ? "-" : ago(f.value("at_ms", 0LL)) + ": " + str_of(f, "reason");
  std::vector<std::string> r;
  if (with_probe) r.push_back(str_of(t, "probe"));
  for (std::string s : {str_of(t, "city"), str_of(t, "state"), last_status(t), percent(w),
                        ms(w, "p50_ms"), ms(w, "p99_ms"), wide(a) ? failure : shorten(failure, 60)})
    r.push_back(std::move(s));
  return r;
}

int run(const Ctx& c, const Args& a, const CLI::App&) {
  int rc = 0;
  if (a.words.size() > 1) return usage_error("probes takes at most one word: a probe's name");
  json answer;
  if (a.words.empty()) {
    if (!call(c, "GET", "/v1/probes", nullptr, "probes", &answer, &rc)) return rc;
    if (structured(a)) {
      print_output(a, answer);
      return kOk;
    }
    const json list = answer.value("probes", json::array());
    if (!list.is_array() || list.empty()) {
      std::printf("no probes\n");
      return kOk;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& t : list) rows.push_back(row(t, a, true));
    print_table(
        {"PROBE", "CITY", "STATE", "LAST", "SUCCESS 5M (RUNS)", "P50", "P99", "LAST FAILURE"},
        rows);
    return kOk;
  }
  const std::string& name = a.words[0];
  if (!plausible_name(name)) return usage_error("probes: not a probe name: '" + name + "'");
  if (!call(c, "GET", "/v1/probes/" + net::url_encode(name), nullptr, "probe " + name, &answer,
            &rc))
    return rc;
  if (structured(a)) {
    print_output(a, answer);
    return kOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& t : answer.value("cities", json::array())) rows.push_back(row(t, a, false));
  std::printf("probe %s\n", name.c_str());
  print_table({"CITY", "STATE", "LAST", "SUCCESS 5M (RUNS)", "P50", "P99", "LAST FAILURE"}, rows);
  for (const auto& t : answer.value("cities", json::array())) {
    std::printf("\n%s, recent runs:\n", str_of(t, "city").c_str());
    std::vector<std::vector<std::string>> runs;
    for (const auto& r : t.value("recent", json::array()))
      runs.push_back({ago(r.value("at_ms", 0LL)), r.value("ok", false) ? "ok" : "FAIL",
                      str_of(r, "status"), str_of(r, "latency_ms") + "ms",
                      shorten(str_of(r, "reason", "-"), 80)});
    print_table({"AT", "RESULT", "STATUS", "LATENCY", "REASON"}, runs);
  }
  return kOk;
}

}  // namespace

const Verb kProbes = {
    "probes",
    "probes [NAME] [-o yaml|json|wide]",
    "synthetic probes per city: state, success %, p50/p99, last failure",
    "Every `probe` resource in each of its cities: pending, ok or failing, the last run's result,\n"
    "the share of good runs and the p50/p99 latency over the last 5 minutes, and the last\n"
    "failure's reason. With NAME: that probe's cities and their last 20 runs. -o wide: reasons\n"
    "in full. docs/probes.md has the contract.",
    [](CLI::App& cmd, Args& a) {
      add_output(cmd, a, /*tables=*/true);
      add_words(cmd, a, "[NAME]");
    },
    run,
};

}  // namespace sluice::cli::ctl
