// Node-wide traffic governance of one gateway process: the rate-limit rules, circuit breakers,
// outlier detectors, adaptive concurrency limits, the overload gate and the active health checks.
// Their state outlives config reloads (an object is kept while its config is unchanged), is shared
// by every worker, and is reached by requests through the snapshot they started on.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "core/clock.h"
#include "governance/decision.h"
#include "governance/rate_limiter.h"
#include "observability/metrics.h"

namespace sluice::http {
struct MessageHead;
}

namespace sluice::governance {
class CircuitBreaker;
class OutlierDetector;
class AdaptiveConcurrency;
class InFlightGate;
class ClusterLimiter;
class QuotaClient;
}  // namespace sluice::governance

namespace sluice::gateway {

class HealthChecker;
struct ServiceInfo;

struct RuleRuntime {
  const config::RateLimitRule* cfg = nullptr;
  std::shared_ptr<governance::RateLimiter>
      local;  // node scope; for cluster scope the fallback share
  std::shared_ptr<governance::ClusterLimiter> cluster;  // cluster scope only
  observability::Counter* allowed = nullptr;
  observability::Counter* rejected = nullptr;
  observability::Counter* shadow_rejected = nullptr;
  observability::Counter* fallback = nullptr;  // cluster scope decided locally (Redis unavailable)
};

struct ServiceRuntime {
  const config::Service* cfg = nullptr;
  std::shared_ptr<governance::CircuitBreaker>
      breaker;  // always: the caps work without the state machine
  std::shared_ptr<governance::OutlierDetector> outlier;  // always: it also holds health-check state
  std::shared_ptr<governance::AdaptiveConcurrency> adaptive;  // null when not configured
  observability::Counter* rejected_open = nullptr;
  observability::Counter* rejected_concurrent = nullptr;
  observability::Counter* rejected_pending = nullptr;
  observability::Counter* fallback_served = nullptr;
  std::vector<observability::Counter*> shed;         // adaptive limit, by priority class
  std::vector<observability::Counter*> shadow_shed;  // same, shadow mode
};

// What a snapshot's requests use; immutable once built.
struct GovernanceSnapshot {
  std::vector<RuleRuntime> rules;
  std::vector<std::vector<uint32_t>> rules_by_route;  // route index -> rule indices, config order
  std::vector<ServiceRuntime> services;
  const config::Overload* overload = nullptr;
  config::Redis::OnError redis_on_error = config::Redis::OnError::kLocalFallback;
  std::shared_ptr<governance::InFlightGate> gate;         // null when overload.max_in_flight is 0
  std::vector<observability::Counter*> gate_shed;         // by priority class
  std::vector<observability::Counter*> gate_shadow_shed;  // same, shadow mode
};

// The facts about a request that rules and priority classes look at.
struct RequestFacts {
  const http::MessageHead* head = nullptr;
  std::string_view client_ip;
  std::string_view route;
  std::string_view service;
  size_t route_index = 0;
  size_t service_index = 0;
};

enum class Verdict : uint8_t { kPass, kRateLimited, kOverloaded, kBreakerOpen, kAtCapacity };

// Per-request governance state, kept by the connection between admission and completion.
// Reused across requests of a connection (no allocation after the first few requests).
class Admission {
 public:
  // Runs the chain: rate-limit rules (refunding earlier rules when a later one rejects), the
  // gateway-wide overload gate, the service's adaptive limit, then its breaker and caps.
  // On a verdict other than kPass everything taken has been given back.
  Verdict admit(const GovernanceSnapshot& gov, const RequestFacts& facts, core::MonoTime now);
  // The request ended. `failure`: 5xx from upstream or an upstream error; `dropped`: timeout,
  // reset or 503 (a signal of overload for the adaptive limit). Idempotent.
  void finish(bool failure, bool dropped, core::MonoTime now);
  // The request ended before the service could answer (client went away): free what was held,
  // record no outcome.
  void cancel();

