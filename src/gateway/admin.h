// The admin API on its own listener, served by the control thread: health, readiness,
// Prometheus metrics, effective config, stats, reload and drain. One request per connection.
// Who may call what (Host, Origin, bearer token) is decided by admin_guard.h.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <chrono>
#include <memory>
#include <string>

#include "core/address.h"
#include "gateway/admin_guard.h"

namespace sluice::observability {
class Counter;
}

namespace sluice::gateway {

class Gateway;

struct AdminResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  bool bearer_challenge = false;  // 401: send WWW-Authenticate: Bearer
};

class AdminServer {
 public:
  AdminServer(asio::io_context& io, Gateway& gateway, const core::HostPort& address);
  void start();
  void stop();

  // Access check (admin_guard.h) against the config in use, then routing.
  AdminResponse serve(std::string_view method, std::string_view path, std::string_view body,
                      const AdminRequestMeta& meta);
  // Routing of one request, without the access check; public for tests.
  AdminResponse handle(std::string_view method, std::string_view path, std::string_view body = {});

 private:
  void accept();

  asio::io_context& io_;
  Gateway& gateway_;
  asio::ip::tcp::acceptor acceptor_;
  // sluice_admin_requests_refused_total by reason: host, origin, token.
  observability::Counter* refused_host_ = nullptr;
  observability::Counter* refused_origin_ = nullptr;
  observability::Counter* refused_token_ = nullptr;
  std::chrono::steady_clock::time_point last_refusal_log_{};
  uint64_t refusals_not_logged_ = 0;
};

}  // namespace sluice::gateway
