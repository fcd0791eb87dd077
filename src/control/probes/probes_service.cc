#include "control/probes/probes_service.h"

#include <strings.h>

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "control/rest.h"
#include "control/validate.h"
#include "core/log.h"

namespace sluice::control::probes {
namespace {

using Json = nlohmann::json;

constexpr int64_t kWindows[] = {5 * 60'000, 3'600'000};
constexpr const char* kWindowNames[] = {"5m", "1h"};
constexpr size_t kRecentShown = 20;

std::string key_of(const std::string& probe, const std::string& city) {
  return probe + "\n" + city;
}

Json result_json(const Result& r) {
  Json j = {{"at_ms", r.at_ms}, {"ok", r.ok}, {"status", r.status}, {"latency_ms", r.latency_ms}};
  if (!r.ok) j["reason"] = r.reason;
  return j;
}

}  // namespace

std::unique_ptr<Service> make_service(ServiceContext& ctx) {
  return std::make_unique<ProbesService>(ctx);
}

ProbesService::ProbesService(ServiceContext& ctx) : ctx_(ctx) {
  runs_ok_ = &ctx.metrics.counter("sluice_control_probe_runs_total",
                                  "Synthetic probe runs by this control plane, by result",
                                  {{"result", "ok"}});
  runs_failed_ = &ctx.metrics.counter("sluice_control_probe_runs_total",
                                      "Synthetic probe runs by this control plane, by result",
                                      {{"result", "failed"}});
  ctx.probes = this;
  for (size_t i = 0; i < kProberThreads; ++i) probers_.emplace_back([this] { run_prober(); });
}

ProbesService::~ProbesService() {
  shutdown();
}

void ProbesService::shutdown() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && probers_.empty()) return;
    stopping_ = true;
    queue_.clear();
    for (auto& [key, t] : targets_)
      if (t.canceller) t.canceller->cancel();
  }
  cv_.notify_all();
  for (std::thread& t : probers_)
    if (t.joinable()) t.join();
  probers_.clear();
}

std::vector<Route> ProbesService::routes() {
  auto bind = [this](auto fn) { return member_route(this, fn); };
  using S = ProbesService;
  return {
      {"GET", {"v1", "probes"}, Role::kViewer, bind(&S::get_probes)},
      {"GET", {"v1", "probes", "{}"}, Role::kViewer, bind(&S::get_probe)},
  };
}

void ProbesService::reload_locked(int64_t now) {
  const int64_t version = ctx_.store.latest_version();
  if (version == specs_version_) return;
  std::map<std::string, Json> specs;
  if (version != 0)
    for (Resource& r : ctx_.store.resources(0))
      if (r.kind == "probe") specs[r.name] = std::move(r.spec);
  specs_version_ = version;
  if (specs == specs_) return;
  std::map<std::string, Target> next;
  size_t count = 0;
  for (const auto& [name, json] : specs) {
    std::shared_ptr<const ProbeSpec> spec;
    try {
      spec = std::make_shared<const ProbeSpec>(parse_probe(json.is_null() ? Json::object() : json));
    } catch (const std::exception& e) {
      // Validated on apply; a spec from a build with other rules is skipped, not run half-read.
      core::log_warn("control: probe {}: not run: {}", name, e.what());
      continue;
    }
    for (const auto& [city, url] : spec->cities) {
      if (++count > kMaxTargets) {
        core::log_warn("control: probe {} in {}: not run (more than {} probe x city pairs)", name,
                       city, kMaxTargets);
        continue;
      }
      const std::string key = key_of(name, city);
      Target t;
      if (auto old = targets_.find(key); old != targets_.end()) {
        t = std::move(old->second);  // its history goes on; a run in flight is dropped
      }
      auto before = specs_.find(name);
      const bool changed =
          !t.spec || before == specs_.end() || before->second != json || t.url != url;
      t.probe = name;
      t.city = city;
      t.url = url;
      t.spec = spec;
      t.history.set_fail_after(spec->fail_after);
      if (changed) {
        t.generation = next_generation_++;
        t.next_ms = now;
        t.busy = false;
        if (t.canceller) t.canceller->cancel();
        t.canceller.reset();
      }
      const observability::Labels labels = {{"probe", name}, {"city", city}};
      t.success =
          &ctx_.metrics.gauge("sluice_control_probe_success",
                              "1 when the probe's last run in the city was good, else 0", labels);
      t.duration = &ctx_.metrics.histogram(
          "sluice_control_probe_duration_seconds",
          "Synthetic probe runs' durations (request to the end of the answer), by probe and city",
          labels);
      next.emplace(key, std::move(t));
    }
  }
  for (auto& [key, t] : targets_)
    if (!next.contains(key) && t.canceller) t.canceller->cancel();
  // Queued jobs of removed or changed targets are dropped when they finish (generation).
  targets_ = std::move(next);
  specs_ = std::move(specs);
}

