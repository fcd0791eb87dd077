#include "cli/ctl.h"

#include "config/reader.h"
#include "control/client.h"
#include "core/json.h"

#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>

namespace sluice::cli {

namespace {

using nlohmann::json;

constexpr int kOk = 0;
constexpr int kRefused = 1;
constexpr int kUsage = 2;

// One entry per verb: `ctl --help` lists them all, `ctl VERB --help` prints one.
struct VerbHelp {
  const char* name;
  const char* synopsis;  // after "sluice ctl"
  const char* summary;   // one line, for the list
  const char* details;   // for VERB --help
};

constexpr VerbHelp kVerbHelp[] = {
    {"apply", "apply -f FILE|DIR|- --reason R [--dry-run] [-o json]",
     "create or replace the resources in FILE (YAML)",
     "Sends every resource of every -f in one request: validated and applied together, all or\n"
     "nothing, as one new version. -f may repeat; -f DIR reads DIR's *.yaml and *.yml files in "
     "name\n"
     "order (not subdirectories); -f - reads standard input. Each YAML document is one\n"
     "{kind, name, spec} resource, or a list of them. --reason is recorded with the version\n"
     "(required unless --dry-run). --dry-run validates and shows what would change."},
    {"diff", "diff -f FILE|DIR|-", "show what apply would change",
     "A dry-run apply: prints each resource that would be added (+), changed (~) or removed (-)\n"
     "with a line diff of its YAML. Exit status 0 with or without changes."},
    {"get", "get KIND [NAME] [-o yaml|json|wide]",
     "list resources (KIND: service, route, rate_limit, units, all)",
     "KIND: service (services, svc), route (routes), rate_limit (rate_limits, rl), units, or all.\n"
     "A table KIND NAME SUMMARY by default (-o wide: the summary in full). -o yaml prints\n"
     "documents that apply -f reads back unchanged; -o json the server's JSON."},
    {"delete", "delete KIND NAME --reason R [--dry-run] [-o json]", "delete one resource",
     "Deletes KIND/NAME as a new version. --reason is required unless --dry-run."},
    {"versions", "versions [N] [--limit N] [-o yaml|json|wide]",
     "config versions, newest first (N: one version, with its diff)",
     "A table VERSION CREATED AUTHOR CHANGES REASON (-o wide: also the resources changed).\n"
     "With N: that version's author, reason and diff."},
    {"rollback", "rollback N --reason R [--dry-run] [-o json]",
     "make version N's resources the current ones",
     "Writes a new version whose resources are those of version N. --reason is required unless\n"
     "--dry-run, which shows what would change."},
    {"instances", "instances [SERVICE] [-o yaml|json|wide]", "the service registry",
     "Registered instances with the age of their last heartbeat (-o wide: also TTL, registered\n"
     "and expiry times)."},
    {"gateways", "gateways [-o yaml|json|wide]", "each gateway's applied version and health",
     "Gateways that have reported, with the version they applied, their status and health\n"
     "(ok, behind, pending, refused, stale, draining, exited) and the last error (-o wide: in\n"
     "full, with the config version number and the time last seen)."},
    {"events", "events [--limit N] [--after ID] [-o yaml|json|wide]",
     "events from the gateways and the registry",
     "Newest last. --after ID: only events after that id (to follow). -o wide: the detail in\n"
     "full."},
    {"tokens", "tokens [list|create NAME --role ROLE|revoke ID] [-o yaml|json|wide]",
     "API tokens (admin role): list, create, revoke",
     "tokens / tokens list: ID NAME ROLE CREATED (never the secret).\n"
     "tokens create NAME --role viewer|operator|admin: prints the new token alone on standard\n"
     "output (shown only now; e.g. `sluice ctl tokens create ci --role operator > ci.token`), its\n"
     "id on standard error; -o json prints the whole answer.\n"
     "tokens revoke ID: revokes it (a token cannot revoke itself; other control planes may\n"
     "accept it for up to 5 s more)."},
};

const char* kUsageFooter =
    "\n"
    "global options: --server URL, --token-file FILE, --ca-file PEM (anywhere on the line)\n"
    "server: --server, else $SLUICE_SERVER, else `server` in ~/.config/sluice/ctl.yaml, else\n"
    "http://127.0.0.1:7070. token: --token-file, else $SLUICE_TOKEN (the token itself), else\n"
    "`token_file` in ~/.config/sluice/ctl.yaml.\n"
    "sluice ctl VERB --help: help for one verb.\n";

std::string usage_text() {
  std::string out =
      "usage: sluice ctl [--server URL] [--token-file FILE] [--ca-file PEM] <command> [options]\n"
      "\ncommands:\n";
  for (const VerbHelp& v : kVerbHelp) {
    std::string line = std::string("  ") + v.synopsis;
    if (line.size() < 58) {
      line.append(58 - line.size(), ' ');
    } else {
      line += "\n" + std::string(58, ' ');
    }
    out += line + v.summary + "\n";
  }
  return out + kUsageFooter;
}

const VerbHelp* find_verb(std::string_view name) {
  for (const VerbHelp& v : kVerbHelp)
    if (name == v.name) return &v;
  return nullptr;
}

std::string verb_usage(const VerbHelp& v) {
  return std::string("usage: sluice ctl ") + v.synopsis + "\n\n" + v.summary + ".\n\n" + v.details +
         "\n" + kUsageFooter;
}

int usage_error(const std::string& message) {
  std::fprintf(stderr, "sluice ctl: %s\n(sluice ctl --help for usage)\n", message.c_str());
  return kUsage;
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool read_file(const std::string& path, std::string* out, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) {
    *error = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  *out = ss.str();
  return true;
}

using control::HttpReply;
using control::ServerUrl;
using control::url_encode;

HttpReply request(const ServerUrl& server, const std::string& token, const std::string& method,
                  const std::string& path, const std::string* body, const std::string& ca_file) {
  control::HttpOptions options;
  options.user_agent = "sluice-ctl";
  options.ca_file = ca_file;
  return control::http_call(server, token, method, path, body, options);
}

// ---------------------------------------------------------------------------------------------
// YAML <-> JSON

bool all_digits(const std::string& s, size_t from) {
  if (from >= s.size()) return false;
  for (size_t i = from; i < s.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  return true;
}

// A plain (unquoted) scalar as YAML 1.2's core schema reads it.
json plain_scalar(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  size_t digits_from = (s[0] == '-' || s[0] == '+') ? 1 : 0;
  if (all_digits(s, digits_from)) {
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (errno == 0 && end && *end == '\0') return v;
    return std::strtod(s.c_str(), nullptr);
  }
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    bool hex = std::all_of(s.begin() + 2, s.end(),
                           [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
    if (hex && s.size() <= 17) return static_cast<long long>(std::strtoull(s.c_str(), nullptr, 16));
  }
  if (s == ".inf" || s == "+.inf" || s == ".nan") return s;  // not JSON numbers: keep the text
  // Floats: [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
  {
    size_t i = digits_from;
    size_t int_digits = 0, frac_digits = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++int_digits;
    bool dot = false;
    if (i < s.size() && s[i] == '.') {
      dot = true;
      ++i;
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++frac_digits;
    }
    bool ok = int_digits + frac_digits > 0;
    bool exp = false;
    if (ok && i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      exp = true;
      ++i;
      if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
      ok = all_digits(s, i);
      if (ok) i = s.size();
    }
    if (ok && i == s.size() && (dot || exp)) {
      double d = std::strtod(s.c_str(), nullptr);
      if (std::isfinite(d)) return d;
    }
  }
  return s;
}

// Converts a YAML node; `where` names the place for errors (file:line).
bool yaml_to_json(const YAML::Node& node, const std::string& file, json* out, std::string* error) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      *out = nullptr;
      return true;
    case YAML::NodeType::Scalar:
      // yaml-cpp tags quoted (and block) scalars "!", plain ones "?".
      if (node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str" || node.Tag() == "!!str") {
        *out = node.Scalar();
      } else {
        *out = plain_scalar(node.Scalar());
      }
      return true;
    case YAML::NodeType::Sequence: {
      *out = json::array();
      for (const auto& item : node) {
        json j;
        if (!yaml_to_json(item, file, &j, error)) return false;
        out->push_back(std::move(j));
      }
      return true;
    }
    case YAML::NodeType::Map: {
      *out = json::object();
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) {
          *error = file + ":" + std::to_string(kv.first.Mark().line + 1) +
                   ": keys must be plain strings";
          return false;
        }
        std::string key = kv.first.Scalar();
        if (out->contains(key)) {
          *error = file + ":" + std::to_string(kv.first.Mark().line + 1) + ": duplicate key '" +
                   key + "'";
          return false;
        }
        json j;
        if (!yaml_to_json(kv.second, file, &j, error)) return false;
        (*out)[key] = std::move(j);
      }
      return true;
    }
  }
  *out = nullptr;
  return true;
}

// Reads the resources of one file: YAML documents separated by `---`, each one `{kind, name,
// spec}` (or a list of them). Problems go to `errors` as `file:line: message`.
bool load_resources_text(const std::string& path, const std::string& text, json* resources,
                         std::vector<std::string>* errors) {
  std::string error;
  // Bounded (size, depth, nodes after alias expansion) before yaml_to_json walks the documents:
  // a billion-laughs file is refused in its first pass instead of expanding in memory.
  config::Diagnostics diag(path);
  std::optional<std::vector<YAML::Node>> parsed = config::parse_documents(text, diag);
  if (!parsed) {
    for (const config::ConfigError& e : diag.take()) {
      std::string message = e.message;
      if (message.starts_with("YAML syntax error: ")) message.erase(0, 19);
      errors->push_back(path + (e.line > 0 ? ":" + std::to_string(e.line) : "") +
                        ": YAML error: " + message);
    }
    return false;
  }
  const std::vector<YAML::Node>& docs = *parsed;
  size_t before = errors->size();
  auto add = [&](const YAML::Node& node) {
    std::string where = path + ":" + std::to_string(node.Mark().line + 1);
    if (!node.IsMap()) {
      errors->push_back(where + ": a resource must be a mapping with kind, name and spec");
      return;
    }
    json j;
    if (!yaml_to_json(node, path, &j, &error)) {
      errors->push_back(error);
      return;
    }
    if (!j.contains("kind")) {
      errors->push_back(where + ": kind: required (service, route, rate_limit or units)");
      return;
    }
    resources->push_back(std::move(j));
  };
  for (const auto& doc : docs) {
    if (doc.IsNull()) continue;
    if (doc.IsSequence()) {
      for (const auto& item : doc) add(item);
    } else {
      add(doc);
    }
  }
  return errors->size() == before;
}

// Resource files are small; a bound keeps a wrong -f (a log, a device) from eating memory.
constexpr size_t kMaxResourceFileBytes = 16 * 1024 * 1024;

bool load_resources(const std::string& path, json* resources, std::vector<std::string>* errors) {
  std::string text, error;
  if (path == "-") {  // standard input
    std::ostringstream ss;
    char buf[65536];
    size_t total = 0;
    while (std::cin.read(buf, sizeof buf) || std::cin.gcount() > 0) {
      total += static_cast<size_t>(std::cin.gcount());
      if (total > kMaxResourceFileBytes) {
        errors->push_back("<stdin>: more than 16 MiB");
        return false;
      }
      ss.write(buf, std::cin.gcount());
    }
    return load_resources_text("<stdin>", ss.str(), resources, errors);
  }
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    // A directory: its *.yaml and *.yml files in name order, as one apply.
    std::vector<std::string> files;
    for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
      std::string ext = entry.path().extension().string();
      if ((ext == ".yaml" || ext == ".yml") && entry.is_regular_file(ec))
        files.push_back(entry.path().string());
    }
    if (ec) {
      errors->push_back("cannot read directory " + path + ": " + ec.message());
      return false;
    }
    if (files.empty()) {
      errors->push_back(path + ": no *.yaml or *.yml files in this directory");
      return false;
    }
    std::sort(files.begin(), files.end());
    bool ok = true;
    for (const auto& f : files) ok = load_resources(f, resources, errors) && ok;
    return ok;
  }
  if (std::filesystem::file_size(path, ec) > kMaxResourceFileBytes && !ec) {
    errors->push_back(path + ": more than 16 MiB");
    return false;
  }
  if (!read_file(path, &text, &error)) {
    errors->push_back(error);
    return false;
  }
  return load_resources_text(path, text, resources, errors);
}

