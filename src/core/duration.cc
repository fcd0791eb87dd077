#include "core/duration.h"

#include <cstdint>
#include <limits>

namespace sluice::core {

std::optional<Duration> parse_duration(std::string_view text) {
  // Integer arithmetic throughout: a double loses exactness above 2^53 ns (~104 days), which
  // broke the parse(format(d)) == d round trip.
  __extension__ using Wide = unsigned __int128;
  constexpr Wide kMax = std::numeric_limits<int64_t>::max();
  size_t i = 0;
  bool any_digit = false;
  Wide whole = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    whole = whole * 10 + static_cast<unsigned>(text[i] - '0');
    if (whole > kMax) return std::nullopt;
    any_digit = true;
  }
  // Fraction digits past the 18th are ignored: even for hours they are worth < 4e-6 ns.
  uint64_t frac = 0;
  uint64_t frac_scale = 1;
  if (i < text.size() && text[i] == '.') {
    for (++i; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
      if (frac_scale < 1'000'000'000'000'000'000u) {
        frac = frac * 10 + static_cast<unsigned>(text[i] - '0');
        frac_scale *= 10;
      }
      any_digit = true;
    }
  }
  if (!any_digit) return std::nullopt;
  struct Unit {
    std::string_view name;
    uint64_t ns;
  };
  static constexpr Unit kParseUnits[] = {{"ns", 1},
                                         {"us", 1'000},
                                         {"ms", 1'000'000},
                                         {"s", 1'000'000'000},
                                         {"m", 60'000'000'000},
                                         {"h", 3'600'000'000'000}};
  std::string_view unit = text.substr(i);
  uint64_t ns_per_unit = 0;
  for (const auto& u : kParseUnits) {
    if (unit == u.name) ns_per_unit = u.ns;
  }
  if (ns_per_unit == 0) return std::nullopt;
  // Round the fraction to the nearest nanosecond.
  Wide ns = whole * ns_per_unit + (Wide{frac} * ns_per_unit + frac_scale / 2) / frac_scale;
  if (ns > kMax) return std::nullopt;
  return Duration(static_cast<int64_t>(ns));
}

std::string format_duration(Duration d) {
  int64_t ns = d.count();
  struct Unit {
    const char* name;
    int64_t ns;
  };
  static constexpr Unit kUnits[] = {{"h", 3600'000'000'000}, {"m", 60'000'000'000},
                                    {"s", 1'000'000'000},    {"ms", 1'000'000},
                                    {"us", 1'000},           {"ns", 1}};
  if (ns == 0) return "0s";
  for (const auto& u : kUnits) {
    if (ns % u.ns == 0) return std::to_string(ns / u.ns) + u.name;
  }
  return std::to_string(ns) + "ns";
}

}  // namespace sluice::core
