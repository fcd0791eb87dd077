#include "cli/switch.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "config/secret_file.h"
#include "core/address.h"
#include "core/json.h"
#include "net/http_client.h"

namespace sluice::cli {

namespace {

using Reply = net::HttpReply;

// One POST to a gateway's admin listener.
Reply post(const std::string& admin, const std::string& path, const std::string& body,
           double timeout_seconds, const std::string& token) {
  std::string error;
  auto hp = core::parse_host_port(admin);
  auto server = hp ? net::parse_server_url(admin, &error) : std::nullopt;
  if (!server) {
    Reply r;
    r.error = "not a host:port: '" + admin + "'";
    return r;
  }
  net::HttpOptions options;
  options.connect_timeout = options.io_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000));
  options.user_agent = "sluice-switch";
  return net::http_call(*server, token, "POST", path, &body, options);
}

std::string describe(const Reply& r) {
  if (r.status == 0) return r.error;
  auto j = sluice::core::parse_json_or_discarded(r.body);
  if (j.is_object() && j.contains("error")) return j["error"].get<std::string>();
  return "HTTP " + std::to_string(r.status);
}

bool step(const SwitchOptions& o, const std::string& admin, const char* phase, std::string* out) {
  nlohmann::json body = {{"from", o.from}, {"to", o.to}, {"phase", phase}};
  if (!o.shards.empty()) body["shards"] = o.shards;
  Reply r = post(admin, "/units/switch", body.dump(), o.timeout_seconds, o.admin_token);
  if (r.status == 200) {
    auto j = sluice::core::parse_json_or_discarded(r.body);
    if (out && j.is_object()) *out = j.dump();
    return true;
  }
  std::string why = describe(r);
  if (r.status == 401) {
    why += o.admin_token.empty()
               ? " (the gateway has admin.token_file: give --admin-token-file FILE or set "
                 "SLUICE_ADMIN_TOKEN)"
               : " (the token was refused: check --admin-token-file / SLUICE_ADMIN_TOKEN)";
  }
  std::fprintf(stderr, "sluice gateway switch: %s on %s failed: %s\n", phase, admin.c_str(),
               why.c_str());
  return false;
}

// The control plane to record the switch in (--control-plane).
struct ControlPlaneTarget {
  net::ServerUrl server;
  std::string token;
  net::HttpOptions options;
  nlohmann::json units;  // the units resource as it is now
  int64_t version = 0;   // the config version it was read at
};

std::string describe_cp(const net::HttpReply& r) {
  if (r.status == 0) return r.error;
  auto j = sluice::core::parse_json_or_discarded(r.body);
  std::string out = "HTTP " + std::to_string(r.status);
  if (j.is_object() && j.contains("error") && j["error"].is_string())
    out += ": " + j["error"].get<std::string>();
  if (j.is_object() && j.contains("errors") && j["errors"].is_array()) {
    for (const auto& e : j["errors"])
      out += "\n  " + (e.is_string() ? e.get<std::string>() : e.dump());
  }
  return out;
}

// Reads the units resource before anything moves: a control plane that cannot take the write
// stops the switch here.
std::optional<ControlPlaneTarget> open_control_plane(const SwitchOptions& o) {
  ControlPlaneTarget t;
  std::string error;
  auto server = net::parse_server_url(o.control_plane, &error);
  if (!server) {
    std::fprintf(stderr, "sluice gateway switch: --control-plane: %s\n", error.c_str());
    return std::nullopt;
  }
  t.server = *server;
  auto token = net::read_token_file(o.token_file, &error);
  if (o.token_file.empty() || !token) {
    std::fprintf(stderr, "sluice gateway switch: --control-plane needs --token-file: %s\n",
                 o.token_file.empty() ? "not given" : error.c_str());
    return std::nullopt;
  }
  t.token = *token;
  t.options.ca_file = o.ca_file;
  t.options.io_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_seconds * 1000));
  t.options.user_agent = "sluice-switch";
  net::HttpReply r =
      net::http_call(t.server, t.token, "GET", "/v1/resources?kind=units", nullptr, t.options);
  auto j = sluice::core::parse_json_or_discarded(r.body);
  if (r.status != 200 || !j.is_object() || !j.contains("resources") || !j["resources"].is_array()) {
    std::fprintf(stderr, "sluice gateway switch: control plane %s: %s\n", t.server.url.c_str(),
                 describe_cp(r).c_str());
    return std::nullopt;
  }
  if (j["resources"].empty()) {
    std::fprintf(stderr,
                 "sluice gateway switch: control plane %s has no units resource: nothing to "
                 "record the switch in\n",
                 t.server.url.c_str());
    return std::nullopt;
  }
  t.units = j["resources"][0];
  t.version = j.value("version", int64_t{0});
  return t;
}

