// What every `sluice ctl` verb shares: the values of its options (declared once, on the verb's
// CLI11 subcommand, by the add_* helpers below), the server and token it talks to, and the one
// way it calls the control plane and reports a refusal. Exit codes are ctl.h's.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "net/http_client.h"

namespace sluice::cli::ctl {

using nlohmann::json;

constexpr int kOk = 0;
constexpr int kRefused = 1;
constexpr int kUsage = 2;

// The values of every ctl option. A verb declares only the options it takes (add_* below), so an
// option of another verb is refused at parse time; the fields it does not declare stay empty.
struct Args {
  std::vector<std::string> files;     // -f (apply, diff)
  std::optional<std::string> reason;  // --reason (apply, delete, rollback)
  bool dry_run = false;               // --dry-run (apply, delete, rollback)
  std::string output;                 // -o: "" (a table or text), yaml, json, wide
  std::string limit;                  // --limit (versions, events)
  std::string after;                  // --after (events)
  std::string service;                // --service (instances)
  std::string role;                   // --role (tokens create)
  bool emergency = false;             // --emergency (apply, delete, rollback)
  std::string state;                  // --state (changes)
  std::string type;                   // --type (cmdb import)
  std::vector<std::string> words;     // the words after the verb (KIND NAME, N, ...)
};

// The server and token a verb talks to (resolved from flags, environment and ctl.yaml).
struct Ctx {
  net::ServerUrl server;
  std::string token;
  std::string token_source;  // for messages: the file, or SLUICE_TOKEN
  std::string ca_file;       // trust for an https:// server
};

// ---- Declaring options (one definition: parsing, help and suggestions come from it) ----------

// -o/--output. `tables`: yaml|json|wide (a verb that prints tables); else json|yaml (a verb that
// prints text: apply, delete, rollback, whose -o prints the server's answer). "yml" is "yaml".
void add_output(CLI::App& cmd, Args& a, bool tables);
void add_files(CLI::App& cmd, Args& a);      // -f/--filename/--file FILE|DIR|- (repeatable)
void add_reason(CLI::App& cmd, Args& a);     // --reason/-m R
void add_dry_run(CLI::App& cmd, Args& a);    // --dry-run
void add_emergency(CLI::App& cmd, Args& a);  // --emergency
// The verb's words (KIND NAME, N, ...): checked by the verb itself, whose messages name them.
void add_words(CLI::App& cmd, Args& a, const std::string& what);

// ---- Messages and checks ---------------------------------------------------------------------

// Prints "sluice ctl: MESSAGE" and where help is on stderr; returns kUsage.
int usage_error(const std::string& message);
// --reason given and not blank, unless --dry-run; else a usage error into *rc.
bool need_reason(const Args& a, int* rc);

// A write's answer as a change, on stdout. print_held: the server's message when the change is
// held (proposed, or approved and waiting), and true (the caller prints nothing more).
// print_committed: "change C done" after the caller's own lines.
bool print_held(const json& answer);
void print_committed(const json& answer);

// -o yaml or -o json: the server's answer as it is, not a table.
inline bool structured(const Args& a) {
  return a.output == "json" || a.output == "yaml";
}
inline bool wide(const Args& a) {
  return a.output == "wide";
}

// ---- Calling the control plane ---------------------------------------------------------------

// Sends a request and parses the JSON answer; on a non-2xx answer (or none) explains it on stderr
// with `what`, sets *rc to kRefused and returns false.
bool call(const Ctx& c, const std::string& method, const std::string& path, const json* body,
          const std::string& what, json* answer, int* rc);

}  // namespace sluice::cli::ctl
