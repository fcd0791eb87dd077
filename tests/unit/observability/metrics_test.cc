#include "observability/metrics.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace sluice::observability {
namespace {

// Runs `body(i)` on n threads; thread i takes worker slot i when `worker_slots`, else it stays
// on the shared slot.
template <class F>
void run_threads(int n, bool worker_slots, F body) {
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([=] {
      if (worker_slots) set_thread_slot(static_cast<unsigned>(i));
      body(i);
    });
  }
  for (auto& t : threads) t.join();
}

TEST(SlotTest, DefaultsToSharedAndClampsLargeSlots) {
  std::thread([] {
    EXPECT_EQ(thread_slot(), kSharedSlot);
    set_thread_slot(3);
    EXPECT_EQ(thread_slot(), 3u);
    set_thread_slot(1000);
    EXPECT_EQ(thread_slot(), kSharedSlot);
  }).join();
}

TEST(CounterTest, SumsWorkerAndSharedSlots) {
  Counter c;
  constexpr int kPerThread = 200000;
  run_threads(4, true, [&](int) {
    for (int i = 0; i < kPerThread; ++i) c.inc();
  });
  run_threads(4, false, [&](int) {
    for (int i = 0; i < kPerThread; ++i) c.inc(2);
  });
  EXPECT_EQ(c.value(), uint64_t{4 * kPerThread + 8 * kPerThread});
}

TEST(GaugeTest, AddAndSubAcrossThreads) {
  Gauge g;
  // Up on workers, down on the shared slot: per-slot values go negative, the sum is exact.
  run_threads(3, true, [&](int) {
    for (int i = 0; i < 10000; ++i) g.add(1);
  });
  run_threads(3, false, [&](int) {
    for (int i = 0; i < 9000; ++i) g.sub(1);
  });
  EXPECT_EQ(g.value(), 3000);
  Gauge s;
  s.set(-42);
  EXPECT_EQ(s.value(), -42);
  s.set(7);
  EXPECT_EQ(s.value(), 7);
}

TEST(HistogramTest, BucketsAreInclusiveUpperBounds) {
  Histogram h({1, 2, 5});
  for (double v : {0.5, 1.0, 1.5, 2.0, 4.0, 5.0, 5.5, -1.0}) h.observe(v);
  auto s = h.snapshot();
  ASSERT_EQ(s.cumulative.size(), 4u);
  EXPECT_EQ(s.cumulative[0], 3u);  // -1, 0.5, 1
  EXPECT_EQ(s.cumulative[1], 5u);  // 1.5, 2
  EXPECT_EQ(s.cumulative[2], 7u);  // 4, 5
  EXPECT_EQ(s.cumulative[3], 8u);  // 5.5
  EXPECT_EQ(s.count, 8u);
  EXPECT_DOUBLE_EQ(s.sum, 18.5);
}

TEST(HistogramTest, SearchMatchesLinearScan) {
  // Bound counts around powers of two exercise every shape of the branch-free search.
  std::mt19937_64 gen(1);
  for (size_t n : {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31}) {
    std::vector<double> bounds;
    for (size_t i = 0; i < n; ++i) bounds.push_back(static_cast<double>(i) * 1.5 + 1);
    std::vector<double> values = {-1e300, std::numeric_limits<double>::infinity(),
                                  -std::numeric_limits<double>::infinity()};
    for (double b : bounds) {
      values.push_back(b);
      values.push_back(std::nextafter(b, 1e300));
      values.push_back(std::nextafter(b, -1e300));
    }
    std::uniform_real_distribution<double> dist(-5, 60);
    for (int i = 0; i < 200; ++i) values.push_back(dist(gen));
    for (double v : values) {
      Histogram h(bounds);
      h.observe(v);
      auto s = h.snapshot();
      size_t expect = 0;
      while (expect < n && v > bounds[expect]) ++expect;
      size_t got = 0;
      while (s.cumulative[got] == 0) ++got;
      ASSERT_EQ(got, expect) << "n=" << n << " v=" << v;
    }
  }
}

TEST(HistogramTest, NanGoesToInfBucket) {
  Histogram h({1, 2});
  h.observe(std::nan(""));
  auto s = h.snapshot();
  EXPECT_EQ(s.cumulative[1], 0u);
  EXPECT_EQ(s.cumulative[2], 1u);
}