bool looks_non_string(const std::string& s) {
  if (s.empty()) return true;
  if (!plain_scalar(s).is_string()) return true;
  if (s != trim(s)) return true;
  static const std::string special = "-?:,[]{}#&*!|>'\"%@`";
  if (special.find(s[0]) != std::string::npos) return true;
  if (s.find(": ") != std::string::npos || s.find(" #") != std::string::npos) return true;
  if (s.find('\n') != std::string::npos || s.find('\t') != std::string::npos) return true;
  if (s.back() == ':') return true;
  if (s == "yes" || s == "no" || s == "on" || s == "off" || s == "Yes" || s == "No") return true;
  return false;
}

void emit_yaml(YAML::Emitter& out, const json& j) {
  switch (j.type()) {
    case json::value_t::object:
      out << YAML::BeginMap;
      for (auto it = j.begin(); it != j.end(); ++it) {
        out << YAML::Key << it.key() << YAML::Value;
        emit_yaml(out, it.value());
      }
      out << YAML::EndMap;
      break;
    case json::value_t::array:
      out << YAML::BeginSeq;
      for (const auto& v : j) emit_yaml(out, v);
      out << YAML::EndSeq;
      break;
    case json::value_t::string: {
      const auto& s = j.get_ref<const std::string&>();
      if (looks_non_string(s)) {
        out << YAML::DoubleQuoted << s;
      } else {
        out << s;
      }
      break;
    }
    case json::value_t::null:
      out << YAML::Null;
      break;
    default:
      out << j.dump();  // numbers and booleans as JSON writes them
  }
}

