// `ctl cmdb get TYPE [NAME]`, `ctl cmdb import -f FILE`, `ctl cmdb history TYPE/NAME`: the CMDB's
// CIs (a table, or the server's answer with -o yaml|json), declared data imported from YAML or
// CSV (all or nothing; the server lists every error with its line and column), and a CI's history.
#include "cli/ctl/cmdb.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <sstream>

#include "cli/ctl/output.h"
#include "cli/ctl/verb.h"
#include "net/http_client.h"

namespace sluice::cli::ctl {

namespace {

constexpr size_t kMaxFileBytes = 2u << 20;  // the server's bound (control/cmdb/import.h)

bool plausible(const std::string& s) {
  if (s.empty() || s.size() > 256) return false;
  for (char ch : s) {
    auto u = static_cast<unsigned char>(ch);
    if (u <= 0x20 || u >= 0x7f || ch == '/') return false;
  }
  return true;
}

std::string cell(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "-";
  return v.dump();
}

// The value to show for an attribute: declared if there is one, else the last observed; when
// both are there and differ, both.
std::string shown(const json& entries) {
  const json* declared = nullptr;
  const json* observed = nullptr;
  for (const auto& e : entries) {
    if (str_of(e, "source") == "declared") {
      declared = &e;
    } else if (!observed || e.value("last_seen_ms", 0LL) > observed->value("last_seen_ms", 0LL)) {
      observed = &e;
    }
  }
  if (declared && observed && (*declared)["value"] != (*observed)["value"])
    return cell((*declared)["value"]) + " (" + str_of(*observed, "source") + ": " +
           cell((*observed)["value"]) + ")";
  if (declared) return cell((*declared)["value"]);
  if (observed) return cell((*observed)["value"]) + " (" + str_of(*observed, "source") + ")";
  return "";
}

int get(const Ctx& c, const Args& a, const std::vector<std::string>& w) {
  int rc = 0;
  if (w.empty() || w.size() > 2) return usage_error("cmdb get TYPE [NAME]");
  if (!plausible(w[0])) return usage_error("cmdb get: not a type: '" + w[0] + "'");
  if (w.size() == 2 && !plausible(w[1]))
    return usage_error("cmdb get: not a CI name: '" + w[1] + "'");
  std::string path = "/v1/cmdb/cis/" + net::url_encode(w[0]);
  if (w.size() == 2) path += "/" + net::url_encode(w[1]);
  json answer;
  if (!call(c, "GET", path, nullptr, "cmdb get " + w[0] + (w.size() == 2 ? " " + w[1] : ""),
            &answer, &rc))
    return rc;
  if (structured(a)) {
    print_output(a, answer);
    return kOk;
  }
  if (w.size() == 2) {
    std::printf("%s/%s\n\n", str_of(answer, "type").c_str(), str_of(answer, "key").c_str());
    std::vector<std::vector<std::string>> rows;
    const json attributes = answer.value("attributes", json::object());
    for (const auto& [name, entries] : attributes.items())
      for (const auto& e : entries)
        rows.push_back(
            {name, cell(e["value"]), str_of(e, "source"), ago(e.value("last_seen_ms", 0LL))});
    if (rows.empty()) {
      std::printf("no attributes\n");
    } else {
      print_table({"ATTRIBUTE", "VALUE", "SOURCE", "LAST SEEN"}, rows);
    }
    rows.clear();
    for (const auto& r : answer.value("relations", json::array()))
      rows.push_back({str_of(r, "relation"), "-> " + str_of(r, "to"), str_of(r, "source"),
                      ago(r.value("last_seen_ms", 0LL))});
    for (const auto& r : answer.value("in", json::array()))
      rows.push_back({str_of(r, "relation"), "<- " + str_of(r, "from"), str_of(r, "source"),
                      ago(r.value("last_seen_ms", 0LL))});
    if (!rows.empty()) {
      std::printf("\n");
      print_table({"RELATION", "CI", "SOURCE", "LAST SEEN"}, rows);
    }
    return kOk;
  }
  const json list = answer.value("cis", json::array());
  if (list.empty()) {
    std::printf("no %s CIs\n", w[0].c_str());
    return kOk;
  }
  // Columns: the attributes any CI has, in the order first met (the key is NAME).
  std::vector<std::string> columns;
  std::map<std::string, bool> seen;
  for (const auto& ci : list) {
    const json attributes = ci.value("attributes", json::object());
    for (const auto& [name, entries] : attributes.items())
      if (!seen[name] && cell(entries.at(0)["value"]) != str_of(ci, "key")) {
        seen[name] = true;
        columns.push_back(name);
      }
  }
  const size_t max_cols = wide(a) ? columns.size() : std::min<size_t>(columns.size(), 6);
  std::vector<std::string> header = {"NAME"};
  for (size_t i = 0; i < max_cols; ++i) {
    std::string h = columns[i];
    for (auto& ch : h) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    header.push_back(h);
  }
  header.push_back("RELATIONS");
  std::vector<std::vector<std::string>> rows;
  for (const auto& ci : list) {
    std::vector<std::string> row = {str_of(ci, "key")};
    const json attrs = ci.value("attributes", json::object());
    for (size_t i = 0; i < max_cols; ++i) {
      row.push_back(attrs.contains(columns[i]) ? (wide(a) ? shown(attrs[columns[i]])
                                                          : shorten(shown(attrs[columns[i]]), 40))
                                               : "");
    }
    std::string rels;
    for (const auto& r : ci.value("relations", json::array())) {
      if (!rels.empty()) rels += ", ";
      rels += str_of(r, "relation") + " " + str_of(r, "to");
      if (str_of(r, "source") != "declared") rels += " (" + str_of(r, "source") + ")";
    }
    row.push_back(wide(a) ? rels : shorten(rels, 60));
    rows.push_back(std::move(row));
  }
  print_table(header, rows);
  if (answer.value("truncated", false))
    std::printf("(more CIs than the limit; -o json with ?limit)\n");
  return kOk;
}

bool read_input(const std::string& file, std::string* text, std::string* error) {
  std::string data;
  if (file == "-") {
    data.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      *error = "cannot read " + file;
      return false;
    }
    std::ostringstream s;
    s << in.rdbuf();
    data = s.str();
  }
  if (data.size() > kMaxFileBytes) {
    *error = file + ": " + std::to_string(data.size()) +
             " bytes; the control plane takes at most " + std::to_string(kMaxFileBytes) +
             " in one import";
    return false;
  }
  *text = std::move(data);
  return true;
}

std::string format_of(const std::string& file) {
  auto ends = [&](const char* ext) {
    const std::string e(ext);
    return file.size() >= e.size() && lower(file.substr(file.size() - e.size())) == e;
  };
  return ends(".csv") ? "csv" : "yaml";
}

int import(const Ctx& c, const Args& a, const std::vector<std::string>& w) {
  int rc = 0;
  if (!w.empty()) return usage_error("cmdb import takes -f FILE, not words ('" + w[0] + "')");
  if (a.files.size() != 1)
    return usage_error("cmdb import -f FILE: exactly one file (YAML or .csv; - for YAML on stdin)");
  const std::string& file = a.files[0];
  std::string text, error;
  if (!read_input(file, &text, &error)) {
    std::fprintf(stderr, "sluice ctl: %s\n", error.c_str());
    return kRefused;
  }
  json body = {{"format", format_of(file)}, {"data", text}, {"dry_run", a.dry_run}};
  if (!a.type.empty()) {
    if (body["format"] != "csv") return usage_error("cmdb import: --type is for CSV files");
    body["type"] = a.type;
  }
  if (a.reason) body["reason"] = *a.reason;
  json answer;
  if (!call(c, "POST", "/v1/cmdb/import", &body, "cmdb import " + file, &answer, &rc)) return rc;
  if (structured(a)) {
    print_output(a, answer);
    return kOk;
  }
  std::printf(
      "%s%s: %s CIs and %s relations read; %s CIs added, %s values changed, %s relations added, "
      "%s removed, %s history rows%s\n",
      a.dry_run ? "dry run of " : "imported ", file.c_str(), str_of(answer, "cis").c_str(),
      str_of(answer, "relations").c_str(), str_of(answer, "cis_added").c_str(),
      str_of(answer, "values_changed").c_str(), str_of(answer, "relations_added").c_str(),
      str_of(answer, "relations_removed").c_str(), str_of(answer, "history").c_str(),
      a.dry_run ? " (nothing written)" : "");
  return kOk;
}

int history(const Ctx& c, const Args& a, const std::vector<std::string>& w) {
  int rc = 0;
  std::string type, key, error;
  if (!cmdb_ref(w, &type, &key, &error)) return usage_error("cmdb history TYPE/NAME: " + error);
  std::string path = "/v1/cmdb/history/" + net::url_encode(type) + "/" + net::url_encode(key);
  if (!a.limit.empty()) path += "?limit=" + net::url_encode(a.limit);
  json answer;
  if (!call(c, "GET", path, nullptr, "cmdb history " + type + "/" + key, &answer, &rc)) return rc;
  if (structured(a)) {
    print_output(a, answer);
    return kOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& h : answer.value("history", json::array())) {
    std::string field = str_of(h, "what") == "ci" ? "(ci)" : str_of(h, "field");
    std::vector<std::string> row = {ago(h.value("at_ms", 0LL)),
                                    field,
                                    cell(h["old"]),
                                    cell(h["new"]),
                                    str_of(h, "source"),
                                    str_of(h, "actor"),
                                    str_of(h, "change", "-")};
    if (wide(a)) row.push_back(str_of(h, "reason"));
    rows.push_back(std::move(row));
  }
  if (rows.empty()) {
    std::printf("no history for %s/%s\n", type.c_str(), key.c_str());
    return kOk;
  }
  std::vector<std::string> header = {"AT", "FIELD", "OLD", "NEW", "SOURCE", "BY", "CHANGE"};
  if (wide(a)) header.push_back("REASON");
  print_table(header, rows);
  return kOk;
}

int run(const Ctx& c, const Args& a, const CLI::App&) {
  if (a.words.empty()) {
    std::string list;
    for (const CmdbAction* act : cmdb_actions())
      list += std::string(list.empty() ? "" : ", ") + act->name;
    return usage_error("cmdb ACTION: one of " + list);
  }
  const std::vector<std::string> rest(a.words.begin() + 1, a.words.end());
  for (const CmdbAction* act : cmdb_actions())
    if (a.words[0] == act->name) return act->run(c, a, rest);
  return usage_error("cmdb: unknown action '" + a.words[0] + "' (sluice ctl cmdb --help)");
}

}  // namespace

