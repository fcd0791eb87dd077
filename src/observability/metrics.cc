#include "observability/metrics.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>

namespace sluice::observability {
namespace {

thread_local unsigned t_slot = kSharedSlot;

constexpr auto kRelaxed = std::memory_order_relaxed;

// Single-writer update: the slot's owner is the only thread that stores to it, so a plain
// load + store (no locked read-modify-write) cannot lose an increment.
template <class T>
inline void owner_add(std::atomic<T>& a, T n) {
  a.store(a.load(kRelaxed) + n, kRelaxed);
}

}  // namespace

void set_thread_slot(unsigned slot) {
  t_slot = slot < kSharedSlot ? slot : kSharedSlot;
}
unsigned thread_slot() {
  return t_slot;
}

// ---------------------------------------------------------------------------------------------
// Counter, Gauge

namespace {
// The calling thread's own slot takes a plain add; every other thread shares the last slot.
template <class Slot, class T>
void add_to_thread_slot(Slot* slots, T n) {
  const unsigned slot = t_slot;
  if (slot < kSharedSlot) {
    owner_add(slots[slot].v, n);
  } else {
    slots[kSharedSlot].v.fetch_add(n, kRelaxed);
  }
}
}  // namespace

void Counter::inc(uint64_t n) {
  add_to_thread_slot(slots_, n);
}

uint64_t Counter::value() const {
  uint64_t total = 0;
  for (const auto& s : slots_) total += s.v.load(kRelaxed);
  return total;
}

void Gauge::add(int64_t n) {
  add_to_thread_slot(slots_, n);
}

void Gauge::set(int64_t v) {
  slots_[kSharedSlot].v.store(v, kRelaxed);
}

int64_t Gauge::value() const {
  // Per-slot values may be negative (a connection opened on one worker's count, closed on
  // another's would be); the sum is what means something. Unsigned wrap-around keeps the
  // sum exact.
  uint64_t total = 0;
  for (const auto& s : slots_) total += static_cast<uint64_t>(s.v.load(kRelaxed));
  return static_cast<int64_t>(total);
}

// ---------------------------------------------------------------------------------------------
// Histogram

namespace {
// Eight buckets per cache line; a slot's buckets start on a line of their own.
struct alignas(64) BucketLine {
  std::atomic<uint64_t> v[8];
};
constexpr size_t kPerLine = 8;

// Index of the first bound >= value (Prometheus buckets are "le"), i.e. a lower_bound written
// so that the compiler emits conditional moves instead of branches; NaN lands in +Inf.
inline size_t bucket_index(const double* bounds, size_t n, double value) {
  if (n == 0) return 0;
  const double* base = bounds;
  while (n > 1) {
    const size_t half = n / 2;
    base = !(value <= base[half]) ? base + half : base;
    n -= half;
  }
  return static_cast<size_t>(base - bounds) + static_cast<size_t>(!(value <= *base));
}

std::vector<double> normalize_bounds(std::vector<double> bounds) {
  if (!bounds.empty() && std::isinf(bounds.back()) && bounds.back() > 0) bounds.pop_back();
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && !(bounds[i - 1] < bounds[i]))) {
      throw std::invalid_argument("histogram bounds must be finite and strictly increasing");
    }
  }
  return bounds;
}
}  // namespace

struct alignas(64) Histogram::SlotData {
  std::atomic<double> sum{0.0};
  std::unique_ptr<BucketLine[]> lines;
  std::atomic<uint64_t>& bucket(size_t i) { return lines[i / kPerLine].v[i % kPerLine]; }
  const std::atomic<uint64_t>& bucket(size_t i) const {
    return lines[i / kPerLine].v[i % kPerLine];
  }
};

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(normalize_bounds(std::move(upper_bounds))) {
  const size_t buckets = bounds_.size() + 1;
  const size_t lines = (buckets + kPerLine - 1) / kPerLine;
  slots_ = std::make_unique<SlotData[]>(kMaxSlots);
  for (unsigned s = 0; s < kMaxSlots; ++s) {
    slots_[s].lines = std::make_unique<BucketLine[]>(lines);
    for (size_t i = 0; i < lines * kPerLine; ++i) slots_[s].bucket(i).store(0, kRelaxed);
  }
}

Histogram::~Histogram() = default;

