// Who may use the admin API. A request must name this listener in Host (and in Origin when a
// browser sends one), so that a web page on another site, or a DNS name rebound to this address,
// cannot drive it; and with `admin.token_file`, what changes or reveals the gateway's state needs
// `Authorization: Bearer <token>`. Pure functions of the request's headers and the config.
//
// Semantics, exactly:
// - /healthz and /ready (any method) are open: no Host, Origin or token check. Load balancers'
//   health checks often send no Host, or one that names the balancer; the answers reveal nothing.
// - /metrics: Host and Origin are checked, no token (Prometheus scrapes it; no secrets in it).
// - Every other path (/config, /stats, /units, /reload, /drain, /units/switch, unknown paths):
//   Host and Origin are checked, then the token when admin.token_file is set.
// - Host must be present once and be, case-insensitively, the address the connection came in on
//   (`ip:port`; `[v6]:port`), `localhost:port` when that address is loopback, or an entry of
//   admin.allowed_hosts (an entry with a port must match it exactly; without, any port). A Host
//   without a port means port 80.
// - Origin, when present (at most once), must be `http://` or `https://` followed by an authority
//   that passes the Host rule (default port 80 / 443). `Origin: null` is refused.
// - The token is compared in constant time (SHA-256 of both, then CRYPTO_memcmp).
// - Refusals: 403 for Host or Origin, 401 for a missing or wrong token, each with a JSON error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace sluice::gateway {

enum class AdminAccess {
  kOpen,         // /healthz, /ready
  kHostChecked,  // /metrics
  kToken,        // everything else
};

AdminAccess admin_access(std::string_view path);

struct AdminRequestMeta {
  std::string_view host;  // the Host header ("" when absent)
  size_t host_count = 0;
  std::string_view origin;
  size_t origin_count = 0;
  std::string_view authorization;
  std::string_view local_ip;  // the address the connection came in on, without brackets
  uint16_t local_port = 0;
};

struct AdminRefusal {
  int status = 0;           // 401 or 403
  std::string_view reason;  // metric label: host, origin, token
  std::string error;        // for the JSON body
};

std::optional<AdminRefusal> check_admin_request(const config::Admin& admin, AdminAccess access,
                                                const AdminRequestMeta& request);

// `authority`: "host[:port]" as in Host or in Origin after the scheme.
bool authority_allowed(std::string_view authority, uint16_t default_port, std::string_view local_ip,
                       uint16_t local_port, const std::vector<std::string>& allowed_hosts);

// "Bearer <token>" (scheme case-insensitive) against `token`, in constant time.
bool bearer_matches(std::string_view authorization, std::string_view token);

}  // namespace sluice::gateway
