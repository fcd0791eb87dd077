#include "gateway/control_link.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <asio/post.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include "config/loader.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "core/random.h"
#include "gateway/gateway.h"
#include "gateway/worker.h"
#include "governance/circuit_breaker.h"
#include "governance/outlier_detector.h"

namespace sluice::gateway {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string pushed_name(const std::string& version) {
  return "control plane config " + version;
}

// A 200 of GET /v1/gateway-config: {"version": "N.R", "config": {...}}.
std::optional<PushedConfig> parse_answer(const std::string& body, std::string* error) {
  json j = sluice::core::parse_json_or_discarded(body);
  if (!j.is_object() || !j.contains("version") || !j["version"].is_string() ||
      !j.contains("config") || !j["config"].is_object()) {
    *error = "the control plane's answer is not {version, config}";
    return std::nullopt;
  }
  return PushedConfig{j["version"].get<std::string>(), j["config"].dump()};
}

std::string join_errors(const std::vector<std::string>& errors, size_t max) {
  std::string out;
  for (size_t i = 0; i < errors.size() && i < max; ++i) out += (i ? "\n" : "") + errors[i];
  if (errors.size() > max) out += "\n(" + std::to_string(errors.size() - max) + " more)";
  return out;
}

std::string config_path(const config::Node& node, const std::string& after, core::Duration wait) {
  std::string p = "/v1/gateway-config?gateway=" + net::url_encode(node.id);
  if (!node.city.empty()) p += "&city=" + net::url_encode(node.city);
  if (!node.zone.empty()) p += "&zone=" + net::url_encode(node.zone);
  if (!after.empty()) p += "&after=" + net::url_encode(after);
  p += "&wait=" +
       std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(wait).count()) + "ms";
  return p;
}

net::HttpOptions http_options(const config::ControlPlane& cp, std::chrono::milliseconds io,
                              net::CallCanceller* canceller) {
  net::HttpOptions o;
  o.connect_timeout = 3s;
  o.io_timeout = io;
  o.ca_file = cp.ca_file;
  o.user_agent = "sluice-gateway";
  o.canceller = canceller;
  return o;
}

// Non-cumulative histogram buckets, for adding up endpoints and taking deltas.
struct Hist {
  std::vector<double> bounds;
  std::vector<uint64_t> buckets;  // per bound, then +Inf
  double sum = 0;
  uint64_t count = 0;

  void add(const observability::Histogram::Snapshot& s) {
    if (buckets.empty()) {
      bounds = s.bounds;
      buckets.assign(s.cumulative.size(), 0);
    }
    if (s.cumulative.size() != buckets.size()) return;
    uint64_t below = 0;
    for (size_t i = 0; i < s.cumulative.size(); ++i) {
      buckets[i] += s.cumulative[i] - below;
      below = s.cumulative[i];
    }
    sum += s.sum;
    count += s.count;
  }
  void add(const Hist& h) {
    if (h.buckets.empty()) return;
    if (buckets.empty()) {
      bounds = h.bounds;
      buckets.assign(h.buckets.size(), 0);
    }
    if (h.buckets.size() != buckets.size()) return;
    for (size_t i = 0; i < h.buckets.size(); ++i) buckets[i] += h.buckets[i];
    sum += h.sum;
    count += h.count;
  }
};

}  // namespace

std::string cache_file(const config::ControlPlane& cp) {
  return (std::filesystem::path(cp.cache_dir) / "config.json").string();
}

std::optional<PushedConfig> read_cache(const config::ControlPlane& cp, std::string* error) {
  std::string path = cache_file(cp);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  json j = sluice::core::parse_json_or_discarded(ss.str());
  if (!j.is_object() || !j.contains("version") || !j["version"].is_string() ||
      !j.contains("config") || !j["config"].is_object()) {
    *error = path + ": not a cached config (expected {version, config})";
    return std::nullopt;
  }
  return PushedConfig{j["version"].get<std::string>(), j["config"].dump()};
}

