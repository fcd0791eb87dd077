// The control plane's HTTP/1.1 server: asio on its own threads, http::Parser for the codec,
// keep-alive, bounded request bodies, optional TLS. A handler may answer later, from any
// thread (long polls park their request and answer when something changes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/address.h"
#include "core/duration.h"

namespace sluice::control {

using namespace std::chrono_literals;

struct HttpRequest {
  std::string method;         // "GET"
  std::string path;           // raw path, no query: "/v1/resources/service/accounts"
  std::string query;          // raw, without '?'
  std::string authorization;  // the Authorization header, empty when absent
  std::string content_type;
  std::string body;
  std::string peer;  // "127.0.0.1:53412"
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;  // not sent for HEAD, 204 and 304
  // Instead of `body` when set: one text sent to many (the config body to every woken gateway),
  // written from where it is, never copied per answer.
  std::shared_ptr<const std::string> shared_body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// Delivers the answer to a request: call exactly once, from any thread. Does nothing when the
// connection has gone away meanwhile.
using Respond = std::function<void(HttpResponse)>;

class Handler {
 public:
  virtual ~Handler() = default;
  // Runs on a server thread; must not block for long (store calls are fine, waits are not:
  // keep `respond` and call it later instead).
  virtual void handle(HttpRequest request, Respond respond) = 0;
};

struct ServerOptions {
  core::HostPort listen{"127.0.0.1", 0};  // port 0: an ephemeral port, see Server::port()
  unsigned threads = 2;
  size_t max_body_bytes = 4 * 1024 * 1024;  // 413 beyond
  size_t max_header_bytes = 64 * 1024;      // 431 beyond
  // A connection waiting for its next request is closed after this; a request being answered
  // (a parked long poll) is never cut by it.
  core::Duration idle_timeout = 120s;
  // PEM files; both empty = plain HTTP.
  std::string tls_cert;
  std::string tls_key;
};

class Server {
 public:
  // Binds the listener (throws std::runtime_error with the address on failure, and for TLS
  // files that do not load). Nothing runs before start().
  Server(const ServerOptions& options, Handler& handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  uint16_t port() const;
  void start();
  // Stops accepting, closes idle connections, lets responses being written finish (up to
  // `grace`), then closes the rest and joins the threads. Idempotent.
  void stop(core::Duration grace = 2s);
  size_t connections() const;
  // Runs `fn` on one of the server's threads, outside any connection's strand.
  void post(std::function<void()> fn);

  struct Impl;  // implementation detail (server.cc); public so its connections can name it

 private:
  std::unique_ptr<Impl> impl_;
};

// "%41b%2Fc" -> "Ab/c"; '+' becomes a space only in query strings (`plus_as_space`). Invalid
// escapes are kept as written.
std::string percent_decode(std::string_view s, bool plus_as_space = false);
// The percent-decoded value of a query parameter; nullopt when absent.
std::optional<std::string> query_param(std::string_view query, std::string_view name);

}  // namespace sluice::control
