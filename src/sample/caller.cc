#include "sample/caller.h"

#include <stdexcept>

#include "core/log.h"

namespace sluice::sample {

std::optional<CallTarget> parse_call(const std::string& text, std::string* error) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 >= text.size() || text[eq + 1] != '/') {
    *error = "expected NAME=PATH (PATH starting with '/'), got '" + text + "'";
    return std::nullopt;
  }
  CallTarget t{text.substr(0, eq), text.substr(eq + 1)};
  for (char c : t.path) {
    if (c <= ' ' || c >= 127) {
      *error = "PATH must be printable ASCII without spaces, got '" + t.path + "'";
      return std::nullopt;
    }
  }
  return t;
}

Caller::Caller(CallerOptions options) : opt_(std::move(options)) {
  std::string error;
  auto server = net::parse_server_url(opt_.gateway, &error);
  if (!server) throw std::invalid_argument("--gateway: " + error);
  server_ = *server;
  if (opt_.interval.count() <= 0) throw std::invalid_argument("--call-interval: must be > 0");
}

Caller::~Caller() {
  stop();
}

void Caller::start() {
  thread_ = std::thread([this] { run(); });
}

void Caller::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  cancel_.cancel();
  if (thread_.joinable()) thread_.join();
}

uint64_t Caller::sent() const {
  std::lock_guard lock(mu_);
  return sent_;
}

uint64_t Caller::ok() const {
  std::lock_guard lock(mu_);
  return ok_;
}

void Caller::run() {
  net::HttpOptions h;
  h.connect_timeout = std::chrono::seconds(2);
  h.io_timeout = std::chrono::seconds(5);
  h.user_agent = "sluice-sample-service";
  h.canceller = &cancel_;
  h.max_reply_bytes = 1 << 20;
  h.headers = {{"x-sluice-caller", opt_.service}};
  bool warned = false;
  for (uint64_t round = 0; opt_.count == 0 || round < opt_.count; ++round) {
    for (const CallTarget& t : opt_.targets) {
      net::HttpReply r = net::http_call(server_, "", "GET", t.path, nullptr, h);
      const bool good = r.status >= 200 && r.status < 500;
      {
        std::lock_guard lock(mu_);
        if (stopping_) return;
        ++sent_;
        if (good) ++ok_;
      }
      if (!good && !warned) {
        core::log_warn("call to {} ({} through {}) failed: {}", t.name, t.path, server_.url,
                       r.status == 0 ? r.error : "HTTP " + std::to_string(r.status));
      }
      warned = !good;
    }
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, opt_.interval, [this] { return stopping_; })) return;
  }
  std::lock_guard lock(mu_);
  core::log_info("calls done: {} sent, {} answered", sent_, ok_);
}

}  // namespace sluice::sample