bool write_cache(const config::ControlPlane& cp, const PushedConfig& pushed, std::string* error) {
  std::string path = cache_file(cp);
  std::string tmp = path + ".tmp";
  json j = {{"version", pushed.version},
            {"saved_ms", wall_ms()},
            {"config", sluice::core::parse_json_or_discarded(pushed.json)}};
  std::string text = j.dump(2) + "\n";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    *error = tmp + ": " + std::strerror(errno);
    return false;
  }
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = tmp + ": " + std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return false;
    }
    done += static_cast<size_t>(n);
  }
  // The new file is whole on disk before it replaces the old one: a crash leaves one or the other.
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    *error = tmp + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    *error = path + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  int dir = ::open(cp.cache_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return true;
}

Bootstrap bootstrap_from_control_plane(const std::string& local_path, const std::string& local_text,
                                       std::shared_ptr<const config::GatewayConfig> local) {
  Bootstrap b;
  b.config = local;
  const config::ControlPlane& cp = local->control_plane;
  std::string error;
  auto server = net::parse_server_url(cp.address, &error);
  auto token = net::read_token_file(cp.token_file, &error);
  std::optional<PushedConfig> fetched;
  if (server && token) {
    net::HttpReply r =
        net::http_call(*server, *token, "GET", config_path(local->node, "", core::Duration::zero()),
                       nullptr, http_options(cp, 5s, nullptr));
    if (r.status == 200) {
      fetched = parse_answer(r.body, &error);
    } else {
      error = r.status == 0 ? r.error : "HTTP " + std::to_string(r.status) + " " + r.body;
    }
  }
  auto try_load = [&](const PushedConfig& p) -> config::LoadResult {
    return config::load_with_pushed(local_text, local_path, p.json, pushed_name(p.version));
  };
  if (fetched) {
    config::LoadResult loaded = try_load(*fetched);
    if (loaded.ok()) {
      b.pushed = fetched;
      b.source = "control plane " + cp.address;
      b.config = loaded.config;
      if (!write_cache(cp, *fetched, &error))
        core::log_error("control plane config {} not cached: {}", fetched->version, error);
      return b;
    }
    b.refused = fetched;
    for (const auto& e : loaded.errors) b.refused_errors.push_back(e.to_string());
    core::log_error("control plane config {} refused: {} error(s); trying the cache",
                    fetched->version, loaded.errors.size());
    for (const auto& e : b.refused_errors) core::log_error("  {}", e);
  } else {
    core::log_warn("control plane {} unreachable at start ({}); trying the cache {}", cp.address,
                   error, cache_file(cp));
  }
  std::string cache_error;
  if (auto cached = read_cache(cp, &cache_error)) {
    config::LoadResult loaded = try_load(*cached);
    if (loaded.ok()) {
      b.pushed = cached;
      b.source = "cache " + cache_file(cp);
      b.config = loaded.config;
      return b;
    }
    core::log_error("cached config {} in {} refused:", cached->version, cache_file(cp));
    for (const auto& e : loaded.errors) core::log_error("  {}", e.to_string());
  } else if (!fetched) {
    core::log_warn("no cached config: {}", cache_error);
  }
  core::log_warn("starting without routes; not ready until the control plane sends a config");
  return b;
}

net::HttpReply HttpControlTransport::call(const std::string& token, const std::string& method,
                                          const std::string& path, const std::string* body,
                                          const net::HttpOptions& options) {
  return net::http_call(server_, token, method, path, body, options);
}

namespace {

// The gateway as the link's host: a pushed config is applied on the gateway's control thread.
class GatewayLinkHost final : public LinkHost {
 public:
  explicit GatewayLinkHost(Gateway& gateway) : gateway_(gateway) {}
  void apply_pushed(PushedConfig pushed, Applied done) override {
    Gateway* gw = &gateway_;
    asio::post(gateway_.io(), [gw, pushed = std::move(pushed), done = std::move(done)] {
      done(gw->apply_pushed(pushed));
    });
  }
  std::shared_ptr<const Snapshot> snapshot() const override { return gateway_.snapshot(); }
  json versions_json() const override { return gateway_.versions_json(); }
  size_t connection_count() const override {
    size_t n = 0;
    for (const auto& w : gateway_.workers()) n += w->connection_count();
    return n;
  }

 private:
  Gateway& gateway_;
};

std::unique_ptr<ControlTransport> http_transport(const config::ControlPlane& cp) {
  std::string error;
  auto server = net::parse_server_url(cp.address, &error);
  if (!server) throw std::runtime_error("control_plane.address: " + error);
  return std::make_unique<HttpControlTransport>(std::move(*server));
}

}  // namespace