TEST(HistogramTest, RejectsBadBoundsAndDropsTrailingInf) {
  EXPECT_THROW(Histogram({2, 1}), std::invalid_argument);
  EXPECT_THROW(Histogram({1, 1}), std::invalid_argument);
  EXPECT_THROW(Histogram({1, std::nan("")}), std::invalid_argument);
  Histogram h({1, std::numeric_limits<double>::infinity()});
  EXPECT_EQ(h.snapshot().bounds, std::vector<double>{1});
}

TEST(HistogramTest, ObserveFromManyThreads) {
  Histogram h(default_latency_buckets());
  constexpr int kPerThread = 50000;
  auto body = [&](int) {
    for (int i = 0; i < kPerThread; ++i) h.observe(0.25 * (i % 4));  // 0, .25, .5, .75
  };
  run_threads(4, true, body);
  run_threads(2, false, body);
  auto s = h.snapshot();
  EXPECT_EQ(s.count, uint64_t{6 * kPerThread});
  EXPECT_EQ(s.cumulative.back(), s.count);
  EXPECT_DOUBLE_EQ(s.sum, 6 * kPerThread * 0.375);
  // le=0.25 holds 0 and 0.25: half of them.
  auto le = std::find(s.bounds.begin(), s.bounds.end(), 0.25) - s.bounds.begin();
  EXPECT_EQ(s.cumulative[le], s.count / 2);
}

TEST(RegistryTest, GetOrCreateReturnsStableObjects) {
  Registry r;
  Counter& a = r.counter("sluice_requests_total", "Requests.", {{"route", "a"}, {"code", "200"}});
  Counter& b = r.counter("sluice_requests_total", "Requests.", {{"code", "200"}, {"route", "a"}});
  Counter& c = r.counter("sluice_requests", "Requests.", {{"route", "a"}, {"code", "200"}});
  Counter& d = r.counter("sluice_requests_total", "Requests.", {{"route", "b"}, {"code", "200"}});
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(&a, &c);  // "_total" is implied for counters
  EXPECT_NE(&a, &d);
  for (int i = 0; i < 1000; ++i) {
    r.counter("sluice_requests_total", "Requests.", {{"route", std::to_string(i)}, {"code", "1"}});
  }
  EXPECT_EQ(&a,
            &r.counter("sluice_requests_total", "Requests.", {{"route", "a"}, {"code", "200"}}));
  Histogram& h1 = r.histogram("sluice_duration_seconds", "Latency.", {}, {0.1, 1});
  Histogram& h2 = r.histogram("sluice_duration_seconds", "Latency.", {}, {0.1, 1});
  EXPECT_EQ(&h1, &h2);
}

// A reload drops the series the new config no longer declares; those declared before the first
// epoch (process-wide) stay, and a series declared again keeps its value.
TEST(RegistryTest, SweepDropsSeriesOfOldEpochsOnly) {
  Registry reg;
  Counter& global = reg.counter("reloads_total", "Reloads.");
  global.inc(3);
  reg.set_epoch(1);
  Counter& kept = reg.counter("requests_total", "Requests.", {{"endpoint", "a"}});
  reg.counter("requests_total", "Requests.", {{"endpoint", "b"}}).inc();
  reg.gauge_fn("up", "Up.", [] { return 1.0; }, {{"endpoint", "b"}});
  kept.inc(5);
  // Version 2 keeps endpoint a only.
  reg.set_epoch(2);
  EXPECT_EQ(&reg.counter("requests_total", "Requests.", {{"endpoint", "a"}}), &kept);
  EXPECT_EQ(reg.sweep(1), 0u);  // nothing is older than 1
  std::string before = reg.expose();
  EXPECT_NE(before.find("endpoint=\"b\""), std::string::npos);
  EXPECT_EQ(reg.sweep(2), 2u);  // requests_total{b} and up{b}
  std::string after = reg.expose();
  EXPECT_EQ(after.find("endpoint=\"b\""), std::string::npos) << after;
  EXPECT_EQ(after.find("# TYPE up "), std::string::npos) << after;  // the family went too
  EXPECT_NE(after.find("requests_total{endpoint=\"a\"} 5"), std::string::npos) << after;
  EXPECT_NE(after.find("reloads_total 3"), std::string::npos) << after;
  EXPECT_EQ(reg.sweep(100), 1u);  // a's last epoch is 2; reloads_total is for good
  EXPECT_NE(reg.expose().find("reloads_total 3"), std::string::npos);
  // A family that went can be declared again.
  reg.gauge_fn("up", "Up.", [] { return 0.0; }, {{"endpoint", "c"}});
  EXPECT_NE(reg.expose().find("up{endpoint=\"c\"} 0"), std::string::npos);
}

