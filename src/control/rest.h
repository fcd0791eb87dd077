// What every control-plane service needs to read a request and write an answer: JSON replies and
// error bodies (one shape for all: {"error", "errors"}), bounded body parsing, field readers that
// collect every problem at once, and query parameters with bounds.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/server.h"

namespace sluice::control {

std::string body_of(const nlohmann::json& j);
HttpResponse json_response(int status, const nlohmann::json& j);
// {"error": error, "errors": [...]}: a 400 always lists its errors; 401 carries WWW-Authenticate.
// `errors` by reference: callers pass errors.front() and the list in one call, and a by-value
// parameter could be moved from before the message is copied (argument order is unspecified).
HttpResponse error_response(int status, const std::string& error,
                            const std::vector<std::string>& errors = {});

std::string iso_time(int64_t ms);
std::optional<int64_t> parse_int(std::string_view s);
// "/v1/a/b%2Fc" -> {"v1", "a", "b/c"}: segments, percent-decoded, empty ones dropped.
std::vector<std::string> path_segments(std::string_view path);

// Reads a JSON request body (core::parse_json: nesting bounded, duplicate keys refused); 400
// with the parser's message otherwise.
std::optional<nlohmann::json> parse_body(const std::string& body, HttpResponse& error);

// C0 controls other than tab, newline and carriage return (and DEL): never meant in a reason,
// a name or an error text, and NUL cannot be stored as text at all (it was a 503 from the store).
bool has_control_chars(std::string_view s);
inline constexpr const char* kControlCharsError =
    "must not contain control characters (other than tab, newline and carriage return)";
bool is_blank(std::string_view s);

// ?name=N with bounds: `fallback` when absent; nullopt (and a message in `errors`) when malformed.
std::optional<int64_t> int_param(const HttpRequest& req, std::string_view name, int64_t fallback,
                                 int64_t lo, int64_t hi, std::vector<std::string>& errors);

// Field readers that collect errors ("reason: expected a string") instead of stopping.
class Fields {
 public:
  Fields(const nlohmann::json& obj, std::string prefix, std::vector<std::string>& errors,
         std::initializer_list<std::string_view> known);

  const nlohmann::json* get(std::string_view key) const;
  std::optional<std::string> string(std::string_view key, bool required) const;
  std::optional<int64_t> integer(std::string_view key, int64_t lo, int64_t hi) const;
  std::optional<bool> boolean(std::string_view key) const;
  void error(std::string_view key, std::string message) const;

 private:
  const nlohmann::json& obj_;
  std::string prefix_;
  std::vector<std::string>& errors_;
};

}  // namespace sluice::control