ControlLink::ControlLink(Gateway& gateway, const config::GatewayConfig& config)
    : own_host_(std::make_unique<GatewayLinkHost>(gateway)),
      own_transport_(http_transport(config.control_plane)),
      host_(*own_host_),
      transport_(*own_transport_),
      clock_(core::SteadyClock::instance()),
      cfg_(config.control_plane),
      node_(config.node) {}

ControlLink::ControlLink(LinkHost& host, const config::GatewayConfig& config,
                         ControlTransport& transport, const core::Clock& clock)
    : host_(host),
      transport_(transport),
      clock_(clock),
      cfg_(config.control_plane),
      node_(config.node) {}

net::HttpReply ControlLink::call(const std::string& token, const std::string& method,
                                 const std::string& path, const std::string* body,
                                 const net::HttpOptions& options) {
  return transport_.call(token, method, path, body, options);
}

void ControlLink::wake() {
  { std::lock_guard lock(mu_); }  // a waiter is either before its check or inside wait
  cv_.notify_all();
}

std::optional<core::MonoTime> ControlLink::retry_at() const {
  std::lock_guard lock(mu_);
  return retry_at_;
}

ControlLink::~ControlLink() {
  stop();
}

void ControlLink::start(const std::string& applied, const std::optional<PushedConfig>& refused,
                        const std::vector<std::string>& refused_errors) {
  applied_ = seen_ = applied;
  if (!applied.empty()) ++applied_count_;  // the version it started with
  if (refused) {
    ++refused_count_;
    seen_ = refused->version;
    unsent_status_ = Status{refused->version, false, join_errors(refused_errors, 20)};
  } else if (!applied.empty()) {
    unsent_status_ = Status{applied, true, ""};
  }
  watcher_ = std::thread([this] { watch_loop(); });
  reporter_ = std::thread([this] { report_loop(); });
}

void ControlLink::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !watcher_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  watch_cancel_.cancel();
  report_cancel_.cancel();
  if (watcher_.joinable()) watcher_.join();
  if (reporter_.joinable()) reporter_.join();
  report_exit();
}

void ControlLink::draining() {
  {
    std::lock_guard lock(mu_);
    if (draining_) return;
    draining_ = true;
    draining_unsent_ = true;
  }
  cv_.notify_all();
}

std::string ControlLink::status_word(bool applied) const {
  std::lock_guard lock(mu_);
  if (draining_) return "draining";
  return applied ? "applied" : "refused";
}

void ControlLink::report_exit() {
  {
    std::lock_guard lock(mu_);
    if (exit_reported_) return;
    exit_reported_ = true;
  }
  std::string error;
  auto token = net::read_token_file(cfg_.token_file, &error);
  if (!token) return;
  // Without this the control plane would list the gateway as healthy until it goes stale (90 s).
  // Short timeouts and no retry: a control plane that is away must not hold up the exit.
  json body = {{"city", node_.city}, {"zone", node_.zone}, {"status", "exited"}, {"error", ""}};
  std::string applied = applied_version();
  if (!applied.empty()) body["applied_version"] = applied;
  std::string text = body.dump();
  net::HttpOptions o = http_options(cfg_, 500ms, nullptr);
  o.connect_timeout = 500ms;
  net::HttpReply r =
      call(*token, "POST", "/v1/gateways/" + net::url_encode(node_.id) + "/status", &text, o);
  if (r.status >= 200 && r.status < 300) {
    core::log_info("control plane {}: told it this gateway exited", cfg_.address);
  } else {
    core::log_warn("control plane {}: could not report the exit: {}", cfg_.address,
                   r.status == 0 ? r.error : "HTTP " + std::to_string(r.status));
  }
}

bool ControlLink::sleep_until(core::MonoTime deadline, bool retry,
                              const std::function<bool()>& until) {
  std::unique_lock lock(mu_);
  if (retry) retry_at_ = deadline;
  // Real time is waited in spans of what is left on the link's clock: the steady clock ends the
  // wait by itself, a hand-moved one with wake().
  while (!stopping_ && !(until && until())) {
    const core::MonoTime now = clock_.now();
    if (now >= deadline) break;
    cv_.wait_for(lock, deadline - now);
  }
  if (retry) retry_at_.reset();
  return !stopping_;
}