bool cmdb_ref(const std::vector<std::string>& words, std::string* type, std::string* key,
              std::string* error) {
  if (words.size() == 1) {
    const auto slash = words[0].find('/');
    if (slash == std::string::npos) {
      *error = "expected TYPE/NAME, got '" + words[0] + "'";
      return false;
    }
    *type = words[0].substr(0, slash);
    *key = words[0].substr(slash + 1);
  } else if (words.size() == 2) {
    *type = words[0];
    *key = words[1];
  } else {
    *error = "expected TYPE/NAME";
    return false;
  }
  if (!plausible(*type) || !plausible(*key)) {
    *error = "not a TYPE/NAME: '" + *type + "/" + *key + "'";
    return false;
  }
  return true;
}

const CmdbAction kCmdbGet = {"get", "get TYPE [NAME] [-o yaml|json|wide]",
                             "CIs of a type (a table), or one CI with its values and relations",
                             get};
const CmdbAction kCmdbImport = {
    "import", "import -f FILE [--type T] [--dry-run] [--reason R] [-o json|yaml]",
    "declared CIs, relations and types from YAML or CSV (.csv): all or nothing", import};
const CmdbAction kCmdbHistory = {"history", "history TYPE/NAME [--limit N] [-o yaml|json|wide]",
                                 "every change of a CI's attributes and relations, newest first",
                                 history};

