#include "observability/access_log.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>
#include <utility>

#include "core/log.h"
#include "observability/metrics.h"

namespace sluice::observability {
namespace {

constexpr int kStallTimeoutMs = 1000;
constexpr char kHex[] = "0123456789abcdef";

std::string os_error(int err) {
  return std::error_code(err, std::generic_category()).message();
}

int open_for_append(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

// Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates, nothing
// above U+10FFFF), or 0 when p does not start one.
size_t utf8_sequence_length(const unsigned char* p, size_t n) {
  const unsigned char c = p[0];
  auto cont = [&](size_t i, unsigned char lo = 0x80, unsigned char hi = 0xbf) {
    return i < n && p[i] >= lo && p[i] <= hi;
  };
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c == 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (c == 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xf1 && c <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

template <class Int>
void append_int(std::string& out, Int v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Seconds with microsecond resolution. Out-of-range values (NaN, negative, absurd) are clamped
// so that the line stays valid JSON.
void append_seconds(std::string& out, double v) {
  if (!(v >= 0)) v = 0;
  v = std::min(v, 1e9);
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, 6);
  out.append(buf, r.ptr);
}

// Bytes that go into a JSON string as they are: printable ASCII except '"' and '\\'. One table
// look-up per byte keeps the common all-ASCII path branch-predictable.
constexpr auto kPlainJson = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x7f; ++c) t[c] = c != '"' && c != '\\';
  return t;
}();

void put2(char* p, unsigned v) {
  p[0] = static_cast<char>('0' + v / 10 % 10);
  p[1] = static_cast<char>('0' + v % 10);
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t run = 0;  // start of the pending run of bytes that need no escaping
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (kPlainJson[c]) {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      if (size_t len = utf8_sequence_length(p + i, n - i); len != 0) {
        i += len;
        continue;
      }
    }
    out.append(s.data() + run, i - run);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default: {
        // Control characters, DEL and stray bytes of invalid UTF-8.
        const char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
        out.append(esc, sizeof esc);
      }
    }
    ++i;
    run = i;
  }
  out.append(s.data() + run, n - run);
  out += '"';
}

// ---------------------------------------------------------------------------------------------
// AccessLogSink

AccessLogSink::AccessLogSink(Kind kind, std::string path, int fd, Counter* dropped_metric)
    : kind_(kind), path_(std::move(path)), fd_(fd), dropped_metric_(dropped_metric) {}

AccessLogSink::~AccessLogSink() {
  if (kind_ == Kind::kFile && fd_ >= 0) ::close(fd_);
}

std::shared_ptr<AccessLogSink> AccessLogSink::open(const config::AccessLog& cfg, std::string& error,
                                                   Registry* metrics) {
  if (cfg.format != "json") {
    error = "access_log.format: unsupported format '" + cfg.format + "' (supported: json)";
    return nullptr;
  }
  if (cfg.path.empty()) {
    error = "access_log.path: must be stdout, off or a file path";
    return nullptr;
  }
  Counter* dropped = nullptr;
  if (metrics != nullptr) {
    dropped = &metrics->counter("sluice_access_log_dropped_lines_total",
                                "Access log lines dropped because they could not be written.");
  }
  Kind kind;
  int fd = -1;
  if (cfg.path == "off") {
    kind = Kind::kOff;
  } else if (cfg.path == "stdout") {
    kind = Kind::kStdout;
    fd = STDOUT_FILENO;
  } else {
    kind = Kind::kFile;
    fd = open_for_append(cfg.path);
    if (fd < 0) {
      error = "access_log.path: cannot open '" + cfg.path + "' for appending: " + os_error(errno);
      return nullptr;
    }
  }
  return std::shared_ptr<AccessLogSink>(new AccessLogSink(kind, cfg.path, fd, dropped));
}

bool AccessLogSink::write(std::string_view lines) {
  if (kind_ == Kind::kOff || lines.empty()) return true;
  std::lock_guard lock(mu_);
  // After a write that stopped mid-line, end that line first so the next one is not glued to
  // its remains.
  std::string_view pending[2] = {torn_ ? std::string_view("\n") : std::string_view(), lines};
  int err = 0;
  size_t written = 0;  // of `lines`
  for (int part = 0; part < 2 && err == 0; ++part) {
    std::string_view data = pending[part];
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::write(fd_, data.data() + off, data.size() - off);
      if (n > 0) {
        off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        // stdout may be a non-blocking pipe (the flag is shared with whoever else holds it):
        // wait for the reader, but not forever.
        pollfd pfd{fd_, POLLOUT, 0};
        int r = ::poll(&pfd, 1, kStallTimeoutMs);
        if (r > 0 || (r < 0 && errno == EINTR)) continue;
        err = r == 0 ? ETIMEDOUT : errno;
      } else {
        err = n < 0 ? errno : EIO;
      }
      break;
    }
    if (part == 0 && err == 0) torn_ = false;
    if (part == 1) written = off;
  }
  if (err == 0) return true;

