// The CMDB reconciler and impact queries at bank scale (issue 15, "Performance"): a graph of
// 10,000 instances, 1,000 services, 1,000 hosts and 100,000+ relations, declared and observed
// (registry, agent, traffic), with a few percent of drift so that every finding kind is produced.
// Reconcile: one full pass (findings + accuracy), time per pass (goal <= 1 s on one core).
// Impact: queries from hosts, services, instances and cities; p50/p99/max in ms over the run
// (goal p99 <= 50 ms). Memory: resident set growth while the graph is built (graph_rss_mib).
//   build/release/micro_bench --benchmark_filter=Cmdb
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <unistd.h>

#include "control/cmdb/impact.h"
#include "control/cmdb/reconcile.h"

namespace {

using namespace sluice::control::cmdb;  // NOLINT: a bench file
using Clock = std::chrono::steady_clock;

constexpr int kServices = 1'000;
constexpr int kInstances = 10'000;
constexpr int kHosts = 1'000;
constexpr int kApps = 100;
constexpr int kBusinessSystems = 10;
constexpr int kZonesPerCity = 3;
constexpr int kCallsPerService = 30;  // declared and observed depends_on edges per service
constexpr std::int64_t kNow = 10'000'000;

double rss_mib() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / 1048576.0;
}

struct Big {
  std::unique_ptr<Graph> g = std::make_unique<Graph>();
  std::vector<CiId> hosts, services, instances, cities;
  double rss = 0;
  std::size_t relations = 0;
};

Big& big() {
  static Big* b = [] {
    auto* out = new Big;
    const double before = rss_mib();
    Graph& g = *out->g;
    const Schema& s = g.schema();
    auto type = [&](const char* n) { return *s.find_type(n); };
    auto attr = [&](const char* t, const char* a) { return *s.type(type(t)).attribute(a); };
    auto text = [](std::string v) { return Value(std::move(v)); };
    using K = RelationKind;
    const auto D = Source::kDeclared;
    const std::int64_t seen = kNow - 1'000;

    std::vector<CiId> bss, apps, zones;
    for (int i = 0; i < kBusinessSystems; ++i) {
      CiId c = g.upsert_ci(type("business_system"), fmt::format("bs-{}", i));
      g.set_value(c, 0, D, text(fmt::format("bs-{}", i)), seen);
      g.set_value(c, attr("business_system", "owner"), D, text(fmt::format("team-{}", i)), seen);
      bss.push_back(c);
    }
    for (int i = 0; i < kApps; ++i) {
      CiId c = g.upsert_ci(type("application"), fmt::format("app-{}", i));
      g.set_value(c, 0, D, text(fmt::format("app-{}", i)), seen);
      g.upsert_relation(K::kBelongsTo, c, bss[i % kBusinessSystems], D, seen);
      apps.push_back(c);
    }
    for (const char* city : {"a", "b"}) {
      CiId c = g.upsert_ci(type("city"), city);
      g.set_value(c, 0, D, text(city), seen);
      out->cities.push_back(c);
      for (int z = 0; z < kZonesPerCity; ++z) {
        CiId zc = g.upsert_ci(type("zone"), fmt::format("{}{}", city, z));
        g.set_value(zc, 0, D, text(fmt::format("{}{}", city, z)), seen);
        g.upsert_relation(K::kLocatedIn, zc, c, D, seen);
        zones.push_back(zc);
      }
    }
    for (int i = 0; i < kHosts; ++i) {
      CiId c = g.upsert_ci(type("host"), fmt::format("h-{:04}", i));
      g.set_value(c, 0, D, text(fmt::format("h-{:04}", i)), seen);
      g.upsert_relation(K::kLocatedIn, c, zones[i % zones.size()], D, seen);
      g.upsert_relation(K::kLocatedIn, c, zones[i % zones.size()], Source::kAgent, seen);
      out->hosts.push_back(c);
    }
    for (int i = 0; i < kServices; ++i) {
      CiId c = g.upsert_ci(type("service"), fmt::format("svc-{:04}", i));
      g.set_value(c, 0, D, text(fmt::format("svc-{:04}", i)), seen);
      g.upsert_relation(K::kBelongsTo, c, apps[i % kApps], D, seen);
      out->services.push_back(c);
      CiId r = g.upsert_ci(type("route"), fmt::format("r-{:04}", i));
      g.set_value(r, 0, D, text(fmt::format("r-{:04}", i)), seen);
      g.upsert_relation(K::kRoutesTo, r, c, D, seen);
      g.upsert_relation(K::kRoutesTo, r, c, Source::kGateway, seen);
    }
    // Calls: service i calls i+1..i+30 (mod n); 2% of the declared ones are not seen, 2% of the
    // observed ones are not declared.
    for (int i = 0; i < kServices; ++i) {
      for (int k = 1; k <= kCallsPerService; ++k) {
        CiId from = out->services[i], to = out->services[(i + k) % kServices];
        const int n = i * kCallsPerService + k;
        if (n % 50 != 0) g.upsert_relation(K::kDependsOn, from, to, D, seen);
        if (n % 50 != 1) g.upsert_relation(K::kDependsOn, from, to, Source::kTraffic, seen);
      }
    }
    const AttrId svc = attr("instance", "service"), addr = attr("instance", "address"),
                 city = attr("instance", "city"), zone = attr("instance", "zone");
    for (int i = 0; i < kInstances; ++i) {
      const std::string key = fmt::format("i-{:05}", i);
      CiId c = g.upsert_ci(type("instance"), key);
      out->instances.push_back(c);
      const int h = i % kHosts;
      const CiId z = zones[h % zones.size()];
      const std::string zname = g.ci(z).key;
      const std::string cname = zname.substr(0, 1);
      const std::string sname = g.ci(out->services[i % kServices]).key;
      const std::string a = fmt::format("10.{}.{}.{}:8000", i / 65536, (i / 256) % 256, i % 256);
      const bool undeclared = i % 100 == 7;  // 1%: missing
      const bool dead = i % 100 == 13;       // 1%: stale
      if (!undeclared) {
        g.set_value(c, 0, D, text(key), seen);
        g.set_value(c, svc, D, text(sname), seen);
        g.set_value(c, addr, D, text(a), seen);
        g.set_value(c, city, D, text(cname), seen);
        g.set_value(c, zone, D, text(zname), seen);
        g.upsert_relation(K::kBelongsTo, c, out->services[i % kServices], D, seen);
        g.upsert_relation(K::kRunsOn, c, out->hosts[h], D, seen);
      }
      const std::int64_t at = dead ? 0 : seen;
      g.set_value(c, svc, Source::kRegistry, text(sname), at);
      g.set_value(c, addr, Source::kRegistry, text(a), at);
      g.set_value(c, city, Source::kRegistry, text(cname), at);
      // 1%: moved zone (mismatch).
      g.set_value(c, zone, Source::kRegistry, text(i % 100 == 21 ? "moved" : zname), at);
      g.upsert_relation(K::kBelongsTo, c, out->services[i % kServices], Source::kRegistry, at);
      g.upsert_relation(K::kRunsOn, c, out->hosts[h], Source::kAgent, at);
    }
    out->relations = g.relation_count();
    out->rss = rss_mib() - before;
    return out;
  }();
  return *b;
}

