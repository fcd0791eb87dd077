// JSON-lines access log, one line per request. Each worker formats into its own AccessLogger
// buffer (no lock, no allocation per request) and hands whole buffers to the shared
// AccessLogSink: one write(2) per ~32 KiB, or per flush tick of the worker.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "config/config.h"

namespace sluice::observability {

class Counter;
class Registry;

// One request, as logged. The views must stay valid only for the duration of log().
struct AccessRecord {
  std::chrono::system_clock::time_point time;  // request start; logged RFC 3339, ms, UTC
  std::string_view request_id;
  std::string_view client_ip;
  std::string_view method;
  std::string_view path;           // request target, its path normalised (http.normalize_path...)
  std::string_view original_path;  // the target as received when normalising changed it; empty
                                   // = the key is omitted
  std::string_view route;          // empty when no route matched
  std::string_view service;
  std::string_view endpoint;  // upstream address of the last attempt; empty when none
  int status = 0;
  uint64_t bytes_in = 0;          // request body bytes
  uint64_t bytes_out = 0;         // response body bytes
  double upstream_duration = -1;  // seconds; < 0 = no upstream, and the key is omitted
  double duration = 0;            // seconds, whole request
  int attempts = 0;
  std::string_view listener;
  std::string_view user_agent;  // empty = the key is omitted
  // Unit requests that crossed cities: "forwarded" (to the owner city's gateway) or "direct"
  // (its gateway unreachable: to its endpoints); empty = the key is omitted.
  std::string_view unit;
  // What the upstream did wrong (sluice_upstream_protocol_errors_total kinds); empty = omitted.
  std::string_view upstream_error;
};

// Where lines go: stdout, a file (O_APPEND, 0644) or nowhere ("off"). Shared by all workers;
// thread-safe. Writes are serialised so that lines from different workers never interleave,
// even on a pipe (where only writes up to PIPE_BUF are atomic).
class AccessLogSink {
 public:
  // Opens per config (path "stdout" | "off" | FILE; format "json"). On failure returns
  // nullptr and sets `error`, naming the key and the OS error. With `metrics`, declares
  // sluice_access_log_dropped_lines_total there.
  static std::shared_ptr<AccessLogSink> open(const config::AccessLog& cfg, std::string& error,
                                             Registry* metrics = nullptr);
  ~AccessLogSink();
  AccessLogSink(const AccessLogSink&) = delete;
  AccessLogSink& operator=(const AccessLogSink&) = delete;

  bool enabled() const { return kind_ != Kind::kOff; }
  const std::string& path() const { return path_; }

  // Writes whole lines, looping over partial writes (and waiting for a non-blocking stdout to
  // drain, up to a second). Lines that cannot be written are dropped and counted; returns
  // false then.
  bool write(std::string_view lines);

  // Reopens the file by name, for log rotation (SIGUSR1); no-op for stdout and off. On failure
  // keeps writing to the old file and sets `error`. Not async-signal-safe: call it from the
  // thread that handles the signal, not from a signal handler.
  bool reopen(std::string& error);

  uint64_t dropped_lines() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  enum class Kind { kOff, kStdout, kFile };
  AccessLogSink(Kind kind, std::string path, int fd, Counter* dropped_metric);

  const Kind kind_;
  const std::string path_;
  std::mutex mu_;
  int fd_;             // guarded by mu_
  bool torn_ = false;  // guarded by mu_: the last write stopped mid-line
  std::atomic<uint64_t> dropped_{0};
  Counter* dropped_metric_;
};

// A worker's log buffer. Not thread-safe: one per worker thread. The worker calls flush()
// from a ~100 ms timer and before it exits (the destructor flushes too).
class AccessLogger {
 public:
  static constexpr size_t kDefaultFlushBytes = 32 * 1024;

  explicit AccessLogger(std::shared_ptr<AccessLogSink> sink,
                        size_t flush_bytes = kDefaultFlushBytes);
  ~AccessLogger();
  AccessLogger(const AccessLogger&) = delete;
  AccessLogger& operator=(const AccessLogger&) = delete;

  // Appends one JSON line; writes the buffer out once it holds flush_bytes or more. Returns
  // at once when the sink is off.
  void log(const AccessRecord& record);
  void flush();
  // Flushes to the current sink, then logs to `sink` (access_log.path changed on reload).
  void set_sink(std::shared_ptr<AccessLogSink> sink);

  size_t buffered_bytes() const { return buf_.size(); }

 private:
  void append_time(std::chrono::system_clock::time_point t);

  std::shared_ptr<AccessLogSink> sink_;
  bool enabled_;
  size_t flush_bytes_;
  std::string buf_;
  int64_t cached_second_;  // "YYYY-MM-DDTHH:MM:SS" of this second is in cached_time_
  char cached_time_[19];
};

// Appends `s` as a JSON string literal (with quotes). Control characters and bytes that are
// not part of valid UTF-8 are written as \u00XX, so any input yields valid JSON.
void append_json_string(std::string& out, std::string_view s);

}  // namespace sluice::observability
