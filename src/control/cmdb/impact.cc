#include "control/cmdb/impact.h"

#include <algorithm>
#include <optional>

namespace sluice::control::cmdb {
namespace {

constexpr std::uint8_t kLost = 1;
constexpr std::uint8_t kAffected = 2;

struct Types {
  std::optional<TypeId> instance, host, gateway, database, service, application, business_system,
      route, channel, city, zone;
  explicit Types(const Schema& s)
      : instance(s.find_type("instance")),
        host(s.find_type("host")),
        gateway(s.find_type("gateway")),
        database(s.find_type("database")),
        service(s.find_type("service")),
        application(s.find_type("application")),
        business_system(s.find_type("business_system")),
        route(s.find_type("route")),
        channel(s.find_type("channel")),
        city(s.find_type("city")),
        zone(s.find_type("zone")) {}
};

bool is(const std::optional<TypeId>& t, TypeId x) {
  return t && *t == x;
}

class Walk {
 public:
  Walk(const Graph& g, const Policy& p, std::int64_t now)
      : g_(g), p_(p), now_(now), t_(g.schema()), mark_(g.ci_count(), 0) {}

  Impact run(CiId start) {
    Impact out;
    out.subject = g_.subject(start);
    lose(start);
    // Lost: what runs on or is located in a lost CI; the instances of a lost service.
    for (std::size_t i = 0; i < lost_.size(); ++i) {
      const CiId x = lost_[i];
      for (RelationId r : g_.in(x)) {
        const Relation& rel = g_.relation(r);
        if (!follow(r)) continue;
        if (rel.kind == RelationKind::kRunsOn || rel.kind == RelationKind::kLocatedIn ||
            (rel.kind == RelationKind::kBelongsTo && is(t_.service, g_.ci(x).type) &&
             is(t_.instance, g_.ci(rel.from).type))) {
          lose(rel.from);
        }
      }
    }
    // Affected: seeds from the lost CIs, then what depends on them.
    for (CiId x : lost_) {
      const TypeId t = g_.ci(x).type;
      if (is(t_.instance, t)) {
        for (RelationId r : g_.out(x)) {
          const Relation& rel = g_.relation(r);
          if (follow(r) && rel.kind == RelationKind::kBelongsTo &&
              is(t_.service, g_.ci(rel.to).type)) {
            affect(rel.to);
            lost_of_[rel.to].push_back(x);
          }
        }
      } else if (is(t_.gateway, t)) {
        for (RelationId r : g_.out(x)) {
          if (follow(r) && g_.relation(r).kind == RelationKind::kServes) affect(g_.relation(r).to);
        }
      } else if (is(t_.service, t) || is(t_.database, t) || is(t_.route, t) ||
                 is(t_.application, t) || is(t_.business_system, t)) {
        affect(x);
        if (is(t_.service, t)) lost_of_.try_emplace(x);
      }
    }
    for (std::size_t i = 0; i < affected_.size(); ++i) {
      const CiId x = affected_[i];
      const TypeId t = g_.ci(x).type;
      for (RelationId r : g_.in(x)) {
        const Relation& rel = g_.relation(r);
        if (!follow(r)) continue;
        if (rel.kind == RelationKind::kDependsOn ||
            (rel.kind == RelationKind::kRoutesTo && is(t_.service, t))) {
          affect(rel.from);
        }
      }
      for (RelationId r : g_.out(x)) {
        const Relation& rel = g_.relation(r);
        if (!follow(r)) continue;
        if ((rel.kind == RelationKind::kBelongsTo && !is(t_.instance, t)) ||
            (rel.kind == RelationKind::kServes && is(t_.route, t))) {
          affect(rel.to);
        }
      }
    }
    for (CiId x : lost_) {
      const TypeId t = g_.ci(x).type;
      const std::string& key = g_.ci(x).key;
      if (is(t_.instance, t)) out.instances.push_back(key);
      if (is(t_.host, t)) out.hosts.push_back(key);
      if (is(t_.gateway, t)) out.gateways.push_back(key);
      if (is(t_.database, t)) out.databases.push_back(key);
    }
    for (CiId x : affected_) {
      const TypeId t = g_.ci(x).type;
      const std::string& key = g_.ci(x).key;
      if (is(t_.service, t)) out.services.push_back(key);
      if (is(t_.application, t)) out.applications.push_back(key);
      if (is(t_.business_system, t)) out.business_systems.push_back(key);
      if (is(t_.route, t)) out.routes.push_back(key);
      if (is(t_.channel, t)) out.channels.push_back(key);
      if (is(t_.database, t) && !(mark_[x] & kLost)) out.databases.push_back(key);
    }
    for (auto* v : {&out.instances, &out.hosts, &out.gateways, &out.databases, &out.services,
                    &out.applications, &out.business_systems, &out.routes, &out.channels}) {
      std::sort(v->begin(), v->end());
    }
    for (const auto& [svc, lost] : lost_of_) out.capacity.push_back(capacity(svc));
    std::sort(
        out.capacity.begin(), out.capacity.end(),
        [](const ServiceCapacity& a, const ServiceCapacity& b) { return a.service < b.service; });
    return out;
  }

