#include "gateway/health_checker.h"

#include <fmt/core.h>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include <algorithm>
#include <array>
#include <exception>
#include <limits>
#include <unordered_map>
#include <utility>

#include "core/log.h"
#include "http/parser.h"

namespace sluice::gateway {

HealthState::HealthState(uint32_t healthy_threshold, uint32_t unhealthy_threshold, bool healthy)
    : healthy_threshold_(std::max<uint32_t>(healthy_threshold, 1)),
      unhealthy_threshold_(std::max<uint32_t>(unhealthy_threshold, 1)),
      healthy_(healthy) {}

void HealthState::set_thresholds(uint32_t healthy_threshold, uint32_t unhealthy_threshold) {
  healthy_threshold_ = std::max<uint32_t>(healthy_threshold, 1);
  unhealthy_threshold_ = std::max<uint32_t>(unhealthy_threshold, 1);
}

std::optional<bool> HealthState::record(bool pass) {
  constexpr uint32_t kMax = std::numeric_limits<uint32_t>::max();
  if (pass) {
    failures_ = 0;
    if (passes_ < kMax) ++passes_;
    if (!healthy_ && passes_ >= healthy_threshold_) {
      healthy_ = true;
      return true;
    }
  } else {
    passes_ = 0;
    if (failures_ < kMax) ++failures_;
    if (healthy_ && failures_ >= unhealthy_threshold_) {
      healthy_ = false;
      return false;
    }
  }
  return std::nullopt;
}

core::Duration next_check_delay(core::Duration interval, core::Duration jitter, core::Rng& rng) {
  interval = std::max(interval, core::Duration::zero());
  if (jitter <= core::Duration::zero()) return interval;
  return interval + core::Duration(static_cast<int64_t>(rng.uniform(jitter.count())));
}

namespace {

http::ParserLimits response_limits() {
  http::ParserLimits limits;
  limits.max_header_bytes = HealthChecker::kMaxResponseBytes;
  return limits;
}

// Two targets are the same endpoint check when these match; the rest of the settings may change
// on reload without losing the state.
std::string target_key(const HealthChecker::Target& t) {
  std::string key;
  key.reserve(t.service.size() + t.address.size() + t.check.path.size() + 2);
  key.append(t.service).push_back('\n');
  key.append(t.address).push_back('\n');
  key.append(t.check.path);
  return key;
}

// A throwing consumer must not stop the checks: the exception would leave the target unscheduled.
void notify_safely(const std::function<void(bool)>& on_change, bool healthy) {
  try {
    on_change(healthy);
  } catch (const std::exception& ex) {
    core::log_error("health check: on_change threw: {}", ex.what());
  } catch (...) {
    core::log_error("health check: on_change threw");
  }
}

}  // namespace

struct HealthChecker::Entry final : http::MessageSink {
  Entry(asio::io_context& io, Target t)
      : target(std::move(t)),
        state(target.check.healthy_threshold, target.check.unhealthy_threshold),
        timer(io),
        socket(io),
        parser(http::Parser::Kind::kResponse, *this, response_limits()) {}

  void on_head(http::MessageHead& head) override { head_status = head.status; }
  void on_body(std::string_view) override {}
  void on_complete() override {}

  // Guarded by HealthChecker::mutex_.
  Target target;
  HealthState state;
  uint64_t passes = 0;
  uint64_t failures = 0;
  std::string last_error;
  bool removed = false;
  bool replay = false;  // kept unhealthy by set_targets: tell the new on_change

