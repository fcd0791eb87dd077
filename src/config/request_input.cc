#include "config/request_input.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <vector>

#include <fmt/format.h>

#include "config/reader.h"

namespace sluice::config {
namespace {

using Kind = RequestInput::Kind;

constexpr std::array kHashOnKinds = {Kind::kHeader, Kind::kQuery, Kind::kClientIp, Kind::kPath};
constexpr std::array kRateKeyKinds = {Kind::kClientIp, Kind::kRoute,  Kind::kService,
                                      Kind::kMethod,   Kind::kHeader, Kind::kQuery};
constexpr std::array kPriorityKeyKinds = {Kind::kHeader, Kind::kQuery};
constexpr std::array kUnitKeyKinds = {Kind::kHeader, Kind::kQuery, Kind::kPathSegment};

// The word of each kind as written; inputs with a name or number take a ':' and that after it.
constexpr std::string_view word(Kind kind) {
  switch (kind) {
    case Kind::kNone:
      break;
    case Kind::kHeader:
      return "header";
    case Kind::kQuery:
      return "query";
    case Kind::kPathSegment:
      return "path_segment";
    case Kind::kPath:
      return "path";
    case Kind::kClientIp:
      return "client_ip";
    case Kind::kRoute:
      return "route";
    case Kind::kService:
      return "service";
    case Kind::kMethod:
      return "method";
  }
  return "";
}

constexpr bool has_argument(Kind kind) {
  return kind == Kind::kHeader || kind == Kind::kQuery || kind == Kind::kPathSegment;
}

// How the form is shown in errors: "header:NAME", "path_segment:N", "client_ip".
std::string form(Kind kind) {
  std::string out(word(kind));
  if (kind == Kind::kPathSegment) return out + ":N";
  if (has_argument(kind)) return out + ":NAME";
  return out;
}

// RFC 9110 token characters (header names).
bool is_tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

// A query parameter name as written in a key: no spaces, controls, '&', '=' or '#'.
bool is_query_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u != 0x7f && c != '&' && c != '=' && c != '#';
  });
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace

const RequestInputSyntax kHashOnSyntax{kHashOnKinds, false};
const RequestInputSyntax kRateKeySyntax{kRateKeyKinds, true};
const RequestInputSyntax kPriorityKeySyntax{kPriorityKeyKinds, false};
const RequestInputSyntax kUnitKeySyntax{kUnitKeyKinds, false};

std::string to_string(const RequestInput& input) {
  std::string out(word(input.kind));
  switch (input.kind) {
    case Kind::kHeader:
    case Kind::kQuery:
      return out + ":" + input.name;
    case Kind::kPathSegment:
      return out + ":" + std::to_string(input.segment);
    default:
      return out;
  }
}

std::optional<RequestInput> parse_request_input(std::string_view text,
                                                const RequestInputSyntax& syntax,
                                                std::string& error) {
  RequestInput in;
  for (Kind kind : syntax.kinds) {
    const std::string_view w = word(kind);
    if (!has_argument(kind)) {
      if (text != w) continue;
      in.kind = kind;
      return in;
    }
    if (!text.starts_with(w) || text.size() == w.size() || text[w.size()] != ':') continue;
    const std::string_view arg = text.substr(w.size() + 1);
    if (kind == Kind::kHeader && is_token(arg)) {
      in.kind = kind;
      in.name = to_lower(arg);
      return in;
    }
    if (kind == Kind::kQuery && is_query_name(arg)) {
      in.kind = kind;
      in.name = std::string(arg);
      return in;
    }
    if (kind == Kind::kPathSegment && !arg.empty() &&
        std::all_of(arg.begin(), arg.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      uint64_t n = 0;
      auto [end, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), n);
      if (ec == std::errc() && n >= 1 && n <= kMaxPathSegment) {
        in.kind = kind;
        in.segment = static_cast<uint32_t>(n);
        return in;
      }
      error = fmt::format(
          "path_segment must be 1..{} (segments count from 1: in /users/42, "
          "segment 2 is 42), got {}",
          kMaxPathSegment, arg);
      return std::nullopt;
    }
  }
  // "must be header:NAME, query:NAME or path_segment:N, got 'x'", in the setting's own order.
  std::string forms;
  std::vector<std::string_view> plain;
  for (size_t i = 0; i < syntax.kinds.size(); ++i) {
    if (i > 0) forms += i + 1 == syntax.kinds.size() ? " or " : ", ";
    forms += form(syntax.kinds[i]);
    if (!has_argument(syntax.kinds[i])) plain.push_back(word(syntax.kinds[i]));
  }
  error = fmt::format("must be {}, got '{}'{}", forms, text,
                      syntax.suggest ? did_you_mean(text, plain) : "");
  return std::nullopt;
}

}  // namespace sluice::config
