// "host:port" socket addresses as written in config files and on the command line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::core {

struct HostPort {
  std::string host;  // IPv4/IPv6 literal or a name; brackets of "[::1]:80" removed
  uint16_t port = 0;
  std::string to_string() const;
  bool operator==(const HostPort&) const = default;
};

// Accepts "127.0.0.1:8080", "[::1]:8080", "localhost:80", ":8080" (all interfaces: host "0.0.0.0").
// Port 0 is allowed only when allow_port_zero is true. Returns nullopt on anything malformed.
std::optional<HostPort> parse_host_port(std::string_view text, bool allow_port_zero = false);

}  // namespace sluice::core