  // Checker thread only.
  asio::steady_timer timer;  // the next check while idle, the check's deadline while in one
  asio::ip::tcp::socket socket;
  http::Parser parser;
  std::array<char, 4096> buf;
  std::string request;
  size_t bytes_read = 0;
  int head_status = 0;  // of the latest response head; 0 = none yet
  // Bumped at every phase change (scheduled, checking, finished, halted): a completion handler
  // of an older phase sees a different value and does nothing. One counter instead of reasoning
  // about which of the timer, connect, write and read callbacks may still be queued.
  uint64_t op = 0;
  bool armed = false;  // a check is scheduled or running
};

HealthChecker::HealthChecker() = default;

HealthChecker::~HealthChecker() {
  stop();
  {
    std::lock_guard lock(mutex_);
    entries_.clear();
  }
  // Handlers still queued (posted while stopped) own entries, whose sockets and timers must be
  // destroyed while the context is intact: run them out. They do nothing while inactive.
  io_.restart();
  io_.run();
}

void HealthChecker::start() {
  std::lock_guard control(control_mutex_);
  if (thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    active_ = true;
  }
  io_.restart();
  work_.emplace(asio::make_work_guard(io_));
  asio::post(io_, [this] {
    std::vector<EntryPtr> all;
    {
      std::lock_guard lock(mutex_);
      all = entries_;
    }
    for (const auto& e : all) arm(e);
    deliver_replays();
  });
  thread_ = std::thread([this] {
    for (;;) {
      try {
        io_.run();
        return;
      } catch (const std::exception& ex) {
        // Not expected (callbacks are guarded); keep the checker alive regardless.
        core::log_error("health check: {}", ex.what());
      }
    }
  });
}

void HealthChecker::stop() {
  std::lock_guard control(control_mutex_);
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    active_ = false;
  }
  asio::post(io_, [this] {
    std::vector<EntryPtr> all;
    {
      std::lock_guard lock(mutex_);
      all = entries_;
    }
    for (const auto& e : all) halt(e);
  });
  // With every operation cancelled and nothing re-armed, run() returns once the aborted
  // handlers have run.
  work_.reset();
  thread_.join();
}

void HealthChecker::set_targets(std::vector<Target> targets) {
  std::vector<EntryPtr> added;
  std::vector<EntryPtr> removed;
  {
    std::lock_guard lock(mutex_);
    std::unordered_multimap<std::string, EntryPtr> old;
    old.reserve(entries_.size());
    for (auto& e : entries_) old.emplace(target_key(e->target), std::move(e));
    entries_.clear();
    entries_.reserve(targets.size());
    for (auto& t : targets) {
      // Each old entry is taken at most once: a target listed twice gets a second entry.
      auto it = old.find(target_key(t));
      if (it != old.end()) {
        EntryPtr e = std::move(it->second);
        old.erase(it);
        e->target = std::move(t);
        e->state.set_thresholds(e->target.check.healthy_threshold,
                                e->target.check.unhealthy_threshold);
        if (!e->state.healthy()) e->replay = true;
        entries_.push_back(std::move(e));
      } else {
        auto e = std::make_shared<Entry>(io_, std::move(t));
        added.push_back(e);
        entries_.push_back(std::move(e));
      }
    }
    for (auto& [key, e] : old) {
      e->removed = true;
      removed.push_back(std::move(e));
    }
  }
  asio::post(io_, [this, added = std::move(added), removed = std::move(removed)] {
    for (const auto& e : removed) halt(e);
    for (const auto& e : added) arm(e);
    deliver_replays();
  });
}

std::vector<HealthChecker::Status> HealthChecker::status() const {
  std::lock_guard lock(mutex_);
  std::vector<Status> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) {
    out.push_back(Status{e->target.service, e->target.address, e->state.healthy(), e->passes,
                         e->failures, e->last_error});
  }
  return out;
}

void HealthChecker::deliver_replays() {
  std::vector<std::function<void(bool)>> calls;
  {
    std::lock_guard lock(mutex_);
    if (!active_) return;  // kept for start()
    for (const auto& e : entries_) {
      if (!e->replay) continue;
      e->replay = false;
      if (!e->state.healthy() && e->target.on_change) calls.push_back(e->target.on_change);
    }
  }
  for (auto& call : calls) notify_safely(call, false);
}

void HealthChecker::arm(const EntryPtr& e) {
  if (e->armed) return;
  core::Duration jitter;
  {
    std::lock_guard lock(mutex_);
    if (!active_ || e->removed) return;
    jitter = e->target.check.jitter;
  }
  e->armed = true;
  // The first check runs right away, spread over the jitter so that a start or a reload with
  // many endpoints does not probe them all at the same instant.
  schedule(e, next_check_delay(core::Duration::zero(), jitter, core::thread_rng()));
}

void HealthChecker::schedule(const EntryPtr& e, core::Duration delay) {
  const uint64_t op = ++e->op;
  e->timer.expires_after(delay);
  e->timer.async_wait([this, e, op](const asio::error_code& ec) {
    if (ec || e->op != op) return;
    start_check(e);
  });
}

