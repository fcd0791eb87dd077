// `sluice` — one binary, several roles: gateway (data plane), control plane, its client (ctl) and
// the sample service. Exit status: 0 success, 1 runtime failure (bad config file, cannot bind,
// refused by a server), 2 usage error (unknown command or option, missing or bad argument).
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <iostream>

#include <fmt/format.h>

#include "cli/ctl.h"
#include "cli/switch.h"
#include "config/loader.h"
#include "config/reader.h"
#include "control/control_main.h"
#include "core/duration.h"
#include "core/log.h"
#include "gateway/gateway.h"
#include "sample/caller.h"
#include "sample/sample_service.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "0.1.0"
#endif
// Set by CMake at configure time (git rev-parse); "unknown" when built outside a git checkout.
#ifndef SLUICE_GIT_COMMIT
#define SLUICE_GIT_COMMIT "unknown"
#endif

namespace {

using namespace sluice;

core::LogLevel parse_level(const std::string& s) {
  if (s == "debug") return core::LogLevel::kDebug;
  if (s == "warn") return core::LogLevel::kWarn;
  if (s == "error") return core::LogLevel::kError;
  return core::LogLevel::kInfo;
}

int run_gateway(const std::string& path, bool validate_only) {
  config::LoadResult loaded;
  std::optional<std::string> text = config::read_config_file(path, loaded.errors);
  if (text) loaded = config::load_string(*text, path);
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    std::fprintf(stderr, "%zu error(s) in %s\n", loaded.errors.size(), path.c_str());
    return 1;
  }
  if (validate_only) {
    if (loaded.config->control_plane.enabled) {
      std::printf(
          "config OK: %s (%zu listener(s); services, routes and rate limits from the "
          "control plane %s)\n",
          path.c_str(), loaded.config->listeners.size(),
          loaded.config->control_plane.address.c_str());
    } else {
      std::printf("config OK: %s (%zu listener(s), %zu service(s), %zu route(s))\n", path.c_str(),
                  loaded.config->listeners.size(), loaded.config->services.size(),
                  loaded.config->routes.size());
    }
    return 0;
  }
  try {
    std::optional<gateway::Bootstrap> boot;
    if (loaded.config->control_plane.enabled)
      boot = gateway::bootstrap_from_control_plane(path, *text, loaded.config);
    gateway::Gateway gw(path, loaded.config, std::move(*text), std::move(boot));
    return gw.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice gateway: %s\n", e.what());
    return 1;
  }
}

constexpr int kUsage = 2;

std::string version_text() {
  return fmt::format("sluice {} (commit {})", SLUICE_VERSION, SLUICE_GIT_COMMIT);
}

// Every spelling of an app's options ("--config", "-c"), for suggestions.
void option_names(const CLI::App* app, std::vector<std::string>* out) {
  for (const CLI::Option* opt : app->get_options()) {
    for (const auto& n : opt->get_lnames()) out->push_back("--" + n);
    for (const auto& n : opt->get_snames()) out->push_back("-" + n);
  }
}

std::string suggestion(std::string_view word, const std::vector<std::string>& names) {
  std::vector<std::string_view> views(names.begin(), names.end());
  return config::did_you_mean(word, views);
}

std::string command_list(const CLI::App* app) {
  std::string out;
  for (const CLI::App* sub : app->get_subcommands({})) {
    if (!out.empty()) out += ", ";
    out += sub->get_name();
  }
  return out;
}

