#include "router/router.h"

#include <algorithm>
#include <utility>

#include "router/path_trie.h"
#include "router/string_table.h"

namespace sluice::router {

namespace {

// Route lists one lookup may merge (a few per host class and path depth in practice). A request
// that would need more is matched by a plain scan of every route instead.
constexpr int kMaxLists = 32;

enum MethodBit : uint32_t {
  kGet = 1u << 0,
  kHead = 1u << 1,
  kPost = 1u << 2,
  kPut = 1u << 3,
  kDelete = 1u << 4,
  kPatch = 1u << 5,
  kOptions = 1u << 6,
  kConnect = 1u << 7,
  kTrace = 1u << 8,
};

// Methods are case-sensitive tokens (RFC 9110 9.1): "get" is not GET.
uint32_t method_bit(std::string_view m) {
  switch (m.size()) {
    case 3:
      if (m == "GET") return kGet;
      if (m == "PUT") return kPut;
      return 0;
    case 4:
      if (m == "POST") return kPost;
      if (m == "HEAD") return kHead;
      return 0;
    case 5:
      if (m == "PATCH") return kPatch;
      if (m == "TRACE") return kTrace;
      return 0;
    case 6:
      if (m == "DELETE") return kDelete;
      return 0;
    case 7:
      if (m == "OPTIONS") return kOptions;
      if (m == "CONNECT") return kConnect;
      return 0;
    default:
      return 0;
  }
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return out;
}

// "Example.COM." -> "example.com": DNS names are case-insensitive and the trailing dot of a
// fully qualified name names the same host.
std::string_view trim_host(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  return host;
}

}  // namespace

struct Router::Impl {
  using PathKind = PathTrie::Kind;

  struct Matcher {
    PathTrie::Kind kind = PathTrie::Kind::kDeeper;
    std::string path;
    bool indexed = false;  // absolute path: found through the tries, path and host already hold
    bool any_host = false;
    std::vector<std::string> exact_hosts;     // lower-case, no trailing dot
    std::vector<std::string> wildcard_hosts;  // lower-case suffix with its dot: ".example.com"
    bool any_method = true;
    uint32_t method_bits = 0;
    std::vector<std::string> other_methods;  // methods without a bit
    std::vector<config::HeaderMatch> headers;
  };

  std::vector<Matcher> matchers;
  // One trie per host class: each exact host, each wildcard suffix, and "any host". A route
  // sits in the trie of every class it names, so nothing is copied per host.
  std::vector<PathTrie> tries;
  StringTable<true> exact_hosts;     // host -> trie
  StringTable<true> wildcard_hosts;  // ".suffix" -> trie
  uint32_t any_trie = 0;
  size_t min_wildcard = SIZE_MAX;
  size_t max_wildcard = 0;
  std::vector<uint32_t> unindexed;  // routes with a path that does not start with '/'

  static Matcher compile(const config::RouteMatch& match) {
    Matcher m;
    if (!match.path.empty()) {
      m.kind = PathKind::kExact;
      m.path = match.path;
    } else {
      m.path = match.path_prefix.empty() ? "/" : match.path_prefix;
      m.kind = m.path.back() == '/' ? PathKind::kDeeper : PathKind::kPrefix;
    }
    m.indexed = m.path[0] == '/';
    m.any_host = match.hosts.empty();
    for (const std::string& h : match.hosts) {
      std::string host = to_lower(trim_host(h));
      std::vector<std::string>* into = &m.exact_hosts;
      if (host == "*") {
        m.any_host = true;
        continue;
      }
      if (host.size() > 2 && host[0] == '*' && host[1] == '.') {
        host.erase(0, 1);
        into = &m.wildcard_hosts;
      }
      if (std::find(into->begin(), into->end(), host) == into->end()) {
        into->push_back(std::move(host));
      }
    }
    m.any_method = match.methods.empty();
    for (const std::string& method : match.methods) {
      if (uint32_t bit = method_bit(method)) {
        m.method_bits |= bit;
      } else {
        m.other_methods.push_back(method);
      }
    }
    m.headers = match.headers;
    for (config::HeaderMatch& h : m.headers) h.name = to_lower(h.name);
    return m;
  }

