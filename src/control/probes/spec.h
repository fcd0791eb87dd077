// A `probe` resource: a synthetic request sent on an interval to each city's entry point (the
// address a user in that city reaches), and what a good answer is. The resource is config
// (versioned, never sent to gateways); its results are the probes domain's state
// (probes_service.h). docs/probes.md is the contract.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace sluice::control::probes {

// Bounds on what a spec may hold: every probe costs the control plane a thread's time and memory.
inline constexpr size_t kMaxCities = 8;
inline constexpr size_t kMaxHeaders = 32;
inline constexpr size_t kMaxHeaderNameBytes = 128;
inline constexpr size_t kMaxHeaderValueBytes = 4096;
inline constexpr size_t kMaxPathBytes = 2048;
inline constexpr size_t kMaxBodyBytes = 64 << 10;
inline constexpr size_t kMaxContainsBytes = 4096;
inline constexpr size_t kMaxJsonPathBytes = 256;
inline constexpr size_t kMaxJsonPathDepth = 16;
inline constexpr size_t kMaxStatuses = 16;
inline constexpr size_t kMaxUrlBytes = 512;
inline constexpr int64_t kMinIntervalMs = 1'000;
inline constexpr int64_t kMaxIntervalMs = 3'600'000;
inline constexpr int64_t kMinTimeoutMs = 10;
inline constexpr int64_t kMaxTimeoutMs = 60'000;
inline constexpr int kMaxFailAfter = 10;

struct ProbeSpec {
  // The request.
  std::string method = "GET";
  std::string path = "/";
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<std::string> body;
  std::string host;  // the Host header; empty: the city URL's host:port
  // City -> its entry point's base URL ("http://lb.city-a.bank:8080").
  std::map<std::string, std::string> cities;
  // A good answer.
  std::vector<int> statuses = {200};
  std::optional<std::string> body_contains;
  std::optional<std::string> json_path;  // dotted: "data.items.0.state"
  nlohmann::json json_equals;            // with json_path
  std::optional<int64_t> latency_under_ms;
  // When.
  int64_t interval_ms = 10'000;
  int64_t timeout_ms = 2'000;
  int fail_after = 2;  // consecutive failures before the probe is failing in a city
};

// What is wrong with a probe's spec (an object), each message naming its key with `prefix`
// ("probe/home: spec.interval: ..."); every problem at once. Empty when acceptable.
std::vector<std::string> check_probe(const nlohmann::json& spec, const std::string& prefix);

// Throws std::invalid_argument with check_probe's first problem.
ProbeSpec parse_probe(const nlohmann::json& spec);

// A dotted path ("a.b.0.c": object keys, or array indices for arrays) into `doc`; nullptr when a
// step is missing.
const nlohmann::json* json_at(const nlohmann::json& doc, const std::string& path);

}  // namespace sluice::control::probes
