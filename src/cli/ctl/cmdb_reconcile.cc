// `ctl cmdb findings [KIND] | fix ID --reason R | ignore ID [--reason R] | accuracy |
// impact TYPE/NAME`: the reconciler's actions of the `cmdb` verb (cmdb.h's table), over
// /v1/cmdb/findings, /v1/cmdb/accuracy and /v1/cmdb/impact (docs/cmdb.md).
#include <fmt/format.h>

#include <cstdio>

#include "cli/ctl/cmdb.h"
#include "cli/ctl/output.h"
#include "net/http_client.h"

namespace sluice::cli::ctl {

namespace {

bool plausible_id(const std::string& s) {
  if (s.size() != 16) return false;
  for (char ch : s) {
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return false;
  }
  return true;
}

std::string value_cell(const json& f, const char* key) {
  std::string v = str_of(f, key);
  return v.empty() ? "-" : shorten(v, 40);
}

int findings(const Ctx& c, const Args& a, const std::vector<std::string>& w) {
  int rc = 0;
  if (w.size() > 1) return usage_error("cmdb findings [KIND]");
  std::string path = "/v1/cmdb/findings";
  if (w.size() == 1) path += "?kind=" + net::url_encode(w[0]);
  if (wide(a)) path += std::string(w.empty() ? "?" : "&") + "ignored=true";
  json answer;
  if (!call(c, "GET", path, nullptr, "cmdb findings", &answer, &rc)) return rc;
  if (structured(a)) {
    print_output(a, answer);
    return kOk;
  }
  const json list = answer.value("findings", json::array());
  if (list.empty()) {
    std::printf("no findings (%s passes)\n", str_of(answer, "passes").c_str());
    return kOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& f : list) {
    std::string attr = str_of(f, "attribute");
    std::vector<std::string> row = {str_of(f, "id"),
                                    str_of(f, "kind"),
                                    str_of(f, "subject"),
                                    attr.empty() ? "-" : attr,
                                    value_cell(f, "declared"),
                                    value_cell(f, "observed"),
                                    f.value("fixable", false) ? "yes" : "no"};
    if (wide(a)) {
      row.push_back(f.contains("ignored") ? "ignored" : "open");
      row.push_back(str_of(f, "fix"));
    }
    rows.push_back(std::move(row));
  }
  if (wide(a)) {
    print_table({"ID", "KIND", "CI", "ATTRIBUTE", "DECLARED", "OBSERVED", "FIXABLE", "STATE",
                 "SUGGESTED FIX"},
                rows);
  } else {
    print_table({"ID", "KIND", "CI", "ATTRIBUTE", "DECLARED", "OBSERVED", "FIXABLE"}, rows);
  }
  return kOk;
}

int fix(const Ctx& c, const Args& a, const std::vector<std::string>& w) {
  int rc = 0;
  if (w.size() != 1) return usage_error("cmdb fix ID --reason R");
  if (!plausible_id(w[0]))
    return usage_error("cmdb fix: not a finding id (16 hex digits): '" + w[0] + "'");
  if (!a.reason || a.reason->find_first_not_of(" \t") == std::string::npos)
    return usage_error("cmdb fix: --reason R is required (say why the observed value is right)");
  json body = {{"reason", *a.reason}};
  json answer;
  if (!call(c, "POST", "/v1/cmdb/findings/" + w[0] + "/fix", &body, "cmdb fix " + w[0], &answer,
            &rc))
    return rc;
  if (structured(a)) {
    print_output(a, answer);
    return kOk;
  }
  const json f = answer.value("fixed", json::object());
  std::printf("fixed %s: %s %s%s\n", w[0].c_str(), str_of(f, "kind").c_str(),
              str_of(f, "subject").c_str(),
              str_of(f, "attribute").empty() ? "" : (" " + str_of(f, "attribute")).c_str());
  return kOk;
}

int ignore(const Ctx& c, const Args& a, const std::vector<std::string>& w) {
  int rc = 0;
  if (w.size() != 1) return usage_error("cmdb ignore ID [--reason R]");
  if (!plausible_id(w[0]))
    return usage_error("cmdb ignore: not a finding id (16 hex digits): '" + w[0] + "'");
  json body = json::object();
  if (a.reason) body["reason"] = *a.reason;
  json answer;
  if (!call(c, "POST", "/v1/cmdb/findings/" + w[0] + "/ignore", &body, "cmdb ignore " + w[0],
            &answer, &rc))
    return rc;
  if (structured(a)) {
    print_output(a, answer);
  } else {
    std::printf("ignored %s: %s %s (until a pass no longer finds it)\n", w[0].c_str(),
                str_of(answer, "kind").c_str(), str_of(answer, "subject").c_str());
  }
  return kOk;
}

std::string figure(const json& r) {
  if (!r.is_object()) return "-";
  return fmt::format("{:.1f}% ({}/{})", r.value("value", 1.0) * 100.0, r.value("num", 0LL),
                     r.value("den", 0LL));
}

int accuracy(const Ctx& c, const Args& a, const std::vector<std::string>& w) {
  int rc = 0;
  if (!w.empty()) return usage_error("cmdb accuracy takes no arguments");
  json answer;
  if (!call(c, "GET", "/v1/cmdb/accuracy", nullptr, "cmdb accuracy", &answer, &rc)) return rc;
  if (structured(a)) {
    print_output(a, answer);
    return kOk;
  }
  std::printf("score %.1f%%\n\n", answer.value("score", 1.0) * 100.0);
  const json overall = answer.value("overall", json::object());
  std::vector<std::vector<std::string>> rows;
  // Named: items() of a temporary would dangle in the loop.
  const json types = answer.value("types", json::object());
  for (const auto& [type, t] : types.items()) {
    rows.push_back({type, figure(t.value("correctness", json())),
                    figure(t.value("completeness", json())), figure(t.value("freshness", json())),
                    "", ""});
  }
  rows.push_back(
      {"(all)", figure(overall.value("correctness", json())),
       figure(overall.value("completeness", json())), figure(overall.value("freshness", json())),
       figure(overall.value("precision", json())), figure(overall.value("recall", json()))});
  print_table({"TYPE", "CORRECTNESS", "COMPLETENESS", "FRESHNESS", "PRECISION", "RECALL"}, rows);
  return kOk;
}

std::string joined(const json& list) {
  std::string out;
  if (list.is_array()) {
    for (const auto& v : list) out += (out.empty() ? "" : ", ") + v.get<std::string>();
  }
  return out.empty() ? "-" : out;
}

int impact(const Ctx& c, const Args& a, const std::vector<std::string>& w) {
  int rc = 0;
  std::string type, key, error;
  if (!cmdb_ref(w, &type, &key, &error)) return usage_error("cmdb impact: " + error);
  json answer;
  if (!call(c, "GET", "/v1/cmdb/impact/" + net::url_encode(type) + "/" + net::url_encode(key),
            nullptr, "cmdb impact " + type + "/" + key, &answer, &rc))
    return rc;
  if (structured(a)) {
    print_output(a, answer);
    return kOk;
  }
  const json lost = answer.value("lost", json::object());
  std::printf("impact of %s\n", str_of(answer, "subject").c_str());
  for (const char* k : {"instances", "hosts", "gateways", "databases"}) {
    if (!lost.value(k, json::array()).empty())
      std::printf("  lost %-17s %s\n", (std::string(k) + ":").c_str(), joined(lost[k]).c_str());
  }
  for (const char* k : {"services", "routes", "channels", "applications", "business_systems"}) {
    std::printf("  %-22s %s\n", (std::string(k) + ":").c_str(),
                joined(answer.value(k, json::array())).c_str());
  }
  std::vector<std::vector<std::string>> rows;
  const json capacity = answer.value("capacity", json::array());
  for (const auto& s : capacity) {
    const json cities = s.value("cities", json::object());
    for (const auto& [city, cc] : cities.items()) {
      rows.push_back({str_of(s, "service"), city.empty() ? "-" : city, str_of(cc, "total"),
                      str_of(cc, "lost"), str_of(cc, "remaining")});
    }
  }
  if (!rows.empty()) {
    std::printf("\n");
    print_table({"SERVICE", "CITY", "INSTANCES", "LOST", "REMAINING"}, rows);
  }
  return kOk;
}

}  // namespace

const CmdbAction kCmdbFindings = {
    "findings", "findings [KIND] [-o yaml|json|wide]",
    "what the reconciler found (wide: with ignored ones and the suggested fix)", findings};
const CmdbAction kCmdbFix = {"fix", "fix ID --reason R",
                             "apply a finding's fix (the observed value) to declared data", fix};
const CmdbAction kCmdbIgnore = {"ignore", "ignore ID [--reason R]",
                                "hide a finding while passes still find it", ignore};
const CmdbAction kCmdbAccuracy = {"accuracy", "accuracy [-o yaml|json]",
                                  "correctness, completeness, freshness per type; precision, "
                                  "recall of the call edges; score",
                                  accuracy};
const CmdbAction kCmdbImpact = {
    "impact", "impact TYPE/NAME [-o yaml|json]",
    "what is lost with a host, service, instance, city, database, and what depends on it", impact};

}  // namespace sluice::cli::ctl
