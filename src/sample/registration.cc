#include "sample/registration.h"

#include <nlohmann/json.hpp>

#include <stdexcept>

#include "core/json.h"
#include "core/log.h"

namespace sluice::sample {

namespace {

net::HttpOptions options(const RegistrationOptions& o, net::CallCanceller* cancel) {
  net::HttpOptions h;
  h.connect_timeout = std::chrono::seconds(2);
  h.io_timeout = std::chrono::seconds(5);
  h.ca_file = o.ca_file;
  h.user_agent = "sluice-sample-service";
  h.canceller = cancel;
  return h;
}

std::string describe(const net::HttpReply& r) {
  if (r.status == 0) return r.error;
  auto j = sluice::core::parse_json_or_discarded(r.body);
  if (j.is_object() && j.contains("error") && j["error"].is_string()) {
    return "HTTP " + std::to_string(r.status) + ": " + j["error"].get<std::string>();
  }
  return "HTTP " + std::to_string(r.status);
}

}  // namespace

Registration::Registration(RegistrationOptions options) : opt_(std::move(options)) {
  std::string error;
  auto server = net::parse_server_url(opt_.control_plane, &error);
  if (!server) throw std::invalid_argument("--control-plane: " + error);
  server_ = *server;
  if (opt_.token_file.empty()) throw std::invalid_argument("--control-plane needs --token-file");
  if (!net::read_token_file(opt_.token_file, &error))
    throw std::invalid_argument("--token-file: " + error);
  if (opt_.heartbeat.count() <= 0) opt_.heartbeat = opt_.ttl / 3;
}

Registration::~Registration() {
  stop();
}

void Registration::start() {
  thread_ = std::thread([this] { run(); });
}

bool Registration::wait(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, d, [this] { return stopping_; });
  return !stopping_;
}

bool Registration::register_now(const std::string& token) {
  nlohmann::json body = {{"service", opt_.service},
                         {"id", opt_.id},
                         {"address", opt_.address},
                         {"weight", opt_.weight},
                         {"ttl_ms", opt_.ttl.count()}};
  if (!opt_.city.empty()) body["city"] = opt_.city;
  if (!opt_.zone.empty()) body["zone"] = opt_.zone;
  if (opt_.facts.is_object() && !opt_.facts.empty()) body["facts"] = opt_.facts;
  std::string text = body.dump();
  net::HttpReply r =
      net::http_call(server_, token, "POST", "/v1/instances", &text, options(opt_, &cancel_));
  if (r.status >= 200 && r.status < 300) {
    core::log_info("registered {}/{} ({}) with {}", opt_.service, opt_.id, opt_.address,
                   server_.url);
    return true;
  }
  core::log_warn("cannot register {}/{} with {}: {}; retrying", opt_.service, opt_.id, server_.url,
                 describe(r));
  return false;
}

void Registration::run() {
  const std::string path = "/v1/instances/" + net::url_encode(opt_.service) + "/" +
                           net::url_encode(opt_.id) + "/heartbeat";
  std::chrono::milliseconds retry{500};
  bool warned = false;
  while (true) {
    std::string error;
    auto token = net::read_token_file(opt_.token_file, &error);
    if (!token) {
      core::log_warn("control plane token: {}", error);
      if (!wait(opt_.heartbeat)) return;
      continue;
    }
    if (!registered_) {
      registered_ = register_now(*token);
      if (!registered_) {
        if (!wait(retry)) return;
        retry = std::min<std::chrono::milliseconds>(retry * 2, opt_.heartbeat);
        continue;
      }
      retry = std::chrono::milliseconds(500);
      if (!wait(opt_.heartbeat)) return;
      continue;
    }
    net::HttpReply r =
        net::http_call(server_, *token, "PUT", path, nullptr, options(opt_, &cancel_));
    if (r.status == 404) {
      registered_ = false;  // forgotten (expired, or a new database): register again at once
      continue;
    }
    if (r.status < 200 || r.status >= 300) {
      if (!warned) core::log_warn("heartbeat to {} failed: {}", server_.url, describe(r));
      warned = true;
      if (!wait(std::min(retry, opt_.heartbeat))) return;
      continue;
    }
    if (warned) core::log_info("heartbeats to {} work again", server_.url);
    warned = false;
    if (!wait(opt_.heartbeat)) return;
  }
}

void Registration::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  cancel_.cancel();
  if (thread_.joinable()) thread_.join();
  if (!registered_) return;
  std::string error;
  auto token = net::read_token_file(opt_.token_file, &error);
  if (!token) return;
  net::HttpReply r = net::http_call(
      server_, *token, "DELETE",
      "/v1/instances/" + net::url_encode(opt_.service) + "/" + net::url_encode(opt_.id), nullptr,
      options(opt_, nullptr));
  if (r.status >= 200 && r.status < 300) {
    core::log_info("deregistered {}/{}", opt_.service, opt_.id);
  } else {
    core::log_warn("cannot deregister {}/{}: {} (it leaves after its TTL)", opt_.service, opt_.id,
                   describe(r));
  }
}

}  // namespace sluice::sample
