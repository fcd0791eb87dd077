// The stats store: what gateways report (POST /v1/stats snapshots) kept two ways, recent
// snapshots in memory and 1-minute rollups (accumulated in memory, written to the store once the
// minute is over), and the query interface later domains read (SLOs, capacity, cost): series by
// route, service, endpoint, city or channel over a time range, in steps of whole minutes, with
// sums, rates, error ratios and latency percentiles.
//
// Semantics, exactly:
// - A snapshot's counters are deltas since the gateway's previous snapshot; a rollup is the sum
//   of a minute's snapshots per gateway (merge_stats). A point of a series is the sum over the
//   step's minutes and the gateways asked for; gauges (`concurrency`) keep their maximum.
// - A minute's data comes from this control plane's memory while it holds the minute (the ten
//   minutes after it ends), else from the store: a query sees a minute before it is written.
// - Percentiles are read from the latency histogram as Prometheus's histogram_quantile does:
//   linear inside the bucket that holds the rank; in the +Inf bucket, the highest finite bound.
// - Ranges are [from_ms, to_ms), minute-aligned (from rounded down, to rounded up); at most
//   kMaxPoints steps per series and kMaxCells points in all, so that a caller cannot make the
//   control plane build an unbounded answer.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/service.h"
#include "control/store.h"

namespace sluice::control {

// Sums snapshot `x` into rollup `acc`: numbers add up (counters and histogram buckets are deltas
// since the previous snapshot), gauges keep their maximum (keys `concurrency`, `in_flight`,
// `max`, `*_max` and quantiles `p50`, `p99`, ...), lists add element-wise, other values are
// replaced.
void merge_stats(nlohmann::json& acc, const nlohmann::json& x, std::string_view key = {});

namespace stats {

inline constexpr int64_t kMinuteMs = 60'000;
inline constexpr int64_t kMaxPoints = 10'080;  // a week of minutes
inline constexpr int64_t kMaxCells = 200'000;  // points in one answer, all series together

// The sections of a snapshot a series can be taken from.
enum class Dimension { kRoute, kService, kEndpoint, kCity, kChannel };
std::string_view section_of(
    Dimension d);  // "routes", "services", "endpoints", "cities", "channels"
// "route", "service", "endpoint", "city", "channel".
std::optional<Dimension> parse_dimension(std::string_view name);

// A latency histogram as gateways report it: per-bucket counts (not cumulative), one per bound
// (seconds) and a last one for +Inf.
struct Latency {
  std::vector<double> bounds;
  std::vector<uint64_t> buckets;
  uint64_t count = 0;
  uint64_t sum_us = 0;

  // Adds another histogram; buckets only when the bounds are the same (else `mixed`).
  void add(const Latency& other);
  // The q-quantile (0..1) in seconds; nullopt without observations in the buckets.
  std::optional<double> percentile(double q) const;
  bool mixed = false;
};

struct Point {
  int64_t at_ms = 0;  // start of the step
  uint64_t requests = 0;
  uint64_t errors = 0;
  uint64_t retries = 0;
  double concurrency_max = 0;
  Latency latency;
  void add(const Point& other);
};

struct Series {
  std::string key;            // the route, service, endpoint ("service/address"), city or channel
  std::vector<Point> points;  // one per step of the range, oldest first (zero where no data)
};

struct SeriesQuery {
  Dimension by = Dimension::kService;
  std::string key;      // one key; empty = every key seen in the range (one series each)
  std::string gateway;  // only this gateway; empty = all
  std::string city;     // only gateways of this city; empty = all
  int64_t from_ms = 0;  // [from_ms, to_ms)
  int64_t to_ms = 0;
  int64_t step_ms = kMinuteMs;  // a positive multiple of a minute
};

// Nullopt when `q` is acceptable, else what is wrong ("step_ms: ...").
std::optional<std::string> check(const SeriesQuery& q);

// Rollups of one series over its whole range.
struct Summary {
  uint64_t requests = 0;
  uint64_t errors = 0;
  double rate_per_second = 0;           // requests / range length
  double error_ratio = 0;               // errors / requests (0 without requests)
  std::optional<double> p50, p90, p99;  // seconds
  double concurrency_max = 0;
};
Summary summarize(const Series& s, int64_t from_ms, int64_t to_ms);

// What other domains read.
class StatsReader {
 public:
  virtual ~StatsReader() = default;
  // Throws std::invalid_argument with check()'s message for a bad query.
  virtual std::vector<Series> series(const SeriesQuery& q) = 0;
  // Snapshots in memory with at_ms in [from, to), oldest first; {} = every gateway.
  virtual std::vector<nlohmann::json> recent(int64_t from_ms, int64_t to_ms,
                                             const std::string& gateway) = 0;
  // Minute rollups in [from, to), by minute then gateway.
  virtual std::vector<Rollup> rollups(int64_t from_ms, int64_t to_ms,
                                      const std::string& gateway) = 0;
};

class StatsStore final : public StatsReader, public ObservedTraffic {
 public:
  StatsStore(Store& store, const ApiOptions& options);

  // Files a snapshot (already checked) taken at `at` and received at `now`.
  void add(const std::string& gateway, int64_t at, int64_t now, nlohmann::json data,
           const nlohmann::json& sections);
  // Writes the rollups of minutes that are over (`all`: every dirty one). Throws on a store
  // failure; what was not written is written by a later call.
  void flush(int64_t now, bool all);
  void prune(int64_t now);

  std::vector<Series> series(const SeriesQuery& q) override;
  std::vector<nlohmann::json> recent(int64_t from_ms, int64_t to_ms,
                                     const std::string& gateway) override;
  std::vector<Rollup> rollups(int64_t from_ms, int64_t to_ms, const std::string& gateway) override;

  // ObservedTraffic (control/stats/observed.h).
  std::vector<ObservedEdge> edges(int64_t from_ms, int64_t to_ms) override;
  std::vector<ObservedChannel> channels(int64_t from_ms, int64_t to_ms) override;

 private:
  // The rollups of [from, to) (minute-aligned) of one gateway or all: the store's rows, replaced
  // by the accumulators still in memory (newer: they hold what arrived since the row was
  // written).
  std::map<std::pair<int64_t, std::string>, nlohmann::json> minutes_in(int64_t from, int64_t to,
                                                                       const std::string& gateway);

  struct Snapshot {
    int64_t at_ms = 0;
    nlohmann::json data;
  };
  struct Accumulator {
    nlohmann::json data = nlohmann::json::object();
    bool dirty = false;
  };

  Store& store_;
  const ApiOptions& options_;
  std::mutex mu_;
  std::map<std::string, std::deque<Snapshot>> recent_;              // by gateway
  std::map<std::pair<int64_t, std::string>, Accumulator> minutes_;  // (minute, gateway)
};

}  // namespace stats
}  // namespace sluice::control