void Histogram::observe(double value) {
  const size_t idx = bucket_index(bounds_.data(), bounds_.size(), value);
  const unsigned slot = t_slot;
  SlotData& s = slots_[slot];
  if (slot < kSharedSlot) {
    owner_add(s.bucket(idx), uint64_t{1});
    owner_add(s.sum, value);
  } else {
    s.bucket(idx).fetch_add(1, kRelaxed);
    s.sum.fetch_add(value, kRelaxed);
  }
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot snap;
  snap.bounds = bounds_;
  const size_t buckets = bounds_.size() + 1;
  snap.cumulative.assign(buckets, 0);
  for (unsigned s = 0; s < kMaxSlots; ++s) {
    for (size_t i = 0; i < buckets; ++i) snap.cumulative[i] += slots_[s].bucket(i).load(kRelaxed);
    snap.sum += slots_[s].sum.load(kRelaxed);
  }
  // Count is the bucket total, so _count always equals the +Inf bucket even while writers run.
  for (size_t i = 1; i < buckets; ++i) snap.cumulative[i] += snap.cumulative[i - 1];
  snap.count = snap.cumulative.back();
  return snap;
}

const std::vector<double>& default_latency_buckets() {
  static const std::vector<double> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                               0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  return kBuckets;
}

// ---------------------------------------------------------------------------------------------
// Process metrics (Linux /proc)