std::span<const CmdbAction* const> cmdb_actions() {
  static const CmdbAction* const kActions[] = {&kCmdbGet,      &kCmdbImport, &kCmdbHistory,
                                               &kCmdbFindings, &kCmdbFix,    &kCmdbIgnore,
                                               &kCmdbAccuracy, &kCmdbImpact};
  return kActions;
}

namespace {

// `ctl cmdb --help`: every action of the table, so an added action documents itself.
const char* cmdb_details() {
  static const std::string text = [] {
    std::string out =
        "The CMDB: configuration items with their declared and observed attributes, relations\n"
        "and history (docs/cmdb.md). Actions:\n";
    for (const CmdbAction* act : cmdb_actions())
      out += std::string("  cmdb ") + act->synopsis + "\n      " + act->summary + "\n";
    out +=
        "import: .csv files are CSV (a header row; --type: the type of rows without a type\n"
        "column), anything else YAML; all or nothing, every error with its line and column.";
    return out;
  }();
  return text.c_str();
}

}  // namespace

const Verb kCmdb = {
    "cmdb",
    "cmdb get|import|history|findings|fix|ignore|accuracy|impact ... (cmdb --help)",
    "the CMDB: CIs, declared data import, history, findings, accuracy, impact",
    cmdb_details(),
    [](CLI::App& cmd, Args& a) {
      cmd.add_option("-f,--filename,--file", a.files,
                     "cmdb import: a YAML or CSV (.csv) file, or - (YAML on stdin)")
          ->type_name("FILE")
          ->allow_extra_args(false);
      cmd.add_option("--type", a.type, "cmdb import: the CI type of CSV rows without a type column")
          ->type_name("T");
      cmd.add_option("--limit", a.limit, "cmdb history: at most N rows")->type_name("N");
      cmd.add_option("--reason,-m", a.reason, "Why: recorded in the history rows (optional)")
          ->type_name("R")
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
      add_dry_run(cmd, a);
      add_output(cmd, a, /*tables=*/true);
      add_words(cmd, a, "ACTION [ARGS...]");
    },
    run,
};

}  // namespace sluice::cli::ctl
