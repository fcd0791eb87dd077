// Durations as written in config files ("500ms", "2s", "1m") and back.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::core {

using Duration = std::chrono::nanoseconds;

// Parses "<number><unit>" with unit one of ns, us, ms, s, m, h. The number may have a fraction
// ("1.5s"). Returns nullopt for anything else, including negative values and a missing unit.
std::optional<Duration> parse_duration(std::string_view text);

// Shortest exact rendering: 1500ms -> "1500ms", 2s -> "2s".
std::string format_duration(Duration d);

}  // namespace sluice::core