void HealthChecker::start_check(const EntryPtr& e) {
  asio::ip::tcp::endpoint endpoint;
  core::Duration timeout;
  {
    std::lock_guard lock(mutex_);
    if (!active_ || e->removed) {
      e->armed = false;
      return;
    }
    const Target& t = e->target;
    endpoint = t.endpoint;
    timeout = t.check.timeout;
    e->request = fmt::format(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sluice-health-check\r\nConnection: "
        "close\r\n\r\n",
        t.check.path, t.check.host.empty() ? t.address : t.check.host);
  }
  const uint64_t op = ++e->op;
  e->parser.reset();
  e->bytes_read = 0;
  e->head_status = 0;

  e->timer.expires_after(timeout);
  e->timer.async_wait([this, e, op](const asio::error_code& ec) {
    if (ec || e->op != op) return;
    finish(e, false, "timeout");
  });
  // A new connection per check (Connection: close), so that a check also proves the endpoint
  // still accepts connections, which a reused keep-alive connection would not.
  e->socket.async_connect(endpoint, [this, e, op](const asio::error_code& ec) {
    if (e->op != op) return;
    if (ec) {
      finish(e, false, "connect: " + ec.message());
      return;
    }
    asio::async_write(e->socket, asio::buffer(e->request),
                      [this, e, op](const asio::error_code& ec, size_t) {
                        if (e->op != op) return;
                        if (ec) {
                          finish(e, false, "send: " + ec.message());
                          return;
                        }
                        read_more(e, op);
                      });
  });
}

void HealthChecker::read_more(const EntryPtr& e, uint64_t op) {
  e->socket.async_read_some(
      asio::buffer(e->buf), [this, e, op](const asio::error_code& ec, size_t n) {
        if (e->op != op) return;
        if (ec == asio::error::eof) {
          finish(e, false, "closed before a response");
          return;
        }
        if (ec) {
          finish(e, false, "receive: " + ec.message());
          return;
        }
        e->bytes_read += n;
        const char* p = e->buf.data();
        size_t left = n;
        while (left > 0) {
          http::Parser::Result r = e->parser.feed(p, left);
          if (r.status == http::Parser::Status::kError) {
            finish(e, false, std::string("bad response: ") + e->parser.error_reason());
            return;
          }
          const int status = e->head_status;
          if (status >= 100 && status < 200 && status != 101) {
            e->head_status = 0;  // interim response (e.g. 103 Early Hints): the final one follows
          } else if (status != 0) {
            // The status line decides; the body is not read.
            if (status >= 200 && status < 400) {
              finish(e, true, {});
            } else {
              finish(e, false, fmt::format("status {}", status));
            }
            return;
          }
          if (r.consumed == 0) break;
          p += r.consumed;
          left -= r.consumed;
        }
        if (e->bytes_read >= kMaxResponseBytes) {
          finish(e, false, "response head too large");
          return;
        }
        read_more(e, op);
      });
}

void HealthChecker::finish(const EntryPtr& e, bool pass, std::string error) {
  ++e->op;
  asio::error_code ignored;
  e->socket.close(ignored);
  e->timer.cancel();

  std::optional<bool> change;
  std::function<void(bool)> notify;
  std::string service, address, last_error;
  core::Duration interval, jitter;
  {
    std::lock_guard lock(mutex_);
    if (!active_ || e->removed) {
      e->armed = false;
      return;
    }
    if (pass) {
      ++e->passes;
    } else {
      ++e->failures;
      e->last_error = std::move(error);
    }
    change = e->state.record(pass);
    if (change) {
      notify = e->target.on_change;
      service = e->target.service;
      address = e->target.address;
      last_error = e->last_error;
    }
    interval = e->target.check.interval;
    jitter = e->target.check.jitter;
  }
  if (change) {
    if (*change) {
      core::log_info("health check: service {} endpoint {} is healthy", service, address);
    } else {
      core::log_warn("health check: service {} endpoint {} is unhealthy: {}", service, address,
                     last_error);
    }
    if (notify) notify_safely(notify, *change);
  }
  schedule(e, next_check_delay(interval, jitter, core::thread_rng()));
}

void HealthChecker::halt(const EntryPtr& e) {
  ++e->op;
  asio::error_code ignored;
  e->socket.close(ignored);
  e->timer.cancel();
  e->armed = false;
}

}  // namespace sluice::gateway