void ControlLink::add_event(std::string kind, std::string subject, std::string detail_json) {
  json e = {{"kind", std::move(kind)},
            {"subject", std::move(subject)},
            {"at_ms", wall_ms()},
            {"detail", sluice::core::parse_json_or_discarded(detail_json)}};
  if (e["detail"].is_discarded()) e["detail"] = nullptr;
  std::lock_guard lock(mu_);
  // Bounded while the control plane is away: the oldest go first.
  if (events_.size() >= 1000) events_.erase(events_.begin());
  events_.push_back(e.dump());
}

std::string ControlLink::state_json() const {
  std::lock_guard lock(mu_);
  json j = {{"address", cfg_.address},
            {"applied_version", applied_},
            {"seen_version", seen_},
            {"connected", last_error_.empty() && last_contact_ms_ > 0},
            {"state", draining_ ? "draining" : "running"},
            {"last_error", last_error_},
            {"last_contact_ms", last_contact_ms_},
            {"polls", polls_},
            {"applied", applied_count_},
            {"refused", refused_count_},
            {"poll_errors", poll_errors_},
            {"events_queued", events_.size()},
            {"cache", cache_file(cfg_)}};
  return j.dump();
}

void ControlLink::contact() {
  std::string previous;
  {
    std::lock_guard lock(mu_);
    previous = std::move(last_error_);
    last_error_.clear();
    last_contact_ms_ = wall_ms();
  }
  if (!previous.empty()) core::log_info("control plane {}: reachable again", cfg_.address);
}

bool ControlLink::send_status(const Status& s, const std::string& token,
                              net::CallCanceller* canceller, std::string* error) {
  json body = {{"city", node_.city},
               {"zone", node_.zone},
               {"status", status_word(s.applied)},
               {"error", s.error}};
  if (!s.version.empty()) body["applied_version"] = s.version;  // none yet: the store keeps 0
  std::string text = body.dump();
  net::HttpReply r = call(token, "POST", "/v1/gateways/" + net::url_encode(node_.id) + "/status",
                          &text, http_options(cfg_, 5s, canceller));
  if (r.status >= 200 && r.status < 300) {
    contact();
    return true;
  }
  *error = r.status == 0 ? r.error : "HTTP " + std::to_string(r.status);
  return false;
}

