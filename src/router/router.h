// The route table: compiled once per config snapshot, then matched per request without allocating.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "http/header_map.h"
#include "router/split.h"

namespace sluice::router {

struct RequestView {
  std::string_view method;  // upper-case as received, e.g. "GET"
  std::string_view host;    // Host header without port, any case
  std::string_view path;    // path only, no query string
  const http::HeaderMap* headers = nullptr;
};

struct Route {
  uint32_t index = 0;  // position in config.routes
  std::string name;
  size_t service_index = 0;  // into config.services; the first service of a split
  WeightedSplit split;       // routes[].services; empty for a route with one service
  std::string strip_prefix;
  std::string prefix_rewrite;
};

class Router {
 public:
  // Config must have passed validation (every route names an existing service) and must outlive
  // the router (routes' splits keep views of its header names).
  explicit Router(const config::GatewayConfig& config);
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // First route in config order whose host, path, method and headers all match; null if none.
  // Host: exact (case-insensitive, a trailing '.' ignored) or "*.suffix" (one or more labels
  // before ".suffix"); no hosts = any. Path: exact, or prefix on a segment boundary ("/api"
  // matches "/api" and "/api/x", not "/apix"; "/api/" matches "/api/x", not "/api"). Methods:
  // exact, case-sensitive. Headers: some field of that name has exactly the value (or exists,
  // with present_only). Does not allocate; cost depends on the routes for this host and first
  // path segment, not on the size of the table.
  const Route* match(const RequestView& request) const;

  const std::vector<Route>& routes() const { return routes_; }

  // Path as sent upstream: strip_prefix removed (if the path starts with it), prefix_rewrite
  // put in its place; never empty (at least "/"). Appends to `out`.
  // strip_prefix is removed only on a segment boundary ("/api" strips "/api" and "/api/x", not
  // "/apix"; a trailing '/' in it is kept in the result). A path that does not start with it is
  // sent unchanged; an empty strip_prefix means prefix_rewrite is put in front of the path.
  // Joining never doubles a slash: rewrite "/v2/" + "/x" = "/v2/x".
  static void rewrite_path(const Route& route, std::string_view path, std::string& out);

 private:
  struct Impl;
  std::vector<Route> routes_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::router
