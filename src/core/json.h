// JSON from outside the process (API request bodies, a server's answers, files written by another
// process) is parsed here and nowhere else: nesting is bounded and duplicate keys are refused, so
// that no later recursion (copy, dump, compare, validation, conversion to YAML) can exhaust the
// stack and no value is silently dropped by "last key wins".
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace sluice::core {

// Containers (objects and arrays) open at once; `[[1]]` is 2 levels. Deep enough for any
// document Sluice exchanges (config specs nest ~6), shallow enough for every recursive walk.
inline constexpr int kMaxJsonDepth = 64;

// Parses one JSON text (RFC 8259, strict: no comments, nothing after the value). On failure
// returns nullopt and sets `error` to one line naming the problem:
//   "JSON nested deeper than 64 levels"
//   "resources[0].spec.name: duplicate key"
//   "malformed JSON: parse error at line 1, column 3: syntax error ..."
// The parser itself is iterative; memory is bounded by the text's size. Never throws except
// std::bad_alloc.
std::optional<nlohmann::json> parse_json(std::string_view text, std::string* error,
                                         int max_depth = kMaxJsonDepth);

// parse_json for callers that only ask "is it usable?": the value, or a discarded one
// (is_discarded()) on any failure, like nlohmann::json::parse(text, nullptr, false).
nlohmann::json parse_json_or_discarded(std::string_view text, int max_depth = kMaxJsonDepth);

}  // namespace sluice::core