namespace {

// Reads a small /proc file into `buf`; returns the bytes read (0 on failure).
size_t read_proc_file(const char* path, char* buf, size_t cap) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  size_t got = 0;
  while (got < cap - 1) {
    ssize_t n = ::read(fd, buf + got, cap - 1 - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  buf[got] = '\0';
  return got;
}

struct ProcStat {
  double utime_ticks = 0, stime_ticks = 0, start_ticks = 0, vsize = 0, rss_pages = 0;
  bool ok = false;
};

ProcStat read_proc_self_stat() {
  ProcStat st;
  char buf[1024];
  if (read_proc_file("/proc/self/stat", buf, sizeof buf) == 0) return st;
  // The command name (field 2) is in parentheses and may contain spaces; fields after the
  // last ')' are space separated, starting with field 3 (state).
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return st;
  ++p;
  int field = 2;
  while (*p != '\0') {
    while (*p == ' ') ++p;
    if (*p == '\0') break;
    ++field;
    const char* end = p;
    while (*end != ' ' && *end != '\0' && *end != '\n') ++end;
    double v = 0;
    if (field == 14 || field == 15 || field == 22 || field == 23 || field == 24) {
      uint64_t u = 0;
      std::from_chars(p, end, u);
      v = static_cast<double>(u);
    }
    if (field == 14) st.utime_ticks = v;
    if (field == 15) st.stime_ticks = v;
    if (field == 22) st.start_ticks = v;
    if (field == 23) st.vsize = v;
    if (field == 24) {
      st.rss_pages = v;
      st.ok = true;
      break;
    }
    p = *end == '\n' ? end + 1 : end;
  }
  return st;
}

// /proc/stat can be large (one line per CPU, interrupt counts), so it is read whole; this runs
// once, at registration.
double boot_time_seconds() {
  int fd = ::open("/proc/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  size_t pos = text.find("\nbtime ");
  if (pos == std::string::npos) return 0;
  const char* p = text.data() + pos + 7;
  uint64_t v = 0;
  std::from_chars(p, text.data() + text.size(), v);
  return static_cast<double>(v);
}

double open_fds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  double n = 0;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n - 1;  // the directory stream's own descriptor
}

double max_fds() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 0;
  return static_cast<double>(rl.rlim_cur);
}

double clock_ticks() {
  static const double kTicks = [] {
    long t = ::sysconf(_SC_CLK_TCK);
    return t > 0 ? static_cast<double>(t) : 100.0;
  }();
  return kTicks;
}

// ---------------------------------------------------------------------------------------------
// Names and exposition helpers

bool valid_metric_name(std::string_view n) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool valid_label_name(std::string_view n) {
  if (n.empty() || n.substr(0, 2) == "__") return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool has_word(std::string_view name, std::string_view word) {
  // "_word_" anywhere or "_word" at the end, as promtool's linter matches.
  std::string mid = "_" + std::string(word) + "_";
  return name.find(mid) != std::string_view::npos || ends_with(name, "_" + std::string(word));
}

bool has_camel_case(std::string_view n) {
  for (size_t i = 1; i < n.size(); ++i) {
    if (n[i - 1] >= 'a' && n[i - 1] <= 'z' && n[i] >= 'A' && n[i] <= 'Z') return true;
  }
  return false;
}

// What `promtool check metrics` lints, checked when a family is declared so that a bad name
// fails at start-up instead of in a scrape.
void lint_name(std::string_view name, bool is_counter) {
  auto fail = [&](std::string_view why) {
    throw std::invalid_argument("metric " + std::string(name) + ": " + std::string(why));
  };
  if (!valid_metric_name(name)) fail("invalid metric name");
  if (name.find(':') != std::string_view::npos) fail("':' is reserved for recording rules");
  if (has_camel_case(name)) fail("use snake_case");
  if (!is_counter && ends_with(name, "_total")) fail("only counters end in _total");
  for (std::string_view type : {"counter", "gauge", "histogram", "summary"}) {
    if (has_word(name, type)) fail("the name must not include the metric type");
  }
  for (std::string_view abbr :
       {"s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d"}) {
    if (has_word(name, abbr)) fail("spell units out in base units (_seconds, _bytes)");
  }
  static const char* const kNonBase[] = {"minutes", "hours", "days", "weeks", "bits"};
  static const char* const kPrefixes[] = {"pico", "nano",  "micro", "milli", "centi", "deci",
                                          "deca", "hecto", "kilo",  "kibi",  "mega",  "mibi",
                                          "giga", "gibi",  "tera",  "tebi",  "peta",  "pebi"};
  static const char* const kBase[] = {"seconds", "bytes",  "meters", "metres", "volts",
                                      "amperes", "joules", "grams",  "celsius"};
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('_', start);
    if (end == std::string_view::npos) end = name.size();
    std::string_view word = name.substr(start, end - start);
    for (const char* u : kNonBase) {
      if (word == u) fail("use base units (_seconds, _bytes)");
    }
    for (const char* pre : kPrefixes) {
      std::string_view p(pre);
      if (word.size() > p.size() && word.substr(0, p.size()) == p) {
        std::string_view rest = word.substr(p.size());
        for (const char* u : kBase) {
          if (rest == u) fail("use base units (_seconds, _bytes)");
        }
        for (const char* u : kNonBase) {
          if (rest == u) fail("use base units (_seconds, _bytes)");
        }
      }
    }
    start = end + 1;
  }
}

void append_escaped_label_value(std::string& out, std::string_view v) {
  for (char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

void append_escaped_help(std::string& out, std::string_view v) {
  for (char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

// Formats like Go's strconv.FormatFloat(v, 'g', -1, 64), as the Go client does: shortest
// round-trip digits, exponent form only below 1e-4 or from 1e6 up. Matching it matters for
// `le`, whose values are strings to PromQL (le="0.0005", not le="5e-04").
void append_double(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buf[64];
  auto sci = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  const char* e = std::find(buf, sci.ptr, 'e');
  int exp = 0;
  std::from_chars(e + 1 + (e[1] == '+'), sci.ptr, exp);
  if (exp < -4 || exp >= 6) {
    out.append(buf, sci.ptr);
    return;
  }
  auto fixed = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
  out.append(buf, fixed.ptr);
}

template <class Int>
void append_int(std::string& out, Int v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

enum class Type { kCounter, kGauge, kHistogram };

const char* type_name(Type t) {
  switch (t) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

struct Series {
  std::vector<std::string> label_values;  // in the family's key order
  uint64_t epoch = 0;                     // last stamped (Registry::set_epoch); 0 = for good
  std::unique_ptr<Counter> counter;
  std::unique_ptr<Gauge> gauge;
  std::unique_ptr<Histogram> histogram;
  std::function<double()> fn;
};

struct Family {
  std::string name;
  std::string help;
  Type type = Type::kCounter;
  bool callback = false;
  std::vector<std::string> label_keys;
  std::vector<double> buckets;
  std::vector<std::unique_ptr<Series>> series;  // creation order
  std::map<std::vector<std::string>, Series*> index;
};

// `{k="v",...` without the closing brace, so that a histogram can add `le`. Nothing at all
// when there are no labels and no extra.
void append_labels(std::string& out, const Family& f, const Series& s, std::string_view le = {}) {
  if (f.label_keys.empty() && le.empty()) return;
  out += '{';
  for (size_t i = 0; i < f.label_keys.size(); ++i) {
    if (i > 0) out += ',';
    out += f.label_keys[i];
    out += "=\"";
    append_escaped_label_value(out, s.label_values[i]);
    out += '"';
  }
  if (!le.empty()) {
    if (!f.label_keys.empty()) out += ',';
    out += "le=\"";
    out += le;
    out += '"';
  }
  out += '}';
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Registry

struct Registry::Impl {
  mutable std::mutex mu;
  std::map<std::string, Family, std::less<>> families;  // sorted by name for exposition
  bool process_registered = false;
  uint64_t epoch = 0;  // stamped on series touched from now on (0: before the first set_epoch)

  Series& get(std::string_view raw_name, std::string_view help, Type type, bool callback,
              const Labels& labels, const std::vector<double>* buckets);
};

Series& Registry::Impl::get(std::string_view raw_name, std::string_view help, Type type,
                            bool callback, const Labels& labels,
                            const std::vector<double>* buckets) {
  std::string name(raw_name);
  if (type == Type::kCounter && !ends_with(name, "_total")) name += "_total";
  auto fail = [&](const std::string& why) {
    throw std::invalid_argument("metric " + name + ": " + why);
  };
  lint_name(name, type == Type::kCounter);
  if (help.empty()) fail("help text is required");
  if (type != Type::kHistogram) {
    for (std::string_view suffix : {"_bucket", "_count", "_sum"}) {
      if (ends_with(name, suffix)) fail("only histograms may end in " + std::string(suffix));
    }
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    const std::string& key = labels[i].first;
    if (!valid_label_name(key)) fail("invalid label name '" + key + "'");
    if (key == "le" || key == "quantile") fail("label name '" + key + "' is reserved");
    if (has_camel_case(key)) fail("label '" + key + "': use snake_case");
    for (size_t j = 0; j < i; ++j) {
      if (labels[j].first == key) fail("label '" + key + "' given twice");
    }
  }

  std::lock_guard lock(mu);
  auto it = families.find(name);
  if (it == families.end()) {
    // A histogram's _bucket/_sum/_count samples must not collide with another family.
    auto taken = [&](const std::string& n) { return families.count(n) != 0; };
    if (type == Type::kHistogram &&
        (taken(name + "_bucket") || taken(name + "_sum") || taken(name + "_count"))) {
      fail("its _bucket/_sum/_count names are taken by another metric");
    }
    for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
      if (!ends_with(name, suffix)) continue;
      auto stem = families.find(std::string_view(name).substr(0, name.size() - suffix.size()));
      if (stem != families.end() && stem->second.type == Type::kHistogram) {
        fail("collides with the samples of histogram " + stem->first);
      }
    }
    Family f;
    f.name = name;
    f.help = std::string(help);
    f.type = type;
    f.callback = callback;
    for (const auto& [k, v] : labels) f.label_keys.push_back(k);
    if (buckets != nullptr) f.buckets = normalize_bounds(*buckets);
    it = families.emplace(name, std::move(f)).first;
  }
  Family& f = it->second;
  if (f.type != type) fail(std::string("already declared as a ") + type_name(f.type));
  if (f.callback != callback) fail("mixes callback and stored series");
  if (f.help != help) fail("declared with two help texts");
  if (f.label_keys.size() != labels.size()) fail("label keys differ within the family");
  std::vector<std::string> values(f.label_keys.size());
  for (size_t i = 0; i < f.label_keys.size(); ++i) {
    auto l = std::find_if(labels.begin(), labels.end(),
                          [&](const auto& kv) { return kv.first == f.label_keys[i]; });
    if (l == labels.end()) fail("label keys differ within the family");
    values[i] = l->second;
  }
  if (buckets != nullptr && normalize_bounds(*buckets) != f.buckets) {
    fail("bucket bounds differ within the family");
  }

  auto s = f.index.find(values);
  if (s != f.index.end()) {
    if (s->second->epoch != 0) s->second->epoch = epoch;
    return *s->second;
  }
  auto series = std::make_unique<Series>();
  series->label_values = values;
  series->epoch = epoch;
  switch (type) {
    case Type::kCounter:
      if (!callback) series->counter = std::make_unique<Counter>();
      break;
    case Type::kGauge:
      if (!callback) series->gauge = std::make_unique<Gauge>();
      break;
    case Type::kHistogram:
      series->histogram = std::make_unique<Histogram>(f.buckets);
      break;
  }
  Series* raw = series.get();
  f.series.push_back(std::move(series));
  f.index.emplace(std::move(values), raw);
  return *raw;
}

Registry::Registry() : impl_(std::make_unique<Impl>()) {}
Registry::~Registry() = default;

void Registry::set_epoch(uint64_t epoch) {
  std::lock_guard lock(impl_->mu);
  impl_->epoch = epoch;
}

size_t Registry::sweep(uint64_t keep_from) {
  std::lock_guard lock(impl_->mu);
  size_t removed = 0;
  for (auto it = impl_->families.begin(); it != impl_->families.end();) {
    Family& f = it->second;
    auto stale = [&](const std::unique_ptr<Series>& s) {
      return s->epoch != 0 && s->epoch < keep_from;
    };
    for (const auto& s : f.series) {
      if (stale(s)) f.index.erase(s->label_values);
    }
    const size_t before = f.series.size();
    f.series.erase(std::remove_if(f.series.begin(), f.series.end(), stale), f.series.end());
    removed += before - f.series.size();
    // A family left without series goes too (it is declared again with its next series).
    it = f.series.empty() && before > 0 ? impl_->families.erase(it) : std::next(it);
  }
  return removed;
}

Counter& Registry::counter(std::string_view name, std::string_view help, const Labels& labels) {
  return *impl_->get(name, help, Type::kCounter, false, labels, nullptr).counter;
}

Gauge& Registry::gauge(std::string_view name, std::string_view help, const Labels& labels) {
  return *impl_->get(name, help, Type::kGauge, false, labels, nullptr).gauge;
}

Histogram& Registry::histogram(std::string_view name, std::string_view help, const Labels& labels,
                               const std::vector<double>& buckets) {
  return *impl_->get(name, help, Type::kHistogram, false, labels, &buckets).histogram;
}

void Registry::counter_fn(std::string_view name, std::string_view help, std::function<double()> fn,
                          const Labels& labels) {
  Series& s = impl_->get(name, help, Type::kCounter, true, labels, nullptr);
  std::lock_guard lock(impl_->mu);
  s.fn = std::move(fn);
}

void Registry::gauge_fn(std::string_view name, std::string_view help, std::function<double()> fn,
                        const Labels& labels) {
  Series& s = impl_->get(name, help, Type::kGauge, true, labels, nullptr);
  std::lock_guard lock(impl_->mu);
  s.fn = std::move(fn);
}

void Registry::register_process_metrics() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->process_registered) return;
    impl_->process_registered = true;
  }
  const ProcStat at_start = read_proc_self_stat();
  const double start_time = boot_time_seconds() + at_start.start_ticks / clock_ticks();
  gauge_fn("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
           [start_time] { return start_time; });
  counter_fn("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", [] {
    ProcStat st = read_proc_self_stat();
    return (st.utime_ticks + st.stime_ticks) / clock_ticks();
  });
  gauge_fn("process_resident_memory_bytes", "Resident memory size in bytes.", [] {
    static const double kPage = static_cast<double>(::sysconf(_SC_PAGESIZE));
    return read_proc_self_stat().rss_pages * kPage;
  });
  gauge_fn("process_virtual_memory_bytes", "Virtual memory size in bytes.",
           [] { return read_proc_self_stat().vsize; });
  gauge_fn("process_open_fds", "Number of open file descriptors.", [] { return open_fds(); });
  gauge_fn("process_max_fds", "Maximum number of open file descriptors.", [] { return max_fds(); });
}

std::string Registry::expose() const {
  std::string out;
  std::lock_guard lock(impl_->mu);
  for (const auto& [name, f] : impl_->families) {
    out += "# HELP ";
    out += name;
    out += ' ';
    append_escaped_help(out, f.help);
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type_name(f.type);
    out += '\n';
    for (const auto& sp : f.series) {
      const Series& s = *sp;
      if (f.type != Type::kHistogram) {
        out += name;
        append_labels(out, f, s);
        out += ' ';
        if (s.fn) {
          append_double(out, s.fn());
        } else if (s.counter) {
          append_int(out, s.counter->value());
        } else if (s.gauge) {
          append_int(out, s.gauge->value());
        } else {
          out += '0';  // callback series whose function was never set
        }
        out += '\n';
        continue;
      }
      const Histogram::Snapshot snap = s.histogram->snapshot();
      std::string le;
      for (size_t i = 0; i <= snap.bounds.size(); ++i) {
        le.clear();
        if (i < snap.bounds.size()) {
          append_double(le, snap.bounds[i]);
        } else {
          le = "+Inf";
        }
        out += name;
        out += "_bucket";
        append_labels(out, f, s, le);
        out += ' ';
        append_int(out, snap.cumulative[i]);
        out += '\n';
      }
      out += name;
      out += "_sum";
      append_labels(out, f, s);
      out += ' ';
      append_double(out, snap.sum);
      out += '\n';
      out += name;
      out += "_count";
      append_labels(out, f, s);
      out += ' ';
      append_int(out, snap.count);
      out += '\n';
    }
  }
  return out;
}

}  // namespace sluice::observability
