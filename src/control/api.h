// The control plane's HTTP API (docs/control-plane.md): a router in front of the domain services
// (domains.h: resources and versions, registry, gateway fleet, stats and events, tokens). The
// router owns what every route shares, once: finding the service that owns a path's prefix,
// authentication and roles, error mapping (JSON bodies; store failures 503, malformed JSON 400,
// anything else 500), response counting, /healthz and /metrics. Each service owns its routes,
// its tables and its lock. Time comes from an injected clock; periodic work runs in tick(), so
// tests drive all of it without sleeping.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "control/auth.h"
#include "control/domains.h"
#include "control/resources/resources_service.h"
#include "control/server.h"
#include "control/service.h"
#include "control/stats/stats_store.h"
#include "control/store.h"
#include "observability/metrics.h"

namespace sluice::control {

class Api final : public Handler {
 public:
  using NowMs = std::function<int64_t()>;

  // The built-in domains (domains()); tests may pass their own list.
  Api(Store& store, Auth& auth, ApiOptions options, NowMs now_ms);
  Api(Store& store, Auth& auth, ApiOptions options, NowMs now_ms, std::span<const Domain> domains);
  ~Api() override;
  Api(const Api&) = delete;
  Api& operator=(const Api&) = delete;

  void handle(HttpRequest request, Respond respond) override;

  // Where the long polls woken by a request are answered (see Deferred): the server's thread
  // pool, so that the request's own connection is free to write its answer first. Unset (unit
  // tests): at once, before handle() returns.
  using Runner = std::function<void(std::function<void()>)>;
  void set_runner(Runner run) { runner_ = std::move(run); }

  // Periodic work of every service, called every ~100 ms by the owner (tests call it after
  // moving the clock). Never throws: store failures are logged and retried on the next tick.
  void tick();
  // Answers every parked long poll with 503 and refuses new ones, writes buffered stats: the
  // process is stopping.
  void shutdown();

  size_t waiting() const { return ctx_.feed->waiting(); }
  // "N.R" as gateways see it now.
  std::string current_version() const;
  observability::Registry& metrics() { return metrics_; }
  // What later domains read.
  stats::StatsReader& stats() { return *ctx_.stats; }
  ObservedTraffic& observed() { return *ctx_.observed; }

 private:
  struct Entry {
    Route route;
    Service* owner = nullptr;  // nullptr: the router's own (/healthz, /metrics)
  };

  void add_route(Route route, Service* owner);
  std::optional<HttpResponse> dispatch(const HttpRequest& req, Respond& respond, Deferred& after);

  ApiOptions options_;
  NowMs now_ms_;
  observability::Registry metrics_;
  ServiceContext ctx_;
  std::vector<std::unique_ptr<Service>> services_;
  // By prefix: "v1/<segment>" or a top-level "<segment>"; each prefix has one owner.
  std::map<std::string, std::vector<Entry>, std::less<>> routes_;
  Runner runner_;
  std::mutex shutdown_mu_;
  bool shut_down_ = false;

  observability::Counter* responses_[5] = {};  // by status class 1xx..5xx
};

}  // namespace sluice::control
