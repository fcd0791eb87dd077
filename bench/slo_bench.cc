// SLO evaluation cost (issue 16, "Performance": 1,000 SLOs over 100 gateways' stats every 10 s
// within 5% of one core, i.e. at most 500 ms of CPU per evaluation interval). One iteration is
// one interval's work of the slo domain's Engine: the snapshots 100 gateways report in 10 s (two
// each at the default 5 s report interval; 250 routes and 250 services each, with latency
// histograms), copied once as the service copies them out of the stats store, ingested, then
// every SLO evaluated (figures per city and overall, rules, alert transitions). 1,000 SLOs: an
// availability and a latency SLO on each route and service, both cities, timelines filled with
// three days of minute samples beforehand. CPU time of the process is what is measured.
//   build/release/micro_bench --benchmark_filter=Slo
#include <benchmark/benchmark.h>

#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "control/slo/evaluator.h"

namespace {

using namespace sluice::control::slo;  // NOLINT: a bench file
using Json = nlohmann::json;

constexpr int kTargets = 250;  // routes, and as many services
constexpr int kGateways = 100;
constexpr int64_t kStart = 1'699'999'980'000;

Json item(int requests, int errors) {
  return {{"requests", requests},
          {"errors", errors},
          {"latency",
           {{"le", "0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10"},
            {"buckets", {0, 0, 5, 20, 40, 60, 50, 20, 3, 1, 1, 0, 0, 0, 0}},
            {"count", requests}}}};
}

std::map<std::string, Json> slos() {
  std::map<std::string, Json> out;
  for (int i = 0; i < kTargets; ++i) {
    for (const char* kind : {"route", "service"}) {
      const std::string target = fmt::format("{}-{}", kind, i);
      out[target + "-availability"] = {
          {"target", {{kind, target}}}, {"sli", "availability"}, {"objective", 99.9}};
      out[target + "-latency"] = {{"target", {{kind, target}}},
                                  {"sli", "latency"},
                                  {"threshold", "300ms"},
                                  {"objective", 99}};
    }
  }
  return out;
}

std::vector<std::string> names_of(const std::map<std::string, Json>& m) {
  std::vector<std::string> out;
  for (const auto& [name, _] : m) out.push_back(name);
  return out;
}

std::vector<Json> snapshots() {
  std::vector<Json> out;
  for (int g = 0; g < kGateways; ++g) {
    Json routes = Json::object(), services = Json::object();
    for (int i = 0; i < kTargets; ++i) {
      routes[fmt::format("route-{}", i)] = item(200, i % 50 == 0 ? 3 : 0);
      services[fmt::format("service-{}", i)] = item(200, 0);
    }
    Json snap = {{"gateway", fmt::format("gw-{}", g)},
                 {"city", g % 2 == 0 ? "a" : "b"},
                 {"at_ms", kStart},
                 {"routes", std::move(routes)},
                 {"services", std::move(services)}};
    out.push_back(snap);
    out.push_back(std::move(snap));  // two per gateway per interval
  }
  return out;
}

void BM_SloEvaluationInterval(benchmark::State& state) {
  Engine engine;
  engine.set_slos(slos());
  const std::vector<std::string> names = names_of(slos());
  // Three days of history: a sample a minute per SLO and city.
  int64_t now = kStart;
  for (int64_t t = now - 3 * kDayMs; t < now; t += kMinuteMs) {
    for (const std::string& name : names) {
      engine.add(name, "a", t, {1, 10'000});
      engine.add(name, "b", t, {1, 10'000});
    }
  }
  const std::vector<Json> snaps = snapshots();
  size_t transitions = 0;
  for (auto _ : state) {
    now += 10'000;
    for (size_t i = 0; i < snaps.size(); ++i) {
      Json copy = snaps[i];  // the service copies each snapshot out of the stats store
      copy["at_ms"] = now - 10'000 + static_cast<int64_t>(i % 2) * 5'000;
      engine.ingest(copy);
    }
    transitions += engine.evaluate(now).size();
  }
  state.counters["slos"] = static_cast<double>(engine.slo_count());
  state.counters["snapshots_per_interval"] = static_cast<double>(snaps.size());
  state.counters["transitions"] = static_cast<double>(transitions);
}
BENCHMARK(BM_SloEvaluationInterval)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();

// The evaluation alone (no ingest), for the share of each part.
void BM_SloEvaluateOnly(benchmark::State& state) {
  Engine engine;
  engine.set_slos(slos());
  const std::vector<std::string> names = names_of(slos());
  int64_t now = kStart;
  for (int64_t t = now - 3 * kDayMs; t < now; t += kMinuteMs)
    for (const std::string& name : names) engine.add(name, "a", t, {1, 10'000});
  for (auto _ : state) {
    now += 10'000;
    benchmark::DoNotOptimize(engine.evaluate(now));
  }
}
BENCHMARK(BM_SloEvaluateOnly)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();

}  // namespace