  void build() {
    std::vector<std::pair<std::string, uint32_t>> exact;
    std::vector<std::pair<std::string, uint32_t>> wild;
    auto trie_for = [&](std::vector<std::pair<std::string, uint32_t>>& table,
                        const std::string& key) {
      for (const auto& [k, t] : table) {
        if (k == key) return t;
      }
      table.emplace_back(key, static_cast<uint32_t>(tries.size()));
      tries.emplace_back();
      return table.back().second;
    };
    any_trie = 0;
    tries.emplace_back();
    for (uint32_t r = 0; r < matchers.size(); ++r) {
      const Matcher& m = matchers[r];
      if (!m.indexed) {
        unindexed.push_back(r);
        continue;
      }
      // The node a route hangs on: its path, less the trailing '/' of a "/a/b/" prefix.
      std::string_view node_path = m.path;
      if (m.kind == PathKind::kDeeper) node_path.remove_suffix(1);
      if (m.any_host) tries[any_trie].add(node_path, m.kind, r);
      for (const std::string& h : m.exact_hosts) {
        tries[trie_for(exact, h)].add(node_path, m.kind, r);
      }
      for (const std::string& w : m.wildcard_hosts) {
        tries[trie_for(wild, w)].add(node_path, m.kind, r);
        min_wildcard = std::min(min_wildcard, w.size());
        max_wildcard = std::max(max_wildcard, w.size());
      }
    }
    for (PathTrie& t : tries) t.finish();
    exact_hosts.build(exact);
    wildcard_hosts.build(wild);
  }

  static bool host_matches(const Matcher& m, std::string_view host) {
    if (m.any_host) return true;
    for (const std::string& h : m.exact_hosts) {
      if (http::iequals(h, host)) return true;
    }
    for (const std::string& w : m.wildcard_hosts) {
      if (host.size() > w.size() && http::iequals(host.substr(host.size() - w.size()), w)) {
        return true;
      }
    }
    return false;
  }

  static bool path_matches(const Matcher& m, std::string_view path) {
    switch (m.kind) {
      case PathKind::kExact:
        return path == m.path;
      case PathKind::kPrefix:
        return path.starts_with(m.path) &&
               (path.size() == m.path.size() || path[m.path.size()] == '/');
      case PathKind::kDeeper:
        return path.starts_with(m.path);
    }
    return false;
  }

  static bool headers_match(const Matcher& m, const http::HeaderMap* headers) {
    for (const config::HeaderMatch& want : m.headers) {
      if (headers == nullptr) return false;
      bool found = false;
      // Any field of that name may satisfy the matcher (a header can repeat).
      for (size_t i = 0, n = headers->size(); i < n && !found; ++i) {
        http::HeaderMap::Field f = headers->at(i);
        found = http::iequals(f.name, want.name) && (want.present_only || f.value == want.value);
      }
      if (!found) return false;
    }
    return true;
  }

