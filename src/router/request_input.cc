#include "router/request_input.h"

#include "http/parser.h"

namespace sluice::router {

std::optional<std::string_view> path_segment(std::string_view path, uint32_t n) {
  if (n == 0) return std::nullopt;
  if (!path.empty() && path.front() == '/') path.remove_prefix(1);
  for (uint32_t i = 1;; ++i) {
    const size_t slash = path.find('/');
    if (i == n) return path.substr(0, slash);
    if (slash == std::string_view::npos) return std::nullopt;
    path.remove_prefix(slash + 1);
  }
}

std::optional<std::string_view> input_value(const config::RequestInput& input,
                                            const RequestInputs& r) {
  using Kind = config::RequestInput::Kind;
  switch (input.kind) {
    case Kind::kNone:
      return std::nullopt;
    case Kind::kHeader: {
      if (r.headers == nullptr) return std::nullopt;
      std::string_view v = r.headers->get(input.name);
      // get() cannot tell absent from empty; only an empty value pays for the second look.
      if (v.empty() && !r.headers->has(input.name)) return std::nullopt;
      return v;
    }
    case Kind::kQuery:
      return http::find_query_param(r.query, input.name);
    case Kind::kPathSegment:
      return path_segment(r.path, input.segment);
    case Kind::kPath:
      return r.path;
    case Kind::kClientIp:
      return r.client_ip;
    case Kind::kRoute:
      return r.route;
    case Kind::kService:
      return r.service;
    case Kind::kMethod:
      return r.method;
  }
  return std::nullopt;
}

}  // namespace sluice::router
