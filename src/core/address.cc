#include "core/address.h"

#include <algorithm>
#include <charconv>

namespace sluice::core {
namespace {

// A host name or IPv4 literal. Anything else ('@', '/', '?', spaces, newlines, brackets) is a
// typo or an injection and must not reach getaddrinfo or a log line.
bool is_name_host(std::string_view host) {
  return !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
  });
}

// The inside of "[...]": an IPv6 literal, optionally with a "%zone" suffix.
bool is_ipv6_host(std::string_view host) {
  std::string_view addr = host.substr(0, host.find('%'));
  if (addr.find(':') == std::string_view::npos) return false;
  bool addr_ok = std::all_of(addr.begin(), addr.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
           c == '.';
  });
  if (!addr_ok) return false;
  if (addr.size() == host.size()) return true;
  return is_name_host(host.substr(addr.size() + 1));
}

}  // namespace

std::string HostPort::to_string() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::optional<HostPort> parse_host_port(std::string_view text, bool allow_port_zero) {
  HostPort out;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return std::nullopt;
    out.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
    if (!is_ipv6_host(out.host)) return std::nullopt;
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    if (text.substr(0, colon).find(':') != std::string_view::npos) return std::nullopt;
    out.host = colon == 0 ? "0.0.0.0" : std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (!is_name_host(out.host)) return std::nullopt;
  }
  if (port_text.empty() || port_text.size() > 5) return std::nullopt;
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535)
    return std::nullopt;
  if (port == 0 && !allow_port_zero) return std::nullopt;
  out.port = static_cast<uint16_t>(port);
  return out;
}

}  // namespace sluice::core