std::string to_yaml(const json& j) {
  YAML::Emitter out;
  out.SetIndent(2);
  emit_yaml(out, j);
  std::string s = out.c_str();
  if (s.empty() || s.back() != '\n') s.push_back('\n');
  return s;
}

// ---------------------------------------------------------------------------------------------
// Tables and text

std::string str_of(const json& j, const char* key, const std::string& dflt = "") {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return dflt;
  const json& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

void print_table(const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (const auto& row : rows)
    for (size_t i = 0; i < row.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], row[i].size());
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t i = 0; i < cells.size(); ++i) {
      out += cells[i];
      if (i + 1 < cells.size()) out += std::string(width[i] - cells[i].size() + 3, ' ');
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    std::printf("%s\n", out.c_str());
  };
  line(header);
  for (const auto& row : rows) line(row);
}

std::string ago(long long ms) {
  if (ms <= 0) return "-";
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  long long s = (now - ms) / 1000;
  if (s < 0) s = 0;
  if (s < 120) return std::to_string(s) + "s ago";
  if (s < 7200) return std::to_string(s / 60) + "m ago";
  if (s < 172800) return std::to_string(s / 3600) + "h ago";
  return std::to_string(s / 86400) + "d ago";
}

// "in 7s" for a time in the future (epoch ms), "-" when past or absent.
std::string until(long long ms) {
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  if (ms <= now) return "-";
  return "in " + std::to_string((ms - now + 999) / 1000) + "s";
}

std::string shorten(std::string s, size_t n = 60) {
  if (s.size() > n) s = s.substr(0, n - 3) + "...";
  return s;
}

// `full` (-o wide): every endpoint, nothing shortened.
std::string summary(const json& r, bool full = false) {
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
    s += " -> " + str_of(spec, "service", "?");
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

std::string change_counts(const json& diff) {
  int add = 0, change = 0, remove = 0;
  if (diff.is_array()) {
    for (const auto& d : diff) {
      std::string op = str_of(d, "op");
      if (op == "add") ++add;
      if (op == "change") ++change;
      if (op == "remove") ++remove;
    }
  }
  return "+" + std::to_string(add) + " ~" + std::to_string(change) + " -" + std::to_string(remove);
}

// Line diff (longest common subsequence) of two texts, unified-style without hunks.
void print_line_diff(const std::string& a, const std::string& b) {
  auto split = [](const std::string& s) {
    std::vector<std::string> lines;
    std::istringstream in(s);
    std::string l;
    while (std::getline(in, l)) lines.push_back(l);
    return lines;
  };
  auto x = split(a), y = split(b);
  size_t n = x.size(), m = y.size();
  std::vector<std::vector<int>> lcs(n + 1, std::vector<int>(m + 1, 0));
  for (size_t i = n; i-- > 0;)
    for (size_t j = m; j-- > 0;)
      lcs[i][j] = x[i] == y[j] ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
  size_t i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] == y[j]) {
      std::printf("   %s\n", x[i].c_str());
      ++i, ++j;
    } else if (i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1])) {
      std::printf("-  %s\n", x[i++].c_str());
    } else {
      std::printf("+  %s\n", y[j++].c_str());
    }
  }
}

void print_diff(const json& diff) {
  if (!diff.is_array()) return;
  for (const auto& d : diff) {
    std::string op = str_of(d, "op");
    std::string id = str_of(d, "kind") + "/" + str_of(d, "name");
    const char* sign = op == "add" ? "+" : op == "remove" ? "-" : "~";
    std::printf("%s %s (%s)\n", sign, id.c_str(), op.c_str());
    std::string before = d.contains("before") && !d["before"].is_null() ? to_yaml(d["before"]) : "";
    std::string after = d.contains("after") && !d["after"].is_null() ? to_yaml(d["after"]) : "";
    print_line_diff(before, after);
  }
}

