#include "sample/request_target.h"

#include <charconv>

namespace sluice::sample {

namespace {

constexpr std::string_view kSamplePrefix = "/_sample/";

Route numbered(Endpoint endpoint, std::string_view text, uint64_t min, uint64_t max) {
  Route r{endpoint, 0, false};
  if (auto n = parse_u64(text); n && *n >= min && *n <= max) {
    r.arg = *n;
    r.arg_ok = true;
  }
  return r;
}

}  // namespace

Route classify(std::string_view path) {
  if (path == "/healthz") return {Endpoint::kHealthz};
  if (!path.starts_with(kSamplePrefix)) return {Endpoint::kAny};
  std::string_view rest = path.substr(kSamplePrefix.size());
  if (rest == "faults") return {Endpoint::kFaults};
  if (rest == "stats") return {Endpoint::kStats};
  if (rest == "bytes") return {Endpoint::kBytes};
  if (rest == "echo") return {Endpoint::kEcho};
  if (rest == "close") return {Endpoint::kClose};
  if (rest.starts_with("status/")) {
    return numbered(Endpoint::kStatus, rest.substr(7), kMinStatus, kMaxStatus);
  }
  if (rest.starts_with("delay/")) return numbered(Endpoint::kDelay, rest.substr(6), 0, kMaxDelayMs);
  return {Endpoint::kUnknownSample};
}

std::optional<std::string_view> query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    std::string_view key = pair.substr(0, eq);
    if (key == name) {
      return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

std::optional<uint64_t> parse_u64(std::string_view text) {
  if (text.empty()) return std::nullopt;
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

bool is_true(std::string_view value) {
  return value.empty() || value == "1" || value == "true" || value == "yes" || value == "on";
}

}  // namespace sluice::sample