TEST(RegistryTest, RejectsMismatchesWithinAFamily) {
  Registry r;
  r.counter("sluice_a_total", "A.", {{"x", "1"}});
  EXPECT_THROW(r.gauge("sluice_a_total", "A."), std::invalid_argument);        // type
  EXPECT_THROW(r.counter("sluice_a_total", "Other."), std::invalid_argument);  // help
  EXPECT_THROW(r.counter("sluice_a_total", "A.", {{"y", "1"}}), std::invalid_argument);
  EXPECT_THROW(r.counter("sluice_a_total", "A.", {{"x", "1"}, {"y", "2"}}), std::invalid_argument);
  EXPECT_THROW(r.counter("sluice_a_total", "A.", {}), std::invalid_argument);
  r.histogram("sluice_lat_seconds", "H.", {}, {1, 2});
  EXPECT_THROW(r.histogram("sluice_lat_seconds", "H.", {}, {1, 3}), std::invalid_argument);
  EXPECT_THROW(r.gauge("sluice_lat_seconds_count", "C."), std::invalid_argument);
  r.gauge("sluice_g", "G.");
  EXPECT_THROW(r.histogram("sluice_g", "G."), std::invalid_argument);
}

TEST(RegistryTest, RejectsNamesThatPromtoolWouldFlag) {
  Registry r;
  EXPECT_THROW(r.gauge("", "x"), std::invalid_argument);
  EXPECT_THROW(r.gauge("1abc", "x"), std::invalid_argument);
  EXPECT_THROW(r.gauge("sluice-dash", "x"), std::invalid_argument);
  EXPECT_THROW(r.gauge("sluice_latency_ms", "x"), std::invalid_argument);
  EXPECT_THROW(r.gauge("sluice_latency_milliseconds", "x"), std::invalid_argument);
  EXPECT_THROW(r.gauge("sluice_size_kilobytes", "x"), std::invalid_argument);
  EXPECT_THROW(r.gauge("sluiceRequests", "x"), std::invalid_argument);
  EXPECT_THROW(r.gauge("sluice:rate", "x"), std::invalid_argument);
  EXPECT_THROW(r.gauge("sluice_open_total", "x"), std::invalid_argument);
  EXPECT_THROW(r.gauge("sluice_requests_gauge", "x"), std::invalid_argument);
  EXPECT_THROW(r.gauge("sluice_x_count", "x"), std::invalid_argument);
  EXPECT_THROW(r.gauge("sluice_x", ""), std::invalid_argument);  // help is required
  EXPECT_THROW(r.gauge("sluice_x", "x", {{"__name", "1"}}), std::invalid_argument);
  EXPECT_THROW(r.gauge("sluice_x", "x", {{"le", "1"}}), std::invalid_argument);
  EXPECT_THROW(r.gauge("sluice_x", "x", {{"a-b", "1"}}), std::invalid_argument);
  EXPECT_THROW(r.gauge("sluice_x", "x", {{"routeName", "1"}}), std::invalid_argument);
  EXPECT_THROW(r.gauge("sluice_x", "x", {{"a", "1"}, {"a", "2"}}), std::invalid_argument);
  EXPECT_NO_THROW(r.gauge("sluice_x", "x", {{"a", "1"}}));
  // A failed declaration leaves nothing behind.
  EXPECT_EQ(r.expose().find("sluice_latency"), std::string::npos);
}

