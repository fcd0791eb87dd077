// `ctl versions [N]`: config versions newest first, or one version with its diff.
#include <cstdio>

#include "cli/ctl/output.h"
#include "cli/ctl/verb.h"
#include "net/http_client.h"

namespace sluice::cli::ctl {

namespace {

int run(const Ctx& c, const Args& a, const CLI::App&) {
  int rc = 0;
  if (a.words.size() > 1) return usage_error("versions [N] [--limit N]");
  json answer;
  if (a.words.size() == 1) {  // one version, with its resources
    const std::string& n = a.words[0];
    if (!all_digits(n, 0)) return usage_error("versions: not a version number: '" + n + "'");
    if (!call(c, "GET", "/v1/versions/" + n, nullptr, "version " + n, &answer, &rc)) return rc;
    if (structured(a)) {
      print_output(a, answer);
      return kOk;
    }
    std::printf("version %s  %s  by %s\nreason: %s\n", str_of(answer, "number").c_str(),
                str_of(answer, "created").c_str(), str_of(answer, "author").c_str(),
                str_of(answer, "reason").c_str());
    print_diff(answer.value("diff", json::array()));
    return kOk;
  }
  std::string path = "/v1/versions";
  if (!a.limit.empty()) path += "?limit=" + net::url_encode(a.limit);
  if (!call(c, "GET", path, nullptr, "versions", &answer, &rc)) return rc;
  if (structured(a)) {
    print_output(a, answer);
    return kOk;
  }
  if (!answer.is_array() || answer.empty()) {
    std::printf("no versions yet\n");
    return kOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& v : answer) {
    const json diff = v.value("diff", json::array());
    rows.push_back({str_of(v, "number"), str_of(v, "created"), str_of(v, "author"),
                    change_counts(diff), str_of(v, "reason")});
    if (wide(a)) {  // and which resources, e.g. "+service/a ~route/b"
      std::string what;
      for (const auto& d : diff.is_array() ? diff : json::array()) {
        std::string op = str_of(d, "op");
        if (!what.empty()) what += " ";
        what += (op == "add"      ? "+"
                 : op == "remove" ? "-"
                                  : "~") +
                str_of(d, "kind") + "/" + str_of(d, "name");
      }
      rows.back().push_back(what);
    }
  }
  if (wide(a)) {
    print_table({"VERSION", "CREATED", "AUTHOR", "CHANGES", "REASON", "RESOURCES"}, rows);
  } else {
    print_table({"VERSION", "CREATED", "AUTHOR", "CHANGES", "REASON"}, rows);
  }
  return kOk;
}

}  // namespace

const Verb kVersions = {
    "versions",
    "versions [N] [--limit N] [-o yaml|json|wide]",
    "config versions, newest first (N: one version, with its diff)",
    "A table VERSION CREATED AUTHOR CHANGES REASON (-o wide: also the resources changed).\n"
    "With N: that version's author, reason and diff.",
    [](CLI::App& cmd, Args& a) {
      cmd.add_option("--limit", a.limit, "At most N versions, newest first")
          ->type_name("N")
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
      add_output(cmd, a, /*tables=*/true);
      add_words(cmd, a, "[N]");
    },
    run,
};

}  // namespace sluice::cli::ctl
