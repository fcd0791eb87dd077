// `sluice` — one binary, several roles: gateway (data plane), sample-service, and later the
// control plane and its client.
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <iostream>

#include "cli/ctl.h"
#include "cli/switch.h"
#include "config/loader.h"
#include "config/reader.h"
#include "control/control_main.h"
#include "core/duration.h"
#include "core/log.h"
#include "gateway/gateway.h"
#include "sample/sample_service.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "0.1.0"
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Sluice: an API gateway and operations platform for dual-city active-active banks"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "debug | info | warn | error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  app.set_version_flag("--version", SLUICE_VERSION);

  auto* gw = app.add_subcommand("gateway", "Run the gateway (data plane)");
  std::string config_path;
  bool validate = false;
  gw->add_option("--config,-c", config_path, "Gateway config file (YAML)");
  gw->add_flag("--validate", validate, "Check the config, print every error, and exit");
  auto* sw = gw->add_subcommand("switch",
                                "Move shard ownership between cities through gateways' admin APIs");
  cli::SwitchOptions swo;
  sw->add_option("--admin", swo.admins,
                 "Admin address (host:port) of a gateway; repeat for several (two-phase switch)")
      ->required();
  sw->add_option("--from", swo.from, "City that gives the shards up")->required();
  sw->add_option("--to", swo.to, "City that takes them")->required();
  sw->add_option("--shards", swo.shards, "Shard ranges, e.g. 0-49,60 (default: all of --from's)");
  sw->add_option("--timeout", swo.timeout_seconds, "Seconds to wait for each gateway")
      ->check(CLI::PositiveNumber);
  sw->add_option("--control-plane", swo.control_plane,
                 "Also record the new ownership as the control plane's units resource (for "
                 "gateways fed by it)");
  sw->add_option("--token-file", swo.token_file, "Token (operator) for --control-plane");
  sw->add_option("--ca-file", swo.ca_file, "PEM certificates to trust for an https control plane");

  auto* control = app.add_subcommand("control", "Run the control plane");
  std::string control_config;
  control->add_option("--config,-c", control_config, "Control plane config file (YAML)")
      ->required();

  // `sluice ctl` parses its own words (kubectl-like flags anywhere); see cli/ctl.h.
  auto* ctl = app.add_subcommand("ctl",
                                 "Control plane client: apply, get, diff, delete, versions, "
                                 "rollback, instances, gateways, events (ctl --help)");
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

  if (argc >= 2 && std::string(argv[1]) == "ctl") {
    std::signal(SIGPIPE, SIG_IGN);
    return cli::run_ctl(std::vector<std::string>(argv + 2, argv + argc));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  core::set_log_level(parse_level(log_level));
  // A peer that goes away must be an error on that socket, not the end of the process.
  std::signal(SIGPIPE, SIG_IGN);

  if (*sw) return cli::run_switch(swo);
  if (*ctl) return cli::run_ctl(ctl->remaining());
  if (*control) return control::run_control(control_config);
  if (*gw) {
    if (config_path.empty()) {
      std::fprintf(stderr, "sluice gateway: --config FILE is required\n");
      return 2;
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
    return sample::run_sample_service(so);
  }
  return 2;
}