TEST(RegistryTest, ExpositionGolden) {
  Registry r;
  r.counter("sluice_requests_total", "Requests handled.", {{"route", "a"}, {"code", "200"}}).inc(3);
  r.counter("sluice_requests_total", "Requests handled.", {{"route", "b"}, {"code", "503"}}).inc();
  r.gauge("sluice_connections", "Open downstream connections.").add(5);
  auto& h = r.histogram("sluice_request_duration_seconds", "Request latency.", {{"route", "a"}},
                        {0.1, 1});
  for (double v : {0.25, 0.5, 2.0}) h.observe(v);
  r.histogram("sluice_request_duration_seconds", "Request latency.", {{"route", "b"}}, {0.1, 1});
  r.gauge_fn("sluice_config_version", "Version of the config in use.", [] { return 1.5; });

  const std::string expected =
      "# HELP sluice_config_version Version of the config in use.\n"
      "# TYPE sluice_config_version gauge\n"
      "sluice_config_version 1.5\n"
      "# HELP sluice_connections Open downstream connections.\n"
      "# TYPE sluice_connections gauge\n"
      "sluice_connections 5\n"
      "# HELP sluice_request_duration_seconds Request latency.\n"
      "# TYPE sluice_request_duration_seconds histogram\n"
      "sluice_request_duration_seconds_bucket{route=\"a\",le=\"0.1\"} 0\n"
      "sluice_request_duration_seconds_bucket{route=\"a\",le=\"1\"} 2\n"
      "sluice_request_duration_seconds_bucket{route=\"a\",le=\"+Inf\"} 3\n"
      "sluice_request_duration_seconds_sum{route=\"a\"} 2.75\n"
      "sluice_request_duration_seconds_count{route=\"a\"} 3\n"
      "sluice_request_duration_seconds_bucket{route=\"b\",le=\"0.1\"} 0\n"
      "sluice_request_duration_seconds_bucket{route=\"b\",le=\"1\"} 0\n"
      "sluice_request_duration_seconds_bucket{route=\"b\",le=\"+Inf\"} 0\n"
      "sluice_request_duration_seconds_sum{route=\"b\"} 0\n"
      "sluice_request_duration_seconds_count{route=\"b\"} 0\n"
      "# HELP sluice_requests_total Requests handled.\n"
      "# TYPE sluice_requests_total counter\n"
      "sluice_requests_total{route=\"a\",code=\"200\"} 3\n"
      "sluice_requests_total{route=\"b\",code=\"503\"} 1\n";
  EXPECT_EQ(r.expose(), expected);
}

TEST(RegistryTest, HistogramWithoutLabels) {
  Registry r;
  r.histogram("sluice_x_seconds", "X.", {}, {1}).observe(0.5);
  EXPECT_EQ(r.expose(),
            "# HELP sluice_x_seconds X.\n"
            "# TYPE sluice_x_seconds histogram\n"
            "sluice_x_seconds_bucket{le=\"1\"} 1\n"
            "sluice_x_seconds_bucket{le=\"+Inf\"} 1\n"
            "sluice_x_seconds_sum 0.5\n"
            "sluice_x_seconds_count 1\n");
}

TEST(RegistryTest, EscapesLabelValuesAndHelp) {
  Registry r;
  r.counter("sluice_escape_total", "Back\\slash and\nnewline \"quoted\".", {{"path", "a\\b\"c\nd"}})
      .inc();
  EXPECT_EQ(r.expose(),
            "# HELP sluice_escape_total Back\\\\slash and\\nnewline \"quoted\".\n"
            "# TYPE sluice_escape_total counter\n"
            "sluice_escape_total{path=\"a\\\\b\\\"c\\nd\"} 1\n");
}

TEST(RegistryTest, SpecialFloatValues) {
  Registry r;
  r.gauge_fn("sluice_nan", "N.", [] { return std::nan(""); });
  r.gauge_fn("sluice_inf", "I.", [] { return -std::numeric_limits<double>::infinity(); });
  const std::string out = r.expose();
  EXPECT_NE(out.find("sluice_nan NaN\n"), std::string::npos);
  EXPECT_NE(out.find("sluice_inf -Inf\n"), std::string::npos);
}

TEST(RegistryTest, FormatsFloatsLikeTheGoClient) {
  // Go's strconv.FormatFloat(v, 'g', -1, 64): what other exporters put in `le`.
  Registry r;
  r.histogram("sluice_fmt_seconds", "F.", {},
              {1e-05, 0.0001, 0.0005, 0.1, 1, 2.5, 100000, 1e6, 1.5e7});
  const std::string out = r.expose();
  for (const char* le :
       {"1e-05", "0.0001", "0.0005", "0.1", "1", "2.5", "100000", "1e+06", "1.5e+07"}) {
    EXPECT_NE(out.find(std::string("le=\"") + le + "\"}"), std::string::npos) << le << "\n" << out;
  }
  r.gauge_fn("sluice_start_time_seconds", "S.", [] { return 1712345678.95; });
  r.gauge_fn("sluice_negative", "N.", [] { return -0.25; });
  const std::string out2 = r.expose();
  EXPECT_NE(out2.find("sluice_start_time_seconds 1.71234567895e+09\n"), std::string::npos);
  EXPECT_NE(out2.find("sluice_negative -0.25\n"), std::string::npos);
}

