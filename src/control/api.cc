#include "control/api.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "control/fleet/fleet_service.h"
#include "control/rest.h"
#include "core/log.h"

namespace sluice::control {

using Json = nlohmann::json;

namespace {

// The prefix that decides a path's owner: "v1/<first segment>" under /v1, else the first segment.
std::string prefix_of(std::span<const std::string_view> pattern) {
  if (pattern.empty()) return {};
  if (pattern[0] == "v1" && pattern.size() > 1) return "v1/" + std::string(pattern[1]);
  return std::string(pattern[0]);
}

std::string prefix_of(const std::vector<std::string>& segments) {
  if (segments.empty()) return {};
  if (segments[0] == "v1" && segments.size() > 1) return "v1/" + segments[1];
  return segments[0];
}

}  // namespace

void ServiceContext::guarded(const char* what, const std::function<void()>& fn) const {
  try {
    fn();
  } catch (const std::exception& e) {
    store_errors->inc();
    core::log_warn("control: {}: {}", what, e.what());
  }
}

Api::Api(Store& store, Auth& auth, ApiOptions options, NowMs now_ms)
    : Api(store, auth, options, std::move(now_ms), domains()) {}

Api::Api(Store& store, Auth& auth, ApiOptions options, NowMs now_ms,
         std::span<const Domain> domains)
    : options_(options),
      now_ms_(std::move(now_ms)),
      ctx_{store, auth, options_, now_ms_, metrics_} {
  static constexpr std::string_view kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  for (size_t i = 0; i < 5; ++i) {
    responses_[i] =
        &metrics_.counter("sluice_control_http_responses_total", "API responses by status class",
                          {{"class", std::string(kClasses[i])}});
  }
  ctx_.store_errors =
      &metrics_.counter("sluice_control_store_errors_total", "Store operations that failed");

  add_route({"GET",
             {"healthz"},
             std::nullopt,
             [](const Call&) -> std::optional<HttpResponse> {
               return json_response(200, {{"status", "ok"}});
             }},
            nullptr);
  add_route({"GET",
             {"metrics"},
             std::nullopt,
             [this](const Call&) -> std::optional<HttpResponse> {
               HttpResponse r;
               r.content_type = std::string(observability::Registry::kContentType);
               r.body = metrics_.expose();
               return r;
             }},
            nullptr);
  for (const Domain& d : domains) {
    services_.push_back(d.make(ctx_));
    for (Route& r : services_.back()->routes()) add_route(std::move(r), services_.back().get());
  }
  if (ctx_.feed == nullptr || ctx_.events == nullptr || ctx_.sightings == nullptr ||
      ctx_.stats == nullptr)
    throw std::logic_error("control: the fleet and stats domains must be registered");
  metrics_.register_process_metrics();
}

void Api::add_route(Route route, Service* owner) {
  const std::string prefix = prefix_of(route.pattern);
  auto& list = routes_[prefix];
  if (!list.empty() && list.front().owner != owner) {
    auto name = [](Service* s) { return s ? std::string(s->name()) : std::string("router"); };
    throw std::logic_error(fmt::format("control: path prefix /{} claimed by {} and {}", prefix,
                                       name(list.front().owner), name(owner)));
  }
  for (const Entry& e : list) {
    if (e.route.method == route.method && e.route.pattern == route.pattern)
      throw std::logic_error(
          fmt::format("control: route {} /{} registered twice", route.method, prefix));
  }
  list.push_back(Entry{std::move(route), owner});
}

Api::~Api() {
  shutdown();
}

std::string Api::current_version() const {
  return fleet::version_string(ctx_.feed->current());
}

// ------------------------------------------------------------------------------ dispatching

void Api::handle(HttpRequest request, Respond respond) {
  // Count every answer, also those given later by a long poll.
  auto counted = [this, respond = std::move(respond)](HttpResponse r) {
    int cls = std::clamp(r.status / 100, 1, 5);
    responses_[cls - 1]->inc();
    respond(std::move(r));
  };
  Respond wrapped = counted;
  std::optional<HttpResponse> r;
  Deferred after;
  try {
    r = dispatch(request, wrapped, after);
  } catch (const StoreError& e) {
    ctx_.store_errors->inc();
    core::log_warn("control: store: {}", e.what());
    r = error_response(503, std::string("store unavailable: ") + e.what());
  } catch (const Json::exception& e) {
    r = error_response(400, std::string("bad request: ") + e.what());
  } catch (const std::exception& e) {
    core::log_error("control: {} {}: {}", request.method, request.path, e.what());
    r = error_response(500, std::string("internal error: ") + e.what());
  }
  if (r) wrapped(std::move(*r));
  if (after.empty()) return;
  auto run = [after = std::move(after)]() mutable {
    for (auto& fn : after) fn();
  };
  // On this thread the answers would run inside the request's strand, and its own answer (posted
  // to that strand) would wait for all of them.
  if (runner_) {
    runner_(std::move(run));
  } else {
    run();
  }
}

std::optional<HttpResponse> Api::dispatch(const HttpRequest& req, Respond& respond,
                                          Deferred& after) {
  const std::vector<std::string> segments = path_segments(req.path);
  const std::string_view method = req.method == "HEAD" ? "GET" : std::string_view(req.method);
  const Entry* found = nullptr;
  std::vector<std::string> params;
  std::vector<std::string_view> allowed;
  if (auto owned = routes_.find(prefix_of(segments)); owned != routes_.end()) {
    for (const Entry& e : owned->second) {
      const Route& route = e.route;
      if (route.pattern.size() != segments.size()) continue;
      std::vector<std::string> p;
      bool match = true;
      for (size_t i = 0; i < segments.size() && match; ++i) {
        if (route.pattern[i] == "{}") {
          p.push_back(segments[i]);
        } else {
          match = route.pattern[i] == segments[i];
        }
      }
      if (!match) continue;
      if (route.method != method) {
        allowed.push_back(route.method);
        continue;
      }
      found = &e;
      params = std::move(p);
      break;
    }
  }
  const bool api_path = !segments.empty() && segments[0] == "v1";
  if (found == nullptr) {
    // Authenticate first under /v1, so the API's shape is not shown to anyone.
    if (api_path) {
      AuthResult a = ctx_.auth.check(req.authorization, Role::kViewer);
      if (!a.ok()) return error_response(a.status, a.error);
    }
    if (!allowed.empty()) {
      std::string list;
      for (auto m : allowed) list += (list.empty() ? "" : ", ") + std::string(m);
      HttpResponse r =
          error_response(405, fmt::format("method {} not allowed here; use {}", req.method, list));
      r.headers.emplace_back("Allow", list);
      return r;
    }
    return error_response(404, fmt::format("no such path: {}", req.path));
  }
  Call call{req, std::move(params), {}, now_ms_(), &after, &respond};
  if (found->route.role) {
    AuthResult a = ctx_.auth.check(req.authorization, *found->route.role);
    if (!a.ok()) return error_response(a.status, a.error);
    call.who = std::move(a.who);
  }
  return found->route.run(call);
}

// ------------------------------------------------------------------------------ periodic work

void Api::tick() {
  const int64_t now = now_ms_();
  for (auto& s : services_) ctx_.guarded(s->name().data(), [&] { s->tick(now); });
}

void Api::shutdown() {
  {
    std::lock_guard lock(shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  for (auto& s : services_) s->shutdown();
}

}  // namespace sluice::control