void ControlLink::watch_loop() {
  std::chrono::milliseconds backoff = 250ms;
  // Notes a problem (logged when it is a new one).
  auto note = [&](const std::string& what) {
    std::string previous;
    {
      std::lock_guard lock(mu_);
      previous = last_error_;
      last_error_ = what;
      ++poll_errors_;
    }
    if (previous != what) {
      core::log_warn("control plane {}: {}; serving config {} meanwhile, retrying", cfg_.address,
                     what, applied_.empty() ? "(none)" : applied_);
    }
  };
  // Notes it and waits before the next attempt. A control plane that does not answer at all
  // (refused, reset, timed out) is tried again at least once a second: that costs it nothing
  // while it is down, and the link is back within about a second of its return. One that
  // answers with an error backs off to 10 s.
  auto problem = [&](const std::string& what, bool transport) {
    note(what);
    auto jitter = std::chrono::milliseconds(static_cast<int64_t>(
        static_cast<double>(backoff.count()) * core::thread_rng().next_double() * 0.5));
    sleep_until(clock_.now() + backoff + jitter, /*retry=*/true);
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, transport ? 1s : 10s);
  };
  bool reachable = true;  // as far as the last poll knows; status reports wait for it
  // After a problem the next poll does not wait: its answer (304 at once) is the proof that the
  // link is back, rather than a long poll that says nothing until poll_wait has passed.
  bool healthy = false;
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    // The token may be rotated by replacing the file: read it for every poll.
    std::string error;
    auto token = net::read_token_file(cfg_.token_file, &error);
    if (!token) {
      healthy = false;
      problem("control_plane.token_file: " + error, false);
      continue;
    }
    token_ = *token;
    std::optional<Status> unsent;
    std::string after;
    {
      std::lock_guard lock(mu_);
      unsent = unsent_status_;
      after = seen_;
    }
    // A status that cannot be reported (e.g. a viewer token: 403) is tried again before each
    // poll, but never keeps the gateway from polling for new configs.
    if (unsent && reachable && !send_status(*unsent, token_, &watch_cancel_, &error)) {
      note("cannot report the status of config " + unsent->version + ": " + error);
    } else if (unsent && reachable) {
      std::lock_guard lock(mu_);
      if (unsent_status_ && unsent_status_->version == unsent->version) unsent_status_.reset();
    }
    const core::Duration wait = healthy ? cfg_.poll_wait : core::Duration::zero();
    auto io = std::chrono::duration_cast<std::chrono::milliseconds>(wait) + 15s;
    net::HttpReply r = call(token_, "GET", config_path(node_, after, wait), nullptr,
                            http_options(cfg_, io, &watch_cancel_));
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      ++polls_;
    }
    reachable = r.status != 0;
    healthy = r.status == 304 || r.status == 200;
    if (healthy) {
      contact();
      backoff = 250ms;
    }
    if (r.status == 304) continue;
    if (r.status != 200) {
      if (r.status == 0) {
        problem(r.error, true);
      } else if (r.status == 401 || r.status == 403) {
        problem(
            "HTTP " + std::to_string(r.status) + ": the token in " + cfg_.token_file +
                (r.status == 401 ? " is not accepted" : " has too small a role (viewer needed)"),
            false);
      } else {
        problem("HTTP " + std::to_string(r.status), false);
      }
      continue;
    }
    auto pushed = parse_answer(r.body, &error);
    if (!pushed) {
      healthy = false;
      problem(error, false);
      continue;
    }
    // Apply on the gateway's control thread, through the reload path; wait for the verdict.
    auto done = std::make_shared<std::promise<ReloadResult>>();
    auto future = done->get_future();
    host_.apply_pushed(*pushed,
                       [done](ReloadResult result) { done->set_value(std::move(result)); });
    while (future.wait_for(200ms) != std::future_status::ready) {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    ReloadResult result = future.get();
    Status status{pushed->version, result.ok, join_errors(result.errors, 20)};
    if (result.ok) {
      if (!write_cache(cfg_, *pushed, &error)) {
        core::log_error("control plane config {} applied but not cached: {}", pushed->version,
                        error);
      }
    }
    // A refusal is recorded as an event by the control plane when the status arrives.
    {
      std::lock_guard lock(mu_);
      seen_ = pushed->version;
      if (result.ok) {
        applied_ = pushed->version;
        ++applied_count_;
      } else {
        ++refused_count_;
      }
      unsent_status_ = status;
    }
  }
}

void ControlLink::report_loop() {
  auto last_report = clock_.now();
  bool draining_to_send = false;  // a failed one is tried again once a second
  while (true) {
    {
      // Woken early by draining(): the control plane hears of it at once, not at the next report.
      if (!sleep_until(clock_.now() + 1s, /*retry=*/false, [this] { return draining_unsent_; }))
        return;
      std::lock_guard lock(mu_);
      draining_to_send = draining_to_send || draining_unsent_;
      draining_unsent_ = false;
    }
    if (draining_to_send) {
      std::string error;
      auto token = net::read_token_file(cfg_.token_file, &error);
      if (token &&
          send_status(Status{applied_version(), true, ""}, *token, &report_cancel_, &error))
        draining_to_send = false;
    }
    scan_events();
    auto now = clock_.now();
    if (now - last_report < cfg_.report_interval) continue;
    last_report = now;
    std::string error;
    auto token = net::read_token_file(cfg_.token_file, &error);
    if (!token) continue;  // the watcher reports it
    auto options = http_options(cfg_, 5s, &report_cancel_);
    // Counters are sent as deltas; a snapshot that does not arrive is folded into the next one.
    std::map<std::string, uint64_t> before = prev_;
    std::string snapshot = stats_snapshot();
    net::HttpReply r = call(*token, "POST", "/v1/stats", &snapshot, options);
    if (r.status < 200 || r.status >= 300) {
      prev_ = std::move(before);
    } else {
      contact();  // any answer proves the link works, not only a poll's
    }
    std::vector<std::string> events;
    {
      std::lock_guard lock(mu_);
      events.swap(events_);
    }
    if (events.empty()) continue;
    std::string body = "[";
    for (size_t i = 0; i < events.size(); ++i) body += (i ? "," : "") + events[i];
    body += "]";
    r = call(*token, "POST", "/v1/events?gateway=" + net::url_encode(node_.id), &body, options);
    if (r.status < 200 || r.status >= 300) {
      std::lock_guard lock(mu_);
      events.insert(events.end(), events_.begin(), events_.end());
      if (events.size() > 1000) events.erase(events.begin(), events.end() - 1000);
      events_.swap(events);
    }
  }
}

