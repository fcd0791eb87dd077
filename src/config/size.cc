#include "config/size.h"

#include <charconv>
#include <limits>

namespace sluice::config {
namespace {

struct Suffix {
  std::string_view name;
  uint64_t bytes;
};

// Largest first, so format_size picks the shortest rendering.
constexpr Suffix kSuffixes[] = {
    {"TiB", uint64_t{1} << 40},
    {"GiB", uint64_t{1} << 30},
    {"MiB", uint64_t{1} << 20},
    {"KiB", uint64_t{1} << 10},
    {"B", 1},
};

}  // namespace

std::optional<uint64_t> parse_size(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return std::nullopt;
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + digits, value);
  if (ec != std::errc() || end != text.data() + digits) return std::nullopt;
  std::string_view unit = text.substr(digits);
  if (unit.empty()) return value;
  for (const auto& s : kSuffixes) {
    if (unit != s.name) continue;
    if (value > std::numeric_limits<uint64_t>::max() / s.bytes) return std::nullopt;
    return value * s.bytes;
  }
  return std::nullopt;
}

std::string format_size(uint64_t bytes) {
  if (bytes == 0) return "0";
  for (const auto& s : kSuffixes) {
    if (s.bytes > 1 && bytes % s.bytes == 0)
      return std::to_string(bytes / s.bytes) + std::string(s.name);
  }
  return std::to_string(bytes);
}

}  // namespace sluice::config