double sample_value(const std::string& exposition, const std::string& name) {
  size_t pos = exposition.find("\n" + name + " ");
  if (pos == std::string::npos) return -1;
  return std::strtod(exposition.c_str() + pos + name.size() + 2, nullptr);
}

TEST(RegistryTest, ProcessMetrics) {
  Registry r;
  r.register_process_metrics();
  r.register_process_metrics();  // idempotent
  const std::string out = r.expose();
  const double now = static_cast<double>(std::time(nullptr));
  const double start = sample_value(out, "process_start_time_seconds");
  EXPECT_GT(start, now - 24 * 3600.0);
  EXPECT_LE(start, now + 2);
  EXPECT_GT(sample_value(out, "process_resident_memory_bytes"), 1 << 20);
  EXPECT_GT(sample_value(out, "process_virtual_memory_bytes"), 1 << 20);
  EXPECT_GE(sample_value(out, "process_open_fds"), 3);
  EXPECT_GT(sample_value(out, "process_max_fds"), 0);
  EXPECT_GE(sample_value(out, "process_cpu_seconds_total"), 0);
  EXPECT_NE(out.find("# TYPE process_cpu_seconds_total counter\n"), std::string::npos);
}

// Runs promtool on `text`; returns its exit status and everything it printed.
std::pair<int, std::string> promtool_check(const std::string& text) {
  char path[] = "/tmp/sluice_metrics_XXXXXX";
  int fd = ::mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  std::string cmd = std::string("/usr/bin/promtool check metrics < ") + path + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string output;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) output.append(buf, n);
  int status = ::pclose(p);
  ::unlink(path);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

TEST(RegistryTest, PassesPromtoolCheckMetrics) {
  if (::access("/usr/bin/promtool", X_OK) != 0) {
    GTEST_SKIP() << "/usr/bin/promtool missing (scripts/install-deps.sh installs it)";
  }
  Registry r;
  r.register_process_metrics();
  auto& req = r.counter("sluice_requests_total", "Requests handled by the gateway.",
                        {{"route", "accounts-api"}, {"service", "accounts"}, {"code", "200"}});
  req.inc(10);
  r.counter("sluice_requests_total", "Requests handled by the gateway.",
            {{"route", "weird \"route\"\\\n"}, {"service", "é\t"}, {"code", "503"}})
      .inc();
  r.counter("sluice_upstream_connect_failures", "Upstream connect failures.").inc(2);
  r.gauge("sluice_downstream_connections", "Open downstream connections.", {{"listener", "public"}})
      .add(3);
  auto& lat = r.histogram("sluice_request_duration_seconds", "Request latency in seconds.",
                          {{"route", "accounts-api"}, {"city", "a"}});
  for (double v : {0.0001, 0.003, 0.02, 0.4, 3.0, 50.0}) lat.observe(v);
  r.histogram("sluice_request_duration_seconds", "Request latency in seconds.",
              {{"route", "other"}, {"city", "b"}});
  r.histogram("sluice_response_size_bytes", "Response body size.", {}, {100, 1000, 1e4, 1e6})
      .observe(512);
  r.gauge_fn("sluice_config_generation", "Config generation in use.", [] { return 4; });

  const std::string text = r.expose();
  auto [status, output] = promtool_check(text);
  EXPECT_EQ(status, 0) << output << "\n--- input ---\n" << text;
  EXPECT_EQ(output, "") << "--- input ---\n" << text;

  // And the checker does catch what it should, so a silent pass above means something.
  auto [bad_status, bad_output] = promtool_check("# HELP x_ms X.\n# TYPE x_ms gauge\nx_ms 1\n");
  EXPECT_NE(bad_status, 0);
  EXPECT_NE(bad_output, "");
}

}  // namespace
}  // namespace sluice::observability
