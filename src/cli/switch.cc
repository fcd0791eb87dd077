#include "cli/switch.h"

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <optional>

#include "core/address.h"

namespace sluice::cli {

namespace {

struct Reply {
  int status = 0;
  std::string body;
  std::string error;  // transport or protocol problem; status 0
};

// One POST to an admin listener (which answers and closes: Connection: close).
Reply post(const std::string& admin, const std::string& path, const std::string& body,
           double timeout_seconds) {
  Reply r;
  auto hp = core::parse_host_port(admin);
  if (!hp) {
    r.error = "not a host:port: '" + admin + "'";
    return r;
  }
  try {
    asio::io_context io;
    asio::ip::tcp::resolver resolver(io);
    asio::ip::tcp::socket socket(io);
    auto endpoints = resolver.resolve(hp->host, std::to_string(hp->port));
    asio::connect(socket, endpoints);
    timeval tv{
        static_cast<time_t>(timeout_seconds),
        static_cast<suseconds_t>((timeout_seconds - static_cast<time_t>(timeout_seconds)) * 1e6)};
    setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string req =
        "POST " + path + " HTTP/1.1\r\nHost: " + admin +
        "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\nConnection: close\r\n\r\n" + body;
    asio::write(socket, asio::buffer(req));
    std::string resp;
    asio::error_code ec;
    char buf[4096];
    for (;;) {
      size_t n = socket.read_some(asio::buffer(buf), ec);
      resp.append(buf, n);
      if (ec) break;
    }
    if (ec != asio::error::eof && resp.empty()) {
      r.error = ec.message();
      return r;
    }
    auto sp = resp.find(' ');
    auto end = resp.find("\r\n\r\n");
    if (resp.compare(0, 5, "HTTP/") != 0 || sp == std::string::npos || end == std::string::npos) {
      r.error = "not an HTTP response";
      return r;
    }
    r.status = std::atoi(resp.c_str() + sp + 1);
    r.body = resp.substr(end + 4);
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

std::string describe(const Reply& r) {
  if (r.status == 0) return r.error;
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_object() && j.contains("error")) return j["error"].get<std::string>();
  return "HTTP " + std::to_string(r.status);
}

bool step(const SwitchOptions& o, const std::string& admin, const char* phase, std::string* out) {
  nlohmann::json body = {{"from", o.from}, {"to", o.to}, {"phase", phase}};
  if (!o.shards.empty()) body["shards"] = o.shards;
  Reply r = post(admin, "/units/switch", body.dump(), o.timeout_seconds);
  if (r.status == 200) {
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (out && j.is_object()) *out = j.dump();
    return true;
  }
  std::fprintf(stderr, "sluice gateway switch: %s on %s failed: %s\n", phase, admin.c_str(),
               describe(r).c_str());
  return false;
}

}  // namespace

int run_switch(const SwitchOptions& o) {
  if (o.admins.empty()) {
    std::fprintf(stderr, "sluice gateway switch: at least one --admin is required\n");
    return 2;
  }
  if (o.admins.size() == 1) {
    std::string result;
    if (!step(o, o.admins[0], "apply", &result)) return 1;
    std::printf("%s: %s\n", o.admins[0].c_str(), result.c_str());
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
  for (const auto& admin : o.admins) {
    std::string result;
    if (!step(o, admin, "commit", &result)) {
      rc = 1;  // that gateway stays prepared; its held requests time out with 503
      continue;
    }
    std::printf("%s: %s\n", admin.c_str(), result.c_str());
  }
  return rc;
}

}  // namespace sluice::cli
