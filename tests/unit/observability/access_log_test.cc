#include "observability/access_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "observability/metrics.h"

namespace sluice::observability {
namespace {

using namespace std::chrono;
using nlohmann::json;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/sluice_access_log_XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    EXPECT_NE(end, std::string::npos) << "unterminated line";
    if (end == std::string::npos) break;
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

std::shared_ptr<AccessLogSink> open_sink(const std::string& path) {
  std::string error;
  auto sink = AccessLogSink::open(config::AccessLog{path, "json"}, error);
  EXPECT_NE(sink, nullptr) << error;
  return sink;
}

AccessRecord sample_record() {
  AccessRecord r;
  r.time = sys_days{year{2024} / February / 29} + hours{23} + minutes{59} + seconds{58} +
           milliseconds{7};
  r.request_id = "0af7651916cd43dd8448eb211c80319c";
  r.client_ip = "10.1.2.3";
  r.method = "GET";
  r.path = "/api/accounts/42?x=1";
  r.route = "accounts-api";
  r.service = "accounts";
  r.endpoint = "127.0.0.1:9101";
  r.status = 200;
  r.bytes_in = 12;
  r.bytes_out = 3456;
  r.upstream_duration = 0.001234;
  r.duration = 0.0015;
  r.attempts = 2;
  r.listener = "public";
  return r;
}

TEST(AccessLogTest, WritesAllFieldsAsOneJsonLine) {
  TempDir dir;
  auto sink = open_sink(dir.file("access.log"));
  AccessLogger logger(sink);
  AccessRecord r = sample_record();
  r.user_agent = "curl/8.0";
  logger.log(r);
  logger.flush();

  const std::string text = read_file(dir.file("access.log"));
  auto lines = lines_of(text);
  ASSERT_EQ(lines.size(), 1u);
  json j = json::parse(lines[0]);
  EXPECT_EQ(j["time"], "2024-02-29T23:59:58.007Z");
  EXPECT_EQ(j["request_id"], "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(j["client_ip"], "10.1.2.3");
  EXPECT_EQ(j["method"], "GET");
  EXPECT_EQ(j["path"], "/api/accounts/42?x=1");
  EXPECT_EQ(j["route"], "accounts-api");
  EXPECT_EQ(j["service"], "accounts");
  EXPECT_EQ(j["endpoint"], "127.0.0.1:9101");
  EXPECT_EQ(j["status"], 200);
  EXPECT_EQ(j["bytes_in"], 12);
  EXPECT_EQ(j["bytes_out"], 3456);
  EXPECT_DOUBLE_EQ(j["upstream_duration"].get<double>(), 0.001234);
  EXPECT_DOUBLE_EQ(j["duration"].get<double>(), 0.0015);
  EXPECT_EQ(j["attempts"], 2);
  EXPECT_EQ(j["listener"], "public");
  EXPECT_EQ(j["user_agent"], "curl/8.0");
  // Keys in the documented order.
  EXPECT_EQ(lines[0].substr(0, 40), "{\"time\":\"2024-02-29T23:59:58.007Z\",\"requ");
  const std::vector<std::string> order = {
      "time",     "request_id", "client_ip", "method",    "path",      "route",
      "service",  "endpoint",   "status",    "bytes_in",  "bytes_out", "upstream_duration",
      "duration", "attempts",   "listener",  "user_agent"};
  size_t pos = 0;
  for (const auto& key : order) {
    size_t at = lines[0].find("\"" + key + "\":", pos);
    ASSERT_NE(at, std::string::npos) << key;
    pos = at;
  }
}

TEST(AccessLogTest, OmitsUpstreamDurationAndUserAgentWhenAbsent) {
  TempDir dir;
  auto sink = open_sink(dir.file("access.log"));
  AccessLogger logger(sink);
  AccessRecord r = sample_record();
  r.upstream_duration = -1;
  r.route = "";
  r.service = "";
  r.endpoint = "";
  r.status = 404;
  r.attempts = 0;
  logger.log(r);
  logger.flush();
  json j = json::parse(lines_of(read_file(dir.file("access.log"))).at(0));
  EXPECT_FALSE(j.contains("upstream_duration"));
  EXPECT_FALSE(j.contains("user_agent"));
  EXPECT_EQ(j["route"], "");
  EXPECT_EQ(j["status"], 404);
  EXPECT_EQ(j["attempts"], 0);
}

TEST(AccessLogTest, RendersTimesInUtcWithMilliseconds) {
  TempDir dir;
  auto sink = open_sink(dir.file("access.log"));
  AccessLogger logger(sink);
  AccessRecord r = sample_record();
  const std::vector<std::pair<system_clock::time_point, std::string>> cases = {
      {system_clock::time_point{}, "1970-01-01T00:00:00.000Z"},
      {sys_days{year{1999} / December / 31} + hours{23} + minutes{59} + seconds{59} +
           milliseconds{999},
       "1999-12-31T23:59:59.999Z"},
      {sys_days{year{2000} / January / 1} + microseconds{1500}, "2000-01-01T00:00:00.001Z"},
      // Same second again after another one: the cached second must not leak across.
      {sys_days{year{1999} / December / 31} + hours{23} + minutes{59} + seconds{59},
       "1999-12-31T23:59:59.000Z"},
      {system_clock::time_point{} - milliseconds{1}, "1969-12-31T23:59:59.999Z"},
  };
  for (const auto& [t, _] : cases) {
    r.time = t;
    logger.log(r);
  }
  logger.flush();
  auto lines = lines_of(read_file(dir.file("access.log")));
  ASSERT_EQ(lines.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(json::parse(lines[i])["time"], cases[i].second);
  }
}

TEST(AccessLogTest, EscapesStrings) {
  std::string out;
  append_json_string(out,
                     "a\"b\\c\nd\re\tf\bg\fh\x01i\x1f"
                     "j\x7f");
  EXPECT_EQ(out, R"("a\"b\\c\nd\re\tf\bg\fh\u0001i\u001fj\u007f")");

  out.clear();
  append_json_string(out, std::string_view("nul\0x", 5));
  EXPECT_EQ(out, R"("nul\u0000x")");

  // Valid UTF-8 passes through (2, 3 and 4 byte sequences).
  out.clear();
  append_json_string(out, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(out, "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");

  // Invalid UTF-8: stray bytes, overlongs, surrogates, truncated sequences, > U+10FFFF.
  out.clear();
  append_json_string(out, "\xff|\xc0\xaf|\xed\xa0\x80|\xe2\x82|\xf4\x90\x80\x80|\x80");
  EXPECT_EQ(
      out,
      R"("\u00ff|\u00c0\u00af|\u00ed\u00a0\u0080|\u00e2\u0082|\u00f4\u0090\u0080\u0080|\u0080")");
}

TEST(AccessLogTest, AnyBytesYieldParsableJson) {
  TempDir dir;
  auto sink = open_sink(dir.file("access.log"));
  AccessLogger logger(sink);
  std::string evil;
  for (int c = 0; c < 256; ++c) evil.push_back(static_cast<char>(c));
  AccessRecord r = sample_record();
  r.path = evil;
  r.user_agent = "Mozilla \"5.0\"\n\xe9t\xc3\xa9";
  logger.log(r);
  logger.flush();
  auto lines = lines_of(read_file(dir.file("access.log")));
  ASSERT_EQ(lines.size(), 1u);
  json j = json::parse(lines[0]);  // throws on invalid JSON or invalid UTF-8
  // Each byte comes back as the code point of the same value (ASCII unchanged).
  std::string path = j["path"];
  EXPECT_EQ(path.substr(0, 128), evil.substr(0, 128));
  EXPECT_EQ(j["user_agent"], "Mozilla \"5.0\"\n\xc3\xa9t\xc3\xa9");
}

TEST(AccessLogTest, BuffersUntilThresholdOrFlush) {
  TempDir dir;
  const std::string path = dir.file("access.log");
  auto sink = open_sink(path);
  {
    AccessLogger logger(sink);
    AccessRecord r = sample_record();
    logger.log(r);
    EXPECT_GT(logger.buffered_bytes(), 0u);
    EXPECT_EQ(read_file(path), "");  // nothing written per request

    // Fill past 32 KiB: the logger writes whole lines by itself.
    int logged = 1;
    while (read_file(path).empty()) {
      logger.log(r);
      ++logged;
      ASSERT_LT(logged, 10000);
    }
    const std::string first = read_file(path);
    EXPECT_GE(first.size(), AccessLogger::kDefaultFlushBytes);
    EXPECT_EQ(lines_of(first).size(), static_cast<size_t>(logged));
    EXPECT_EQ(logger.buffered_bytes(), 0u);

    logger.log(r);
    logger.log(r);
    EXPECT_EQ(read_file(path), first);
    logger.flush();
    EXPECT_EQ(lines_of(read_file(path)).size(), static_cast<size_t>(logged + 2));
    logger.flush();  // nothing pending: no write
    logger.log(r);
  }  // the destructor flushes
  EXPECT_GT(lines_of(read_file(path)).size(), 2u);
  for (const auto& line : lines_of(read_file(path))) EXPECT_NO_THROW(json::parse(line));
}

TEST(AccessLogTest, OffSinkWritesNothing) {
  std::string error;
  auto sink = AccessLogSink::open(config::AccessLog{"off", "json"}, error);
  ASSERT_NE(sink, nullptr) << error;
  EXPECT_FALSE(sink->enabled());
  AccessLogger logger(sink);
  for (int i = 0; i < 1000; ++i) logger.log(sample_record());
  EXPECT_EQ(logger.buffered_bytes(), 0u);
  logger.flush();
  EXPECT_TRUE(sink->write("ignored\n"));
  EXPECT_TRUE(sink->reopen(error));
  EXPECT_EQ(sink->dropped_lines(), 0u);
  struct stat st;
  EXPECT_NE(::stat("off", &st), 0);  // "off" is not a file name
}

TEST(AccessLogTest, OpenErrorsNameKeyAndCause) {
  std::string error;
  auto sink =
      AccessLogSink::open(config::AccessLog{"/nonexistent-dir/x/access.log", "json"}, error);
  EXPECT_EQ(sink, nullptr);
  EXPECT_NE(error.find("access_log.path"), std::string::npos) << error;
  EXPECT_NE(error.find("/nonexistent-dir/x/access.log"), std::string::npos) << error;
  EXPECT_NE(error.find("No such file or directory"), std::string::npos) << error;

  error.clear();
  EXPECT_EQ(AccessLogSink::open(config::AccessLog{"stdout", "text"}, error), nullptr);
  EXPECT_NE(error.find("access_log.format"), std::string::npos) << error;
}

TEST(AccessLogTest, CreatesFileWithMode0644AndAppends) {
  TempDir dir;
  const std::string path = dir.file("access.log");
  { std::ofstream(path) << "existing line\n"; }
  ::chmod(path.c_str(), 0600);
  auto sink = open_sink(path);
  AccessLogger logger(sink);
  logger.log(sample_record());
  logger.flush();
  auto lines = lines_of(read_file(path));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "existing line");

  const std::string fresh = dir.file("fresh.log");
  const mode_t old_umask = ::umask(022);
  auto sink2 = open_sink(fresh);
  ::umask(old_umask);
  struct stat st;
  ASSERT_EQ(::stat(fresh.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
}

TEST(AccessLogTest, ReopenFollowsRotation) {
  TempDir dir;
  const std::string path = dir.file("access.log");
  auto sink = open_sink(path);
  AccessLogger logger(sink);
  logger.log(sample_record());
  logger.flush();
  ASSERT_EQ(::rename(path.c_str(), dir.file("access.log.1").c_str()), 0);
  logger.log(sample_record());
  logger.flush();  // still goes to the renamed file
  std::string error;
  ASSERT_TRUE(sink->reopen(error)) << error;
  logger.log(sample_record());
  logger.flush();
  EXPECT_EQ(lines_of(read_file(dir.file("access.log.1"))).size(), 2u);
  EXPECT_EQ(lines_of(read_file(path)).size(), 1u);

  // A failed reopen keeps the old file.
  ASSERT_EQ(::rename(path.c_str(), dir.file("access.log.2").c_str()), 0);
  ASSERT_EQ(::mkdir(path.c_str(), 0755), 0);  // the name is now a directory
  EXPECT_FALSE(sink->reopen(error));
  EXPECT_NE(error.find("access_log.path"), std::string::npos);
  logger.log(sample_record());
  logger.flush();
  EXPECT_EQ(lines_of(read_file(dir.file("access.log.2"))).size(), 2u);
}

TEST(AccessLogTest, CountsDroppedLinesOnWriteErrors) {
  // /dev/full fails every write with ENOSPC.
  if (::access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no /dev/full";
  Registry registry;
  std::string error;
  auto sink = AccessLogSink::open(config::AccessLog{"/dev/full", "json"}, error, &registry);
  ASSERT_NE(sink, nullptr) << error;
  AccessLogger logger(sink);
  for (int i = 0; i < 5; ++i) logger.log(sample_record());
  logger.flush();
  EXPECT_EQ(sink->dropped_lines(), 5u);
  EXPECT_FALSE(sink->write("a\nb\n"));
  EXPECT_EQ(sink->dropped_lines(), 7u);
  EXPECT_NE(registry.expose().find("sluice_access_log_dropped_lines_total 7\n"), std::string::npos)
      << registry.expose();
}

TEST(AccessLogTest, StdoutSinkWritesToFdOne) {
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  std::fflush(stdout);
  const int saved = ::dup(STDOUT_FILENO);
  ASSERT_EQ(::dup2(pipefd[1], STDOUT_FILENO), STDOUT_FILENO);
  {
    auto sink = open_sink("stdout");
    AccessLogger logger(sink);
    logger.log(sample_record());
    logger.flush();
  }
  ::dup2(saved, STDOUT_FILENO);
  ::close(saved);
  ::close(pipefd[1]);
  std::string got;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  auto lines = lines_of(got);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(json::parse(lines[0])["status"], 200);
}

TEST(AccessLogTest, WorkersShareASinkWithoutInterleaving) {
  TempDir dir;
  const std::string path = dir.file("access.log");
  auto sink = open_sink(path);
  constexpr int kThreads = 4;
  constexpr int kLines = 3000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      AccessLogger logger(sink, 4096);
      std::string id = "worker-" + std::to_string(t);
      std::string long_path(300, 'p');
      for (int i = 0; i < kLines; ++i) {
        AccessRecord r = sample_record();
        r.request_id = id;
        r.path = long_path;
        r.status = i;
        logger.log(r);
      }
    });
  }
  for (auto& t : threads) t.join();
  auto lines = lines_of(read_file(path));
  ASSERT_EQ(lines.size(), static_cast<size_t>(kThreads * kLines));
  std::vector<int> next(kThreads, 0);
  for (const auto& line : lines) {
    json j = json::parse(line);
    int t = std::stoi(j["request_id"].get<std::string>().substr(7));
    EXPECT_EQ(j["status"], next[t]++);  // each worker's lines stay in order
  }
}

}  // namespace
}  // namespace sluice::observability