void print_diff_summary(const json& diff, const char* indent) {
  if (!diff.is_array()) return;
  for (const auto& d : diff) {
    std::string op = str_of(d, "op");
    const char* verb = op == "add" ? "created" : op == "remove" ? "deleted" : "changed";
    std::printf("%s%s/%s %s\n", indent, str_of(d, "kind").c_str(), str_of(d, "name").c_str(), verb);
  }
}

// ---------------------------------------------------------------------------------------------
// Options and the command context

struct Options {
  std::string server_flag;
  std::string token_file_flag;
  std::string ca_file;  // --ca-file: trust for an https:// server
  std::vector<std::string> files;
  std::string reason;
  bool reason_given = false;
  bool dry_run = false;
  std::string output;  // "", yaml, json
  std::string limit;
  std::string after;
  std::string service;
  std::string role;  // tokens create
  bool help = false;
  std::vector<std::string> positional;
};

struct Ctx {
  ServerUrl server;
  std::string token;
  std::string token_source;  // for messages
  Options opt;
};

// Explains a failed request on stderr; returns the exit code (1).
int report(const Ctx& c, const HttpReply& r, const std::string& what) {
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
    std::fprintf(stderr, "sluice ctl: %s: the token's role is too small for this (%s)\n",
                 what.c_str(), msg.c_str());
    return kRefused;
  }
  std::fprintf(stderr, "sluice ctl: %s: %s\n", what.c_str(), msg.c_str());
  if (j.is_object() && j.contains("errors") && j["errors"].is_array()) {
    for (const auto& e : j["errors"])
      std::fprintf(stderr, "  %s\n",
                   e.is_string() ? e.get<std::string>().c_str() : e.dump().c_str());
  }
  if (r.status == 409) std::fprintf(stderr, "  (someone else wrote first: try again)\n");
  return kRefused;
}