void BM_CmdbReconcile(benchmark::State& state) {
  Big& b = big();
  Policy p(b.g->schema(), ReconcileOptions{});
  std::size_t findings = 0;
  double score = 0;
  for (auto _ : state) {
    ReconcileResult r = reconcile(*b.g, p, kNow);
    findings = r.findings.size();
    score = r.accuracy.score();
    benchmark::DoNotOptimize(r);
  }
  state.counters["cis"] = static_cast<double>(b.g->ci_count());
  state.counters["relations"] = static_cast<double>(b.relations);
  state.counters["findings"] = static_cast<double>(findings);
  state.counters["score"] = score;
  state.counters["graph_rss_mib"] = b.rss;
}
BENCHMARK(BM_CmdbReconcile)->Unit(benchmark::kMillisecond)->MinTime(2.0);

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  std::size_t i = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

// range(0): 0 hosts, 1 services, 2 instances, 3 cities.
void BM_CmdbImpact(benchmark::State& state) {
  Big& b = big();
  Policy p(b.g->schema(), ReconcileOptions{});
  const std::vector<CiId>* starts[] = {&b.hosts, &b.services, &b.instances, &b.cities};
  const std::vector<CiId>& from = *starts[state.range(0)];
  std::vector<double> ms;
  std::size_t i = 0, routes = 0;
  for (auto _ : state) {
    const CiId start = from[(i++ * 7919) % from.size()];
    auto t0 = Clock::now();
    Impact im = impact(*b.g, p, start, kNow);
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    routes = im.routes.size();
    benchmark::DoNotOptimize(im);
  }
  state.counters["p50_ms"] = percentile(ms, 0.50);
  state.counters["p99_ms"] = percentile(ms, 0.99);
  state.counters["max_ms"] = percentile(ms, 1.0);
  state.counters["routes"] = static_cast<double>(routes);
}
BENCHMARK(BM_CmdbImpact)
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Arg(3)
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);

}  // namespace
