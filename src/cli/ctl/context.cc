#include "cli/ctl/context.h"

#include <cstdio>

#include "cli/ctl/output.h"
#include "core/json.h"

namespace sluice::cli::ctl {

void add_output(CLI::App& cmd, Args& a, bool tables) {
  std::string choices = tables ? "yaml, json or wide" : "json or yaml";
  auto check = [tables, choices](std::string& v) -> std::string {
    if (v == "yml") v = "yaml";
    if (v == "json" || v == "yaml" || (tables && v == "wide")) return "";
    return "expected " + choices + ", got '" + v + "'";
  };
  cmd.add_option("-o,--output", a.output,
                 tables ? "yaml | json: the server's answer; wide: the table with more columns"
                        : "json | yaml: the server's answer instead of the summary")
      ->type_name(tables ? "yaml|json|wide" : "json|yaml")
      ->transform(CLI::Validator(check, "", "output"))  // transform: "yml" becomes "yaml"
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
}

void add_files(CLI::App& cmd, Args& a) {
  cmd.add_option("-f,--filename,--file", a.files,
                 "YAML resources: a file, a directory (*.yaml, *.yml) or - (stdin); repeatable")
      ->type_name("FILE|DIR|-")
      ->allow_extra_args(false);  // -f a -f b, and `-f a b` leaves b a word
}

void add_reason(CLI::App& cmd, Args& a) {
  cmd.add_option("--reason,-m", a.reason, "Why: recorded with the version (required)")
      ->type_name("R")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
}

void add_dry_run(CLI::App& cmd, Args& a) {
  cmd.add_flag("--dry-run", a.dry_run, "Validate and show what would change; write nothing");
}

void add_emergency(CLI::App& cmd, Args& a) {
  cmd.add_flag("--emergency", a.emergency,
               "Skip the approval a change_policy asks for (the change is flagged for review)");
}

bool print_held(const json& answer) {
  if (!answer.is_object() || !answer.contains("change") || str_of(answer, "state") == "done")
    return false;
  std::printf("%s\n", str_of(answer, "message").c_str());
  std::printf("change %s %s\n", str_of(answer, "change").c_str(), str_of(answer, "state").c_str());
  return true;
}

void print_committed(const json& answer) {
  if (!answer.is_object() || !answer.contains("change")) return;
  std::printf("change %s done%s\n", str_of(answer, "change").c_str(),
              answer.value("review_required", false)
                  ? " (emergency: review required, sluice ctl change review ID --reason R)"
                  : "");
}

void add_words(CLI::App& cmd, Args& a, const std::string& what) {
  cmd.add_option("words", a.words, what);
}

int usage_error(const std::string& message) {
  std::fprintf(stderr, "sluice ctl: %s\n(sluice ctl --help for usage)\n", message.c_str());
  return kUsage;
}

bool need_reason(const Args& a, int* rc) {
  if (a.dry_run || (a.reason && !trim(*a.reason).empty())) return true;
  *rc = usage_error("--reason R is required for every change (it is recorded with the version)");
  return false;
}

namespace {

// Explains a failed request on stderr; returns the exit code (1).
int report(const Ctx& c, const net::HttpReply& r, const std::string& what) {
  if (r.status == 0) {
    std::fprintf(stderr, "sluice ctl: cannot reach control plane at %s: %s\n", c.server.url.c_str(),
                 r.error.c_str());
    return kRefused;
  }
  json j = sluice::core::parse_json_or_discarded(r.body);
  std::string msg = j.is_object() && j.contains("error") && j["error"].is_string()
                        ? j["error"].get<std::string>()
                        : "HTTP " + std::to_string(r.status);
  if (r.status == 401) {
    if (c.token.empty()) {
      std::fprintf(stderr,
                   "sluice ctl: no token: give --token-file FILE, set SLUICE_TOKEN, or set "
                   "token_file in ~/.config/sluice/ctl.yaml\n");
    } else {
      std::fprintf(stderr, "sluice ctl: token rejected by %s (token from %s)\n",
                   c.server.url.c_str(), c.token_source.c_str());
    }
    return kRefused;
  }
  if (r.status == 403) {
    // A 403 is a role too small, or a rule about who (an author may not approve their own).
    if (msg.find("role") != std::string::npos) {
      std::fprintf(stderr, "sluice ctl: %s: the token's role is too small for this (%s)\n",
                   what.c_str(), msg.c_str());
    } else {
      std::fprintf(stderr, "sluice ctl: %s: refused for this token: %s\n", what.c_str(),
                   msg.c_str());
    }
    return kRefused;
  }
  std::fprintf(stderr, "sluice ctl: %s: %s\n", what.c_str(), msg.c_str());
  if (j.is_object() && j.contains("errors") && j["errors"].is_array()) {
    for (const auto& e : j["errors"])
      std::fprintf(stderr, "  %s\n",
                   e.is_string() ? e.get<std::string>().c_str() : e.dump().c_str());
  }
  // A 409 is also a change refused by a freeze window or in the wrong state: no retry hint there.
  if (r.status == 409 && msg.rfind("version conflict", 0) == 0)
    std::fprintf(stderr, "  (someone else wrote first: try again)\n");
  return kRefused;
}

}  // namespace

bool call(const Ctx& c, const std::string& method, const std::string& path, const json* body,
          const std::string& what, json* answer, int* rc) {
  std::string text = body ? body->dump() : "";
  net::HttpOptions options;
  options.user_agent = "sluice-ctl";
  options.ca_file = c.ca_file;
  net::HttpReply r =
      net::http_call(c.server, c.token, method, path, body ? &text : nullptr, options);
  if (r.status < 200 || r.status >= 300) {
    *rc = report(c, r, what);
    return false;
  }
  *answer = sluice::core::parse_json_or_discarded(r.body);
  if (answer->is_discarded()) {
    std::fprintf(stderr, "sluice ctl: %s: the answer is not JSON: %s\n", what.c_str(),
                 shorten(r.body, 200).c_str());
    *rc = kRefused;
    return false;
  }
  *rc = kOk;
  return true;
}

}  // namespace sluice::cli::ctl
