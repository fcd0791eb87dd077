#include "gateway/admin.h"

#include <nlohmann/json.hpp>

#include <asio/post.hpp>
#include <asio/write.hpp>

#include "core/log.h"
#include "gateway/gateway.h"
#include "http/parser.h"
#include "http/writer.h"
#include "observability/metrics.h"

namespace sluice::gateway {

namespace {

AdminResponse json(int status, const nlohmann::json& j) {
  return {status, "application/json", j.dump(2) + "\n"};
}

// One admin connection: read one request (small; a JSON body of at most 64 KiB), answer, close.
class AdminSession : public std::enable_shared_from_this<AdminSession>, public http::MessageSink {
 public:
  AdminSession(asio::ip::tcp::socket socket, AdminServer& server)
      : socket_(std::move(socket)),
        server_(server),
        parser_(http::Parser::Kind::kRequest, *this, limits()) {}

  void start() { read(); }

  void on_head(http::MessageHead& head) override {
    method_ = head.method;
    path_ = head.path();
    // Copied: the head's storage is reused. Bounded by the parser's 16 KiB head limit.
    host_ = head.headers.get("host");
    host_count_ = head.headers.count("host");
    origin_ = head.headers.get("origin");
    origin_count_ = head.headers.count("origin");
    authorization_ = head.headers.get("authorization");
  }
  void on_body(std::string_view data) override { body_.append(data); }
  void on_complete() override { done_ = true; }

 private:
  static http::ParserLimits limits() {
    http::ParserLimits l;
    l.max_header_bytes = 16 * 1024;
    l.max_body_bytes = 64 * 1024;
    return l;
  }

  void read() {
    socket_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](
                                                    const asio::error_code& ec, size_t n) {
      if (ec) return;
      auto r = self->parser_.feed(self->buf_.data(), n);
      if (r.status == http::Parser::Status::kError) {
        AdminResponse resp{http::status_for(self->parser_.error()), "application/json",
                           nlohmann::json{{"error", self->parser_.error_reason()}}.dump() + "\n"};
        self->respond(resp);
        return;
      }
      if (self->done_) {
        asio::error_code lec;
        auto local = self->socket_.local_endpoint(lec);
        std::string local_ip = lec ? "" : local.address().to_string();
        AdminRequestMeta meta;
        meta.host = self->host_;
        meta.host_count = self->host_count_;
        meta.origin = self->origin_;
        meta.origin_count = self->origin_count_;
        meta.authorization = self->authorization_;
        meta.local_ip = local_ip;
        meta.local_port = lec ? 0 : local.port();
        self->respond(self->server_.serve(self->method_, self->path_, self->body_, meta));
        return;
      }
      self->read();
    });
  }

  void respond(const AdminResponse& resp) {
    out_.clear();
    http::append_status_line(out_, resp.status);
    http::append_header(out_, "Content-Type", resp.content_type);
    http::append_header(out_, "Content-Length", static_cast<uint64_t>(resp.body.size()));
    if (resp.bearer_challenge)
      http::append_header(out_, "WWW-Authenticate", "Bearer realm=\"sluice-admin\"");
    out_.append("Connection: close\r\n\r\n");
    if (method_ != "HEAD") out_.append(resp.body);
    asio::async_write(socket_, asio::buffer(out_),
                      [self = shared_from_this()](const asio::error_code&, size_t) {
                        asio::error_code ignored;
                        self->socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
                        self->socket_.close(ignored);
                      });
  }

  asio::ip::tcp::socket socket_;
  AdminServer& server_;
  http::Parser parser_;
  std::array<char, 4096> buf_;
  std::string method_;
  std::string path_;
  std::string body_;
  std::string host_;
  std::string origin_;
  std::string authorization_;
  size_t host_count_ = 0;
  size_t origin_count_ = 0;
  std::string out_;
  bool done_ = false;
};

}  // namespace

AdminServer::AdminServer(asio::io_context& io, Gateway& gateway, const core::HostPort& address)
    : io_(io), gateway_(gateway), acceptor_(io) {
  asio::ip::tcp::endpoint ep(asio::ip::make_address(address.host), address.port);
  acceptor_.open(ep.protocol());
  acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen();
  auto& reg = gateway.shared().registry;
  const char* help =
      "Admin API requests refused: host (Host names another site), origin "
      "(cross-origin browser request), token (missing or wrong bearer token).";
  refused_host_ = &reg.counter("sluice_admin_requests_refused_total", help, {{"reason", "host"}});
  refused_origin_ =
      &reg.counter("sluice_admin_requests_refused_total", help, {{"reason", "origin"}});
  refused_token_ = &reg.counter("sluice_admin_requests_refused_total", help, {{"reason", "token"}});
  const config::Admin& admin = gateway.snapshot()->config->admin;
  if (admin.token.empty()) {
    core::log_warn(
        "admin API on {} has no admin.token_file: anyone on this host can reload, drain or "
        "switch cities through it",
        address.to_string());
  }
}