// Sends a request and parses the JSON answer; on a non-2xx answer reports and returns false.
bool call(const Ctx& c, const std::string& method, const std::string& path, const json* body,
          const std::string& what, json* answer, int* rc) {
  std::string text = body ? body->dump() : "";
  HttpReply r = request(c.server, c.token, method, path, body ? &text : nullptr, c.opt.ca_file);
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

std::optional<std::string> canonical_kind(const std::string& k_in) {
  std::string k = lower(k_in);
  std::replace(k.begin(), k.end(), '-', '_');
  if (k == "service" || k == "services" || k == "svc") return "service";
  if (k == "route" || k == "routes") return "route";
  if (k == "rate_limit" || k == "rate_limits" || k == "ratelimit" || k == "ratelimits" || k == "rl")
    return "rate_limit";
  if (k == "units" || k == "unit") return "units";
  return std::nullopt;
}

bool check_output(const Options& o, int* rc) {
  if (o.output.empty() || o.output == "json" || o.output == "yaml" || o.output == "wide")
    return true;
  *rc = usage_error("-o: expected yaml, json or wide, got '" + o.output + "'");
  return false;
}

// -o yaml or -o json: the server's answer as it is, not a table.
bool structured(const Options& o) {
  return o.output == "json" || o.output == "yaml";
}

bool wide(const Options& o) {
  return o.output == "wide";
}

bool need_reason(const Options& o, int* rc) {
  if (o.dry_run || (o.reason_given && !trim(o.reason).empty())) return true;
  *rc = usage_error("--reason R is required for every change (it is recorded with the version)");
  return false;
}

void print_output(const Options& o, const json& j) {
  if (o.output == "yaml") {
    std::printf("%s", to_yaml(j).c_str());
  } else {
    std::printf("%s\n", j.dump(2).c_str());
  }
}

// Loads every -f file; returns false (after printing every problem) when any fails.
bool load_files(const Options& o, json* resources, int* rc) {
  if (o.files.empty()) {
    *rc = usage_error("-f FILE is required");
    return false;
  }
  std::vector<std::string> errors;
  bool ok = true;
  for (const auto& f : o.files) ok = load_resources(f, resources, &errors) && ok;
  if (!ok) {
    for (const auto& e : errors) std::fprintf(stderr, "sluice ctl: %s\n", e.c_str());
    *rc = kUsage;
    return false;
  }
  if (resources->empty()) {
    std::fprintf(stderr, "sluice ctl: no resources in %s\n", o.files.front().c_str());
    *rc = kUsage;
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Verbs

int cmd_apply(Ctx& c, bool diff_only) {
  const Options& o = c.opt;
  int rc = 0;
  if (o.positional.size() > 1) return usage_error("unexpected argument '" + o.positional[1] + "'");
  if (!diff_only && !need_reason(o, &rc)) return rc;
  json resources = json::array();
  if (!load_files(o, &resources, &rc)) return rc;
  json body = {{"resources", resources}};
  if (diff_only || o.dry_run) body["dry_run"] = true;
  if (!o.reason.empty()) body["reason"] = o.reason;
  json a;
  if (!call(c, "POST", "/v1/apply", &body, diff_only ? "diff" : "apply refused", &a, &rc))
    return rc;
  const json diff = a.value("diff", json::array());
  if (diff_only) {
    if (diff.empty()) {
      std::printf("no changes (current version %s)\n", str_of(a, "version").c_str());
    } else {
      print_diff(diff);
    }
    return kOk;
  }
  if (o.output == "json") {
    std::printf("%s\n", a.dump(2).c_str());
    return kOk;
  }
  if (o.dry_run) {
    if (diff.empty()) {
      std::printf("dry run: no changes (current version %s)\n", str_of(a, "version").c_str());
    } else {
      std::printf("dry run: valid; would change (current version %s):\n",
                  str_of(a, "version").c_str());
      print_diff_summary(diff, "  ");
    }
    return kOk;
  }
  if (a.value("unchanged", false) || diff.empty()) {
    std::printf("unchanged (version %s)\n", str_of(a, "version").c_str());
    return kOk;
  }
  print_diff_summary(diff, "");
  std::printf("version %s\n", str_of(a, "version").c_str());
  return kOk;
}

int cmd_get(Ctx& c) {
  const Options& o = c.opt;
  int rc = 0;
  if (!check_output(o, &rc)) return rc;
  if (o.positional.size() < 2)
    return usage_error("get: KIND is required (service, route, rate_limit, units, all)");
  if (o.positional.size() > 3)
    return usage_error("get: unexpected argument '" + o.positional[3] + "'");
  std::string kind_arg = lower(o.positional[1]);
  std::optional<std::string> kind;
  if (kind_arg != "all") {
    kind = canonical_kind(kind_arg);
    if (!kind)
      return usage_error("get: unknown kind '" + o.positional[1] +
                         "' (service, route, rate_limit, units, all)");
  }
  json a;
  if (o.positional.size() == 3) {
    if (!kind) return usage_error("get all takes no NAME");
    std::string path = "/v1/resources/" + *kind + "/" + url_encode(o.positional[2]);
    if (!call(c, "GET", path, nullptr, "get " + *kind + "/" + o.positional[2], &a, &rc)) return rc;
    if (structured(o)) {
      print_output(o, a);
    } else {
      print_table({"KIND", "NAME", "SUMMARY"},
                  {{str_of(a, "kind"), str_of(a, "name"), summary(a, wide(o))}});
    }
    return kOk;
  }
  std::string path = kind ? "/v1/resources?kind=" + *kind : "/v1/resources";
  if (!call(c, "GET", path, nullptr, "get", &a, &rc)) return rc;
  json list = a.value("resources", json::array());
  if (o.output == "json") {
    std::printf("%s\n", list.dump(2).c_str());
  } else if (o.output == "yaml") {
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
                  str_of(a, "version").c_str());
      return kOk;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : list)
      rows.push_back({str_of(r, "kind"), str_of(r, "name"), summary(r, wide(o))});
    print_table({"KIND", "NAME", "SUMMARY"}, rows);
  }
  return kOk;
}

int cmd_delete(Ctx& c) {
  const Options& o = c.opt;
  int rc = 0;
  if (o.positional.size() != 3) return usage_error("delete KIND NAME --reason R");
  auto kind = canonical_kind(o.positional[1]);
  if (!kind) return usage_error("delete: unknown kind '" + o.positional[1] + "'");
  if (!need_reason(o, &rc)) return rc;
  std::string path = "/v1/resources/" + *kind + "/" + url_encode(o.positional[2]) + "?";
  if (!o.reason.empty()) path += "reason=" + url_encode(o.reason);
  if (o.dry_run) path += "&dry_run=true";
  json a;
  if (!call(c, "DELETE", path, nullptr, "delete " + *kind + "/" + o.positional[2] + " refused", &a,
            &rc))
    return rc;
  if (o.output == "json") {
    std::printf("%s\n", a.dump(2).c_str());
  } else if (o.dry_run) {
    std::printf("dry run: %s/%s can be deleted (current version %s)\n", kind->c_str(),
                o.positional[2].c_str(), str_of(a, "version").c_str());
  } else {
    std::printf("%s/%s deleted\nversion %s\n", kind->c_str(), o.positional[2].c_str(),
                str_of(a, "version").c_str());
  }
  return kOk;
}

int cmd_versions(Ctx& c) {
  const Options& o = c.opt;
  int rc = 0;
  if (!check_output(o, &rc)) return rc;
  if (o.positional.size() > 2) return usage_error("versions [N] [--limit N]");
  json a;
  if (o.positional.size() == 2) {  // one version, with its resources
    const std::string& n = o.positional[1];
    if (!all_digits(n, 0)) return usage_error("versions: not a version number: '" + n + "'");
    if (!call(c, "GET", "/v1/versions/" + n, nullptr, "version " + n, &a, &rc)) return rc;
    if (structured(o)) {
      print_output(o, a);
      return kOk;
    }
    std::printf("version %s  %s  by %s\nreason: %s\n", str_of(a, "number").c_str(),
                str_of(a, "created").c_str(), str_of(a, "author").c_str(),
                str_of(a, "reason").c_str());
    print_diff(a.value("diff", json::array()));
    return kOk;
  }
  std::string path = "/v1/versions";
  if (!o.limit.empty()) path += "?limit=" + url_encode(o.limit);
  if (!call(c, "GET", path, nullptr, "versions", &a, &rc)) return rc;
  if (structured(o)) {
    print_output(o, a);
    return kOk;
  }
  if (!a.is_array() || a.empty()) {
    std::printf("no versions yet\n");
    return kOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& v : a) {
    const json diff = v.value("diff", json::array());
    rows.push_back({str_of(v, "number"), str_of(v, "created"), str_of(v, "author"),
                    change_counts(diff), str_of(v, "reason")});
    if (wide(o)) {  // and which resources, e.g. "+service/a ~route/b"
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
  if (wide(o)) {
    print_table({"VERSION", "CREATED", "AUTHOR", "CHANGES", "REASON", "RESOURCES"}, rows);
  } else {
    print_table({"VERSION", "CREATED", "AUTHOR", "CHANGES", "REASON"}, rows);
  }
  return kOk;
}

int cmd_rollback(Ctx& c) {
  const Options& o = c.opt;
  int rc = 0;
  if (o.positional.size() != 2) return usage_error("rollback N --reason R");
  const std::string& n = o.positional[1];
  if (!all_digits(n, 0) || n.size() > 18)
    return usage_error("rollback: not a version number: '" + n + "'");
  if (!need_reason(o, &rc)) return rc;
  json body = {{"version", std::stoll(n)}};
  if (!o.reason.empty()) body["reason"] = o.reason;
  if (o.dry_run) body["dry_run"] = true;
  json a;
  if (!call(c, "POST", "/v1/rollback", &body, "rollback to version " + n + " refused", &a, &rc))
    return rc;
  const json diff = a.value("diff", json::array());
  if (o.output == "json") {
    std::printf("%s\n", a.dump(2).c_str());
  } else if (o.dry_run) {
    std::printf("dry run: rolling back to version %s would change:\n", n.c_str());
    print_diff_summary(diff, "  ");
  } else if (a.value("unchanged", false) || diff.empty()) {
    std::printf("unchanged: version %s already has version %s's resources\n",
                str_of(a, "version").c_str(), n.c_str());
  } else {
    print_diff_summary(diff, "");
    std::printf("rolled back to version %s: now version %s\n", n.c_str(),
                str_of(a, "version").c_str());
  }
  return kOk;
}

int cmd_instances(Ctx& c) {
  const Options& o = c.opt;
  int rc = 0;
  if (!check_output(o, &rc)) return rc;
  std::string service = o.service;
  if (o.positional.size() == 2 && service.empty()) service = o.positional[1];
  if (o.positional.size() > 2) return usage_error("instances [SERVICE]");
  std::string path = "/v1/instances";
  if (!service.empty()) path += "?service=" + url_encode(service);
  json a;
  if (!call(c, "GET", path, nullptr, "instances", &a, &rc)) return rc;
  if (structured(o)) {
    print_output(o, a);
    return kOk;
  }
  if (!a.is_array() || a.empty()) {
    std::printf("no instances registered\n");
    return kOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& i : a) {
    rows.push_back({str_of(i, "service"), str_of(i, "id"), str_of(i, "address"),
                    str_of(i, "city", "-"), str_of(i, "zone", "-"), str_of(i, "weight"),
                    ago(i.value("heartbeat_ms", 0LL))});
    if (wide(o)) {
      long long ttl = i.value("ttl_ms", 0LL);
      rows.back().push_back(ttl % 1000 == 0 ? std::to_string(ttl / 1000) + "s"
                                            : std::to_string(ttl) + "ms");
      rows.back().push_back(ago(i.value("registered_ms", 0LL)));
      rows.back().push_back(until(i.value("expires_ms", 0LL)));
    }
  }
  if (wide(o)) {
    print_table({"SERVICE", "ID", "ADDRESS", "CITY", "ZONE", "WEIGHT", "HEARTBEAT", "TTL",
                 "REGISTERED", "EXPIRES"},
                rows);
  } else {
    print_table({"SERVICE", "ID", "ADDRESS", "CITY", "ZONE", "WEIGHT", "HEARTBEAT"}, rows);
  }
  return kOk;
}

int cmd_gateways(Ctx& c) {
  const Options& o = c.opt;
  int rc = 0;
  if (!check_output(o, &rc)) return rc;
  if (o.positional.size() > 1) return usage_error("gateways takes no arguments");
  json a;
  if (!call(c, "GET", "/v1/gateways", nullptr, "gateways", &a, &rc)) return rc;
  if (structured(o)) {
    print_output(o, a);
    return kOk;
  }
  if (!a.is_array() || a.empty()) {
    std::printf("no gateways have connected\n");
    return kOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& g : a) {
    // The version names of docs/operations.md ("Version numbers"), as the gateway's /ready and
    // /stats show them: "N.R" when this control plane has heard it, else the config version N.
    std::string applied = str_of(g, "control_plane_version", str_of(g, "applied"));
    if (applied.empty()) applied = str_of(g, "applied_version", "-");
    std::vector<std::string> row = {str_of(g, "id"),
                                    str_of(g, "city", "-"),
                                    str_of(g, "zone", "-"),
                                    applied,
                                    str_of(g, "status", "-"),
                                    str_of(g, "health", "-"),
                                    str_of(g, "local_version", "-"),
                                    str_of(g, "units_version", "-"),
                                    ago(g.value("seen_ms", 0LL)),
                                    wide(o) ? str_of(g, "error") : shorten(str_of(g, "error"))};
    if (wide(o)) {  // and the config version, the time last seen; the error in full (above)
      row.insert(row.end() - 1, str_of(g, "config_version", str_of(g, "applied_version", "-")));
      row.insert(row.end() - 1, str_of(g, "seen", "-"));
    }
    rows.push_back(std::move(row));
  }
  if (wide(o)) {
    print_table({"GATEWAY", "CITY", "ZONE", "CONTROL_PLANE_VERSION", "STATUS", "HEALTH",
                 "LOCAL_VERSION", "UNITS_VERSION", "SEEN", "CONFIG_VERSION", "SEEN_AT", "ERROR"},
                rows);
  } else {
    print_table({"GATEWAY", "CITY", "ZONE", "CONTROL_PLANE_VERSION", "STATUS", "HEALTH",
                 "LOCAL_VERSION", "UNITS_VERSION", "SEEN", "ERROR"},
                rows);
  }
  return kOk;
}

int cmd_events(Ctx& c) {
  const Options& o = c.opt;
  int rc = 0;
  if (!check_output(o, &rc)) return rc;
  if (o.positional.size() > 1) return usage_error("events takes no arguments");
  std::string path = "/v1/events";
  std::string sep = "?";
  if (!o.after.empty()) path += sep + "after=" + url_encode(o.after), sep = "&";
  if (!o.limit.empty()) path += sep + "limit=" + url_encode(o.limit);
  json a;
  if (!call(c, "GET", path, nullptr, "events", &a, &rc)) return rc;
  if (structured(o)) {
    print_output(o, a);
    return kOk;
  }
  if (!a.is_array() || a.empty()) {
    std::printf("no events\n");
    return kOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : a) {
    std::string detail = e.contains("detail") && !e["detail"].is_null() ? e["detail"].dump() : "";
    rows.push_back({str_of(e, "id"), str_of(e, "at"), str_of(e, "source"), str_of(e, "kind"),
                    str_of(e, "subject"), wide(o) ? detail : shorten(detail, 80)});
  }
  print_table({"ID", "AT", "SOURCE", "KIND", "SUBJECT", "DETAIL"}, rows);
  return kOk;
}

// tokens [list] | tokens create NAME --role ROLE | tokens revoke ID (the /v1/tokens API).
int cmd_tokens(Ctx& c) {
  const Options& o = c.opt;
  int rc = 0;
  if (!check_output(o, &rc)) return rc;
  const std::string sub = o.positional.size() > 1 ? o.positional[1] : "list";
  json a;
  if (sub == "list" || sub == "ls") {
    if (o.positional.size() > 2) return usage_error("tokens list takes no arguments");
    if (!call(c, "GET", "/v1/tokens", nullptr, "tokens", &a, &rc)) return rc;
    if (structured(o)) {
      print_output(o, a);
      return kOk;
    }
    if (!a.is_array() || a.empty()) {
      std::printf("no tokens\n");
      return kOk;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& t : a) {
      rows.push_back(
          {str_of(t, "id"), str_of(t, "name"), str_of(t, "role"), ago(t.value("created_ms", 0LL))});
      if (wide(o)) rows.back().push_back(str_of(t, "created_ms"));
    }
    if (wide(o)) {
      print_table({"ID", "NAME", "ROLE", "CREATED", "CREATED_MS"}, rows);
    } else {
      print_table({"ID", "NAME", "ROLE", "CREATED"}, rows);
    }
    return kOk;
  }
  if (sub == "create") {
    if (o.positional.size() != 3) return usage_error("tokens create NAME --role ROLE");
    if (o.role != "viewer" && o.role != "operator" && o.role != "admin") {
      return usage_error(o.role.empty()
                             ? "tokens create: --role viewer|operator|admin is required"
                             : "tokens create: --role: expected viewer, operator or admin, got '" +
                                   o.role + "'");
    }
    json body = {{"name", o.positional[2]}, {"role", o.role}};
    if (!call(c, "POST", "/v1/tokens", &body, "tokens create refused", &a, &rc)) return rc;
    if (structured(o)) {
      print_output(o, a);
      return kOk;
    }
    // The secret alone on stdout (so `> FILE` makes a token file); the rest on stderr.
    std::printf("%s\n", str_of(a, "token").c_str());
    std::fprintf(stderr,
                 "token %s created for '%s' (role %s); it is shown only now: keep it in a file "
                 "readable only by its user (mode 0600)\n",
                 str_of(a, "id").c_str(), str_of(a, "name").c_str(), str_of(a, "role").c_str());
    return kOk;
  }
  if (sub == "revoke" || sub == "delete") {
    if (o.positional.size() != 3) return usage_error("tokens revoke ID");
    const std::string& id = o.positional[2];
    if (!call(c, "DELETE", "/v1/tokens/" + url_encode(id), nullptr, "tokens revoke " + id, &a, &rc))
      return rc;
    if (structured(o)) {
      print_output(o, a);
    } else {
      std::printf("token %s revoked\n", id.c_str());
    }
    return kOk;
  }
  static const std::string_view kSubs[] = {"list", "create", "revoke"};
  return usage_error("tokens: unknown subcommand '" + sub + "'" + config::did_you_mean(sub, kSubs) +
                     " (list, create NAME --role ROLE, revoke ID)");
}

// ---------------------------------------------------------------------------------------------

int parse_args(const std::vector<std::string>& args, Options* o) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    std::optional<std::string> inline_value;
    if (a.rfind("--", 0) == 0 && a.find('=') != std::string::npos) {
      inline_value = a.substr(a.find('=') + 1);
      a = a.substr(0, a.find('='));
    } else if (a.size() > 2 && a[0] == '-' && a[1] != '-' && (a[1] == 'f' || a[1] == 'o')) {
      inline_value = a.substr(2);  // -fFILE, -ojson
      a = a.substr(0, 2);
    }
    auto value = [&](std::string* out) -> bool {
      if (inline_value) {
        *out = *inline_value;
        return true;
      }
      if (i + 1 >= args.size()) return false;
      *out = args[++i];
      return true;
    };
    std::string v;
    if (a == "--") {
      for (++i; i < args.size(); ++i) o->positional.push_back(args[i]);
      break;
    }
    if (a == "-h" || a == "--help") {
      o->help = true;
    } else if (a == "--dry-run") {
      if (inline_value && *inline_value != "true") {
        if (*inline_value != "false") return usage_error("--dry-run takes no value");
      } else {
        o->dry_run = true;
      }
    } else if (a == "--server" || a == "-s") {
      if (!value(&o->server_flag)) return usage_error(a + " needs a URL");
    } else if (a == "--token-file") {
      if (!value(&o->token_file_flag)) return usage_error(a + " needs a FILE");
    } else if (a == "--ca-file") {
      if (!value(&o->ca_file)) return usage_error(a + " needs a FILE (PEM)");
    } else if (a == "-f" || a == "--filename" || a == "--file") {
      if (!value(&v)) return usage_error(a + " needs a FILE");
      o->files.push_back(v);
    } else if (a == "--reason" || a == "-m") {
      if (!value(&o->reason)) return usage_error(a + " needs a reason");
      o->reason_given = true;
    } else if (a == "-o" || a == "--output") {
      if (!value(&o->output)) return usage_error(a + " needs yaml, json or wide");
    } else if (a == "--limit") {
      if (!value(&o->limit)) return usage_error(a + " needs a number");
    } else if (a == "--after") {
      if (!value(&o->after)) return usage_error(a + " needs an event id");
    } else if (a == "--service") {
      if (!value(&o->service)) return usage_error(a + " needs a service name");
    } else if (a == "--role") {
      if (!value(&o->role)) return usage_error(a + " needs viewer, operator or admin");
    } else if (a.size() > 1 && a[0] == '-') {
      static const std::string_view kOptions[] = {
          "--help",   "--dry-run", "--server", "--token-file", "--ca-file", "--filename",
          "--reason", "--output",  "--limit",  "--after",      "--service", "--role"};
      return usage_error("unknown option '" + args[i] + "'" + config::did_you_mean(a, kOptions));
    } else {
      o->positional.push_back(args[i]);
    }
  }
  return kOk;
}

std::string config_path() {
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x)
    return std::string(x) + "/sluice/ctl.yaml";
  if (const char* h = std::getenv("HOME"); h && *h)
    return std::string(h) + "/.config/sluice/ctl.yaml";
  return "";
}

}  // namespace