 private:
  bool follow(RelationId r) const { return relation_current(g_, p_, r, now_); }

  void lose(CiId x) {
    if (mark_[x] & kLost) return;
    mark_[x] |= kLost;
    lost_.push_back(x);
  }
  void affect(CiId x) {
    if (mark_[x] & kAffected) return;
    mark_[x] |= kAffected;
    affected_.push_back(x);
  }

  // Declared, or observed within its type's window (reconcile.h's "live").
  bool live(CiId c) const {
    const Ci& ci = g_.ci(c);
    const std::int64_t window = p_.window(ci.type);
    for (const AttributeValue& v : ci.values) {
      if (!is_observed(v.source) || now_ - v.last_seen_ms <= window) return true;
    }
    for (auto list : {g_.out(c), g_.in(c)}) {
      for (RelationId r : list) {
        const Relation& rel = g_.relation(r);
        if ((!is_observed(rel.source) && rel.from == c) ||
            (is_observed(rel.source) && now_ - rel.last_seen_ms <= window)) {
          return true;
        }
      }
    }
    return false;
  }

  std::string city_of(CiId inst) const {
    const Schema& s = g_.schema();
    if (auto a = s.type(g_.ci(inst).type).attribute("city")) {
      const AttributeValue* v = effective(g_, p_, inst, *a);
      if (v && !to_text(v->value).empty()) return to_text(v->value);
    }
    for (RelationId r : g_.out(inst)) {
      const Relation& rel = g_.relation(r);
      if (rel.kind != RelationKind::kLocatedIn || !follow(r)) continue;
      const TypeId tt = g_.ci(rel.to).type;
      if (is(t_.city, tt)) return g_.ci(rel.to).key;
      if (is(t_.zone, tt)) {
        for (RelationId z : g_.out(rel.to)) {
          const Relation& zr = g_.relation(z);
          if (zr.kind == RelationKind::kLocatedIn && follow(z) && is(t_.city, g_.ci(zr.to).type)) {
            return g_.ci(zr.to).key;
          }
        }
      }
    }
    return "";
  }

  ServiceCapacity capacity(CiId svc) const {
    ServiceCapacity c;
    c.service = g_.ci(svc).key;
    for (RelationId r : g_.in(svc)) {
      const Relation& rel = g_.relation(r);
      if (rel.kind != RelationKind::kBelongsTo || !follow(r) ||
          !is(t_.instance, g_.ci(rel.from).type))
        continue;
      const CiId inst = rel.from;
      // One instance may belong_to its service by two sources: count it once.
      if (counted_.size() <= inst) counted_.resize(g_.ci_count(), kNone);
      if (counted_[inst] == svc) continue;
      counted_[inst] = svc;
      const bool lost = mark_[inst] & kLost;
      if (!lost && !live(inst)) continue;
      CityCapacity& cc = c.cities[city_of(inst)];
      ++cc.total;
      if (lost) ++cc.lost;
    }
    return c;
  }

  const Graph& g_;
  const Policy& p_;
  const std::int64_t now_;
  const Types t_;
  std::vector<std::uint8_t> mark_;
  std::vector<CiId> lost_, affected_;
  std::map<CiId, std::vector<CiId>> lost_of_;  // service -> its lost instances
  mutable std::vector<CiId> counted_;
};

}  // namespace

Impact impact(const Graph& g, const Policy& p, CiId start, std::int64_t now) {
  return Walk(g, p, now).run(start);
}

nlohmann::json to_json(const Impact& i) {
  nlohmann::json capacity = nlohmann::json::array();
  for (const ServiceCapacity& s : i.capacity) {
    nlohmann::json cities = nlohmann::json::object();
    for (const auto& [city, c] : s.cities) {
      cities[city] = {{"total", c.total}, {"lost", c.lost}, {"remaining", c.total - c.lost}};
    }
    capacity.push_back({{"service", s.service}, {"cities", std::move(cities)}});
  }
  return {{"subject", i.subject},
          {"lost",
           {{"instances", i.instances},
            {"hosts", i.hosts},
            {"gateways", i.gateways},
            {"databases", i.databases}}},
          {"routes", i.routes},
          {"channels", i.channels},
          {"services", i.services},
          {"applications", i.applications},
          {"business_systems", i.business_systems},
          {"capacity", std::move(capacity)}};
}

}  // namespace sluice::control::cmdb
