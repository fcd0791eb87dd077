// `ctl changes` (the change records, newest first) and `ctl change show|approve|reject|abort|review
// ID` (one change: its history, or an action on it).
#include <cstdio>

#include "cli/ctl/output.h"
#include "cli/ctl/verb.h"
#include "net/http_client.h"

namespace sluice::cli::ctl {

namespace {

std::string joined(const json& list) {
  std::string out;
  if (!list.is_array()) return out;
  for (const auto& x : list)
    out += (out.empty() ? "" : ",") + (x.is_string() ? x.get<std::string>() : x.dump());
  return out;
}

std::string approvals_cell(const json& ch) {
  const size_t have =
      ch.contains("approvals") && ch["approvals"].is_array() ? ch["approvals"].size() : 0;
  const std::string need = str_of(ch, "approvals_required", "0");
  return ch.contains("approvals") ? std::to_string(have) + "/" + need : need;
}

int list(const Ctx& c, const Args& a, const CLI::App&) {
  int rc = 0;
  if (!a.words.empty()) return usage_error("changes takes no arguments (a change: change show ID)");
  std::string path = "/v1/changes";
  const std::string sep = "?";
  if (!a.state.empty()) path += sep + "state=" + net::url_encode(a.state);
  json answer;
  if (!call(c, "GET", path, nullptr, "changes", &answer, &rc)) return rc;
  if (structured(a)) {
    print_output(a, answer);
    return kOk;
  }
  if (!answer.is_array() || answer.empty()) {
    std::printf("no changes\n");
    return kOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& ch : answer) {
    std::string flags = ch.value("emergency", false) ? "emergency" : "";
    if (ch.value("review_required", false)) flags += flags.empty() ? "review" : ",review";
    const json affected = ch.value("affected", json::object());
    std::vector<std::string> row = {str_of(ch, "id"),
                                    str_of(ch, "state"),
                                    str_of(ch, "operation"),
                                    str_of(ch, "author"),
                                    ago(ch.value("proposed_ms", 0LL)),
                                    str_of(ch, "version") == "0" ? "-" : str_of(ch, "version"),
                                    flags.empty() ? "-" : flags};
    const std::string resources = joined(affected.value("resources", json::array()));
    row.push_back(wide(a) ? resources : shorten(resources, 40));
    row.push_back(wide(a) ? str_of(ch, "reason") : shorten(str_of(ch, "reason"), 40));
    rows.push_back(std::move(row));
  }
  print_table(
      {"ID", "STATE", "OPERATION", "AUTHOR", "PROPOSED", "VERSION", "FLAGS", "RESOURCES", "REASON"},
      rows);
  return kOk;
}

void show(const json& ch) {
  std::printf("change %s: %s (%s by %s)\n", str_of(ch, "id").c_str(), str_of(ch, "state").c_str(),
              str_of(ch, "operation").c_str(), str_of(ch, "author").c_str());
  std::printf("reason: %s\n", str_of(ch, "reason").c_str());
  std::printf("proposed: %s on version %s", str_of(ch, "proposed").c_str(),
              str_of(ch, "base_version").c_str());
  if (str_of(ch, "version") != "0")
    std::printf("; committed as version %s", str_of(ch, "version").c_str());
  std::printf("\n");
  if (ch.value("emergency", false))
    std::printf("emergency: %s\n",
                ch.value("review_required", false) ? "review required" : "reviewed");
  const json policy = ch.value("policy", json::object());
  const json names = policy.value("policies", json::array());
  std::printf("policy: %s; approvals %s (role %s)\n",
              names.empty() ? "none" : joined(names).c_str(), approvals_cell(ch).c_str(),
              policy.contains("approvals") ? str_of(policy["approvals"], "role").c_str() : "-");
  const json affected = ch.value("affected", json::object());
  for (const char* k : {"resources", "routes", "services", "cities"})
    std::printf("%s: %s\n", k, joined(affected.value(k, json::array())).c_str());
  if (ch.contains("diff")) {
    std::printf("diff:\n");
    print_diff_summary(ch["diff"], "  ");
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& t : ch.value("transitions", json::array())) {
    std::string from = str_of(t, "from");
    rows.push_back({str_of(t, "at"), (from.empty() ? "-" : from) + " -> " + str_of(t, "to"),
                    str_of(t, "actor"), str_of(t, "reason")});
  }
  for (const auto& ap : ch.value("approvals", json::array()))
    rows.push_back({str_of(ap, "at"), "approval",
                    str_of(ap, "approver") + " (" + str_of(ap, "role") + ")",
                    str_of(ap, "reason")});
  std::printf("\n");
  print_table({"AT", "TRANSITION", "BY", "WHY"}, rows);
}

int one(const Ctx& c, const Args& a, const CLI::App&) {
  int rc = 0;
  if (a.words.size() != 2)
    return usage_error("change show|approve|reject|abort|review ID [--reason R]");
  const std::string& action = a.words[0];
  const std::string& id = a.words[1];
  if (action != "show" && action != "approve" && action != "reject" && action != "abort" &&
      action != "review")
    return usage_error("change: unknown action '" + action +
                       "' (expected show, approve, reject, abort or review)");
  if (!all_digits(id, 0) || id.size() > 18)
    return usage_error("change: not a change id: '" + id + "'");
  json answer;
  if (action == "show") {
    if (a.reason) return usage_error("change show takes no --reason");
    if (!call(c, "GET", "/v1/changes/" + id, nullptr, "change " + id, &answer, &rc)) return rc;
    if (structured(a)) {
      print_output(a, answer);
    } else {
      show(answer);
    }
    return kOk;
  }
  if (!a.reason || trim(*a.reason).empty())
    return usage_error("--reason R is required to " + action + " a change (it is recorded)");
  json body = {{"reason", *a.reason}};
  if (!call(c, "POST", "/v1/changes/" + id + "/" + action, &body, action + " change " + id, &answer,
            &rc))
    return rc;
  if (structured(a)) {
    print_output(a, answer);
  } else if (answer.contains("message")) {
    std::printf("%s\n", str_of(answer, "message").c_str());
  } else {
    std::printf("change %s %s", id.c_str(), str_of(answer, "state").c_str());
    if (answer.contains("approvals"))
      std::printf(" (%s of %s approvals)", str_of(answer, "approvals").c_str(),
                  str_of(answer, "approvals_required").c_str());
    if (answer.contains("version") && str_of(answer, "state") == "done")
      std::printf(": version %s", str_of(answer, "version").c_str());
    std::printf("\n");
  }
  return kOk;
}

}  // namespace

const Verb kChanges = {
    "changes",
    "changes [--state S] [-o yaml|json|wide]",
    "change records, newest first",
    "Every write (apply, delete, rollback) is a change. --state: proposed, approved, rolling_out,\n"
    "done, rolled_back, rejected or aborted. -o wide: resources and reason in full.",
    [](CLI::App& cmd, Args& a) {
      cmd.add_option("--state", a.state, "Only changes in this state")
          ->type_name("S")
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
      add_output(cmd, a, /*tables=*/true);
      add_words(cmd, a, "(none)");
    },
    list,
};

const Verb kChange = {
    "change",
    "change show|approve|reject|abort|review ID [--reason R] [-o json|yaml]",
    "one change: its history, or approve, reject, abort or review it",
    "show: the change, its diff, what it affects, its transitions and approvals.\n"
    "approve: counts once per approver, never the author; at the policy's count it commits.\n"
    "reject (an approver) or abort (its author, or an approver): a proposed or approved change\n"
    "ends there; abort of a rolling_out change (an operator) rolls it back at once.\n"
    "review: marks an emergency change as reviewed (not by its author).\n"
    "--reason is required for every action but show.",
    [](CLI::App& cmd, Args& a) {
      add_reason(cmd, a);
      add_output(cmd, a, /*tables=*/false);
      add_words(cmd, a, "show|approve|reject|abort|review ID");
    },
    one,
};

}  // namespace sluice::cli::ctl
