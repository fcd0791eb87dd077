// `ctl events`: events from the gateways and the registry, newest last.
#include <cstdio>

#include "cli/ctl/output.h"
#include "cli/ctl/verb.h"
#include "net/http_client.h"

namespace sluice::cli::ctl {

namespace {

int run(const Ctx& c, const Args& a, const CLI::App&) {
  int rc = 0;
  if (!a.words.empty()) return usage_error("events takes no arguments");
  std::string path = "/v1/events";
  std::string sep = "?";
  if (!a.after.empty()) path += sep + "after=" + net::url_encode(a.after), sep = "&";
  if (!a.limit.empty()) path += sep + "limit=" + net::url_encode(a.limit);
  json answer;
  if (!call(c, "GET", path, nullptr, "events", &answer, &rc)) return rc;
  if (structured(a)) {
    print_output(a, answer);
    return kOk;
  }
  if (!answer.is_array() || answer.empty()) {
    std::printf("no events\n");
    return kOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : answer) {
    std::string detail = e.contains("detail") && !e["detail"].is_null() ? e["detail"].dump() : "";
    rows.push_back({str_of(e, "id"), str_of(e, "at"), str_of(e, "source"), str_of(e, "kind"),
                    str_of(e, "subject"), wide(a) ? detail : shorten(detail, 80)});
  }
  print_table({"ID", "AT", "SOURCE", "KIND", "SUBJECT", "DETAIL"}, rows);
  return kOk;
}

}  // namespace

const Verb kEvents = {
    "events",
    "events [--limit N] [--after ID] [-o yaml|json|wide]",
    "events from the gateways and the registry",
    "Newest last. --after ID: only events after that id (to follow). -o wide: the detail in\n"
    "full.",
    [](CLI::App& cmd, Args& a) {
      cmd.add_option("--limit", a.limit, "At most N events")
          ->type_name("N")
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
      cmd.add_option("--after", a.after, "Only events after this id (to follow)")
          ->type_name("ID")
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
      add_output(cmd, a, /*tables=*/true);
      add_words(cmd, a, "(none)");
    },
    run,
};

}  // namespace sluice::cli::ctl