  if (written > 0) torn_ = lines[written - 1] != '\n';
  // Every line whose newline was not written is lost (a torn line included).
  const auto lost = static_cast<uint64_t>(std::count(lines.begin() + written, lines.end(), '\n'));
  const uint64_t before = dropped_.fetch_add(lost, std::memory_order_relaxed);
  if (dropped_metric_ != nullptr) dropped_metric_->inc(lost);
  // Say so on the first loss and then at every power of two, not once per flush.
  const uint64_t after = before + lost;
  if (before == 0 || (std::bit_floor(after) > before)) {
    core::log_warn("access log {}: write failed ({}); {} lines dropped so far", path_,
                   os_error(err), after);
  }
  return false;
}

bool AccessLogSink::reopen(std::string& error) {
  if (kind_ != Kind::kFile) return true;
  int fd = open_for_append(path_);
  if (fd < 0) {
    error = "access_log.path: cannot reopen '" + path_ + "': " + os_error(errno);
    return false;
  }
  std::lock_guard lock(mu_);
  ::close(fd_);
  fd_ = fd;
  torn_ = false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// AccessLogger

AccessLogger::AccessLogger(std::shared_ptr<AccessLogSink> sink, size_t flush_bytes)
    : sink_(std::move(sink)),
      enabled_(sink_ != nullptr && sink_->enabled()),
      flush_bytes_(flush_bytes),
      cached_second_(std::numeric_limits<int64_t>::min()) {
  // Room for a full buffer plus one large line, so that steady state never reallocates.
  if (enabled_) buf_.reserve(flush_bytes_ + 4096);
}

AccessLogger::~AccessLogger() {
  flush();
}

void AccessLogger::set_sink(std::shared_ptr<AccessLogSink> sink) {
  flush();
  sink_ = std::move(sink);
  enabled_ = sink_ != nullptr && sink_->enabled();
  if (enabled_) buf_.reserve(flush_bytes_ + 4096);
}

void AccessLogger::flush() {
  if (buf_.empty()) return;
  if (sink_ != nullptr) sink_->write(buf_);
  buf_.clear();  // keeps the capacity
}

void AccessLogger::append_time(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const int64_t ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
  const int64_t sec = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;  // floor, for times before 1970
  const auto milli = static_cast<unsigned>(ms - sec * 1000);
  if (sec != cached_second_) {
    const sys_seconds ss{seconds(sec)};
    const sys_days day = floor<days>(ss);
    const year_month_day ymd{day};
    const hh_mm_ss hms{ss - day};
    const auto year = static_cast<unsigned>(std::clamp(static_cast<int>(ymd.year()), 0, 9999));
    char* p = cached_time_;
    put2(p, year / 100);
    put2(p + 2, year % 100);
    p[4] = '-';
    put2(p + 5, static_cast<unsigned>(ymd.month()));
    p[7] = '-';
    put2(p + 8, static_cast<unsigned>(ymd.day()));
    p[10] = 'T';
    put2(p + 11, static_cast<unsigned>(hms.hours().count()));
    p[13] = ':';
    put2(p + 14, static_cast<unsigned>(hms.minutes().count()));
    p[16] = ':';
    put2(p + 17, static_cast<unsigned>(hms.seconds().count()));
    cached_second_ = sec;
  }
  buf_.append(cached_time_, sizeof cached_time_);
  const char frac[5] = {'.', static_cast<char>('0' + milli / 100),
                        static_cast<char>('0' + milli / 10 % 10),
                        static_cast<char>('0' + milli % 10), 'Z'};
  buf_.append(frac, sizeof frac);
}

void AccessLogger::log(const AccessRecord& r) {
  if (!enabled_) return;
  buf_ += "{\"time\":\"";
  append_time(r.time);
  buf_ += "\",\"request_id\":";
  append_json_string(buf_, r.request_id);
  buf_ += ",\"client_ip\":";
  append_json_string(buf_, r.client_ip);
  buf_ += ",\"method\":";
  append_json_string(buf_, r.method);
  buf_ += ",\"path\":";
  append_json_string(buf_, r.path);
  if (!r.original_path.empty()) {
    buf_ += ",\"original_path\":";
    append_json_string(buf_, r.original_path);
  }
  buf_ += ",\"route\":";
  append_json_string(buf_, r.route);
  buf_ += ",\"service\":";
  append_json_string(buf_, r.service);
  buf_ += ",\"endpoint\":";
  append_json_string(buf_, r.endpoint);
  buf_ += ",\"status\":";
  append_int(buf_, r.status);
  buf_ += ",\"bytes_in\":";
  append_int(buf_, r.bytes_in);
  buf_ += ",\"bytes_out\":";
  append_int(buf_, r.bytes_out);
  if (r.upstream_duration >= 0) {
    buf_ += ",\"upstream_duration\":";
    append_seconds(buf_, r.upstream_duration);
  }
  buf_ += ",\"duration\":";
  append_seconds(buf_, r.duration);
  buf_ += ",\"attempts\":";
  append_int(buf_, r.attempts);
  buf_ += ",\"listener\":";
  append_json_string(buf_, r.listener);
  if (!r.user_agent.empty()) {
    buf_ += ",\"user_agent\":";
    append_json_string(buf_, r.user_agent);
  }
  if (!r.unit.empty()) {
    buf_ += ",\"unit\":";
    append_json_string(buf_, r.unit);
  }
  if (!r.upstream_error.empty()) {
    buf_ += ",\"upstream_error\":";
    append_json_string(buf_, r.upstream_error);
  }
  buf_ += "}\n";
  if (buf_.size() >= flush_bytes_) flush();
}

}  // namespace sluice::observability
