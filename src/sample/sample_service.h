// `sluice sample-service`: a configurable HTTP microservice for demos, tests and benchmarks.
// It answers any path with a JSON description of the request and offers endpoints under
// /_sample/ for fault injection, streaming, status codes, delays and connection resets.
//
// Endpoints (every answer carries x-sample-instance; HEAD gets the head only):
//   any path            200 {"service","city","zone","instance","method","path"[,"query"],
//                       "body_bytes"[,"headers"]}; "headers" when x-sample-echo: headers.
//                       The configured latency and error rate (500 {"error":"injected"}) apply
//                       to these answers only, not to the endpoints below.
//   GET /healthz        200 {"status":"ok"}, 503 {"status":"unhealthy"} when made unhealthy
//   /_sample/faults     GET: {"error_rate","latency_ms","healthy"}; POST/PUT any subset of
//                       them as JSON to change all workers at once; 400 on bad JSON or values
//   GET /_sample/stats  {"requests","connections","active_connections"} over all workers
//   /_sample/bytes?n=N[&chunked=1]  N bytes, byte k = kBytePattern[k % 64] (sample/body.h)
//   /_sample/echo       the request body streamed back (Content-Length if the request had one)
//   /_sample/status/NNN that status (200..599) with the JSON description as body
//   /_sample/delay/MS   the JSON description after MS milliseconds
//   /_sample/close[?rst=1]  closes without answering (rst=1: with a TCP reset)
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "sample/caller.h"

namespace sluice::sample {

struct SampleOptions {
  std::string listen;  // host:port; port 0 picks a free port (logged at start)
  std::string name;
  std::string city;
  std::string zone;
  std::chrono::nanoseconds latency{0};
  double error_rate = 0;
  unsigned workers = 1;  // 0 = one per core
  std::string instance;  // default name@listen
  // Registration with a control plane's registry (sample/registration.h).
  std::string control_plane;
  std::string token_file;
  std::string ca_file;
  std::string advertise;  // address to register; default the bound one
  std::chrono::milliseconds ttl{10000};
  unsigned weight = 1;
  std::string version;  // of the binary: registered with the host facts
  // Calls through a gateway (sample/caller.h).
  std::string gateway;
  std::vector<CallTarget> calls;
  std::chrono::milliseconds call_interval{1000};
  uint64_t call_count = 0;  // 0 = until stopped
};

// Blocks until SIGINT/SIGTERM, then stops accepting, closes every connection and returns 0.
// Returns 2 for bad options, 1 when the address cannot be bound.
int run_sample_service(const SampleOptions& opts);

}  // namespace sluice::sample