AdminResponse AdminServer::serve(std::string_view method, std::string_view path,
                                 std::string_view body, const AdminRequestMeta& meta) {
  // The config in use: a reload can change the token (rotation) and allowed_hosts.
  auto snap = gateway_.snapshot();
  const config::Admin& admin = snap->config->admin;
  if (auto refusal = check_admin_request(admin, admin_access(path), meta)) {
    observability::Counter* c = refusal->reason == "host"     ? refused_host_
                                : refusal->reason == "origin" ? refused_origin_
                                                              : refused_token_;
    c->inc();
    // One line per second at most: a flood of refused requests must not flood the log.
    auto now = std::chrono::steady_clock::now();
    if (now - last_refusal_log_ >= std::chrono::seconds(1)) {
      core::log_warn("admin API: refused {} {}: {}{}", method.substr(0, 16), path.substr(0, 128),
                     refusal->error,
                     refusals_not_logged_ ? fmt::format(" ({} more refused since the last line)",
                                                        refusals_not_logged_)
                                          : std::string());
      last_refusal_log_ = now;
      refusals_not_logged_ = 0;
    } else {
      ++refusals_not_logged_;
    }
    AdminResponse r = json(refusal->status, {{"error", refusal->error}});
    r.bearer_challenge = refusal->status == 401;
    return r;
  }
  return handle(method, path, body);
}

void AdminServer::start() {
  accept();
}

void AdminServer::stop() {
  asio::error_code ignored;
  acceptor_.close(ignored);
}

void AdminServer::accept() {
  acceptor_.async_accept([this](const asio::error_code& ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) std::make_shared<AdminSession>(std::move(socket), *this)->start();
    accept();
  });
}

AdminResponse AdminServer::handle(std::string_view method, std::string_view path,
                                  std::string_view body) {
  bool get = method == "GET" || method == "HEAD";
  bool post = method == "POST";
  if (path == "/healthz") {
    if (!get) return json(405, {{"error", "use GET"}});
    return json(200, {{"status", "ok"}});
  }
  if (path == "/ready") {
    if (!get) return json(405, {{"error", "use GET"}});
    if (gateway_.ready()) {
      nlohmann::json body = {{"status", "ready"}, {"version", gateway_.version()}};
      body.update(gateway_.versions_json());
      return json(200, body);
    }
    if (gateway_.draining()) {
      nlohmann::json body = {{"status", "draining"}, {"version", gateway_.version()}};
      body.update(gateway_.versions_json());
      return json(503, body);
    }
    if (gateway_.control_plane_waiting()) {
      return json(503, {{"status", "starting"},
                        {"reason", "no config from the control plane yet (see /stats)"}});
    }
    return json(503, {{"status", "starting"}});
  }
  if (path == "/metrics") {
    if (!get) return json(405, {{"error", "use GET"}});
    gateway_.declare_observed_metrics();
    return {200, "text/plain; version=0.0.4; charset=utf-8", gateway_.shared().registry.expose()};
  }
  if (path == "/config") {
    if (!get) return json(405, {{"error", "use GET"}});
    return {200, "application/json", gateway_.config_json()};
  }
  if (path == "/stats") {
    if (!get) return json(405, {{"error", "use GET"}});
    return {200, "application/json", gateway_.stats_json()};
  }
  if (path == "/reload") {
    if (!post) return json(405, {{"error", "use POST"}});
    ReloadResult r = gateway_.reload();
    if (r.ok) return json(200, {{"status", "reloaded"}, {"version", r.version}});
    return json(400, {{"error", "invalid config; the running config (version " +
                                    std::to_string(r.version) + ") is kept"},
                      {"version", r.version},
                      {"errors", r.errors}});
  }
  if (path == "/drain") {
    if (!post) return json(405, {{"error", "use POST"}});
    // Answer first, then drain: the admin listener closes when the drain completes.
    asio::post(io_, [this] { gateway_.begin_drain("POST /drain"); });
    return json(202, {{"status", "draining"}});
  }
  if (path == "/units") {
    if (!get) return json(405, {{"error", "use GET"}});
    auto [status, j] = gateway_.units_json();
    return {status, "application/json", j};
  }
  if (path == "/units/switch") {
    if (!post) return json(405, {{"error", "use POST"}});
    auto [status, j] = gateway_.switch_units(body);
    return {status, "application/json", j};
  }
  return json(404, {{"error", "no such admin path"},
                    {"paths",
                     {"/healthz", "/ready", "/metrics", "/config", "/stats", "/reload", "/drain",
                      "/units", "/units/switch"}}});
}

}  // namespace sluice::gateway
