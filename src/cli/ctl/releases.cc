// `ctl releases` (every canary release and where it stands) and `ctl release status|abort|pause|
// resume NAME` (one release: its steps, weights and analyses, or an action on it).
#include <cctype>
#include <cstdio>

#include "cli/ctl/output.h"
#include "cli/ctl/verb.h"
#include "net/http_client.h"

namespace sluice::cli::ctl {

namespace {

// Names are what the control plane accepts for resources; anything else is refused here rather
// than spliced into a path.
bool plausible_name(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  for (char ch : s)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.' || ch == '-'))
      return false;
  return true;
}

int list(const Ctx& c, const Args& a, const CLI::App&) {
  int rc = 0;
  if (!a.words.empty())
    return usage_error("releases takes no arguments (a release: release status NAME)");
  json answer;
  if (!call(c, "GET", "/v1/releases", nullptr, "releases", &answer, &rc)) return rc;
  if (structured(a)) {
    print_output(a, answer);
    return kOk;
  }
  const json list = answer.value("releases", json::array());
  if (!list.is_array() || list.empty()) {
    std::printf("no releases\n");
    return kOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : list) {
    rows.push_back({str_of(r, "name"), str_of(r, "state"), str_of(r, "route"),
                    str_of(r, "stable") + " -> " + str_of(r, "canary"), str_of(r, "percent") + "%",
                    ago(r.value("updated_ms", 0LL)),
                    wide(a) ? str_of(r, "reason") : shorten(str_of(r, "reason"), 50)});
  }
  print_table({"NAME", "STATE", "ROUTE", "STABLE -> CANARY", "CANARY", "UPDATED", "REASON"}, rows);
  return kOk;
}

void show(const json& r) {
  std::printf("release %s: %s, canary at %s%%\n", str_of(r, "name").c_str(),
              str_of(r, "state").c_str(), str_of(r, "percent").c_str());
  const json spec = r.value("spec", json::object());
  std::printf("route %s: %s (stable) -> %s (canary)\n", str_of(spec, "route").c_str(),
              str_of(spec, "stable").c_str(), str_of(spec, "canary").c_str());
  if (r.contains("steps")) std::printf("steps: %s\n", r["steps"].dump().c_str());
  if (r.contains("weights")) std::printf("weights: %s\n", r["weights"].dump().c_str());
  if (!str_of(r, "reason").empty()) std::printf("reason: %s\n", str_of(r, "reason").c_str());
  if (!str_of(r, "last_error").empty())
    std::printf("last write not committed: %s\n", str_of(r, "last_error").c_str());
  std::vector<std::vector<std::string>> rows;
  for (const auto& an : r.value("analyses", json::array()))
    rows.push_back({ago(an.value("at_ms", 0LL)), str_of(an, "percent") + "%", str_of(an, "verdict"),
                    str_of(an, "next"), shorten(str_of(an, "summary"), 90)});
  if (!rows.empty()) {
    std::printf("\n");
    print_table({"AT", "CANARY", "VERDICT", "NEXT", "SUMMARY"}, rows);
  }
}

int one(const Ctx& c, const Args& a, const CLI::App&) {
  int rc = 0;
  if (a.words.size() != 2) return usage_error("release status|abort|pause|resume NAME");
  const std::string& action = a.words[0];
  const std::string& name = a.words[1];
  if (action != "status" && action != "abort" && action != "pause" && action != "resume")
    return usage_error("release: unknown action '" + action +
                       "' (expected status, abort, pause or resume)");
  if (!plausible_name(name)) return usage_error("release: not a release name: '" + name + "'");
  json answer;
  const std::string path = "/v1/releases/" + net::url_encode(name);
  if (action == "status") {
    if (a.reason) return usage_error("release status takes no --reason");
    if (!call(c, "GET", path, nullptr, "release " + name, &answer, &rc)) return rc;
    if (structured(a)) {
      print_output(a, answer);
    } else {
      show(answer);
    }
    return kOk;
  }
  json body = json::object();
  if (a.reason) body["reason"] = *a.reason;
  if (!call(c, "POST", path + "/" + action, &body, action + " release " + name, &answer, &rc))
    return rc;
  if (structured(a)) {
    print_output(a, answer);
  } else {
    std::printf("release %s %s, canary at %s%%\n", name.c_str(), str_of(answer, "state").c_str(),
                str_of(answer, "percent").c_str());
  }
  return kOk;
}

}  // namespace

const Verb kReleases = {
    "releases",
    "releases [-o yaml|json|wide]",
    "canary releases: state, route and the canary's weight",
    "Every `release` resource: pending, stepping, paused, promoted, rolled_back or aborted, with\n"
    "the canary's current weight. -o wide: the reason in full.",
    [](CLI::App& cmd, Args& a) {
      add_output(cmd, a, /*tables=*/true);
      add_words(cmd, a, "(none)");
    },
    list,
};

const Verb kRelease = {
    "release",
    "release status|abort|pause|resume NAME [--reason R] [-o json|yaml]",
    "one canary release: its steps and analyses, or abort, pause or resume it",
    "status: the release's steps, weights and every analysis so far.\n"
    "abort: the route goes back to the stable service at once (a config version by\n"
    "release/NAME); the release ends aborted. pause: no analysis and no step until resume.\n"
    "resume: the step's analysis window starts afresh. --reason is recorded.",
    [](CLI::App& cmd, Args& a) {
      add_reason(cmd, a);
      add_output(cmd, a, /*tables=*/false);
      add_words(cmd, a, "status|abort|pause|resume NAME");
    },
    one,
};

}  // namespace sluice::cli::ctl