// CLI11 says "A subcommand is required" for `sluice gatway` and "The following arguments were
// not expected" for a misspelt option. This walks the words as CLI11 would and names the word it
// stumbled on, with the nearest valid name. Returns the command path ("sluice gateway switch")
// and the message.
std::pair<std::string, std::string> diagnose(const CLI::App& app,
                                             const std::vector<std::string>& args,
                                             const CLI::ParseError& e) {
  const CLI::App* cur = &app;
  std::string where = "sluice";
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") break;
    if (a.size() > 1 && a[0] == '-') {
      bool long_form = a[1] == '-';
      std::string name = long_form ? a.substr(0, a.find('=')) : a.substr(0, 2);
      const CLI::Option* opt = nullptr;
      std::vector<std::string> names;
      for (const CLI::App* p = cur; p != nullptr && opt == nullptr;
           p = p->get_fallthrough() ? p->get_parent() : nullptr) {
        opt = p->get_option_no_throw(name);
        option_names(p, &names);
      }
      if (opt == nullptr) return {where, "unknown option '" + name + "'" + suggestion(name, names)};
      bool inline_value = long_form ? a.find('=') != std::string::npos : a.size() > 2;
      if (!inline_value && opt->get_items_expected_max() > 0 && opt->get_type_size_max() > 0) ++i;
      continue;
    }
    if (cur->get_prefix_command()) break;  // ctl parses its own words
    const CLI::App* sub = nullptr;
    std::vector<std::string> commands;
    for (const CLI::App* s : cur->get_subcommands({})) {
      commands.push_back(s->get_name());
      if (s->check_name(a)) sub = s;
    }
    if (sub != nullptr) {
      cur = sub;
      where += " " + sub->get_name();
      continue;
    }
    if (!commands.empty()) {
      return {where, "unknown command '" + a + "'" + suggestion(a, commands) +
                         " (commands: " + command_list(cur) + ")"};
    }
    return {where, "unexpected argument '" + a + "'"};
  }
  std::string msg = e.what();
  if (msg.find("subcommand is required") != std::string::npos) {
    msg = "a command is required (" + command_list(cur) + ")";
  }
  return {where, msg};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Sluice: an API gateway and operations platform for dual-city active-active banks"};
  app.require_subcommand(1);
  // Options of `sluice` itself (--log-level) are accepted after a command too
  // (`sluice gateway --config F --log-level debug`): subcommands created below inherit this.
  app.fallthrough();
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "debug | info | warn | error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  app.set_version_flag("--version,-V", version_text(),
                       "Print the version and git commit, then exit");

  auto* gw = app.add_subcommand("gateway", "Run the gateway (data plane)");
  std::string config_path;
  bool validate = false;
  gw->add_option("--config,-c", config_path, "Gateway config file (YAML)");
  gw->add_flag("--validate", validate, "Check the config, print every error, and exit");
  cli::SwitchOptions swo;
  CLI::App* sw = cli::add_switch_command(*gw, swo);

  auto* control = app.add_subcommand("control", "Run the control plane");
  std::string control_config;
  control->add_option("--config,-c", control_config, "Control plane config file (YAML)")
      ->required();

  // `sluice ctl` parses its own words with its own CLI11 app (one subcommand per verb, global
  // options anywhere on the line, its own help and messages); see cli/ctl.h.
  auto* ctl = app.add_subcommand(
      "ctl", "Control plane client: " + cli::ctl_verb_names() + " (sluice ctl --help)");
  ctl->prefix_command();
  ctl->allow_extras();
  ctl->set_help_flag();

  auto* sample = app.add_subcommand("sample-service", "Run a sample microservice");
  sample::SampleOptions so;
  std::string latency = "0ms";
  sample->add_option("--listen", so.listen, "host:port to listen on")->required();
  sample->add_option("--name", so.name, "Service name")->required();
  sample->add_option("--city", so.city, "City this instance runs in")->required();
  sample->add_option("--zone", so.zone, "Zone within the city");
  sample->add_option("--latency", latency, "Added latency per response, e.g. 2ms");
  sample->add_option("--error-rate", so.error_rate, "Fraction of requests answered 500")
      ->check(CLI::Range(0.0, 1.0));
  sample->add_option("--workers", so.workers, "Worker threads (0 = one per core)");
  sample->add_option("--instance", so.instance, "Instance id (default name@listen)");
  sample->add_option("--control-plane", so.control_plane, "Control plane URL to register with");
  sample->add_option("--token-file", so.token_file,
                     "File with a token (operator role) for the control plane");
  sample->add_option("--ca-file", so.ca_file,
                     "PEM certificates to trust for an https control plane");
  sample->add_option("--advertise", so.advertise,
                     "host:port to register (default: the address listened on)");
  std::string ttl = "10s";
  sample->add_option("--ttl", ttl,
                     "Registration TTL: gone from the endpoint sets this long after the last "
                     "heartbeat (heartbeats every TTL/3)");
  sample->add_option("--weight", so.weight, "Registered weight")->check(CLI::Range(1, 1000));
  sample->add_option("--gateway", so.gateway,
                     "host:port (or URL) of a gateway listener that --call goes through");
  std::vector<std::string> calls;
  sample->add_option("--call", calls,
                     "NAME=PATH: request PATH through --gateway every --call-interval with "
                     "x-sluice-caller set to --name (repeatable)");
  std::string call_interval = "1s";
  sample->add_option("--call-interval", call_interval, "Time between rounds of --call requests");
  sample->add_option("--call-count", so.call_count, "Rounds of --call requests (0 = no end)");

  if (argc >= 2 && std::string(argv[1]) == "ctl") {
    std::signal(SIGPIPE, SIG_IGN);
    return cli::run_ctl(std::vector<std::string>(argv + 2, argv + argc));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    auto [where, message] = diagnose(app, std::vector<std::string>(argv + 1, argv + argc), e);
    std::fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", where.c_str(), message.c_str(),
                 where.c_str());
    return kUsage;
  }
  core::set_log_level(parse_level(log_level));
  // A peer that goes away must be an error on that socket, not the end of the process.
  std::signal(SIGPIPE, SIG_IGN);

  if (*sw) return cli::run_switch(swo);
  if (*ctl) return cli::run_ctl(ctl->remaining());
  if (*control) return control::run_control(control_config);
  if (*gw) {
    if (config_path.empty()) {
      std::fprintf(stderr,
                   "sluice gateway: --config FILE is required\nRun 'sluice gateway --help' for "
                   "usage.\n");
      return kUsage;
    }
    return run_gateway(config_path, validate);
  }
  if (*sample) {
    auto d = core::parse_duration(latency);
    if (!d) {
      std::fprintf(stderr, "--latency: not a duration: '%s' (examples: 2ms, 1s)\n",
                   latency.c_str());
      return 2;
    }
    so.latency = *d;
    auto t = core::parse_duration(ttl);
    if (!t || *t < std::chrono::milliseconds(100) || *t > std::chrono::hours(1)) {
      std::fprintf(stderr, "--ttl: must be a duration 100ms..1h, got '%s'\n", ttl.c_str());
      return 2;
    }
    so.ttl = std::chrono::duration_cast<std::chrono::milliseconds>(*t);
    auto ci = core::parse_duration(call_interval);
    if (!ci || *ci < std::chrono::milliseconds(1) || *ci > std::chrono::hours(1)) {
      std::fprintf(stderr, "--call-interval: must be a duration 1ms..1h, got '%s'\n",
                   call_interval.c_str());
      return 2;
    }
    so.call_interval = std::chrono::duration_cast<std::chrono::milliseconds>(*ci);
    for (const std::string& c : calls) {
      std::string error;
      auto target = sample::parse_call(c, &error);
      if (!target) {
        std::fprintf(stderr, "--call: %s\n", error.c_str());
        return 2;
      }
      so.calls.push_back(*target);
    }
    if (!so.calls.empty() && so.gateway.empty()) {
      std::fprintf(stderr, "--call needs --gateway\n");
      return 2;
    }
    so.version = std::string(SLUICE_VERSION) + "+" + SLUICE_GIT_COMMIT;
    return sample::run_sample_service(so);
  }
  return 2;
}
