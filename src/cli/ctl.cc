// `sluice ctl` on CLI11: one subcommand per verb (src/cli/ctl/<verb>.cc declares its options and
// words), global options anywhere on the line, and ctl's own help and usage errors: the word at
// fault with the nearest valid name, exit status 2, messages on stderr.
#include "cli/ctl.h"

#include <yaml-cpp/yaml.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <regex>

#include "cli/ctl/context.h"
#include "cli/ctl/output.h"
#include "cli/ctl/verb.h"
#include "config/reader.h"
#include "net/http_client.h"

namespace sluice::cli {

namespace ctl {

std::span<const Verb* const> all_verbs() {
  static const Verb* const kVerbs[] = {&kApply,    &kDiff,      &kGet,      &kDelete,   &kVersions,
                                       &kRollback, &kInstances, &kGateways, &kEvents,   &kTokens,
                                       &kChanges,  &kChange,    &kRollout,  &kReleases, &kRelease,
                                       &kProbes,   &kCmdb,      &kSlos,     &kAlerts};
  return kVerbs;
}

}  // namespace ctl

namespace {

using namespace ctl;

const char* kUsageFooter =
    "\n"
    "global options: --server URL, --token-file FILE, --ca-file PEM (anywhere on the line)\n"
    "server: --server, else $SLUICE_SERVER, else `server` in ~/.config/sluice/ctl.yaml, else\n"
    "http://127.0.0.1:7070. token: --token-file, else $SLUICE_TOKEN (the token itself), else\n"
    "`token_file` in ~/.config/sluice/ctl.yaml.\n"
    "sluice ctl VERB --help: help for one verb.\n";

// Options given before or after the verb.
struct Globals {
  std::string server;
  std::string token_file;
  std::string ca_file;
};

std::string usage_text() {
  std::string out =
      "usage: sluice ctl [--server URL] [--token-file FILE] [--ca-file PEM] <command> [options]\n"
      "\ncommands:\n";
  for (const Verb* v : all_verbs()) {
    std::string line = std::string("  ") + v->synopsis;
    if (line.size() < 58) {
      line.append(58 - line.size(), ' ');
    } else {
      line += "\n" + std::string(58, ' ');
    }
    out += line + v->summary + "\n";
  }
  return out + kUsageFooter;
}

// "-f, --filename, --file FILE|DIR|-" for an option.
std::string option_label(const CLI::Option& opt) {
  std::string label;
  for (const std::string& n : opt.get_snames()) label += (label.empty() ? "-" : ", -") + n;
  for (const std::string& n : opt.get_lnames()) label += (label.empty() ? "--" : ", --") + n;
  if (opt.get_type_size_max() > 0 && !opt.get_type_name().empty())
    label += " " + opt.get_type_name();
  return label;
}

// The options `cmd` (and its subcommands, e.g. tokens create) declares, one per line.
void list_options(const CLI::App& cmd, const std::string& prefix, std::string* out) {
  for (const CLI::Option* opt : cmd.get_options()) {
    if (!opt->nonpositional() || opt->get_lnames() == std::vector<std::string>{"help"}) continue;
    std::string line = "  " + option_label(*opt);
    if (!prefix.empty()) line += " (" + prefix + ")";
    if (line.size() < 34) {
      line.append(34 - line.size(), ' ');
    } else {
      line += "\n" + std::string(34, ' ');
    }
    *out += line + opt->get_description() + "\n";
  }
  for (const CLI::App* sub : cmd.get_subcommands({}))
    list_options(*sub, prefix.empty() ? cmd.get_name() + " " + sub->get_name() : prefix, out);
}

std::string verb_usage(const Verb& v, const CLI::App& cmd) {
  std::string options;
  list_options(cmd, "", &options);
  std::string out = std::string("usage: sluice ctl ") + v.synopsis + "\n\n" + v.summary + ".\n\n" +
                    v.details + "\n";
  if (!options.empty()) out += "\noptions:\n" + options;
  return out + kUsageFooter;
}

// Every spelling of an option ("--filename", "--file", "-f").
void option_names_of(const CLI::Option& opt, std::vector<std::string>* out) {
  for (const auto& n : opt.get_lnames()) out->push_back("--" + n);
  for (const auto& n : opt.get_snames()) out->push_back("-" + n);
}

// Every spelling of the options `cmd` takes, with those of the commands it falls through to.
void option_names(const CLI::App* cmd, std::vector<std::string>* out) {
  for (; cmd != nullptr; cmd = cmd->get_parent())
    for (const CLI::Option* opt : cmd->get_options()) option_names_of(*opt, out);
}

std::string closest(std::string_view word, const std::vector<std::string>& names) {
  std::vector<std::string_view> views(names.begin(), names.end());
  return config::did_you_mean(word, views);
}

// The option name in a word: "--reason" of "--reason=R", "-f" of "-fFILE".
std::string option_name(const std::string& word) {
  if (word.size() > 2 && word[1] != '-') return word.substr(0, 2);
  return word.substr(0, word.find('='));
}

// The option that some verb (or verb's subcommand) declares as `name`, and the verbs that do.
const CLI::Option* verb_option(const CLI::App& root, const std::string& name, std::string* takers,
                               std::vector<std::string>* all_names) {
  const CLI::Option* found = nullptr;
  for (const CLI::App* verb : root.get_subcommands({})) {
    std::vector<const CLI::App*> apps = {verb};
    for (const CLI::App* sub : verb->get_subcommands({})) apps.push_back(sub);
    bool takes = false;
    for (const CLI::App* app : apps) {
      for (const CLI::Option* opt : app->get_options()) {
        std::vector<std::string> names;
        option_names_of(*opt, &names);
        if (std::find(names.begin(), names.end(), name) != names.end()) takes = true, found = opt;
        if (all_names) all_names->insert(all_names->end(), names.begin(), names.end());
      }
    }
    if (takes && takers) *takers += (takers->empty() ? "" : ", ") + verb->get_name();
  }
  return found;
}

// `word` is no option of `cmd`: says so, naming the verbs that take it, or the nearest name.
std::string unknown_option(const CLI::App& root, const CLI::App* cmd, const std::string& word) {
  std::string name = option_name(word);
  std::string takers;
  std::vector<std::string> all;
  verb_option(root, name, &takers, &all);
  if (!takers.empty())
    return "option '" + name + "' does not apply here (it is an option of: " + takers + ")";
  std::vector<std::string> here;
  option_names(cmd, &here);
  std::string hint = closest(name, here);
  if (hint.empty()) hint = closest(name, all);
  return "unknown option '" + name + "'" + hint;
}

// "get", "tokens create": the command path below `sluice ctl`.
std::string path_of(const CLI::App* cmd) {
  std::string path;
  for (; cmd != nullptr && cmd->get_parent() != nullptr; cmd = cmd->get_parent())
    path = cmd->get_name() + (path.empty() ? "" : " " + path);
  return path;
}

int usage_error_in(const CLI::App* cmd, const std::string& message) {
  std::string path = path_of(cmd);
  std::fprintf(stderr, "sluice ctl: %s%s\n(sluice ctl %s--help for usage)\n",
               path.empty() ? "" : (path + ": ").c_str(), message.c_str(),
               path.empty() ? "" : (path + " ").c_str());
  return kUsage;
}

// The words no command took, after a parse that allows extras: an unknown option first (wherever
// it is), then an unknown command or subcommand, then a word too many. 0 when there are none.
int check_leftovers(const CLI::App& root, const CLI::App* leaf) {
  std::vector<std::string> left = root.remaining(true);
  std::erase(left, std::string("--"));
  if (left.empty()) return kOk;
  auto is_option = [](const std::string& w) { return w.size() > 1 && w[0] == '-'; };
  if (leaf == &root) {
    // No verb: `ctl aply -f x.yaml` is about the verb (-f is apply's), `ctl --bogus` about the
    // option. The value of a verb's option is not taken for the verb.
    std::string verb_word;
    for (size_t i = 0; i < left.size(); ++i) {
      const std::string& w = left[i];
      if (!is_option(w)) {
        if (verb_word.empty()) verb_word = w;
        continue;
      }
      const CLI::Option* opt = verb_option(root, option_name(w), nullptr, nullptr);
      if (opt == nullptr) return usage_error(unknown_option(root, leaf, w));
      bool attached = option_name(w) != w.substr(0, w.find('='));
      attached = attached || w.find('=') != std::string::npos;
      if (!attached && opt->get_type_size_max() > 0) ++i;
    }
    if (verb_word.empty()) return kOk;  // options and no verb: the usage, as `ctl` alone
    left = {verb_word};
  }
  for (const std::string& w : left) {
    if (is_option(w)) return usage_error_in(leaf, unknown_option(root, leaf, w));
  }
  const std::string& word = left.front();
  std::vector<std::string> names;
  std::string list;
  for (const CLI::App* sub : leaf->get_subcommands({})) {
    if (sub->get_name() == "help") continue;
    names.push_back(sub->get_name());
    list += (list.empty() ? "" : ", ") + sub->get_name();
  }
  if (leaf == &root) {
    return usage_error("unknown command '" + word + "'" + closest(word, names) + " (" + list + ")");
  }
  if (!names.empty()) {
    return usage_error_in(
        leaf, "unknown subcommand '" + word + "'" + closest(word, names) + " (" + list + ")");
  }
  return usage_error_in(leaf, "unexpected argument '" + word + "'");
}

// CLI11's messages, in ctl's words: "--filename: 1 required FILE|DIR|- missing" names the option
// and what it needs.
std::string parse_error_message(const CLI::ParseError& e) {
  std::string msg = e.what();
  static const std::regex kMissing(R"(^(\S+): \d+ required (\S+) missing$)");
  std::smatch m;
  if (std::regex_match(msg, m, kMissing)) return m[1].str() + " needs a value (" + m[2].str() + ")";
  return msg;
}

std::string config_path() {
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x)
    return std::string(x) + "/sluice/ctl.yaml";
  if (const char* h = std::getenv("HOME"); h && *h)
    return std::string(h) + "/.config/sluice/ctl.yaml";
  return "";
}

// The server, token and CA file from the flags, the environment and ctl.yaml (docs/
// control-plane.md "sluice ctl"). Returns kOk, or the exit code after saying what is wrong.
int resolve(const Globals& g, Ctx* c) {
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
  if (!g.server.empty()) {
    url = g.server;
  } else if (const char* e = std::getenv("SLUICE_SERVER"); e && *e) {
    url = e;
  } else if (!file_server.empty()) {
    url = file_server;
  }
  std::string error;
  auto server = net::parse_server_url(url, &error);
  if (!server) return usage_error(error);
  c->server = *server;
  auto home_path = [](std::string p) {
    if (p.rfind("~/", 0) == 0) {
      if (const char* h = std::getenv("HOME")) p = std::string(h) + p.substr(1);
    }
    return p;
  };
  c->ca_file = g.ca_file;
  if (c->ca_file.empty() && !file_ca_file.empty()) c->ca_file = home_path(file_ca_file);

  auto read_token = [&](const std::string& path, const std::string& source) -> bool {
    auto token = net::read_token_file(path, &error);
    if (!token) {
      std::fprintf(stderr, "sluice ctl: token file (%s): %s\n", source.c_str(), error.c_str());
      return false;
    }
    c->token = std::move(*token);
    c->token_source = path;
    return true;
  };
  if (!g.token_file.empty()) {
    if (!read_token(g.token_file, "--token-file")) return kUsage;
  } else if (const char* t = std::getenv("SLUICE_TOKEN"); t && *t) {
    c->token = trim(t);
    c->token_source = "SLUICE_TOKEN";
    if (!net::is_token_word(c->token)) {
      std::fprintf(stderr, "sluice ctl: SLUICE_TOKEN must be one word of printable ASCII\n");
      return kUsage;
    }
  } else if (!file_token_file.empty()) {
    if (!read_token(home_path(file_token_file), cfg)) return kUsage;
  }
  return kOk;
}

// ctl's own help flag on `cmd` and its subcommands; options of the commands above are taken
// after the verb too (`ctl get services --server URL`); words no command takes are kept for
// check_leftovers instead of CLI11's "not expected" error.
void prepare(CLI::App& cmd, bool* help) {
  cmd.set_help_flag();
  cmd.add_flag("-h,--help", *help, "Print the usage, options and output of this command");
  cmd.allow_extras();
  if (cmd.get_parent() != nullptr) cmd.fallthrough();
  for (CLI::App* sub : cmd.get_subcommands([](CLI::App*) { return true; })) prepare(*sub, help);
}

}  // namespace

