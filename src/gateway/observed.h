// Observed traffic: who calls each route (the `x-sluice-caller` header an instance sets when it
// calls another service through the gateway) and through which channel (the `channel_header`,
// default `x-channel`), counted per route and service, reported with the stats snapshots and
// exposed on the admin API (docs/operations.md, "Observed traffic").
//
// Semantics, exactly:
// - A value is well formed when it is 1..kMaxValueBytes bytes of letters, digits, '_', '.' and
//   '-' (a service name). Anything else is counted under `invalid`; an absent or empty header is
//   not counted at all.
// - Each table keeps at most kMaxValues distinct values, in the order they were first seen; a
//   value first seen when the table is full is counted under `other`. So a table exposes at most
//   kMaxValues + 2 label values whatever clients send (bounded metric cardinality and memory).
// - Interning is lock-free: a value is published once its bytes are written. Two workers that see
//   a new value at the same moment may both claim an entry for it; readers merge entries by value.
// - Counting takes no lock and does not allocate: each worker adds to its own row (a plain load
//   and store, as observability::Counter does); other threads share the last row atomically.
// - Counts live with the config snapshot: a reload starts them again from zero (the stats
//   snapshots send deltas, and Prometheus handles counter resets).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>

namespace sluice::gateway {

// Set by an instance that calls another service through the gateway: the calling service's name.
inline constexpr std::string_view kCallerHeader = "x-sluice-caller";

class ObservedTable {
 public:
  static constexpr uint32_t kMaxValues = 32;
  static constexpr size_t kMaxValueBytes = 64;
  static constexpr uint32_t kOther = kMaxValues;        // first seen when the table was full
  static constexpr uint32_t kInvalid = kMaxValues + 1;  // malformed
  static constexpr uint32_t kColumns = kMaxValues + 2;
  static constexpr uint32_t kNone = UINT32_MAX;  // header absent: not counted
  static constexpr std::string_view kOtherName = "other";
  static constexpr std::string_view kInvalidName = "invalid";

  // `rows`: one per worker plus one shared by every other thread (at least 1).
  explicit ObservedTable(unsigned rows);
  ObservedTable(const ObservedTable&) = delete;
  ObservedTable& operator=(const ObservedTable&) = delete;

  // The column of a header value: kNone for an empty one, kInvalid, kOther, or its entry.
  uint32_t intern(std::string_view value);
  // Counts one request (an error: a 5xx answer) in `column`; kNone is ignored.
  void count(uint32_t column, bool error);

  // Reading (any thread). The name of a column: its value, "other", "invalid", or "" for an
  // entry not (yet) published.
  std::string_view name(uint32_t column) const;
  uint64_t requests(uint32_t column) const;
  uint64_t errors(uint32_t column) const;

 private:
  struct Entry {
    std::atomic<bool> ready{false};
    uint8_t size = 0;
    char text[kMaxValueBytes];
  };
  struct alignas(64) Row {
    std::atomic<uint64_t> requests[kColumns];
    std::atomic<uint64_t> errors[kColumns];
  };

  Entry entries_[kMaxValues];
  std::atomic<uint32_t> claimed_{0};
  unsigned rows_;
  std::unique_ptr<Row[]> counts_;
};

// Well formed as a caller or channel value (see above).
bool observed_value_ok(std::string_view value);

// The two tables of one route slot (a route and one of the services it sends to).
struct RouteObserved {
  explicit RouteObserved(unsigned rows) : callers(rows), channels(rows) {}
  ObservedTable callers;
  ObservedTable channels;
};

}  // namespace sluice::gateway
