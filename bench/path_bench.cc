// Cost of path normalisation per request, as the gateway calls it: one scratch string per
// connection, reused. The common case (a path already in normal form) is one read-only pass.
#include <benchmark/benchmark.h>

#include <string>

#include "http/path.h"

namespace {

using sluice::http::normalize_path;
using sluice::http::PathOptions;

void run(benchmark::State& state, const std::string& path) {
  PathOptions opt;
  std::string scratch;
  for (auto _ : state) {
    auto r = normalize_path(path, opt, scratch);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(scratch.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * path.size()));
}

void BM_PathAlreadyNormal(benchmark::State& state) {
  run(state, "/api/accounts/42/transactions/2026-11/statement.pdf");
}
BENCHMARK(BM_PathAlreadyNormal);

void BM_PathWithDotSegments(benchmark::State& state) {
  run(state, "/api/accounts/./42/../43/transactions//2026-11/statement.pdf");
}
BENCHMARK(BM_PathWithDotSegments);

void BM_PathWithEscapes(benchmark::State& state) {
  run(state, "/api/accounts/%34%32/transactions/caf%c3%a9/%7euser");
}
BENCHMARK(BM_PathWithEscapes);

}  // namespace