  // Method and headers; host and path too unless the tries already established them.
  static bool matches(const Matcher& m, const RequestView& req, std::string_view host,
                      uint32_t method, bool check_host_and_path) {
    if (check_host_and_path && (!path_matches(m, req.path) || !host_matches(m, host))) {
      return false;
    }
    if (!m.any_method) {
      if (method != 0) {
        if ((m.method_bits & method) == 0) return false;
      } else if (std::find(m.other_methods.begin(), m.other_methods.end(), req.method) ==
                 m.other_methods.end()) {
        return false;
      }
    }
    return headers_match(m, req.headers);
  }
};

Router::Router(const config::GatewayConfig& config) : impl_(std::make_unique<Impl>()) {
  routes_.reserve(config.routes.size());
  impl_->matchers.reserve(config.routes.size());
  for (size_t i = 0; i < config.routes.size(); ++i) {
    const config::Route& r = config.routes[i];
    Route route;
    route.index = static_cast<uint32_t>(i);
    route.name = r.name;
    route.service_index = r.service_index;
    if (!r.services.empty()) route.split = WeightedSplit(r);
    route.strip_prefix = r.strip_prefix;
    route.prefix_rewrite = r.prefix_rewrite;
    routes_.push_back(std::move(route));
    impl_->matchers.push_back(Impl::compile(r.match));
  }
  impl_->build();
}

Router::~Router() = default;

const Route* Router::match(const RequestView& request) const {
  const Impl& impl = *impl_;
  const std::string_view host = trim_host(request.host);
  const uint32_t method = method_bit(request.method);

  // Gather every list of routes whose host class and path condition hold...
  PathTrie::List lists[kMaxLists];
  int n = 0;
  bool overflow = false;
  auto sink = [&](PathTrie::List l) {
    if (n < kMaxLists) {
      lists[n++] = l;
    } else {
      overflow = true;
    }
  };
  const std::string_view path = request.path;
  if (!path.empty() && path[0] == '/') {
    uint32_t t = impl.exact_hosts.find(host);
    if (t != StringTable<true>::kNotFound) impl.tries[t].collect(path, sink);
    if (!impl.wildcard_hosts.empty()) {
      // Every ".suffix" after a non-empty label; nested wildcards may all apply.
      for (size_t i = 1; i < host.size(); ++i) {
        const size_t len = host.size() - i;
        if (len < impl.min_wildcard) break;
        if (host[i] != '.' || len > impl.max_wildcard) continue;
        t = impl.wildcard_hosts.find(host.substr(i));
        if (t != StringTable<true>::kNotFound) impl.tries[t].collect(path, sink);
      }
    }
    impl.tries[impl.any_trie].collect(path, sink);
  }
  const int indexed_lists = n;
  if (!impl.unindexed.empty()) {
    sink({impl.unindexed.data(), impl.unindexed.data() + impl.unindexed.size()});
  }

  if (overflow) {
    for (uint32_t r = 0; r < impl.matchers.size(); ++r) {
      if (Impl::matches(impl.matchers[r], request, host, method, true)) return &routes_[r];
    }
    return nullptr;
  }

  // ...then merge them by route index, so the first route that also passes method and headers
  // is the first in config order.
  for (;;) {
    uint32_t best = UINT32_MAX;
    for (int i = 0; i < n; ++i) {
      if (lists[i].begin != lists[i].end && *lists[i].begin < best) best = *lists[i].begin;
    }
    if (best == UINT32_MAX) return nullptr;
    bool from_unindexed = false;
    for (int i = 0; i < n; ++i) {
      if (lists[i].begin != lists[i].end && *lists[i].begin == best) {
        ++lists[i].begin;
        from_unindexed |= i >= indexed_lists;
      }
    }
    if (Impl::matches(impl.matchers[best], request, host, method, from_unindexed)) {
      return &routes_[best];
    }
  }
}

void Router::rewrite_path(const Route& route, std::string_view path, std::string& out) {
  const size_t start = out.size();
  const std::string& strip = route.strip_prefix;
  std::string_view rest = path;
  bool replace = strip.empty();  // no strip_prefix: prefix_rewrite goes in front
  if (!strip.empty() && path.starts_with(strip)) {
    if (strip.back() == '/') {
      rest = path.substr(strip.size() - 1);  // keep the slash that ends the prefix
      replace = true;
    } else if (path.size() == strip.size() || path[strip.size()] == '/') {
      rest = path.substr(strip.size());
      replace = true;
    }
  }
  if (replace && !route.prefix_rewrite.empty()) {
    out.append(route.prefix_rewrite);
    // "/v2/" + "/x" is "/v2/x", not "/v2//x".
    if (out.back() == '/' && !rest.empty() && rest.front() == '/') rest.remove_prefix(1);
  }
  out.append(rest);
  if (out.size() == start) out.push_back('/');
}

}  // namespace sluice::router
