// Route matching and load-balancer picks: the per-request cost of choosing where a request goes.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "http/header_map.h"
#include "router/router.h"
#include "upstream/load_balancer.h"

namespace {

using sluice::config::GatewayConfig;
using sluice::config::Route;
using sluice::router::RequestView;
using sluice::router::Router;

// A config shaped like a real one: most routes on a few exact hosts, some wildcard, some on any
// host; prefixes of one or two segments; some with methods or a header.
GatewayConfig make_config(int n, bool shared_first_segment) {
  GatewayConfig cfg;
  for (int i = 0; i < n; ++i) {
    Route r;
    r.name = "route-" + std::to_string(i);
    const std::string svc = "svc" + std::to_string(i);
    r.match.path_prefix = shared_first_segment ? "/api/" + svc : "/" + svc + "/v1";
    switch (i % 4) {
      case 0:
        r.match.hosts = {"api.bank.example"};
        break;
      case 1:
        r.match.hosts = {"*.bank.example"};
        break;
      case 2:
        r.match.hosts = {"open.bank.example", "partners.bank.example"};
        break;
      default:
        break;  // any host
    }
    if (i % 3 == 0) r.match.methods = {"GET", "POST"};
    if (i % 10 == 0) r.match.headers.push_back({"x-channel", "mobile", false});
    r.service_index = static_cast<size_t>(i);
    cfg.routes.push_back(std::move(r));
  }
  return cfg;
}

struct Request {
  std::string host;
  std::string path;
};

// Requests spread over the table, each with a host that route accepts: the cost of finding the
// route a request is meant for, wherever it sits in config order.
std::vector<Request> make_requests(int n, bool shared_first_segment) {
  static const char* const kHostFor[] = {"api.bank.example", "m.bank.example",
                                         "Partners.Bank.Example", "other.example"};
  std::vector<Request> reqs;
  for (int i = 0; i < 256; ++i) {
    const int target = static_cast<int>((i * 2654435761u) % static_cast<unsigned>(n));
    const std::string svc = "svc" + std::to_string(target);
    reqs.push_back(
        {kHostFor[target % 4],
         (shared_first_segment ? "/api/" + svc : "/" + svc + "/v1") + "/accounts/12345"});
  }
  return reqs;
}

void run_match(benchmark::State& state, bool shared_first_segment) {
  const int n = static_cast<int>(state.range(0));
  const GatewayConfig cfg = make_config(n, shared_first_segment);
  const Router router(cfg);
  const std::vector<Request> reqs = make_requests(n, shared_first_segment);
  sluice::http::HeaderMap headers;
  headers.add("user-agent", "bench/1.0");
  headers.add("x-channel", "mobile");
  headers.add("accept", "*/*");
  size_t i = 0;
  int64_t hits = 0;
  for (auto _ : state) {
    const Request& r = reqs[i++ & 255];
    const auto* route = router.match(RequestView{"GET", r.host, r.path, &headers});
    hits += route != nullptr;
    benchmark::DoNotOptimize(route);
  }
  state.counters["hit_ratio"] =
      static_cast<double>(hits) / static_cast<double>(std::max<int64_t>(1, state.iterations()));
}

// Routes with distinct first segments: the host bucket plus first-segment index narrows the
// candidates to a handful whatever the table size.
void BM_RouterMatch(benchmark::State& state) {
  run_match(state, false);
}
BENCHMARK(BM_RouterMatch)->Arg(10)->Arg(1000);

// Every route under "/api/": the segment index cannot help, so this is the linear-scan bound.
void BM_RouterMatchSharedSegment(benchmark::State& state) {
  run_match(state, true);
}
BENCHMARK(BM_RouterMatchSharedSegment)->Arg(10)->Arg(1000);

void BM_RewritePath(benchmark::State& state) {
  sluice::router::Route route;
  route.strip_prefix = "/api";
  route.prefix_rewrite = "/v2";
  std::string out;
  out.reserve(256);
  for (auto _ : state) {
    out.clear();
    Router::rewrite_path(route, "/api/accounts/12345/transactions", out);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_RewritePath);

using sluice::upstream::EndpointState;
using sluice::upstream::PickContext;

std::vector<EndpointState> make_endpoints(int n) {
  std::vector<EndpointState> eps(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    eps[i].weight = 1 + static_cast<uint32_t>(i % 3);
    eps[i].active = static_cast<uint32_t>((i * 7) % 5);
    eps[i].id = sluice::upstream::hash_key("10.0." + std::to_string(i) + ".1:9101");
  }
  eps[static_cast<size_t>(n) / 2].healthy = false;  // one endpoint down, as is usual
  return eps;
}

void run_pick(benchmark::State& state, sluice::config::LbPolicy policy) {
  const std::vector<EndpointState> eps = make_endpoints(static_cast<int>(state.range(0)));
  sluice::config::LoadBalancer cfg;
  cfg.policy = policy;
  auto lb = sluice::upstream::make_load_balancer(cfg, eps, 1);
  PickContext ctx;
  ctx.has_hash = true;
  uint64_t h = 0x9E3779B97F4A7C15ULL;
  for (auto _ : state) {
    ctx.hash = (h += 0x9E3779B97F4A7C15ULL);
    benchmark::DoNotOptimize(lb->pick(ctx));
  }
}

void BM_PickRoundRobin(benchmark::State& state) {
  run_pick(state, sluice::config::LbPolicy::kRoundRobin);
}
BENCHMARK(BM_PickRoundRobin)->Arg(10)->Arg(100);

void BM_PickLeastRequest(benchmark::State& state) {
  run_pick(state, sluice::config::LbPolicy::kLeastRequest);
}
BENCHMARK(BM_PickLeastRequest)->Arg(10)->Arg(100);

void BM_PickRingHash(benchmark::State& state) {
  run_pick(state, sluice::config::LbPolicy::kRingHash);
}
BENCHMARK(BM_PickRingHash)->Arg(10)->Arg(100);

// A retry: the key's endpoint was tried, so the ring is walked past it.
void BM_PickRingHashRetry(benchmark::State& state) {
  const std::vector<EndpointState> eps = make_endpoints(static_cast<int>(state.range(0)));
  sluice::config::LoadBalancer cfg;
  cfg.policy = sluice::config::LbPolicy::kRingHash;
  auto lb = sluice::upstream::make_load_balancer(cfg, eps, 1);
  PickContext ctx;
  ctx.has_hash = true;
  uint64_t h = 0;
  uint32_t tried[1];
  for (auto _ : state) {
    ctx.hash = (h += 0x9E3779B97F4A7C15ULL);
    ctx.tried = {};
    tried[0] = static_cast<uint32_t>(lb->pick(ctx));
    ctx.tried = std::span<const uint32_t>(tried, 1);
    benchmark::DoNotOptimize(lb->pick(ctx));
  }
}
BENCHMARK(BM_PickRingHashRetry)->Arg(10)->Arg(100);

void BM_HashKey(benchmark::State& state) {
  const std::string key = "customer-00012345678";
  for (auto _ : state) benchmark::DoNotOptimize(sluice::upstream::hash_key(key));
}
BENCHMARK(BM_HashKey);

}  // namespace
