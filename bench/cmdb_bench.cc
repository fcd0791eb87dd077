// The CMDB's model and store at the size issue 15 names: 10,000 instances, 1,000 services and
// 100,000 relations (instance belongs_to service, runs_on host, located_in zone: 30,000; service
// depends_on service: 70,000). Graph build and validate() in memory (and the heap they take);
// Cmdb::record() of 10,000 instances' observed values on a SQLite file store, when they all change
// and when they are only seen again (last_seen moves); Cmdb::load() cold (a second control plane
// reading the whole model) and warm (cached). Each observation carries 4 values and 3 relations
// per instance (40,000 values, 30,000 relations).
//   build/release/micro_bench --benchmark_filter=Cmdb
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "control/cmdb/cmdb.h"

namespace {

using namespace sluice::control;  // NOLINT: a bench file
using namespace sluice::control::cmdb;

constexpr int kInstances = 10'000;
constexpr int kServices = 1'000;
constexpr int kHosts = 500;
constexpr int kZones = 4;
constexpr int kDepsPerService = 70;

Graph build_graph() {
  Graph g;
  const Schema& s = g.schema();
  const TypeId svc_t = *s.find_type("service"), inst_t = *s.find_type("instance");
  const TypeId host_t = *s.find_type("host"), zone_t = *s.find_type("zone"),
               city_t = *s.find_type("city");
  const AttrId zone_a = *s.type(inst_t).attribute("zone"),
               addr_a = *s.type(inst_t).attribute("address");
  const CiId city = g.upsert_ci(city_t, "a");
  std::vector<CiId> zones, hosts, svcs;
  for (int i = 0; i < kZones; ++i) {
    zones.push_back(g.upsert_ci(zone_t, "a" + std::to_string(i)));
    g.upsert_relation(RelationKind::kLocatedIn, zones.back(), city, Source::kDeclared, 1);
  }
  for (int i = 0; i < kHosts; ++i) hosts.push_back(g.upsert_ci(host_t, "h" + std::to_string(i)));
  for (int i = 0; i < kServices; ++i) svcs.push_back(g.upsert_ci(svc_t, "s" + std::to_string(i)));
  for (int i = 0; i < kServices; ++i)
    for (int d = 1; d <= kDepsPerService; ++d)
      g.upsert_relation(RelationKind::kDependsOn, svcs[i], svcs[(i + d) % kServices],
                        Source::kTraffic, 1);
  for (int i = 0; i < kInstances; ++i) {
    CiId id = g.upsert_ci(inst_t, "i" + std::to_string(i));
    g.set_value(id, zone_a, Source::kRegistry, Value(std::string("a" + std::to_string(i % kZones))),
                1);
    g.set_value(id, addr_a, Source::kRegistry,
                Value("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256)), 1);
    g.upsert_relation(RelationKind::kBelongsTo, id, svcs[i % kServices], Source::kRegistry, 1);
    g.upsert_relation(RelationKind::kRunsOn, id, hosts[i % kHosts], Source::kRegistry, 1);
    g.upsert_relation(RelationKind::kLocatedIn, id, zones[i % kZones], Source::kRegistry, 1);
  }
  return g;
}

void BM_CmdbGraphBuild(benchmark::State& state) {
  size_t heap = 0, relations = 0;
  for (auto _ : state) {
    const size_t before = mallinfo2().uordblks;
    Graph g = build_graph();
    heap = mallinfo2().uordblks - before;
    relations = g.relation_count();
    benchmark::DoNotOptimize(g);
  }
  state.counters["relations"] = static_cast<double>(relations);
  state.counters["heap_MiB"] = static_cast<double>(heap) / (1 << 20);
}
BENCHMARK(BM_CmdbGraphBuild)->Unit(benchmark::kMillisecond);

void BM_CmdbValidate(benchmark::State& state) {
  Graph g = build_graph();
  size_t errors = 0;
  for (auto _ : state) errors = g.validate().size();
  state.counters["errors"] = static_cast<double>(errors);
}
BENCHMARK(BM_CmdbValidate)->Unit(benchmark::kMillisecond);

// A SQLite file store with the model in it, as the registry would have observed it.
struct StoreFixture {
  std::string dir;
  std::unique_ptr<Store> store;
  StoreFixture() {
    char tmpl[] = "/tmp/sluice-cmdb-bench-XXXXXX";
    dir = ::mkdtemp(tmpl);
    store = Store::open("sqlite://" + dir + "/control.db");
  }
  ~StoreFixture() {
    store.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

Observed instances(int64_t seen_ms, const std::string& zone_prefix) {
  Observed o;
  o.source = Source::kRegistry;
  o.seen_ms = seen_ms;
  for (int i = 0; i < kInstances; ++i) {
    o.cis.push_back(
        {"instance",
         "i" + std::to_string(i),
         {{"zone", Value(zone_prefix + std::to_string(i % kZones))},
          {"address", Value("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256))},
          {"city", Value(std::string("a"))},
          {"service", Value("s" + std::to_string(i % kServices))}}});
    o.relations.push_back({RelationKind::kBelongsTo, "instance", "i" + std::to_string(i), "service",
                           "s" + std::to_string(i % kServices)});
    o.relations.push_back({RelationKind::kRunsOn, "instance", "i" + std::to_string(i), "host",
                           "h" + std::to_string(i % kHosts)});
    o.relations.push_back({RelationKind::kLocatedIn, "instance", "i" + std::to_string(i), "zone",
                           "a" + std::to_string(i % kZones)});
  }
  return o;
}

void BM_CmdbRecordAllChanged(benchmark::State& state) {
  StoreFixture f;
  Cmdb db(*f.store);
  db.record(instances(1, "a"), {"bench", "", 0});
  int64_t t = 2;
  for (auto _ : state) {
    auto r = db.record(instances(t, t % 2 ? "a" : "b"), {"bench", "", 0});  // every zone moves
    ++t;
    if (r.values_changed != kInstances) state.SkipWithError("not every value changed");
  }
  state.counters["values"] = kInstances;
}
BENCHMARK(BM_CmdbRecordAllChanged)->Unit(benchmark::kMillisecond)->Iterations(5);

void BM_CmdbRecordSeenAgain(benchmark::State& state) {
  StoreFixture f;
  Cmdb db(*f.store);
  db.record(instances(1, "a"), {"bench", "", 0});
  int64_t t = 2;
  for (auto _ : state) {
    auto r = db.record(instances(t++, "a"), {"bench", "", 0});  // only last_seen moves
    if (r.values_changed != 0) state.SkipWithError("a value changed");
  }
}
BENCHMARK(BM_CmdbRecordSeenAgain)->Unit(benchmark::kMillisecond)->Iterations(5);

void BM_CmdbLoad(benchmark::State& state) {
  StoreFixture f;
  {
    Cmdb writer(*f.store);
    Observed o = instances(1, "a");
    for (int i = 0; i < kServices; ++i)
      for (int d = 1; d <= kDepsPerService; ++d)
        o.relations.push_back({RelationKind::kDependsOn, "service", "s" + std::to_string(i),
                               "service", "s" + std::to_string((i + d) % kServices)});
    o.source = Source::kTraffic;
    writer.record(o, {"bench", "", 0});
  }
  const bool cold = state.range(0) == 1;
  Cmdb warm(*f.store);
  warm.load();
  size_t relations = 0;
  for (auto _ : state) {
    if (cold) {
      Cmdb reader(*f.store);  // a fresh cache: reads every row
      relations = reader.load().relation_count();
    } else {
      relations = warm.load().relation_count();
    }
  }
  state.counters["relations"] = static_cast<double>(relations);
}
BENCHMARK(BM_CmdbLoad)->Arg(1)->Arg(0)->ArgName("cold")->Unit(benchmark::kMillisecond);

}  // namespace
