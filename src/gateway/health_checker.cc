#include "gateway/health_checker.h"

#include <fmt/core.h>
#include <asio/post.hpp>
#include <asio/write.hpp>

#include <algorithm>
#include <array>
#include <exception>
#include <future>
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
  limits.max_header_bytes = HttpHealthProbe::kMaxResponseBytes;
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

// ---- HttpHealthProbe ----

struct HttpHealthProbe::Probe final : http::MessageSink {
  Probe(asio::io_context& io, uint64_t id, Done done)
      : id(id),
        socket(io),
        parser(http::Parser::Kind::kResponse, *this, response_limits()),
        done(std::move(done)) {}

  void on_head(http::MessageHead& head) override { head_status = head.status; }
  void on_body(std::string_view) override {}
  void on_complete() override {}

  uint64_t id;
  asio::ip::tcp::socket socket;
  http::Parser parser;
  Done done;  // empty once called or cancelled
  std::array<char, 4096> buf;
  std::string request;
  size_t bytes_read = 0;
  int head_status = 0;  // of the latest response head; 0 = none yet
};

HttpHealthProbe::~HttpHealthProbe() {
  for (auto& [id, p] : probes_) {
    p->done = nullptr;
    asio::error_code ignored;
    p->socket.close(ignored);
  }
}

void HttpHealthProbe::start(uint64_t id, const ProbeRequest& request, Done done) {
  auto p = std::make_shared<Probe>(io_, id, std::move(done));
  p->request = fmt::format(
      "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sluice-health-check\r\nConnection: "
      "close\r\n\r\n",
      request.path, request.host);
  probes_[id] = p;
  p->socket.async_connect(request.endpoint, [this, p](const asio::error_code& ec) {
    if (!p->done) return;
    if (ec) {
      finish(p, false, "connect: " + ec.message());
      return;
    }
    asio::async_write(p->socket, asio::buffer(p->request),
                      [this, p](const asio::error_code& ec, size_t) {
                        if (!p->done) return;
                        if (ec) {
                          finish(p, false, "send: " + ec.message());
                          return;
                        }
                        read_more(p);
                      });
  });
}

void HttpHealthProbe::cancel(uint64_t id) {
  auto it = probes_.find(id);
  if (it == probes_.end()) return;
  std::shared_ptr<Probe> p = std::move(it->second);
  probes_.erase(it);
  p->done = nullptr;
  asio::error_code ignored;
  p->socket.close(ignored);  // the aborted handlers see no `done` and let go of the probe
}

void HttpHealthProbe::read_more(const std::shared_ptr<Probe>& p) {
  p->socket.async_read_some(asio::buffer(p->buf), [this, p](const asio::error_code& ec, size_t n) {
    if (!p->done) return;
    if (ec == asio::error::eof) {
      finish(p, false, "closed before a response");
      return;
    }
    if (ec) {
      finish(p, false, "receive: " + ec.message());
      return;
    }
    p->bytes_read += n;
    const char* data = p->buf.data();
    size_t left = n;
    while (left > 0) {
      http::Parser::Result r = p->parser.feed(data, left);
      if (r.status == http::Parser::Status::kError) {
        finish(p, false, std::string("bad response: ") + p->parser.error_reason());
        return;
      }
      const int status = p->head_status;
      if (status >= 100 && status < 200 && status != 101) {
        p->head_status = 0;  // interim response (e.g. 103 Early Hints): the final one follows
      } else if (status != 0) {
        // The status line decides; the body is not read.
        if (status >= 200 && status < 400) {
          finish(p, true, {});
        } else {
          finish(p, false, fmt::format("status {}", status));
        }
        return;
      }
      if (r.consumed == 0) break;
      data += r.consumed;
      left -= r.consumed;
    }
    if (p->bytes_read >= kMaxResponseBytes) {
      finish(p, false, "response head too large");
      return;
    }
    read_more(p);
  });
}

void HttpHealthProbe::finish(const std::shared_ptr<Probe>& p, bool pass, std::string error) {
  Done done = std::move(p->done);
  p->done = nullptr;
  asio::error_code ignored;
  p->socket.close(ignored);
  probes_.erase(p->id);
  if (done) done(pass, std::move(error));
}

// ---- HealthChecker ----

struct HealthChecker::Entry {
  explicit Entry(Target t)
      : target(std::move(t)),
        state(target.check.healthy_threshold, target.check.unhealthy_threshold) {}

  // Guarded by HealthChecker::mutex_.
  Target target;
  HealthState state;
  uint64_t passes = 0;
  uint64_t failures = 0;
  std::string last_error;
  bool removed = false;
  bool replay = false;  // kept unhealthy by set_targets: tell the new on_change

  // Checker thread only. An entry is idle (armed, waiting for `due`), checking (probe `probe_id`
  // in flight until `deadline`) or neither (not armed: inactive or removed).
  bool armed = false;
  uint64_t probe_id = 0;  // 0 = no check in flight; a result for another id is stale
  core::MonoTime due{};
  core::MonoTime deadline{};
};