void ControlLink::scan_events() {
  std::shared_ptr<const Snapshot> snap = host_.snapshot();
  if (!snap || !snap->governance) return;
  core::MonoTime now = std::chrono::steady_clock::now();
  const auto& gov = *snap->governance;
  std::map<std::string, int> next;
  auto transition = [&](const std::string& key, int value, auto&& report) {
    next[key] = value;
    auto it = state_.find(key);
    int before = it == state_.end() ? 0 : it->second;
    if (before != value) report(before);
  };
  static const char* kBreaker[] = {"closed", "open", "half_open"};
  for (size_t s = 0; s < snap->services.size() && s < gov.services.size(); ++s) {
    const ServiceInfo& si = snap->services[s];
    const ServiceRuntime& rt = gov.services[s];
    if (si.peer) continue;
    const std::string& name = si.cfg->name;
    if (rt.breaker) {
      int st = static_cast<int>(rt.breaker->state());
      transition("b/" + name, st, [&](int before) {
        const char* kind = st == 1   ? "breaker_opened"
                           : st == 2 ? "breaker_half_open"
                                     : "breaker_closed";
        add_event(kind, "service/" + name,
                  json{{"from", kBreaker[before]}, {"to", kBreaker[st]}}.dump());
      });
    }
    if (!rt.outlier) continue;
    bool local_any = false, local_up = false, other_up = false;
    std::vector<std::string> up_cities;
    for (size_t i = 0; i < si.endpoints.size() && i < rt.outlier->size(); ++i) {
      const EndpointInfo& ep = si.endpoints[i];
      int st = !rt.outlier->healthy(i) ? 2 : rt.outlier->ejected(i, now) ? 1 : 0;
      transition("e/" + name + "/" + ep.address, st, [&](int) {
        const char* kind = st == 2   ? "endpoint_unhealthy"
                           : st == 1 ? "endpoint_ejected"
                                     : "endpoint_restored";
        add_event(kind, name + "/" + ep.address,
                  json{{"service", name}, {"address", ep.address}, {"city", ep.cfg.city}}.dump());
      });
      bool local = node_.city.empty() || ep.cfg.city.empty() || ep.cfg.city == node_.city;
      local_any |= local;
      if (st == 0) {
        (local ? local_up : other_up) = true;
        if (!local && std::find(up_cities.begin(), up_cities.end(), ep.cfg.city) == up_cities.end())
          up_cities.push_back(ep.cfg.city);
      }
    }
    // Failover: the service has endpoints in this city, none of them is available, and another
    // city's are: its traffic now crosses cities.
    int failed_over = local_any && !local_up && other_up ? 1 : 0;
    transition("f/" + name, failed_over, [&](int) {
      add_event(failed_over ? "failover" : "failover_ended", "service/" + name,
                json{{"service", name}, {"city", node_.city}, {"to", up_cities}}.dump());
    });
  }
  state_ = std::move(next);
}

