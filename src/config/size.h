// Byte sizes as written in config files ("65536", "64KiB", "10MiB") and back.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::config {

// Parses a plain decimal byte count or one with a binary suffix: B, KiB, MiB, GiB, TiB
// ("64KiB" = 65536). Decimal suffixes (KB, MB) are rejected rather than guessed at, as are signs,
// fractions, spaces and values that do not fit in 64 bits.
std::optional<uint64_t> parse_size(std::string_view text);

// Shortest exact rendering with a binary suffix when one divides evenly: 65536 -> "64KiB",
// 1000 -> "1000".
std::string format_size(uint64_t bytes);

}  // namespace sluice::config