int run_ctl(const std::vector<std::string>& args) {
  Ctx c;
  if (int rc = parse_args(args, &c.opt); rc != kOk) return rc;
  Options& o = c.opt;
  // `ctl VERB --help` and `ctl help VERB`: that verb's help; `ctl --help`: every verb.
  std::string help_verb;
  bool asked = o.help;
  if (!o.positional.empty() && o.positional[0] == "help") {
    asked = true;
    if (o.positional.size() > 1) help_verb = o.positional[1];
  } else if (o.help && !o.positional.empty()) {
    help_verb = o.positional[0];
  }
  std::vector<std::string_view> verbs;
  for (const VerbHelp& v : kVerbHelp) verbs.push_back(v.name);
  auto unknown_verb = [&](const std::string& word) {
    std::string list;
    for (auto v : verbs) list += (list.empty() ? "" : ", ") + std::string(v);
    return usage_error("unknown command '" + word + "'" + config::did_you_mean(word, verbs) + " (" +
                       list + ")");
  };
  if (asked || o.positional.empty()) {
    if (!help_verb.empty()) {
      const VerbHelp* v = find_verb(help_verb);
      if (v == nullptr) return unknown_verb(help_verb);
      std::printf("%s", verb_usage(*v).c_str());
      return kOk;
    }
    std::fprintf(asked ? stdout : stderr, "%s", usage_text().c_str());
    return asked ? kOk : kUsage;
  }
  const std::string verb = o.positional[0];
  if (find_verb(verb) == nullptr) return unknown_verb(verb);
  if (o.output == "yml") o.output = "yaml";

  // The optional config file: server and token_file.
  std::string file_server, file_token_file, file_ca_file;
  std::string cfg = config_path();
  if (!cfg.empty()) {
    std::ifstream probe(cfg);
    if (probe) {
      try {
        // Bounded like every YAML Sluice reads (config/reader.h).
        std::vector<config::ConfigError> problems;
        config::Diagnostics diag(cfg);
        std::optional<std::string> text = config::read_config_file(cfg, problems);
        std::optional<YAML::Node> doc;
        if (text) doc = config::parse_single_document(*text, diag);
        if (!doc) {
          for (const config::ConfigError& e : diag.take()) problems.push_back(e);
          for (const config::ConfigError& e : problems)
            std::fprintf(stderr, "sluice ctl: %s\n", e.to_string().c_str());
          return kUsage;
        }
        YAML::Node n = *doc;
        if (n.IsMap()) {
          for (const auto& kv : n) {
            std::string key = kv.first.Scalar();
            if (key == "server" && kv.second.IsScalar()) {
              file_server = kv.second.Scalar();
            } else if (key == "token_file" && kv.second.IsScalar()) {
              file_token_file = kv.second.Scalar();
            } else if (key == "ca_file" && kv.second.IsScalar()) {
              file_ca_file = kv.second.Scalar();
            } else {
              std::fprintf(stderr,
                           "sluice ctl: %s:%d: %s: unknown key (server, token_file, ca_file)\n",
                           cfg.c_str(), kv.first.Mark().line + 1, key.c_str());
              return kUsage;
            }
          }
        } else if (!n.IsNull()) {
          std::fprintf(stderr, "sluice ctl: %s: expected a mapping with server and token_file\n",
                       cfg.c_str());
          return kUsage;
        }
      } catch (const YAML::Exception& e) {
        std::fprintf(stderr, "sluice ctl: %s:%d: YAML error: %s\n", cfg.c_str(), e.mark.line + 1,
                     e.msg.c_str());
        return kUsage;
      }
    }
  }

  std::string url = "http://127.0.0.1:7070";
  if (!o.server_flag.empty()) {
    url = o.server_flag;
  } else if (const char* e = std::getenv("SLUICE_SERVER"); e && *e) {
    url = e;
  } else if (!file_server.empty()) {
    url = file_server;
  }
  std::string error;
  auto server = control::parse_server_url(url, &error);
  if (!server) return usage_error(error);
  c.server = *server;
  auto home_path = [](std::string p) {
    if (p.rfind("~/", 0) == 0) {
      if (const char* h = std::getenv("HOME")) p = std::string(h) + p.substr(1);
    }
    return p;
  };
  if (o.ca_file.empty() && !file_ca_file.empty()) o.ca_file = home_path(file_ca_file);

  auto read_token = [&](const std::string& path, const std::string& source) -> bool {
    auto token = control::read_token_file(path, &error);
    if (!token) {
      std::fprintf(stderr, "sluice ctl: token file (%s): %s\n", source.c_str(), error.c_str());
      return false;
    }
    c.token = std::move(*token);
    c.token_source = path;
    return true;
  };
  if (!o.token_file_flag.empty()) {
    if (!read_token(o.token_file_flag, "--token-file")) return kUsage;
  } else if (const char* t = std::getenv("SLUICE_TOKEN"); t && *t) {
    c.token = trim(t);
    c.token_source = "SLUICE_TOKEN";
  } else if (!file_token_file.empty()) {
    if (!read_token(home_path(file_token_file), cfg)) return kUsage;
  }

  try {
    if (verb == "apply") return cmd_apply(c, false);
    if (verb == "diff") return cmd_apply(c, true);
    if (verb == "get") return cmd_get(c);
    if (verb == "delete") return cmd_delete(c);
    if (verb == "versions") return cmd_versions(c);
    if (verb == "rollback") return cmd_rollback(c);
    if (verb == "instances") return cmd_instances(c);
    if (verb == "gateways") return cmd_gateways(c);
    if (verb == "events") return cmd_events(c);
    if (verb == "tokens") return cmd_tokens(c);
  } catch (const std::exception& e) {  // e.g. an answer of an unexpected shape
    std::fprintf(stderr, "sluice ctl: %s\n", e.what());
    return kRefused;
  }
  return kUsage;
}

}  // namespace sluice::cli
