// A small CMDB for the reconciler's, accuracy's and impact's tests: a declared model (business
// system `payments` -> application `pay-app` -> services `accounts` and `ledger`, accounts
// depends_on ledger, instances a1 and l1 on host h1 in zone a1 of city a, b1 on host h2 in zone
// b1 of city b, a route per service, gateway gw-a serving both routes to channel `mobile`) and
// what the registry, gateways and traffic observe of it, set at a time the test chooses.
#pragma once

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "control/cmdb/model.h"
#include "control/cmdb/reconcile.h"

namespace sluice::control::cmdb::testing {

inline constexpr std::int64_t kT0 = 1'000'000;

class CmdbFixture {
 public:
  Graph g;
  ReconcileOptions options;

  CiId id(std::string_view type, std::string_view key) {
    auto t = g.schema().find_type(type);
    EXPECT_TRUE(t) << type;
    return g.upsert_ci(*t, key);
  }
  AttrId attr(std::string_view type, std::string_view name) {
    auto t = g.schema().find_type(type);
    auto a = g.schema().type(*t).attribute(name);
    EXPECT_TRUE(a) << type << "." << name;
    return *a;
  }
  void set(std::string_view type, std::string_view key, std::string_view name, Value v,
           Source s = Source::kDeclared, std::int64_t at = kT0) {
    g.set_value(id(type, key), attr(type, name), s, std::move(v), at);
  }
  void declare(std::string_view type, std::string_view key,
               std::initializer_list<std::pair<std::string_view, std::string_view>> attrs = {}) {
    auto t = g.schema().find_type(type);
    set(type, key, g.schema().type(*t).attributes[g.schema().type(*t).key[0]].name,
        Value(std::string(key)));
    for (auto [n, v] : attrs) set(type, key, n, Value(std::string(v)));
  }
  void relate(std::string_view ft, std::string_view fk, RelationKind kind, std::string_view tt,
              std::string_view tk, Source s = Source::kDeclared, std::int64_t at = kT0) {
    g.upsert_relation(kind, id(ft, fk), id(tt, tk), s, at);
  }

  // The declared model.
  void declare_model() {
    using K = RelationKind;
    declare("business_system", "payments", {{"owner", "team-pay"}});
    declare("application", "pay-app");
    relate("application", "pay-app", K::kBelongsTo, "business_system", "payments");
    for (const char* s : {"accounts", "ledger"}) {
      declare("service", s);
      relate("service", s, K::kBelongsTo, "application", "pay-app");
    }
    relate("service", "accounts", K::kDependsOn, "service", "ledger");
    declare("host", "h1");
    declare("host", "h2");
    for (const auto& i : instances_) {
      declare("instance", i.id,
              {{"service", i.service}, {"address", i.address}, {"city", i.city}, {"zone", i.zone}});
      relate("instance", i.id, K::kBelongsTo, "service", i.service);
      relate("instance", i.id, K::kRunsOn, "host", i.host);
    }
  }

  // What the platform observes at `at`, except the instances in `gone` (not seen since).
  void observe(std::int64_t at, const std::set<std::string>& gone = {}) {
    using K = RelationKind;
    for (const auto& i : instances_) {
      if (gone.contains(i.id)) continue;
      for (auto [n, v] : {std::pair{"service", i.service}, std::pair{"address", i.address},
                          std::pair{"city", i.city}, std::pair{"zone", i.zone}}) {
        set("instance", i.id, n, Value(std::string(v)), Source::kRegistry, at);
      }
      relate("instance", i.id, K::kBelongsTo, "service", i.service, Source::kRegistry, at);
      relate("instance", i.id, K::kRunsOn, "host", i.host, Source::kAgent, at);
    }
    relate("service", "accounts", K::kDependsOn, "service", "ledger", Source::kTraffic, at);
  }

  // Routes, a gateway, a channel and locations, for impact (declared).
  void declare_edges() {
    using K = RelationKind;
    declare("route", "r-accounts");
    relate("route", "r-accounts", K::kRoutesTo, "service", "accounts");
    declare("route", "r-ledger");
    relate("route", "r-ledger", K::kRoutesTo, "service", "ledger");
    declare("gateway", "gw-a");
    relate("gateway", "gw-a", K::kServes, "route", "r-accounts");
    relate("gateway", "gw-a", K::kServes, "route", "r-ledger");
    declare("channel", "mobile");
    relate("route", "r-accounts", K::kServes, "channel", "mobile");
    relate("channel", "mobile", K::kBelongsTo, "business_system", "payments");
    declare("city", "a");
    declare("city", "b");
    declare("zone", "a1");
    declare("zone", "b1");
    relate("zone", "a1", K::kLocatedIn, "city", "a");
    relate("zone", "b1", K::kLocatedIn, "city", "b");
    relate("host", "h1", K::kLocatedIn, "zone", "a1");
    relate("host", "h2", K::kLocatedIn, "zone", "b1");
  }

  ReconcileResult run(std::int64_t now) { return reconcile(g, Policy(g.schema(), options), now); }

 private:
  struct Inst {
    const char *id, *service, *address, *city, *zone, *host;
  };
  std::vector<Inst> instances_ = {
      {"a1", "accounts", "10.0.0.1:8001", "a", "a1", "h1"},
      {"b1", "accounts", "10.0.0.2:8001", "b", "b1", "h2"},
      {"l1", "ledger", "10.0.0.1:8002", "a", "a1", "h1"},
  };
};

}  // namespace sluice::control::cmdb::testing