  bool active() const { return gov_ != nullptr; }
  // For 429 responses: the rule that rejected and its decision.
  const RuleRuntime* rejecting_rule() const { return rejecting_rule_; }
  const governance::RateDecision& decision() const { return decision_; }
  // The priority class name of the request ("" when overload is not configured).
  std::string_view priority() const;

 private:
  struct Held {
    const RuleRuntime* rule;
    governance::RateTicket ticket;
    bool cluster;
    uint64_t hash;
    bool charged = false;  // admitted by the local share of a cluster rule, charged to the cluster
  };
  bool run_rules(const GovernanceSnapshot& gov, const RequestFacts& facts, core::MonoTime now);
  void give_back_rules(core::MonoTime now);
  void release_holds();

  const GovernanceSnapshot* gov_ = nullptr;
  const ServiceRuntime* service_ = nullptr;
  std::vector<Held> held_;
  std::string key_;  // composed key of the rule being evaluated
  const RuleRuntime* rejecting_rule_ = nullptr;
  governance::RateDecision decision_;
  size_t priority_ = 0;
  const std::string* priority_name_ = nullptr;  // in the snapshot's config
  core::MonoTime start_{};
  uint8_t breaker_admit_ = 0;  // governance::CircuitBreaker::Admit
  bool breaker_held_ = false;
  bool concurrent_held_ = false;
  bool adaptive_held_ = false;
  bool gate_held_ = false;
};

// Long-lived owner of every governance object; one per gateway process.
class Governance {
 public:
  Governance(observability::Registry& registry, std::string node_id);
  ~Governance();

  // Builds what `config`'s requests use, keeping the state of rules and services whose config is
  // unchanged. `services` are the snapshot's resolved services (same order as config.services).
  // Control thread only. Throws std::runtime_error when Redis settings cannot be used.
  std::shared_ptr<const GovernanceSnapshot> build(const config::GatewayConfig& config,
                                                  const std::vector<ServiceInfo>& services);
  // Starts/stops the threads (Redis quota client, health checker).
  void start();
  void stop();
  // Once a second on the control thread: the local share of cluster limits follows the number
  // of gateways seen through Redis.
  void tick();

  // JSON for admin /stats: rules (keys, hot keys), breakers, endpoints, adaptive limits, Redis.
  std::string stats_json(const GovernanceSnapshot& gov,
                         const std::vector<ServiceInfo>& services) const;

 private:
  struct RuleSlot {
    config::RateLimitRule cfg;
    std::shared_ptr<governance::RateLimiter> local;
    std::shared_ptr<governance::ClusterLimiter> cluster;
  };
  struct ServiceSlot {
    config::CircuitBreaker breaker_cfg;
    config::OutlierDetection outlier_cfg;
    config::AdaptiveConcurrency adaptive_cfg;
    std::vector<std::string> endpoints;
    std::shared_ptr<governance::CircuitBreaker> breaker;
    std::shared_ptr<governance::OutlierDetector> outlier;
    std::shared_ptr<governance::AdaptiveConcurrency> adaptive;
  };
  void ensure_quota_client(const config::GatewayConfig& config);
  void update_health_targets(const config::GatewayConfig& config,
                             const std::vector<ServiceInfo>& services,
                             const std::vector<ServiceRuntime>& runtimes);

  observability::Registry& registry_;
  std::string node_id_;
  // Declared before the rules: cluster limiters hand their leases back to it when destroyed.
  std::unique_ptr<governance::QuotaClient> quota_;
  std::map<std::string, RuleSlot> rules_;
  std::map<std::string, ServiceSlot> services_;
  std::shared_ptr<governance::InFlightGate> gate_;
  uint32_t gate_limit_ = 0;
  config::Redis redis_cfg_;
  std::unique_ptr<HealthChecker> health_;
  bool started_ = false;
};

}  // namespace sluice::gateway