// Writes the ownership a gateway answered with into the units resource.
bool record_switch(const SwitchOptions& o, ControlPlaneTarget& t, const std::string& result) {
  auto answer = sluice::core::parse_json_or_discarded(result);
  if (!answer.is_object() || !answer.contains("owners")) {
    std::fprintf(stderr, "sluice gateway switch: the gateway's answer has no owners\n");
    return false;
  }
  nlohmann::json units = t.units;
  nlohmann::json owners = answer["owners"];
  // The gateways leave out a city that owns nothing now (a drained city); the resource keeps it,
  // with no shards, since its peer entry names it.
  for (const char* section : {"owners", "peers"}) {
    const nlohmann::json& old = units["spec"].value(section, nlohmann::json::object());
    if (!old.is_object()) continue;
    for (const auto& [city, _] : old.items()) {
      if (!owners.contains(city)) owners[city] = nlohmann::json::array();
    }
  }
  units["spec"]["owners"] = owners;
  std::string reason = "switch " + o.from + " -> " + o.to + " shards " +
                       (o.shards.empty() ? "all of " + o.from : o.shards);
  nlohmann::json body = {
      {"resources", {units}}, {"reason", reason}, {"expected_version", t.version}};
  std::string text = body.dump();
  net::HttpReply r = net::http_call(t.server, t.token, "POST", "/v1/apply", &text, t.options);
  if (r.status == 200) {
    auto j = sluice::core::parse_json_or_discarded(r.body);
    std::printf("control plane %s: units recorded as version %s\n", t.server.url.c_str(),
                j.is_object() && j.contains("version") ? j["version"].dump().c_str() : "?");
    return true;
  }
  std::fprintf(stderr,
               "sluice gateway switch: WARNING: the gateways switched, but the control plane %s "
               "did not record it (%s). Apply the units resource with owners %s now, or a "
               "gateway that restarts will take the old ownership.\n",
               t.server.url.c_str(), describe_cp(r).c_str(), owners.dump().c_str());
  return false;
}

}  // namespace

CLI::App* add_switch_command(CLI::App& gateway, SwitchOptions& o) {
  CLI::App* sw = gateway.add_subcommand(
      "switch", "Move shard ownership between cities through gateways' admin APIs");
  sw->add_option("--admin", o.admins,
                 "Admin address (host:port) of a gateway; repeat for several (two-phase switch)")
      ->type_name("HOST:PORT")
      ->required();
  sw->add_option("--from", o.from, "City that gives the shards up")->type_name("CITY")->required();
  sw->add_option("--to", o.to, "City that takes them")->type_name("CITY")->required();
  sw->add_option("--shards", o.shards, "Shard ranges, e.g. 0-49,60 (default: all of --from's)")
      ->type_name("RANGES");
  sw->add_option("--timeout", o.timeout_seconds, "Seconds to wait for each gateway")
      ->type_name("SECONDS")
      ->check(CLI::PositiveNumber);
  sw->add_option("--control-plane", o.control_plane,
                 "Also record the new ownership as the control plane's units resource (for "
                 "gateways fed by it)")
      ->type_name("URL");
  sw->add_option("--token-file", o.token_file, "Token (operator) for --control-plane")
      ->type_name("FILE");
  sw->add_option("--admin-token-file", o.admin_token_file,
                 "The gateways' admin token (their admin.token_file); default: "
                 "$SLUICE_ADMIN_TOKEN")
      ->type_name("FILE");
  sw->add_option("--ca-file", o.ca_file, "PEM certificates to trust for an https control plane")
      ->type_name("PEM");
  return sw;
}

int run_switch(const SwitchOptions& options) {
  SwitchOptions o = options;
  if (o.admins.empty()) {
    std::fprintf(stderr, "sluice gateway switch: at least one --admin is required\n");
    return 2;
  }
  if (!o.admin_token_file.empty()) {
    std::string error;
    auto secret = config::read_secret_file(o.admin_token_file, &error);
    if (!secret) {
      std::fprintf(stderr, "sluice gateway switch: --admin-token-file: %s\n", error.c_str());
      return 2;
    }
    o.admin_token = secret->secret;
  } else if (const char* t = std::getenv("SLUICE_ADMIN_TOKEN"); t != nullptr && *t != '\0') {
    std::string_view v = t;
    while (!v.empty() && std::isspace(static_cast<unsigned char>(v.front()))) v.remove_prefix(1);
    while (!v.empty() && std::isspace(static_cast<unsigned char>(v.back()))) v.remove_suffix(1);
    o.admin_token = std::string(v);
  }
  std::optional<ControlPlaneTarget> cp;
  if (!o.control_plane.empty()) {
    cp = open_control_plane(o);
    if (!cp) return 1;
  }
  if (o.admins.size() == 1) {
    std::string result;
    if (!step(o, o.admins[0], "apply", &result)) return 1;
    std::printf("%s: %s\n", o.admins[0].c_str(), result.c_str());
    if (cp && !record_switch(o, *cp, result)) return 1;
    return 0;
  }
  std::vector<std::string> prepared;
  for (const auto& admin : o.admins) {
    if (!step(o, admin, "prepare", nullptr)) {
      for (const auto& p : prepared) step(o, p, "abort", nullptr);
      std::fprintf(stderr, "sluice gateway switch: aborted; ownership unchanged everywhere\n");
      return 1;
    }
    prepared.push_back(admin);
  }
  int rc = 0;
  std::string committed;
  for (const auto& admin : o.admins) {
    std::string result;
    if (!step(o, admin, "commit", &result)) {
      rc = 1;  // that gateway stays prepared; its held requests time out with 503
      continue;
    }
    std::printf("%s: %s\n", admin.c_str(), result.c_str());
    committed = result;
  }
  if (cp && !committed.empty() && !record_switch(o, *cp, committed)) rc = 1;
  return rc;
}

}  // namespace sluice::cli
