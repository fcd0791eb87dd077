// The admin API on its own listener, served by the control thread: health, readiness,
// Prometheus metrics, effective config, stats, reload and drain. One request per connection.
#pragma once

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <memory>
#include <string>

#include "core/address.h"

namespace sluice::gateway {

class Gateway;

struct AdminResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

class AdminServer {
 public:
  AdminServer(asio::io_context& io, Gateway& gateway, const core::HostPort& address);
  void start();
  void stop();

  // Routing of one request; public for tests.
  AdminResponse handle(std::string_view method, std::string_view path, std::string_view body = {});

 private:
  void accept();

  asio::io_context& io_;
  Gateway& gateway_;
  asio::ip::tcp::acceptor acceptor_;
};

}  // namespace sluice::gateway
