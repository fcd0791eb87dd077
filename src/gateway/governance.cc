#include "gateway/governance.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <stdexcept>

#include "core/log.h"
#include "gateway/health_checker.h"
#include "gateway/snapshot.h"
#include "governance/adaptive_concurrency.h"
#include "governance/circuit_breaker.h"
#include "governance/cluster_quota.h"
#include "governance/outlier_detector.h"
#include "http/parser.h"
#include "router/request_input.h"
#include "upstream/load_balancer.h"

namespace sluice::gateway {

namespace {

using governance::CircuitBreaker;

constexpr const char* kStateNames[] = {"closed", "open", "half_open"};

router::RequestInputs inputs_of(const RequestFacts& f) {
  router::RequestInputs r;
  r.method = f.head->method;
  r.path = f.head->path();
  r.query = f.head->query();
  r.headers = &f.head->headers;
  r.client_ip = f.client_ip;
  r.route = f.route;
  r.service = f.service;
  return r;
}

// The values of the key parts joined by '|'; false when the request does not carry one of them
// (the rule then does not apply, as with Envoy's descriptors: add a client_ip rule to cover such
// requests).
bool compose_key(const config::RateLimitRule& rule, const RequestFacts& f, std::string& key) {
  key.clear();
  const router::RequestInputs inputs = inputs_of(f);
  for (size_t i = 0; i < rule.key.size(); ++i) {
    if (i) key.push_back('|');
    auto v = router::input_value(rule.key[i], inputs);
    if (!v) return false;
    key.append(*v);
  }
  return true;
}

size_t priority_of(const config::Overload& o, const http::MessageHead& head) {
  router::RequestInputs inputs;
  inputs.query = head.query();
  inputs.headers = &head.headers;
  std::optional<std::string_view> v = router::input_value(o.priority_key, inputs);
  if (v) {
    for (size_t i = 0; i < o.priorities.size(); ++i) {
      if (o.priorities[i] == *v) return i;
    }
  }
  return o.default_priority;
}

bool same_limiter(const config::RateLimitRule& a, const config::RateLimitRule& b) {
  return a.key == b.key && a.limit == b.limit && a.algorithm == b.algorithm && a.scope == b.scope &&
         a.overrides == b.overrides && a.max_keys == b.max_keys;
}

std::vector<std::string> endpoint_addresses(const config::Service& s) {
  std::vector<std::string> out;
  for (const auto& e : s.endpoints) out.push_back(e.address.to_string());
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Admission

std::string_view Admission::priority() const {
  return priority_name_ ? std::string_view(*priority_name_) : std::string_view();
}

bool Admission::run_rules(const GovernanceSnapshot& gov, const RequestFacts& facts,
                          core::MonoTime now) {
  if (facts.route_index >= gov.rules_by_route.size()) return true;
  for (uint32_t idx : gov.rules_by_route[facts.route_index]) {
    const RuleRuntime& rule = gov.rules[idx];
    const config::RateLimitRule& cfg = *rule.cfg;
    if (!cfg.service_indices.empty() &&
        std::find(cfg.service_indices.begin(), cfg.service_indices.end(), facts.service_index) ==
            cfg.service_indices.end()) {
      continue;
    }
    if (!compose_key(cfg, facts, key_)) continue;
    uint64_t hash = upstream::hash_key(key_);
    governance::RateDecision d;
    governance::RateTicket ticket;
    bool cluster_taken = false;
    bool charged = false;
    if (rule.cluster) {
      auto outcome = rule.cluster->acquire(key_, hash, now, &d);
      if (outcome == governance::ClusterLimiter::Outcome::kAllowed) {
        cluster_taken = true;
      } else if (outcome == governance::ClusterLimiter::Outcome::kUnavailable) {
        rule.fallback->inc();
        switch (gov.redis_on_error) {
          case config::Redis::OnError::kLocalFallback: {
            // The share follows the gateway count as the client sees it now (tick() updates
            // it only once a second: a fallback right after a gateway joined took 1/1).
            const uint32_t g = rule.cluster->gateways();
            if (rule.local->divisor() != g) rule.local->set_divisor(g);
            d = rule.local->acquire(key_, hash, now, &ticket);
            // The cluster's total counts it too (paid with the key's next lease).
            if (d.allowed) {
              rule.cluster->charge(hash, now);
              charged = true;
            }
            break;
          }
          case config::Redis::OnError::kAllow:
            d = governance::RateDecision{};
            d.allowed = true;
            d.limit = cfg.limit.requests;
            break;
          case config::Redis::OnError::kDeny:
            d = governance::RateDecision{};
            d.allowed = false;
            d.limit = cfg.limit.requests;
            d.retry_after = std::chrono::seconds(1);
            d.reset = std::chrono::seconds(1);
            break;
        }
      }
    } else {
      d = rule.local->acquire(key_, hash, now, &ticket);
    }
    if (d.allowed) {
      rule.allowed->inc();
      held_.push_back(Held{&rule, ticket, cluster_taken, hash, charged});
      continue;
    }
    if (cfg.mode == config::Mode::kShadow) {
      rule.shadow_rejected->inc();
      continue;
    }
    rule.rejected->inc();
    rejecting_rule_ = &rule;
    decision_ = d;
    return false;
  }
  return true;
}

void Admission::give_back_rules(core::MonoTime now) {
  // Earlier rules took a token for a request that will not be served: return it.
  for (const Held& h : held_) {
    if (h.cluster) {
      // The cluster key was composed from the same facts; the limiter finds it by hash.
      h.rule->cluster->refund({}, h.hash);
    } else {
      h.rule->local->refund(h.ticket, now);
      if (h.charged) h.rule->cluster->discharge(h.hash);
    }
  }
  held_.clear();
}

void Admission::release_holds() {
  for (const Held& h : held_) {
    if (!h.cluster) h.rule->local->release(h.ticket);
  }
  held_.clear();
}

Verdict Admission::admit(const GovernanceSnapshot& gov, const RequestFacts& facts,
                         core::MonoTime now) {
  gov_ = &gov;
  service_ = &gov.services[facts.service_index];
  held_.clear();
  rejecting_rule_ = nullptr;
  start_ = now;
  breaker_held_ = concurrent_held_ = adaptive_held_ = gate_held_ = false;

  if (!run_rules(gov, facts, now)) {
    give_back_rules(now);
    gov_ = nullptr;
    return Verdict::kRateLimited;
  }

  const config::Overload* ov = gov.overload;
  double fraction = 1.0;
  priority_ = 0;
  priority_name_ = nullptr;
  if (ov && ov->enabled && !ov->priorities.empty()) {
    priority_ = priority_of(*ov, *facts.head);
    priority_name_ = &ov->priorities[priority_];
    fraction = governance::priority_fraction(priority_, ov->priorities.size(), ov->reserve);
  }
  auto reject = [&](Verdict v) {
    if (adaptive_held_) service_->adaptive->release_without_sample();
    if (gate_held_) gov.gate->release();
    adaptive_held_ = gate_held_ = false;
    give_back_rules(now);
    gov_ = nullptr;
    return v;
  };

  if (gov.gate) {
    if (gov.gate->try_acquire(fraction)) {
      gate_held_ = true;
    } else if (ov->mode == config::Mode::kShadow) {
      gov.gate_shadow_shed[priority_]->inc();
      gov.gate->force_acquire();  // counted in flight all the same, so the figures stay true
      gate_held_ = true;
    } else {
      gov.gate_shed[priority_]->inc();
      return reject(Verdict::kOverloaded);
    }
  }
  if (service_->adaptive) {
    if (service_->adaptive->try_acquire(fraction)) {
      adaptive_held_ = true;
    } else if (service_->cfg->adaptive_concurrency.mode == config::Mode::kShadow) {
      service_->shadow_shed[priority_]->inc();
      service_->adaptive->force_acquire();  // its latency still feeds the limit
      adaptive_held_ = true;
    } else {
      service_->shed[priority_]->inc();
      return reject(Verdict::kOverloaded);
    }
  }
  auto admit = service_->breaker->admit(now);
  if (admit == CircuitBreaker::Admit::kRejected) {
    service_->rejected_open->inc();
    return reject(Verdict::kBreakerOpen);
  }
  breaker_admit_ = static_cast<uint8_t>(admit);
  breaker_held_ = true;
  if (!service_->breaker->try_acquire_concurrent()) {
    service_->breaker->cancel(admit);
    breaker_held_ = false;
    service_->rejected_concurrent->inc();
    return reject(Verdict::kAtCapacity);
  }
  concurrent_held_ = true;
  return Verdict::kPass;
}

void Admission::finish(bool failure, bool dropped, core::MonoTime now) {
  if (!gov_) return;
  auto latency = now - start_;
  if (breaker_held_) {
    service_->breaker->record(static_cast<CircuitBreaker::Admit>(breaker_admit_), failure, latency,
                              now);
  }
  if (concurrent_held_) service_->breaker->release_concurrent();
  if (adaptive_held_) service_->adaptive->release(latency, dropped, now);
  if (gate_held_) gov_->gate->release();
  release_holds();
  breaker_held_ = concurrent_held_ = adaptive_held_ = gate_held_ = false;
  gov_ = nullptr;
}

void Admission::cancel() {
  if (!gov_) return;
  if (breaker_held_) service_->breaker->cancel(static_cast<CircuitBreaker::Admit>(breaker_admit_));
  if (concurrent_held_) service_->breaker->release_concurrent();
  if (adaptive_held_) service_->adaptive->release_without_sample();
  if (gate_held_) gov_->gate->release();
  release_holds();
  breaker_held_ = concurrent_held_ = adaptive_held_ = gate_held_ = false;
  gov_ = nullptr;
}

// ---------------------------------------------------------------------------------------------
// Governance

Governance::Governance(observability::Registry& registry, std::string node_id)
    : registry_(registry),
      node_id_(std::move(node_id)),
      health_(std::make_unique<HealthChecker>()) {}

Governance::~Governance() {
  stop();
}

void Governance::ensure_quota_client(const config::GatewayConfig& config) {
  if (!config.redis.enabled || quota_) return;
  governance::QuotaClient::Options o;
  o.address = config.redis.address;
  o.timeout = config.redis.timeout;
  o.key_prefix = config.redis.key_prefix;
  o.node_id = node_id_;
  o.gateways_hint = config.redis.gateways;
  quota_ = std::make_unique<governance::QuotaClient>(o);
  redis_cfg_ = config.redis;
  if (started_) quota_->start();
}

std::shared_ptr<const GovernanceSnapshot> Governance::build(
    const config::GatewayConfig& config, const std::vector<ServiceInfo>& services) {
  ensure_quota_client(config);
  // Declared with every build, like every series a config uses (Registry::sweep drops the
  // rest); the client lives as long as this object.
  if (auto* q = quota_.get()) {
    registry_.gauge_fn("sluice_redis_up",
                       "1 while Redis answers cluster quota calls within redis.timeout.",
                       [q] { return q->healthy() ? 1.0 : 0.0; });
    registry_.gauge_fn("sluice_ratelimit_cluster_gateways",
                       "Gateways sharing cluster-scope limits, as seen through Redis.",
                       [q] { return static_cast<double>(q->gateways()); });
  }
  auto gov = std::make_shared<GovernanceSnapshot>();
  gov->redis_on_error = config.redis.on_error;

  // Rate-limit rules.
  std::map<std::string, RuleSlot> rules;
  for (const auto& rule : config.rate_limits) {
    RuleSlot slot;
    auto old = rules_.find(rule.name);
    if (old != rules_.end() && same_limiter(old->second.cfg, rule)) {
      slot = old->second;
    } else {
      slot.local =
          std::make_shared<governance::RateLimiter>(governance::RateLimiter::options_from(rule));
      if (rule.scope == config::RateScope::kCluster) {
        slot.cluster = std::make_shared<governance::ClusterLimiter>(*quota_, rule);
        if (quota_) slot.local->set_divisor(std::max<uint32_t>(1, quota_->gateways()));
      }
    }
    slot.cfg = rule;
    rules.emplace(rule.name, slot);
  }
  rules_ = std::move(rules);
  for (const auto& rule : config.rate_limits) {
    const RuleSlot& slot = rules_.at(rule.name);
    RuleRuntime rt;
    rt.cfg = &rule;
    rt.local = slot.local;
    rt.cluster = slot.cluster;
    auto counter = [&](const char* result) {
      return &registry_.counter("sluice_ratelimit_requests_total",
                                "Rate-limit decisions by rule and result.",
                                {{"rule", rule.name}, {"result", result}});
    };
    rt.allowed = counter("allowed");
    rt.rejected = counter("rejected");
    rt.shadow_rejected = counter("shadow_rejected");
    rt.fallback =
        &registry_.counter("sluice_ratelimit_fallback_total",
                           "Cluster-scope decisions taken without Redis (redis.on_error applied).",
                           {{"rule", rule.name}});
    auto limiter = slot.local;
    registry_.gauge_fn("sluice_ratelimit_keys", "Keys tracked by a rate-limit rule.",
                       [limiter] { return static_cast<double>(limiter->key_count()); },
                       {{"rule", rule.name}});
    registry_.counter_fn("sluice_ratelimit_evictions_total",
                         "Keys a rate-limit rule dropped to stay within max_keys.",
                         [limiter] { return static_cast<double>(limiter->evictions()); },
                         {{"rule", rule.name}});
    gov->rules.push_back(rt);
  }
  gov->rules_by_route.resize(config.routes.size());
  for (size_t r = 0; r < config.routes.size(); ++r) {
    for (size_t i = 0; i < config.rate_limits.size(); ++i) {
      const auto& ri = config.rate_limits[i].route_indices;
      if (ri.empty() || std::find(ri.begin(), ri.end(), r) != ri.end()) {
        gov->rules_by_route[r].push_back(static_cast<uint32_t>(i));
      }
    }
  }

  // Overload classes.
  size_t classes = 1;
  static const std::vector<std::string> kNoClasses{"default"};
  const std::vector<std::string>* class_names = &kNoClasses;
  if (config.overload.enabled) {
    gov->overload = &config.overload;
    classes = std::max<size_t>(1, config.overload.priorities.size());
    if (!config.overload.priorities.empty()) class_names = &config.overload.priorities;
  }
  if (config.overload.enabled && config.overload.max_in_flight > 0) {
    if (!gate_ || gate_limit_ != config.overload.max_in_flight) {
      gate_ = std::make_shared<governance::InFlightGate>(config.overload.max_in_flight);
      gate_limit_ = config.overload.max_in_flight;
    }
    gov->gate = gate_;
    auto gate = gate_;
    registry_.gauge_fn("sluice_overload_in_flight", "Requests in flight through the gateway.",
                       [gate] { return static_cast<double>(gate->in_flight()); });
  } else {
    gate_.reset();
    gate_limit_ = 0;
  }
  for (size_t p = 0; p < classes; ++p) {
    const std::string& name = (*class_names)[p];
    gov->gate_shed.push_back(&registry_.counter(
        "sluice_overload_shed_total", "Requests shed by overload protection.",
        {{"scope", "gateway"}, {"service", ""}, {"priority", name}, {"mode", "enforce"}}));
    gov->gate_shadow_shed.push_back(&registry_.counter(
        "sluice_overload_shed_total", "Requests shed by overload protection.",
        {{"scope", "gateway"}, {"service", ""}, {"priority", name}, {"mode", "shadow"}}));
  }

  // Services.
  std::map<std::string, ServiceSlot> slots;
  for (const auto& svc : config.services) {
    ServiceSlot slot;
    auto old = services_.find(svc.name);
    bool had = old != services_.end();
    auto endpoints = endpoint_addresses(svc);
    if (had && old->second.breaker_cfg == svc.circuit_breaker) {
      slot.breaker = old->second.breaker;
    } else {
      slot.breaker = std::make_shared<CircuitBreaker>(svc.circuit_breaker);
      std::string name = svc.name;
      slot.breaker->set_listener([name](const CircuitBreaker::Transition& t) {
        core::log_warn("circuit breaker of service {}: {} -> {} ({})", name,
                       kStateNames[static_cast<int>(t.from)], kStateNames[static_cast<int>(t.to)],
                       t.reason);
      });
    }
    if (had && old->second.outlier_cfg == svc.outlier_detection &&
        old->second.endpoints == endpoints) {
      slot.outlier = old->second.outlier;
    } else {
      slot.outlier =
          std::make_shared<governance::OutlierDetector>(svc.outlier_detection, endpoints.size());
      std::string name = svc.name;
      slot.outlier->set_listener(
          [name, endpoints](size_t i, bool ejected, std::chrono::nanoseconds how_long) {
            if (ejected) {
              core::log_warn("endpoint {} of service {} ejected for {}", endpoints[i], name,
                             core::format_duration(how_long));
            } else {
              core::log_info("endpoint {} of service {} back in rotation", endpoints[i], name);
            }
          });
    }
    if (svc.adaptive_concurrency.enabled) {
      if (had && old->second.adaptive && old->second.adaptive_cfg == svc.adaptive_concurrency) {
        slot.adaptive = old->second.adaptive;
      } else {
        slot.adaptive = std::make_shared<governance::AdaptiveConcurrency>(svc.adaptive_concurrency);
      }
    }
    slot.breaker_cfg = svc.circuit_breaker;
    slot.outlier_cfg = svc.outlier_detection;
    slot.adaptive_cfg = svc.adaptive_concurrency;
    slot.endpoints = endpoints;
    slots.emplace(svc.name, slot);
  }
  services_ = std::move(slots);

  for (const auto& svc : config.services) {
    const ServiceSlot& slot = services_.at(svc.name);
    ServiceRuntime rt;
    rt.cfg = &svc;
    rt.breaker = slot.breaker;
    rt.outlier = slot.outlier;
    rt.adaptive = slot.adaptive;
    auto rejected = [&](const char* reason) {
      return &registry_.counter("sluice_circuit_breaker_rejected_total",
                                "Requests refused by a service's breaker or caps.",
                                {{"service", svc.name}, {"reason", reason}});
    };
    rt.rejected_open = rejected("open");
    rt.rejected_concurrent = rejected("max_concurrent");
    rt.rejected_pending = rejected("max_pending");
    rt.fallback_served = &registry_.counter("sluice_fallback_responses_total",
                                            "Fallback responses served while a breaker is open.",
                                            {{"service", svc.name}});
    for (size_t p = 0; p < classes; ++p) {
      const std::string& name = (*class_names)[p];
      rt.shed.push_back(&registry_.counter(
          "sluice_overload_shed_total", "Requests shed by overload protection.",
          {{"scope", "service"}, {"service", svc.name}, {"priority", name}, {"mode", "enforce"}}));
      rt.shadow_shed.push_back(&registry_.counter(
          "sluice_overload_shed_total", "Requests shed by overload protection.",
          {{"scope", "service"}, {"service", svc.name}, {"priority", name}, {"mode", "shadow"}}));
    }
    auto breaker = slot.breaker;
    registry_.gauge_fn("sluice_circuit_breaker_state",
                       "Breaker state of a service: 0 closed, 1 open, 2 half-open.",
                       [breaker] { return static_cast<double>(breaker->state()); },
                       {{"service", svc.name}});
    registry_.counter_fn("sluice_circuit_breaker_opened_total", "Times a service's breaker opened.",
                         [breaker] {
                           return static_cast<double>(
                               breaker->snapshot(std::chrono::steady_clock::now()).opened_total);
                         },
                         {{"service", svc.name}});
    if (slot.adaptive) {
      auto adaptive = slot.adaptive;
      registry_.gauge_fn(
          "sluice_adaptive_concurrency_limit", "Current adaptive concurrency limit of a service.",
          [adaptive] { return static_cast<double>(adaptive->limit()); }, {{"service", svc.name}});
    }
    auto outlier = slot.outlier;
    for (size_t i = 0; i < slot.endpoints.size(); ++i) {
      observability::Labels labels{{"service", svc.name}, {"endpoint", slot.endpoints[i]}};
      registry_.gauge_fn(
          "sluice_endpoint_available",
          "1 while an endpoint is in rotation (healthy and not ejected).",
          [outlier, i] {
            return outlier->available(i, std::chrono::steady_clock::now()) ? 1.0 : 0.0;
          },
          labels);
      registry_.counter_fn(
          "sluice_outlier_ejections_total", "Times an endpoint was ejected.",
          [outlier, i] { return static_cast<double>(outlier->ejections_total(i)); }, labels);
      registry_.counter_fn(
          "sluice_endpoint_down_total",
          "Times an endpoint was taken out of rotation because it refused a connection.",
          [outlier, i] { return static_cast<double>(outlier->downs_total(i)); }, labels);
    }
    gov->services.push_back(rt);
  }
  update_health_targets(config, services, gov->services);
  return gov;
}

void Governance::update_health_targets(const config::GatewayConfig& config,
                                       const std::vector<ServiceInfo>& services,
                                       const std::vector<ServiceRuntime>& runtimes) {
  std::vector<HealthChecker::Target> targets;
  for (size_t s = 0; s < config.services.size() && s < services.size(); ++s) {
    const auto& svc = config.services[s];
    if (!svc.health_check.enabled) continue;
    std::weak_ptr<governance::OutlierDetector> weak = runtimes[s].outlier;
    for (size_t i = 0; i < services[s].endpoints.size(); ++i) {
      HealthChecker::Target t;
      t.service = svc.name;
      t.address = services[s].endpoints[i].address;
      t.endpoint = services[s].endpoints[i].resolved;
      t.check = svc.health_check;
      t.on_change = [weak, i](bool healthy) {
        if (auto o = weak.lock()) o->set_health(i, healthy);
      };
      targets.push_back(std::move(t));
    }
  }
  health_->set_targets(std::move(targets));
  // A kept target keeps its state; a new outlier object must learn it.
  for (const auto& st : health_->status()) {
    for (size_t s = 0; s < config.services.size() && s < services.size(); ++s) {
      if (config.services[s].name != st.service) continue;
      for (size_t i = 0; i < services[s].endpoints.size(); ++i) {
        if (services[s].endpoints[i].address == st.address) {
          runtimes[s].outlier->set_health(i, st.healthy);
        }
      }
    }
  }
}

void Governance::start() {
  if (started_) return;
  started_ = true;
  if (quota_) quota_->start();
  health_->start();
}

void Governance::stop() {
  if (!started_) return;
  started_ = false;
  health_->stop();
  if (quota_) quota_->stop();
}

void Governance::tick() {
  if (!quota_) return;
  uint32_t n = std::max<uint32_t>(1, quota_->gateways());
  for (auto& [name, slot] : rules_) {
    if (slot.cluster) slot.local->set_divisor(n);
  }
}

std::string Governance::stats_json(const GovernanceSnapshot& gov,
                                   const std::vector<ServiceInfo>& services) const {
  auto now = std::chrono::steady_clock::now();
  nlohmann::json j;
  nlohmann::json rules = nlohmann::json::array();
  for (const auto& r : gov.rules) {
    nlohmann::json hot = nlohmann::json::array();
    for (const auto& k : r.local->hot_keys(10)) {
      hot.push_back({{"key", k.key}, {"allowed", k.allowed}, {"rejected", k.rejected}});
    }
    rules.push_back({{"name", r.cfg->name},
                     {"scope", r.cfg->scope == config::RateScope::kCluster ? "cluster" : "node"},
                     {"mode", r.cfg->mode == config::Mode::kShadow ? "shadow" : "enforce"},
                     {"allowed", r.allowed->value()},
                     {"rejected", r.rejected->value()},
                     {"shadow_rejected", r.shadow_rejected->value()},
                     {"fallback", r.fallback->value()},
                     {"keys", r.local->key_count()},
                     {"evictions", r.local->evictions()},
                     {"hot_keys", hot}});
  }
  j["rate_limits"] = rules;
  nlohmann::json svcs = nlohmann::json::array();
  for (size_t s = 0; s < gov.services.size(); ++s) {
    const auto& rt = gov.services[s];
    auto snap = rt.breaker->snapshot(now);
    nlohmann::json eps = nlohmann::json::array();
    for (size_t i = 0;
         i < rt.outlier->size() && s < services.size() && i < services[s].endpoints.size(); ++i) {
      eps.push_back({{"address", services[s].endpoints[i].address},
                     {"available", rt.outlier->available(i, now)},
                     {"healthy", rt.outlier->healthy(i)},
                     {"ejected", rt.outlier->ejected(i, now)},
                     {"down", rt.outlier->down(i, now)},
                     {"ejections", rt.outlier->ejections_total(i)}});
    }
    nlohmann::json svc = {
        {"name", rt.cfg->name},
        {"circuit_breaker",
         {{"state", kStateNames[static_cast<int>(snap.state)]},
          {"calls", snap.calls},
          {"failures", snap.failures},
          {"slow", snap.slow},
          {"opened_total", snap.opened_total},
          {"open_for_seconds", std::chrono::duration<double>(snap.open_for).count()},
          {"concurrent", rt.breaker->concurrent()}}},
        {"endpoints", eps}};
    if (rt.adaptive) {
      svc["adaptive_concurrency"] = {{"limit", rt.adaptive->limit()},
                                     {"in_flight", rt.adaptive->in_flight()}};
    }
    svcs.push_back(svc);
  }
  j["services"] = svcs;
  if (quota_) {
    auto st = quota_->stats();
    j["redis"] = {{"healthy", st.healthy},
                  {"gateways", st.gateways},
                  {"calls", st.calls},
                  {"errors", st.errors},
                  {"reconnects", st.reconnects}};
  }
  if (gov.gate)
    j["overload"] = {{"in_flight", gov.gate->in_flight()}, {"limit", gov.gate->limit()}};
  nlohmann::json checks = nlohmann::json::array();
  for (const auto& st : health_->status()) {
    checks.push_back({{"service", st.service},
                      {"address", st.address},
                      {"healthy", st.healthy},
                      {"passes", st.passes},
                      {"failures", st.failures},
                      {"last_error", st.last_error}});
  }
  j["health_checks"] = checks;
  return j.dump();
}

}  // namespace sluice::gateway