std::string ControlLink::stats_snapshot() {
  std::shared_ptr<const Snapshot> snap = host_.snapshot();
  json out = {{"gateway", node_.id},
              {"city", node_.city},
              {"zone", node_.zone},
              {"at_ms", wall_ms()},
              {"config_version", applied_version()},
              {"versions", host_.versions_json()}};
  std::map<std::string, uint64_t> next;
  auto delta = [&](const std::string& key, uint64_t value) -> uint64_t {
    next[key] = value;
    auto it = prev_.find(key);
    uint64_t before = it == prev_.end() ? 0 : it->second;
    return value >= before ? value - before : value;
  };
  auto hist_delta = [&](const std::string& key, const Hist& h) -> json {
    json buckets = json::array();
    uint64_t count = delta(key + "#n", h.count);
    for (size_t i = 0; i < h.buckets.size(); ++i)
      buckets.push_back(delta(key + "#" + std::to_string(i), h.buckets[i]));
    // Bucket bounds (seconds) as text: the control plane's rollups add up every number.
    std::string bounds;
    for (double b : h.bounds) bounds += (bounds.empty() ? "" : " ") + fmt::format("{}", b);
    // The sum is a double: kept as microseconds so that it can be a counter too.
    uint64_t sum_us = delta(key + "#s", static_cast<uint64_t>(h.sum * 1e6));
    return {{"le", bounds}, {"buckets", buckets}, {"count", count}, {"sum_us", sum_us}};
  };
  auto codes = [](const CodeCounters& c, uint64_t* total, uint64_t* errors) {
    for (size_t k = 0; k < c.by_class.size(); ++k) *total += c.by_class[k]->value();
    *errors += c.by_class[4]->value();
  };
  out["concurrency"] = host_.connection_count();
  if (!snap) return out.dump();
  const config::GatewayConfig& cfg = *snap->config;

  json routes = json::object();
  std::map<std::string, uint64_t> throttled_by_service;  // 429s of the routes to each service
  for (size_t r = 0; r < cfg.routes.size(); ++r) {
    const config::Route& route = cfg.routes[r];
    uint64_t total = 0, errors = 0, throttled = 0;
    Hist h;
    // A split route also reports each of its services, so that the control plane can compare
    // a canary with the stable side on the same route (docs/config.md, "Weighted split").
    json split = json::object();
    for (size_t slot = 0; slot < snap->route_slot_count(r); ++slot) {
      uint64_t s_total = 0, s_errors = 0, s_throttled = 0;
      Hist s_hist;
      for (size_t l = 0; l < snap->route_metrics.size(); ++l) {
        const RouteMetrics& m = snap->route_metrics[l][snap->route_slots[r] + slot];
        codes(m.requests, &s_total, &s_errors);
        if (m.throttled) s_throttled += m.throttled->value();
        // The duration histogram has no listener label: every row holds the same one.
        if (l == 0 && m.duration) s_hist.add(m.duration->snapshot());
      }
      total += s_total;
      errors += s_errors;
      throttled += s_throttled;
      h.add(s_hist);
      const std::string& service = route.services.empty() ? route.service
                                                          : route.services[slot].name;
      throttled_by_service[service] += s_throttled;
      if (route.services.empty()) continue;
      const std::string key = "r/" + route.name + "/s/" + service;
      split[service] = {{"weight", route.services[slot].weight},
                        {"requests", delta(key + "/n", s_total)},
                        {"errors", delta(key + "/e", s_errors)},
                        {"throttled", delta(key + "/t", s_throttled)},
                        {"latency", hist_delta(key + "/h", s_hist)}};
    }
    const std::string key = "r/" + route.name;
    json rj = {{"requests", delta(key + "/n", total)},
               {"errors", delta(key + "/e", errors)},
               {"throttled", delta(key + "/t", throttled)},
               {"latency", hist_delta(key + "/h", h)}};
    if (route.services.empty()) {
      rj["service"] = route.service;
    } else {
      rj["services"] = std::move(split);
    }
    routes[route.name] = std::move(rj);
  }
  json services = json::object(), endpoints = json::object(), cities = json::object();
  std::map<std::string, std::pair<uint64_t, uint64_t>> by_city;
  std::map<std::string, Hist> city_hist;
  const GovernanceSnapshot* gov = snap->governance.get();
  for (size_t s = 0; s < snap->services.size(); ++s) {
    const ServiceInfo& si = snap->services[s];
    const std::string& name = si.cfg->name;
    uint64_t s_total = 0, s_errors = 0;
    Hist s_hist;
    for (const EndpointInfo& ep : si.endpoints) {
      uint64_t total = 0, errors = 0;
      codes(ep.requests, &total, &errors);
      for (auto* c : ep.errors) errors += c->value();
      if (ep.duration) {
        auto hs = ep.duration->snapshot();
        s_hist.add(hs);
        city_hist[ep.cfg.city].add(hs);
      }
      const std::string key = "e/" + name + "/" + ep.address;
      uint64_t d_total = delta(key + "/n", total), d_errors = delta(key + "/e", errors);
      s_total += total;
      s_errors += errors;
      endpoints[name + "/" + ep.address] = {{"service", name},     {"address", ep.address},
                                            {"city", ep.cfg.city}, {"zone", ep.cfg.zone},
                                            {"requests", d_total}, {"errors", d_errors}};
      auto& c = by_city[ep.cfg.city];
      c.first += d_total;
      c.second += d_errors;
    }
    const std::string key = "s/" + name;
    json sj = {{"requests", delta(key + "/n", s_total)},
               {"errors", delta(key + "/e", s_errors)},
               {"retries", delta(key + "/r", si.retries ? si.retries->value() : 0)},
               {"latency", hist_delta(key + "/h", s_hist)}};
    if (auto t = throttled_by_service.find(name); t != throttled_by_service.end())
      sj["throttled"] = delta(key + "/t", t->second);
    if (si.peer) sj["peer"] = true;
    if (gov && s < gov->services.size() && gov->services[s].breaker) {
      const auto& b = *gov->services[s].breaker;
      sj["concurrency"] = b.concurrent();
      static const char* kStates[] = {"closed", "open", "half_open"};
      sj["breaker"] = kStates[static_cast<int>(b.state())];
      sj["breaker_opens"] =
          delta(key + "/o", b.snapshot(std::chrono::steady_clock::now()).opened_total);
    }
    services[name] = std::move(sj);
  }
  for (const auto& [city, c] : by_city) {
    const std::string name = city.empty() ? "-" : city;
    cities[name] = {{"requests", c.first},
                    {"errors", c.second},
                    {"latency", hist_delta("c/" + name + "/h", city_hist[city])}};
  }
  // Observed traffic (observed.h): caller -> callee edges and channels, summed over the routes,
  // as deltas; entries without requests since the last snapshot are left out.
  std::map<std::pair<std::string, std::string>, std::pair<uint64_t, uint64_t>> by_edge;
  std::map<std::string, std::pair<uint64_t, uint64_t>> by_channel;
  for (size_t r = 0; r < cfg.routes.size() && r < snap->route_slots.size(); ++r) {
    const config::Route& route = cfg.routes[r];
    for (size_t slot = 0; slot < snap->route_slot_count(r); ++slot) {
      const size_t i = snap->route_slots[r] + slot;
      if (i >= snap->observed.size()) break;
      const RouteObserved& o = *snap->observed[i];
      const std::string& callee =
          route.services.empty() ? route.service : route.services[slot].name;
      for (uint32_t c = 0; c < ObservedTable::kColumns; ++c) {
        if (std::string_view caller = o.callers.name(c); !caller.empty()) {
          auto& e = by_edge[{std::string(caller), callee}];
          e.first += o.callers.requests(c);
          e.second += o.callers.errors(c);
        }
        if (std::string_view channel = o.channels.name(c); !channel.empty()) {
          auto& ch = by_channel[std::string(channel)];
          ch.first += o.channels.requests(c);
          ch.second += o.channels.errors(c);
        }
      }
    }
  }
  json edges = json::object(), channels = json::object();
  for (const auto& [key, n] : by_edge) {
    const std::string k = "x/" + key.second + "/" + key.first;
    const uint64_t d_total = delta(k + "/n", n.first), d_errors = delta(k + "/e", n.second);
    if (d_total == 0 && d_errors == 0) continue;
    edges[key.second][key.first] = {{"requests", d_total}, {"errors", d_errors}};
  }
  for (const auto& [channel, n] : by_channel) {
    const std::string k = "ch/" + channel;
    const uint64_t d_total = delta(k + "/n", n.first), d_errors = delta(k + "/e", n.second);
    if (d_total == 0 && d_errors == 0) continue;
    channels[channel] = {{"requests", d_total}, {"errors", d_errors}};
  }
  out["edges"] = std::move(edges);
  out["channels"] = std::move(channels);
  out["routes"] = std::move(routes);
  out["services"] = std::move(services);
  out["endpoints"] = std::move(endpoints);
  out["cities"] = std::move(cities);
  prev_ = std::move(next);
  return out.dump();
}

std::string ControlLink::applied_version() const {
  std::lock_guard lock(mu_);
  return applied_;
}

}  // namespace sluice::gateway
