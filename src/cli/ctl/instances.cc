// `ctl instances [SERVICE]`: the registry, with the age of each instance's last heartbeat.
#include <cstdio>

#include "cli/ctl/output.h"
#include "cli/ctl/verb.h"
#include "net/http_client.h"

namespace sluice::cli::ctl {

namespace {

int run(const Ctx& c, const Args& a, const CLI::App&) {
  int rc = 0;
  std::string service = a.service;
  if (a.words.size() == 1 && service.empty()) service = a.words[0];
  if (a.words.size() > 1) return usage_error("instances [SERVICE]");
  std::string path = "/v1/instances";
  if (!service.empty()) path += "?service=" + net::url_encode(service);
  json answer;
  if (!call(c, "GET", path, nullptr, "instances", &answer, &rc)) return rc;
  if (structured(a)) {
    print_output(a, answer);
    return kOk;
  }
  if (!answer.is_array() || answer.empty()) {
    std::printf("no instances registered\n");
    return kOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& i : answer) {
    rows.push_back({str_of(i, "service"), str_of(i, "id"), str_of(i, "address"),
                    str_of(i, "city", "-"), str_of(i, "zone", "-"), str_of(i, "weight"),
                    ago(i.value("heartbeat_ms", 0LL))});
    if (wide(a)) {
      long long ttl = i.value("ttl_ms", 0LL);
      rows.back().push_back(ttl % 1000 == 0 ? std::to_string(ttl / 1000) + "s"
                                            : std::to_string(ttl) + "ms");
      rows.back().push_back(ago(i.value("registered_ms", 0LL)));
      rows.back().push_back(until(i.value("expires_ms", 0LL)));
      // Host facts the instance registered with (empty for an instance that sent none).
      const json facts = i.value("facts", json::object());
      rows.back().push_back(facts.is_object() ? str_of(facts, "hostname", "-") : "-");
      rows.back().push_back(facts.is_object() ? str_of(facts, "version", "-") : "-");
    }
  }
  if (wide(a)) {
    print_table({"SERVICE", "ID", "ADDRESS", "CITY", "ZONE", "WEIGHT", "HEARTBEAT", "TTL",
                 "REGISTERED", "EXPIRES", "HOST", "VERSION"},
                rows);
  } else {
    print_table({"SERVICE", "ID", "ADDRESS", "CITY", "ZONE", "WEIGHT", "HEARTBEAT"}, rows);
  }
  return kOk;
}

}  // namespace

const Verb kInstances = {
    "instances",
    "instances [SERVICE] [-o yaml|json|wide]",
    "the service registry",
    "Registered instances with the age of their last heartbeat (-o wide: also TTL, registered\n"
    "and expiry times, and the host and version the instance registered with; -o json|yaml:\n"
    "every host fact).",
    [](CLI::App& cmd, Args& a) {
      cmd.add_option("--service", a.service, "Only this service's instances (as SERVICE)")
          ->type_name("SERVICE")
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
      add_output(cmd, a, /*tables=*/true);
      add_words(cmd, a, "[SERVICE]");
    },
    run,
};

}  // namespace sluice::cli::ctl