void ProbesService::tick(int64_t now) {
  std::vector<Event> events;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    if (now - last_reload_ms_ >= kReloadMs) {
      last_reload_ms_ = now;
      reload_locked(now);
    }
    bool queued = false;
    for (auto& [key, t] : targets_) {
      if (t.busy) {
        // The client's deadlines are per read and write: a trickling answer is cut here.
        if (t.canceller && t.started_ms != 0 && now - t.started_ms > t.spec->timeout_ms + 100)
          t.canceller->cancel();
        continue;
      }
      if (now < t.next_ms) continue;
      t.busy = true;
      t.started_ms = 0;
      t.canceller = std::make_shared<net::CallCanceller>();
      t.next_ms = now + t.spec->interval_ms;
      queue_.push_back(Job{key, t.generation, t.url, t.spec, t.canceller, 0});
      queued = true;
    }
    if (queued) cv_.notify_all();
    events.swap(pending_events_);
  }
  if (ctx_.events != nullptr)
    for (const Event& e : events) ctx_.events->append(e);
}

void ProbesService::run_prober() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      job.start_ms = ctx_.now_ms();
      if (auto it = targets_.find(job.key);
          it != targets_.end() && it->second.generation == job.generation)
        it->second.started_ms = job.start_ms;
    }
    Answer a = perform(job);
    finish(job, std::move(a));
  }
}

Answer ProbesService::perform(const Job& job) {
  const ProbeSpec& spec = *job.spec;
  Answer a;
  std::string error;
  auto server = net::parse_server_url(job.url, &error);
  if (!server) {
    a.error = "bad URL: " + error;
    return a;
  }
  net::HttpOptions o;
  o.connect_timeout = std::chrono::milliseconds(spec.timeout_ms);
  o.io_timeout = std::chrono::milliseconds(spec.timeout_ms);
  o.max_reply_bytes = kMaxReplyBytes;
  o.user_agent = "sluice-probe";
  o.canceller = job.canceller.get();
  o.host_header = spec.host;
  std::string content_type = "application/octet-stream";
  for (const auto& [name, value] : spec.headers) {
    if (name.size() == 12 && strncasecmp(name.c_str(), "content-type", 12) == 0) {
      content_type = value;  // sent with the body, once
      if (spec.body) continue;
    }
    o.headers.emplace_back(name, value);
  }
  const std::string path = spec.path;
  const auto start = std::chrono::steady_clock::now();
  net::HttpReply r = net::http_call(*server, "", spec.method, path,
                                    spec.body ? &*spec.body : nullptr, o, content_type);
  a.latency_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - start)
                     .count();
  a.status = r.status;
  a.error = r.error;
  a.body = std::move(r.body);
  if (a.latency_ms > spec.timeout_ms) {
    a.status = 0;
    a.error = fmt::format("timed out after {} ms (timeout {} ms)", a.latency_ms, spec.timeout_ms);
  } else if (job.canceller->cancelled()) {
    a.status = 0;
    a.error = "cancelled";
  }
  return a;
}

