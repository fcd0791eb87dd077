// Process log (not the access log): one line per event on stderr, level-filtered.
#pragma once

#include <fmt/core.h>

#include <string_view>
#include <utility>

namespace sluice::core {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_log_level(LogLevel level);
bool log_enabled(LogLevel level);
void log_line(LogLevel level, std::string_view message);

template <class... Args>
void log(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
  if (log_enabled(level)) log_line(level, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void log_info(fmt::format_string<Args...> f, Args&&... args) {
  log(LogLevel::kInfo, f, std::forward<Args>(args)...);
}
template <class... Args>
void log_warn(fmt::format_string<Args...> f, Args&&... args) {
  log(LogLevel::kWarn, f, std::forward<Args>(args)...);
}
template <class... Args>
void log_error(fmt::format_string<Args...> f, Args&&... args) {
  log(LogLevel::kError, f, std::forward<Args>(args)...);
}

}  // namespace sluice::core