HealthChecker::HealthChecker()
    : clock_(core::SteadyClock::instance()),
      own_probe_(std::make_unique<HttpHealthProbe>(io_)),
      probe_(*own_probe_),
      timer_(io_) {}

HealthChecker::HealthChecker(const core::Clock& clock, HealthProbe& probe)
    : clock_(clock), probe_(probe), timer_(io_) {}

HealthChecker::~HealthChecker() {
  stop();
  {
    std::lock_guard lock(mutex_);
    entries_.clear();
  }
  // Handlers still queued (posted while stopped) own entries and probes, whose sockets must be
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
    const core::MonoTime now = clock_.now();
    for (const auto& e : all) arm(e, now);
    deliver_replays();
    tick();
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
    timer_.cancel();
  });
  // With every operation cancelled and nothing re-armed, run() returns once the aborted
  // handlers have run.
  work_.reset();
  thread_.join();
}

void HealthChecker::wake() {
  // Under control_mutex_ the thread runs and stays running, so the posted tick does run.
  std::lock_guard control(control_mutex_);
  if (!thread_.joinable()) return;
  std::promise<void> done;
  asio::post(io_, [this, &done] {
    tick();
    done.set_value();
  });
  done.get_future().wait();
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
        auto e = std::make_shared<Entry>(std::move(t));
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
    const core::MonoTime now = clock_.now();
    for (const auto& e : added) arm(e, now);
    deliver_replays();
    tick();
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

void HealthChecker::arm(const EntryPtr& e, core::MonoTime now) {
  if (e->armed) return;
  core::Duration jitter;
  {
    std::lock_guard lock(mutex_);
    if (!active_ || e->removed) return;
    jitter = e->target.check.jitter;
  }
  e->armed = true;
  e->probe_id = 0;
  // The first check runs right away, spread over the jitter so that a start or a reload with
  // many endpoints does not probe them all at the same instant.
  e->due = now + next_check_delay(core::Duration::zero(), jitter, core::thread_rng());
}

void HealthChecker::tick() {
  std::vector<EntryPtr> all;
  {
    std::lock_guard lock(mutex_);
    if (!active_) return;
    all = entries_;
  }
  core::MonoTime now = clock_.now();
  for (const auto& e : all) {
    if (!e->armed) continue;
    if (e->probe_id != 0) {
      if (now >= e->deadline) finish(e, false, "timeout");
    } else if (now >= e->due) {
      start_check(e, now);
    }
  }
  // The earliest instant at which something is to be done, on the injected clock; the timer
  // waits the same span of real time (a hand-moved clock is followed by wake()).
  std::optional<core::MonoTime> next;
  for (const auto& e : all) {
    if (!e->armed) continue;
    core::MonoTime at = e->probe_id != 0 ? e->deadline : e->due;
    if (!next || at < *next) next = at;
  }
  timer_.cancel();
  if (!next) return;
  now = clock_.now();
  timer_.expires_after(*next > now ? *next - now : core::Duration::zero());
  timer_.async_wait([this](const asio::error_code& ec) {
    if (!ec) tick();
  });
}

void HealthChecker::start_check(const EntryPtr& e, core::MonoTime now) {
  ProbeRequest request;
  core::Duration timeout;
  {
    std::lock_guard lock(mutex_);
    if (!active_ || e->removed) {
      e->armed = false;
      return;
    }
    const Target& t = e->target;
    request.endpoint = t.endpoint;
    request.host = t.check.host.empty() ? t.address : t.check.host;
    request.path = t.check.path;
    timeout = t.check.timeout;
  }
  const uint64_t id = ++next_probe_id_;
  e->probe_id = id;
  e->deadline = now + timeout;
  // The result may come from any thread (or at once, from within start): it is handled on the
  // checker thread, and only while it is still the check in flight.
  std::weak_ptr<Entry> weak = e;
  probe_.start(id, request, [this, weak, id](bool pass, std::string error) {
    asio::post(io_, [this, weak, id, pass, error = std::move(error)]() mutable {
      if (auto e = weak.lock()) on_result(e, id, pass, std::move(error));
    });
  });
}

void HealthChecker::on_result(const EntryPtr& e, uint64_t id, bool pass, std::string error) {
  if (e->probe_id != id || id == 0) return;  // timed out, halted or re-armed meanwhile
  finish(e, pass, std::move(error));
  tick();
}

void HealthChecker::finish(const EntryPtr& e, bool pass, std::string error) {
  if (e->probe_id != 0) probe_.cancel(e->probe_id);
  e->probe_id = 0;

  std::optional<bool> change;
  std::function<void(bool)> notify;
  std::string service, address, last_error;
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
    // The next check is an interval after this one ended (not after it began): a slow endpoint
    // is not probed back to back. Set with the counts, so that whoever sees this result also
    // sees the next check scheduled from it.
    e->due = clock_.now() +
             next_check_delay(e->target.check.interval, e->target.check.jitter, core::thread_rng());
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
}

void HealthChecker::halt(const EntryPtr& e) {
  if (e->probe_id != 0) probe_.cancel(e->probe_id);
  e->probe_id = 0;
  e->armed = false;
}

}  // namespace sluice::gateway