std::string ctl_verb_names() {
  std::string out;
  for (const Verb* v : all_verbs()) out += (out.empty() ? "" : ", ") + std::string(v->name);
  return out;
}

int run_ctl(const std::vector<std::string>& args) {
  CLI::App app{"", "sluice ctl"};
  Globals g;
  Args a;
  bool help = false;
  app.add_option("--server,-s", g.server, "Control plane URL")
      ->type_name("URL")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--token-file", g.token_file, "File holding the API token")
      ->type_name("FILE")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--ca-file", g.ca_file, "PEM certificates to trust for an https:// server")
      ->type_name("PEM")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  // At most one verb, and a word that names another verb is a word of this one (`get service
  // delete` gets the service named "delete").
  app.require_subcommand(0, 1);
  std::vector<std::pair<const Verb*, CLI::App*>> verbs;
  for (const Verb* v : all_verbs()) {
    CLI::App* cmd = app.add_subcommand(v->name, v->summary);
    v->define(*cmd, a);
    verbs.emplace_back(v, cmd);
  }
  // `ctl help [VERB]`, as `ctl [VERB] --help`.
  std::vector<std::string> help_words;
  CLI::App* help_cmd = app.add_subcommand("help", "Help for one verb");
  help_cmd->add_option("words", help_words, "VERB");
  prepare(app, &help);

  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 pops from the back
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    return usage_error(parse_error_message(e));
  }

  // The verb chosen (and its subcommand, for tokens).
  const Verb* verb = nullptr;
  CLI::App* cmd = nullptr;
  for (auto& [v, c] : verbs) {
    if (c->parsed()) verb = v, cmd = c;
  }
  const CLI::App* leaf = &app;
  for (const CLI::App* c = cmd; c != nullptr;) {
    leaf = c;
    std::vector<CLI::App*> subs = c->get_subcommands();
    c = subs.empty() ? nullptr : subs.front();
  }
  if (help_cmd->parsed()) {
    leaf = help_cmd;
    help = true;
    if (!help_words.empty()) {
      for (auto& [v, c] : verbs) {
        if (help_words.front() == v->name) verb = v, cmd = c;
      }
      if (verb == nullptr) {
        // As an unknown verb: the nearest name.
        std::vector<std::string> names;
        for (const Verb* v : all_verbs()) names.push_back(v->name);
        return usage_error("unknown command '" + help_words.front() + "'" +
                           closest(help_words.front(), names) + " (" + ctl_verb_names() + ")");
      }
    }
  }
  if (int rc = check_leftovers(app, leaf); rc != kOk) return rc;

  if (help || verb == nullptr) {
    if (verb != nullptr) {
      std::printf("%s", verb_usage(*verb, *cmd).c_str());
      return kOk;
    }
    std::fprintf(help ? stdout : stderr, "%s", usage_text().c_str());
    return help ? kOk : kUsage;
  }

  Ctx c;
  if (int rc = resolve(g, &c); rc != kOk) return rc;
  try {
    return verb->run(c, a, *cmd);
  } catch (const std::exception& e) {  // e.g. an answer of an unexpected shape
    std::fprintf(stderr, "sluice ctl: %s\n", e.what());
    return kRefused;
  }
}

}  // namespace sluice::cli
