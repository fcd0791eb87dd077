#include "control/control_config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "config/reader.h"

namespace sluice::control {
namespace {

using config::Diagnostics;
using config::MapReader;
using config::Value;

constexpr core::Duration kMinRetention = 1min;
constexpr core::Duration kMaxRetention = 24h * 3650;  // ten years
constexpr uint32_t kMaxThreads = 64;
constexpr core::Duration kMinSloInterval = 100ms;  // tests with scaled-down windows
constexpr core::Duration kMaxSloInterval = 10min;

bool is_ip_literal(const std::string& host) {
  std::string addr = host.substr(0, host.find('%'));
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, addr.c_str(), buf) == 1 || inet_pton(AF_INET6, addr.c_str(), buf) == 1;
}

class ControlLoader {
 public:
  ControlLoader(Diagnostics& diag, ControlConfig& c) : diag_(diag), c_(c) {}

  void load(const Value& root) {
    MapReader top(diag_, root,
                  {"listen", "store", "auth", "tls", "stats", "events", "threads", "cmdb", "slo"});
    if (!top.is_map()) return;
    if (const Value* v = top.get("listen")) load_listen(*v);
    if (const Value* v = top.require("store")) load_store(*v);
    if (const Value* v = top.require("auth")) load_auth(*v);
    if (const Value* v = top.get("tls")) load_tls(*v);
    if (const Value* v = top.get("stats")) {
      MapReader m(diag_, *v, {"retention"});
      m.read("retention", c_.stats_retention, kMinRetention, kMaxRetention);
    }
    if (const Value* v = top.get("events")) {
      MapReader m(diag_, *v, {"retention"});
      m.read("retention", c_.events_retention, kMinRetention, kMaxRetention);
    }
    top.read_uint("threads", c_.threads, 1, kMaxThreads);
    if (const Value* v = top.get("cmdb")) {
      MapReader m(diag_, *v, {"reconcile_interval", "window", "traffic_window"});
      m.read("reconcile_interval", c_.cmdb_reconcile_interval, 100ms, 1h);
      m.read("window", c_.cmdb_window, 100ms, 24h * 7);
      m.read("traffic_window", c_.cmdb_traffic_window, 1s, 24h * 7);
    }
    if (const Value* v = top.get("slo")) {
      MapReader m(diag_, *v, {"interval"});
      m.read("interval", c_.slo_interval, kMinSloInterval, kMaxSloInterval);
    }
  }

 private:
  void load_listen(const Value& v) {
    auto s = config::read_string(diag_, v);
    if (!s) return;
    auto hp = core::parse_host_port(*s);
    if (!hp) {
      v.error(diag_,
              fmt::format("expected host:port such as 127.0.0.1:7070 or [::1]:7070, got '{}'", *s));
      return;
    }
    if (!is_ip_literal(hp->host)) {
      v.error(diag_, fmt::format("must be an IP address (not a host name) with a port, such as "
                                 "127.0.0.1:7070 or :7070, got '{}'",
                                 *s));
      return;
    }
    c_.listen = *hp;
  }

  void load_store(const Value& v) {
    auto s = config::read_string(diag_, v);
    if (!s) return;
    std::string_view url = *s;
    if (url.starts_with("sqlite:")) {
      std::string_view rest = url.substr(7);
      if (rest.starts_with("//")) rest.remove_prefix(2);
      if (rest.empty()) {
        v.error(diag_, "sqlite: needs a file, such as sqlite:///var/lib/sluice/control.db");
        return;
      }
      // The database file is created on first start; its directory must be there (as for the
      // admin token file), or SQLite only says "unable to open database file".
      if (rest != ":memory:") {
        std::filesystem::path dir = std::filesystem::path(std::string(rest)).parent_path();
        std::error_code ec;
        if (!dir.empty() && !std::filesystem::is_directory(dir, ec)) {
          v.error(diag_, fmt::format("directory {} does not exist", dir.string()));
          return;
        }
      }
    } else if (url.starts_with("postgres://") || url.starts_with("postgresql://")) {
      if (url.find("://") + 3 == url.size()) {
        v.error(diag_, "postgres:// needs at least a host or database");
        return;
      }
    } else {
      v.error(diag_, fmt::format("expected sqlite:///PATH, sqlite::memory: or "
                                 "postgres://USER@HOST:PORT/DB, got '{}'",
                                 url.substr(0, url.find('@'))));
      return;
    }
    c_.store = *s;
  }

  void load_auth(const Value& v) {
    MapReader m(diag_, v, {"admin_token_file"});
    if (!m.is_map()) return;
    if (const Value* f = m.require("admin_token_file")) {
      auto s = config::read_string(diag_, *f);
      if (!s) return;
      if (s->empty()) {
        f->error(diag_, "must not be empty");
        return;
      }
      // The file itself may be missing (it is created on first start), its directory may not.
      std::filesystem::path dir = std::filesystem::path(*s).parent_path();
      std::error_code ec;
      if (!dir.empty() && !std::filesystem::is_directory(dir, ec)) {
        f->error(diag_, fmt::format("directory {} does not exist", dir.string()));
        return;
      }
      c_.admin_token_file = *s;
    }
  }

  void load_tls(const Value& v) {
    MapReader m(diag_, v, {"cert", "key"});
    if (!m.is_map()) return;
    bool ok = true;
    for (const char* key : {"cert", "key"}) {
      const Value* f = m.require(key);
      if (f == nullptr) {
        ok = false;
        continue;
      }
      auto s = config::read_string(diag_, *f);
      if (!s) {
        ok = false;
        continue;
      }
      if (::access(s->c_str(), R_OK) != 0) {
        f->error(diag_, fmt::format("cannot read {}: {}", *s, std::strerror(errno)));
        ok = false;
        continue;
      }
      (std::string_view(key) == "cert" ? c_.tls_cert : c_.tls_key) = *s;
    }
    c_.tls = ok;
  }

  Diagnostics& diag_;
  ControlConfig& c_;
};

}  // namespace

ControlConfigResult load_control_string(std::string_view yaml, const std::string& source_name) {
  ControlConfigResult result;
  auto c = std::make_shared<ControlConfig>();
  c->source_file = source_name;
  result.errors = config::load_document(
      yaml, source_name,
      [&](Diagnostics& diag, const Value& root) { ControlLoader(diag, *c).load(root); });
  if (result.errors.empty()) result.config = std::move(c);
  return result;
}

ControlConfigResult load_control_file(const std::string& path) {
  ControlConfigResult result;
  if (auto text = config::read_config_file(path, result.errors)) {
    return load_control_string(*text, path);
  }
  return result;
}

}  // namespace sluice::control
