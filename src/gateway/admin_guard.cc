#include "gateway/admin_guard.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>

#include "http/header_map.h"

namespace sluice::gateway {

namespace {

struct Authority {
  std::string_view host;  // without brackets
  uint16_t port = 0;
};

// "name", "name:port", "1.2.3.4:port", "[v6]" or "[v6]:port"; nullopt when malformed.
std::optional<Authority> split_authority(std::string_view a, uint16_t default_port) {
  Authority out;
  std::string_view rest;
  if (!a.empty() && a.front() == '[') {
    size_t close = a.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    out.host = a.substr(1, close - 1);
    rest = a.substr(close + 1);
  } else {
    size_t colon = a.find(':');
    if (colon != std::string_view::npos && a.find(':', colon + 1) != std::string_view::npos)
      return std::nullopt;  // an IPv6 literal must be bracketed
    out.host = a.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view{} : a.substr(colon);
  }
  if (out.host.empty()) return std::nullopt;
  if (rest.empty()) {
    out.port = default_port;
    return out;
  }
  if (rest.front() != ':' || rest.size() < 2 || rest.size() > 6) return std::nullopt;
  unsigned port = 0;
  auto [p, ec] = std::from_chars(rest.data() + 1, rest.data() + rest.size(), port);
  if (ec != std::errc() || p != rest.data() + rest.size() || port == 0 || port > 65535)
    return std::nullopt;
  out.port = static_cast<uint16_t>(port);
  return out;
}

bool is_loopback_ip(std::string_view ip) {
  std::string s(ip.substr(0, ip.find('%')));
  in_addr v4{};
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
  }
  return false;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A header value quoted back in an error (JSON body and log): at most 256 bytes, anything but
// printable ASCII as '?', so that a hostile byte cannot break the JSON encoder or the log.
std::string quote(std::string_view v) {
  std::string out(v.substr(0, 256));
  for (char& c : out) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u > 0x7e) c = '?';
  }
  return out;
}

bool sha256(std::string_view data, unsigned char* out) {
  unsigned int len = 0;
  return EVP_Digest(data.data(), data.size(), out, &len, EVP_sha256(), nullptr) == 1 && len == 32;
}

}  // namespace

AdminAccess admin_access(std::string_view path) {
  if (path == "/healthz" || path == "/ready") return AdminAccess::kOpen;
  if (path == "/metrics") return AdminAccess::kHostChecked;
  return AdminAccess::kToken;
}

bool authority_allowed(std::string_view authority, uint16_t default_port, std::string_view local_ip,
                       uint16_t local_port, const std::vector<std::string>& allowed_hosts) {
  auto a = split_authority(authority, default_port);
  if (!a) return false;
  std::string_view local = local_ip.substr(0, local_ip.find('%'));
  if (a->port == local_port) {
    if (http::iequals(a->host, local)) return true;
    if (http::iequals(a->host, "localhost") && is_loopback_ip(local)) return true;
  }
  for (const std::string& entry : allowed_hosts) {
    // Entries are lower-cased by the loader; with a port, host and port must both match.
    auto e = split_authority(entry, 0);
    if (!e || !http::iequals(a->host, e->host)) continue;
    if (e->port == 0 || e->port == a->port) return true;
  }
  return false;
}

bool bearer_matches(std::string_view authorization, std::string_view token) {
  std::string_view v = trim(authorization);
  if (v.size() < 7 || !http::iequals(v.substr(0, 7), "bearer ")) return false;
  std::string_view given = trim(v.substr(7));
  // Digests of equal length: the comparison takes the same time whatever was sent.
  unsigned char a[32], b[32];
  if (!sha256(given, a) || !sha256(token, b)) return false;
  return CRYPTO_memcmp(a, b, sizeof a) == 0 && !token.empty();
}

std::optional<AdminRefusal> check_admin_request(const config::Admin& admin, AdminAccess access,
                                                const AdminRequestMeta& r) {
  if (access == AdminAccess::kOpen) return std::nullopt;
  if (r.host_count != 1) {
    return AdminRefusal{
        403, "host", r.host_count == 0 ? "a Host header is required" : "more than one Host header"};
  }
  if (!authority_allowed(trim(r.host), 80, r.local_ip, r.local_port, admin.allowed_hosts)) {
    return AdminRefusal{403, "host",
                        "Host '" + quote(trim(r.host)) +
                            "' does not name this admin listener (use its address, or add the "
                            "name to admin.allowed_hosts)"};
  }
  if (r.origin_count > 1) return AdminRefusal{403, "origin", "more than one Origin header"};
  if (r.origin_count == 1) {
    std::string_view o = trim(r.origin);
    uint16_t port = 0;
    std::string_view authority;
    if (o.size() > 7 && http::iequals(o.substr(0, 7), "http://")) {
      port = 80, authority = o.substr(7);
    } else if (o.size() > 8 && http::iequals(o.substr(0, 8), "https://")) {
      port = 443, authority = o.substr(8);
    }
    if (port == 0 ||
        !authority_allowed(authority, port, r.local_ip, r.local_port, admin.allowed_hosts)) {
      return AdminRefusal{
          403, "origin",
          "cross-origin request refused: Origin '" + quote(o) + "' is not this admin listener"};
    }
  }
  if (access == AdminAccess::kToken && !admin.token.empty()) {
    if (trim(r.authorization).empty()) {
      return AdminRefusal{401, "token",
                          "missing token: send 'Authorization: Bearer <token>' with the token of "
                          "admin.token_file"};
    }
    if (!bearer_matches(r.authorization, admin.token)) {
      return AdminRefusal{401, "token", "invalid token"};
    }
  }
  return std::nullopt;
}

}  // namespace sluice::gateway