void ProbesService::finish(const Job& job, Answer a) {
  std::lock_guard lock(mu_);
  auto it = targets_.find(job.key);
  if (stopping_ || it == targets_.end() || it->second.generation != job.generation) return;
  Target& t = it->second;
  t.busy = false;
  t.started_ms = 0;
  t.canceller.reset();
  Result r;
  r.at_ms = job.start_ms;
  r.status = a.status;
  r.latency_ms = a.latency_ms;
  r.reason = judge(*t.spec, a);
  r.ok = r.reason.empty();
  (r.ok ? runs_ok_ : runs_failed_)->inc();
  t.success->set(r.ok ? 1 : 0);
  t.duration->observe(static_cast<double>(a.latency_ms) / 1000.0);
  const Result copy = r;
  const Transition tr = t.history.record(std::move(r));
  if (tr == Transition::kNone) return;
  Event e;
  e.at_ms = copy.at_ms;
  e.source = "control-plane";
  e.kind = tr == Transition::kFailing ? "probe_failing" : "probe_recovered";
  e.subject = t.probe + "/" + t.city;
  e.detail = {{"probe", t.probe},
              {"city", t.city},
              {"status", copy.status},
              {"latency_ms", copy.latency_ms}};
  if (tr == Transition::kFailing) {
    e.detail["reason"] = copy.reason;
    e.detail["failures_in_row"] = t.spec->fail_after;
    core::log_warn("control: probe {} failing in {}: {}", t.probe, t.city, copy.reason);
  } else {
    core::log_info("control: probe {} recovered in {}", t.probe, t.city);
  }
  pending_events_.push_back(std::move(e));
}

Json ProbesService::target_json(const Target& t, int64_t now) const {
  Json j = {{"probe", t.probe},
            {"city", t.city},
            {"url", t.url},
            {"state", std::string(t.history.state())},
            {"since_ms", t.history.since_ms()}};
  if (const Result* last = t.history.last()) j["last"] = result_json(*last);
  if (const auto& f = t.history.last_failure()) j["last_failure"] = result_json(*f);
  Json windows = Json::object();
  for (size_t i = 0; i < std::size(kWindows); ++i) {
    WindowFigures w = t.history.window(now, kWindows[i]);
    windows[kWindowNames[i]] = {{"runs", w.runs},
                                {"good", w.good},
                                {"success_ratio", w.success_ratio},
                                {"p50_ms", w.p50_ms},
                                {"p99_ms", w.p99_ms}};
  }
  j["windows"] = std::move(windows);
  return j;
}

HttpResponse ProbesService::get_probes(const Call& c) {
  std::lock_guard lock(mu_);
  Json list = Json::array();
  for (const auto& [key, t] : targets_) list.push_back(target_json(t, c.now));
  return json_response(200, {{"probes", std::move(list)}, {"version", specs_version_}});
}

HttpResponse ProbesService::get_probe(const Call& c) {
  const std::string& name = c.params.at(0);
  std::lock_guard lock(mu_);
  auto spec = specs_.find(name);
  if (spec == specs_.end())
    return error_response(404, fmt::format("no probe named '{}'", name.substr(0, 128)));
  Json cities = Json::array();
  for (auto it = targets_.lower_bound(key_of(name, ""));
       it != targets_.end() && it->second.probe == name; ++it) {
    Json j = target_json(it->second, c.now);
    Json recent = Json::array();
    const auto& all = it->second.history.recent();
    for (size_t i = all.size() > kRecentShown ? all.size() - kRecentShown : 0; i < all.size(); ++i)
      recent.push_back(result_json(all[i]));
    j["recent"] = std::move(recent);
    cities.push_back(std::move(j));
  }
  return json_response(200,
                       {{"name", name}, {"spec", spec->second}, {"cities", std::move(cities)}});
}

std::vector<ProbeState> ProbesService::probe_states() const {
  std::lock_guard lock(mu_);
  std::vector<ProbeState> out;
  for (const auto& [key, t] : targets_) {
    ProbeState s;
    s.probe = t.probe;
    s.city = t.city;
    s.state = std::string(t.history.state());
    s.since_ms = t.history.since_ms();
    if (const Result* last = t.history.last()) {
      s.last_at_ms = last->at_ms;
      s.last_ok = last->ok;
    }
    if (const auto& f = t.history.last_failure()) {
      s.last_failure = f->reason;
      s.last_failure_ms = f->at_ms;
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace sluice::control::probes
