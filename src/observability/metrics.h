// Metrics with per-thread slots: the owning thread increments its own slot with plain relaxed
// loads/stores (no locked instructions on the hot path); a scrape sums all slots.
// Series are created (by name + labels) at config-load time, never per request.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::observability {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Slot of the calling thread: workers call set_thread_slot(worker_index) once at start; every
// other thread uses the shared last slot (increments there use atomic fetch_add).
void set_thread_slot(unsigned slot);
unsigned thread_slot();
constexpr unsigned kMaxSlots = 65;  // 64 workers + 1 shared slot
constexpr unsigned kSharedSlot = kMaxSlots - 1;

class Counter {
 public:
  void inc(uint64_t n = 1);
  uint64_t value() const;

 private:
  struct alignas(64) Slot {
    std::atomic<uint64_t> v{0};
  };
  Slot slots_[kMaxSlots];
};

class Gauge {
 public:
  void add(int64_t n);
  void sub(int64_t n) { add(-n); }
  void set(int64_t v);  // sets the shared value; use either set() or add(), not both
  int64_t value() const;

 private:
  struct alignas(64) Slot {
    std::atomic<int64_t> v{0};
  };
  Slot slots_[kMaxSlots];
};

class Histogram {
 public:
  // Finite, strictly increasing bounds (a trailing +Inf is dropped: it is always implied).
  // Throws std::invalid_argument otherwise.
  explicit Histogram(std::vector<double> upper_bounds);
  ~Histogram();
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;
  void observe(double value);
  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound, then +Inf last
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  std::vector<double> bounds_;
  struct SlotData;
  std::unique_ptr<SlotData[]> slots_;  // kMaxSlots slots, each with bounds_.size()+1 buckets
};

// Default latency buckets in seconds (0.5 ms .. 10 s).
const std::vector<double>& default_latency_buckets();

// Names follow Prometheus rules ([a-zA-Z_][a-zA-Z0-9_]* for metrics and labels; labels do not
// start with "__"; "le" and "quantile" are reserved) and what `promtool check metrics` lints:
// snake_case, base units spelled out (_seconds, _bytes; not _ms, _milliseconds, _kb), no type
// in the name, "_total" on counters only, "_bucket"/"_sum"/"_count" on histograms only, a help
// text. A family has one type, one help text and one set of label keys (a later call may list
// them in another order). Anything else throws std::invalid_argument: these are set-up time
// programming errors.
class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;
  // Get-or-create; the same name+labels returns the same object (stable address for life).
  // Thread-safe; call at set-up time, not per request. Counter names end in "_total"; one is
  // appended when missing, so counter("x") and counter("x_total") are the same family.
  Counter& counter(std::string_view name, std::string_view help, const Labels& labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, const Labels& labels = {});
  Histogram& histogram(std::string_view name, std::string_view help, const Labels& labels = {},
                       const std::vector<double>& buckets = default_latency_buckets());
  // Series whose value is computed at scrape time (sizes owned by another component, process
  // stats). `fn` runs under the registry lock: it must be quick and must not call the registry.
  // Registering the same name+labels again replaces the function.
  void counter_fn(std::string_view name, std::string_view help, std::function<double()> fn,
                  const Labels& labels = {});
  void gauge_fn(std::string_view name, std::string_view help, std::function<double()> fn,
                const Labels& labels = {});
  // Adds the standard process_* families (start time, CPU seconds, resident and virtual
  // memory, open and max fds), read from /proc/self at scrape time. Idempotent.
  void register_process_metrics();
  // Series that belong to one config version, so that a reload can drop what the new config no
  // longer has (a removed endpoint, route or rule) instead of keeping it, and its memory, for the
  // life of the process. Series declared before the first set_epoch() (process-wide ones) are
  // kept for good; after it, every get-or-create (and fn registration) stamps the series with
  // the current epoch. sweep(keep_from) deletes the series last stamped before `keep_from`:
  // the caller must know that nothing holds them any more (no config version older than
  // `keep_from` is still in use). Returns how many were deleted.
  void set_epoch(uint64_t epoch);
  size_t sweep(uint64_t keep_from);
  // Prometheus text exposition format 0.0.4; passes `promtool check metrics`. Families are
  // sorted by name, series within a family in creation order.
  std::string expose() const;
  static constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::observability
