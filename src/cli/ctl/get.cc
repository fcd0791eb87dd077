// `ctl get KIND [NAME]`: resources as a table (KIND NAME SUMMARY), or as the documents
// `apply -f` reads back (-o yaml), or the server's JSON.
#include <cstdio>

#include "cli/ctl/kinds.h"
#include "cli/ctl/output.h"
#include "cli/ctl/verb.h"
#include "cli/ctl/yaml_json.h"
#include "net/http_client.h"

namespace sluice::cli::ctl {

namespace {

// One line about a resource; `full` (-o wide): every endpoint, nothing shortened.
std::string summary(const json& r, bool full) {
  std::string kind = str_of(r, "kind");
  const json spec = r.value("spec", json::object());
  if (!spec.is_object()) return "";
  if (kind == "service") {
    const json eps = spec.value("endpoints", json());
    if (!eps.is_array() || eps.empty()) return "endpoints from the registry";
    std::string s = std::to_string(eps.size()) + " endpoint(s):";
    size_t shown = full ? eps.size() : 3;
    for (size_t i = 0; i < eps.size() && i < shown; ++i) s += " " + str_of(eps[i], "address");
    if (eps.size() > shown) s += " ...";
    return s;
  }
  if (kind == "route") {
    std::string s;
    if (spec.contains("match") && spec["match"].is_object()) {
      for (auto it = spec["match"].begin(); it != spec["match"].end(); ++it) {
        if (!s.empty()) s += " ";
        s += it.key() + "=" + (it.value().is_string() ? it->get<std::string>() : it->dump());
      }
    }
    if (spec.contains("services") && spec["services"].is_array()) {
      // A weighted split: "pay-v1 95, pay-v2 5 (canary)".
      std::string split;
      for (const auto& sv : spec["services"]) {
        if (!sv.is_object()) continue;
        if (!split.empty()) split += ", ";
        split += str_of(sv, "name", "?") + " " +
                 (sv.contains("weight") ? sv["weight"].dump() : std::string("?"));
        if (sv.contains("canary") && sv["canary"].is_boolean() && sv["canary"].get<bool>())
          split += " (canary)";
      }
      s += " -> " + split;
    } else {
      s += " -> " + str_of(spec, "service", "?");
    }
    if (spec.contains("order")) s += " (order " + spec["order"].dump() + ")";
    return s;
  }
  std::string s;
  for (auto it = spec.begin(); it != spec.end(); ++it) {
    if (it.key() == "name") continue;
    if (!s.empty()) s += " ";
    s += it.key() + "=" + (it.value().is_string() ? it->get<std::string>() : it->dump());
  }
  return full ? s : shorten(s);
}

int run(const Ctx& c, const Args& a, const CLI::App&) {
  int rc = 0;
  if (a.words.empty())
    return usage_error("get: KIND is required (service, route, rate_limit, units, all)");
  if (a.words.size() > 2) return usage_error("get: unexpected argument '" + a.words[2] + "'");
  std::optional<std::string> kind;
  if (lower(a.words[0]) != "all") {
    kind = canonical_kind(a.words[0]);
    if (!kind)
      return usage_error("get: unknown kind '" + a.words[0] +
                         "' (service, route, rate_limit, units, all)");
  }
  json answer;
  if (a.words.size() == 2) {
    if (!kind) return usage_error("get all takes no NAME");
    const std::string& name = a.words[1];
    std::string path = "/v1/resources/" + *kind + "/" + net::url_encode(name);
    if (!call(c, "GET", path, nullptr, "get " + *kind + "/" + name, &answer, &rc)) return rc;
    if (structured(a)) {
      print_output(a, answer);
    } else {
      print_table({"KIND", "NAME", "SUMMARY"},
                  {{str_of(answer, "kind"), str_of(answer, "name"), summary(answer, wide(a))}});
    }
    return kOk;
  }
  std::string path = kind ? "/v1/resources?kind=" + *kind : "/v1/resources";
  if (!call(c, "GET", path, nullptr, "get", &answer, &rc)) return rc;
  json list = answer.value("resources", json::array());
  if (a.output == "json") {
    std::printf("%s\n", list.dump(2).c_str());
  } else if (a.output == "yaml") {
    // Documents separated by ---, as `apply -f` reads them.
    bool first = true;
    for (const auto& r : list) {
      if (!first) std::printf("---\n");
      first = false;
      std::printf("%s", to_yaml(r).c_str());
    }
  } else {
    if (list.empty()) {
      std::printf("no resources%s (version %s)\n", kind ? (" of kind " + *kind).c_str() : "",
                  str_of(answer, "version").c_str());
      return kOk;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : list)
      rows.push_back({str_of(r, "kind"), str_of(r, "name"), summary(r, wide(a))});
    print_table({"KIND", "NAME", "SUMMARY"}, rows);
  }
  return kOk;
}

}  // namespace

const Verb kGet = {
    "get",
    "get KIND [NAME] [-o yaml|json|wide]",
    "list resources (KIND: service, route, rate_limit, units, all)",
    "KIND: service (services, svc), route (routes), rate_limit (rate_limits, rl), units, or all.\n"
    "A table KIND NAME SUMMARY by default (-o wide: the summary in full). -o yaml prints\n"
    "documents that apply -f reads back unchanged; -o json the server's JSON.",
    [](CLI::App& cmd, Args& a) {
      add_output(cmd, a, /*tables=*/true);
      add_words(cmd, a, "KIND [NAME]");
    },
    run,
};

}  // namespace sluice::cli::ctl
