// `ctl tokens [list] | create NAME --role ROLE | revoke ID`: API tokens over /v1/tokens (admin
// role). The secret of a new token is printed alone on stdout, so `> FILE` makes a token file.
#include <cstdio>

#include "cli/ctl/output.h"
#include "cli/ctl/verb.h"
#include "net/http_client.h"

namespace sluice::cli::ctl {

namespace {

int list(const Ctx& c, const Args& a) {
  int rc = 0;
  if (!a.words.empty()) return usage_error("tokens list takes no arguments");
  json answer;
  if (!call(c, "GET", "/v1/tokens", nullptr, "tokens", &answer, &rc)) return rc;
  if (structured(a)) {
    print_output(a, answer);
    return kOk;
  }
  if (!answer.is_array() || answer.empty()) {
    std::printf("no tokens\n");
    return kOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& t : answer) {
    rows.push_back(
        {str_of(t, "id"), str_of(t, "name"), str_of(t, "role"), ago(t.value("created_ms", 0LL))});
    if (wide(a)) rows.back().push_back(str_of(t, "created_ms"));
  }
  if (wide(a)) {
    print_table({"ID", "NAME", "ROLE", "CREATED", "CREATED_MS"}, rows);
  } else {
    print_table({"ID", "NAME", "ROLE", "CREATED"}, rows);
  }
  return kOk;
}

int create(const Ctx& c, const Args& a) {
  int rc = 0;
  if (a.words.size() != 1) return usage_error("tokens create NAME --role ROLE");
  if (a.role != "viewer" && a.role != "operator" && a.role != "admin") {
    return usage_error(a.role.empty()
                           ? "tokens create: --role viewer|operator|admin is required"
                           : "tokens create: --role: expected viewer, operator or admin, got '" +
                                 a.role + "'");
  }
  json body = {{"name", a.words[0]}, {"role", a.role}};
  json answer;
  if (!call(c, "POST", "/v1/tokens", &body, "tokens create refused", &answer, &rc)) return rc;
  if (structured(a)) {
    print_output(a, answer);
    return kOk;
  }
  // The secret alone on stdout (so `> FILE` makes a token file); the rest on stderr.
  std::printf("%s\n", str_of(answer, "token").c_str());
  std::fprintf(stderr,
               "token %s created for '%s' (role %s); it is shown only now: keep it in a file "
               "readable only by its user (mode 0600)\n",
               str_of(answer, "id").c_str(), str_of(answer, "name").c_str(),
               str_of(answer, "role").c_str());
  return kOk;
}

int revoke(const Ctx& c, const Args& a) {
  int rc = 0;
  if (a.words.size() != 1) return usage_error("tokens revoke ID");
  const std::string& id = a.words[0];
  json answer;
  if (!call(c, "DELETE", "/v1/tokens/" + net::url_encode(id), nullptr, "tokens revoke " + id,
            &answer, &rc))
    return rc;
  if (structured(a)) {
    print_output(a, answer);
  } else {
    std::printf("token %s revoked\n", id.c_str());
  }
  return kOk;
}

int run(const Ctx& c, const Args& a, const CLI::App& cmd) {
  for (const CLI::App* sub : cmd.get_subcommands()) {
    if (sub->get_name() == "create") return create(c, a);
    if (sub->get_name() == "revoke") return revoke(c, a);
  }
  return list(c, a);  // `tokens` alone lists
}

}  // namespace

const Verb kTokens = {
    "tokens",
    "tokens [list|create NAME --role ROLE|revoke ID] [-o yaml|json|wide]",
    "API tokens (admin role): list, create, revoke",
    "tokens / tokens list: ID NAME ROLE CREATED (never the secret).\n"
    "tokens create NAME --role viewer|operator|admin: prints the new token alone on standard\n"
    "output (shown only now; e.g. `sluice ctl tokens create ci --role operator > ci.token`), its\n"
    "id on standard error; -o json prints the whole answer.\n"
    "tokens revoke ID: revokes it (a token cannot revoke itself; other control planes may\n"
    "accept it for up to 5 s more).",
    [](CLI::App& cmd, Args& a) {
      add_output(cmd, a, /*tables=*/true);
      cmd.require_subcommand(0, 1);
      CLI::App* list = cmd.add_subcommand("list", "ID NAME ROLE CREATED (never the secret)");
      list->alias("ls");
      add_words(*list, a, "(none)");
      CLI::App* create = cmd.add_subcommand("create", "A new token NAME with role ROLE");
      create->add_option("--role", a.role, "viewer | operator | admin (required)")
          ->type_name("ROLE")
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
      add_words(*create, a, "NAME");
      CLI::App* revoke = cmd.add_subcommand("revoke", "Revoke the token ID");
      revoke->alias("delete");
      add_words(*revoke, a, "ID");
    },
    run,
};

}  // namespace sluice::cli::ctl
