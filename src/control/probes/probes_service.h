// Probes: runs every `probe` resource (spec.h) against each of its cities' entry points on its
// interval, from the control plane, on a few prober threads of its own (never the threads that
// answer API requests), and keeps each probe's results per city in memory (history.h): the last
// result, figures over 5 minutes and 1 hour, and whether it is failing there. GET
// /v1/probes[/NAME]; Prometheus series sluice_control_probe_success{probe,city} and
// sluice_control_probe_duration_seconds{probe,city}; events probe_failing and probe_recovered.
// docs/probes.md is the contract.
//
// Results are not stored: a restarted control plane starts each probe afresh ("pending"), and
// several control planes on one database each probe (each city sees one request per interval per
// control plane).
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "control/migrations.h"
#include "control/probes/history.h"
#include "control/probes/judge.h"
#include "control/probes/spec.h"
#include "control/service.h"
#include "net/http_client.h"

namespace sluice::control::probes {

std::span<const Migration> migrations(std::string_view backend);
std::unique_ptr<Service> make_service(ServiceContext& ctx);

// Probes run at once, at most: more due than this wait for a free prober (they run late, never
// pile up: a probe already waiting or running is not queued again).
inline constexpr size_t kProberThreads = 4;
// Probe x city pairs run at most; more are left out (logged).
inline constexpr size_t kMaxTargets = 1'000;
// How often the latest config is looked at for probe changes.
inline constexpr int64_t kReloadMs = 500;

class ProbesService final : public Service, public ProbeResults {
 public:
  explicit ProbesService(ServiceContext& ctx);
  ~ProbesService() override;
  std::string_view name() const override { return "probes"; }
  std::vector<Route> routes() override;
  void tick(int64_t now) override;
  void shutdown() override;

  std::vector<ProbeState> probe_states() const override;

 private:
  struct Target {
    std::string probe, city, url;
    std::shared_ptr<const ProbeSpec> spec;
    History history{2};
    int64_t next_ms = 0;                            // when it is due
    bool busy = false;                              // queued or running
    int64_t started_ms = 0;                         // running: since
    std::shared_ptr<net::CallCanceller> canceller;  // running: to stop an overdue call
    uint64_t generation = 0;                        // a result for an older generation is dropped
    observability::Gauge* success = nullptr;
    observability::Histogram* duration = nullptr;
  };
  struct Job {
    std::string key;
    uint64_t generation = 0;
    std::string url;
    std::shared_ptr<const ProbeSpec> spec;
    std::shared_ptr<net::CallCanceller> canceller;
    int64_t start_ms = 0;
  };

  HttpResponse get_probes(const Call& c);
  HttpResponse get_probe(const Call& c);

  void reload_locked(int64_t now);
  void run_prober();
  Answer perform(const Job& job);
  void finish(const Job& job, Answer a);
  nlohmann::json target_json(const Target& t, int64_t now) const;

  ServiceContext& ctx_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, Target> targets_;        // "probe\ncity"
  std::map<std::string, nlohmann::json> specs_;  // probe -> spec as written
  int64_t specs_version_ = -1;
  int64_t last_reload_ms_ = 0;
  uint64_t next_generation_ = 1;
  std::deque<Job> queue_;
  std::vector<Event> pending_events_;
  std::vector<std::thread> probers_;

  observability::Counter* runs_ok_ = nullptr;
  observability::Counter* runs_failed_ = nullptr;
};

}  // namespace sluice::control::probes
