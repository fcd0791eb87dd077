#include "router/router.h"

#include <gtest/gtest.h>

#include <cctype>
#include <string>
#include <vector>

namespace sluice::router {
namespace {

config::Route make_route(std::string name, std::string prefix, std::vector<std::string> hosts = {},
                         std::vector<std::string> methods = {}) {
  config::Route r;
  r.name = std::move(name);
  r.match.path_prefix = std::move(prefix);
  r.match.hosts = std::move(hosts);
  r.match.methods = std::move(methods);
  return r;
}

class RouterTest : public ::testing::Test {
 protected:
  void add(config::Route r) {
    r.service_index = config_.routes.size();
    config_.routes.push_back(std::move(r));
  }

  // Name of the matched route, or "" when none.
  std::string match(std::string_view host, std::string_view path, std::string_view method = "GET",
                    const http::HeaderMap* headers = nullptr) {
    if (!router_) router_ = std::make_unique<Router>(config_);
    const Route* r = router_->match({method, host, path, headers});
    return r ? r->name : "";
  }

  config::GatewayConfig config_;
  std::unique_ptr<Router> router_;
};

TEST_F(RouterTest, EmptyTableMatchesNothing) {
  EXPECT_EQ(match("a.com", "/"), "");
}

TEST_F(RouterTest, ExactHostIsCaseInsensitive) {
  add(make_route("api", "/", {"api.example.com"}));
  EXPECT_EQ(match("api.example.com", "/x"), "api");
  EXPECT_EQ(match("API.Example.COM", "/x"), "api");
  EXPECT_EQ(match("api.example.com.", "/x"), "api");  // fully qualified form
  EXPECT_EQ(match("www.example.com", "/x"), "");
  EXPECT_EQ(match("", "/x"), "");
}

TEST_F(RouterTest, ConfigHostIsCaseInsensitiveToo) {
  add(make_route("api", "/", {"API.Example.com", "*.Internal.NET"}));
  EXPECT_EQ(match("api.example.com", "/"), "api");
  EXPECT_EQ(match("x.internal.net", "/"), "api");
}

TEST_F(RouterTest, WildcardNeedsANonEmptyLabel) {
  add(make_route("wild", "/", {"*.example.com"}));
  EXPECT_EQ(match("a.example.com", "/"), "wild");
  EXPECT_EQ(match("a.b.example.com", "/"), "wild");
  EXPECT_EQ(match("A.B.Example.Com", "/"), "wild");
  EXPECT_EQ(match("example.com", "/"), "");
  EXPECT_EQ(match(".example.com", "/"), "");
  EXPECT_EQ(match("aexample.com", "/"), "");
  EXPECT_EQ(match("a.example.com.evil", "/"), "");
}

TEST_F(RouterTest, NestedWildcardsKeepConfigOrder) {
  add(make_route("outer-get", "/", {"*.example.com"}, {"GET"}));
  add(make_route("inner", "/", {"*.b.example.com"}));
  add(make_route("outer", "/", {"*.example.com"}));
  EXPECT_EQ(match("x.b.example.com", "/", "GET"), "outer-get");
  EXPECT_EQ(match("x.b.example.com", "/", "POST"), "inner");
  EXPECT_EQ(match("x.c.example.com", "/", "POST"), "outer");
  EXPECT_EQ(match("b.example.com", "/", "POST"), "outer");
}

TEST_F(RouterTest, ExactHostAlsoSeesWildcardAndAnyHostRoutesInOrder) {
  add(make_route("any-first", "/health"));
  add(make_route("wild", "/", {"*.example.com"}, {"POST"}));
  add(make_route("exact", "/", {"api.example.com"}));
  add(make_route("fallback", "/"));
  EXPECT_EQ(match("api.example.com", "/health"), "any-first");
  EXPECT_EQ(match("api.example.com", "/x", "POST"), "wild");
  EXPECT_EQ(match("api.example.com", "/x", "GET"), "exact");
  EXPECT_EQ(match("www.example.com", "/x", "GET"), "fallback");
  EXPECT_EQ(match("other.org", "/x", "POST"), "fallback");
  EXPECT_EQ(match("", "/x"), "fallback");
}

TEST_F(RouterTest, StarAloneMeansAnyHost) {
  add(make_route("star", "/", {"*"}));
  EXPECT_EQ(match("whatever.org", "/"), "star");
}

TEST_F(RouterTest, PrefixMatchesOnSegmentBoundary) {
  add(make_route("api", "/api"));
  EXPECT_EQ(match("h", "/api"), "api");
  EXPECT_EQ(match("h", "/api/"), "api");
  EXPECT_EQ(match("h", "/api/x/y"), "api");
  EXPECT_EQ(match("h", "/apix"), "");
  EXPECT_EQ(match("h", "/ap"), "");
  EXPECT_EQ(match("h", "/API"), "");  // paths are case-sensitive
}

TEST_F(RouterTest, PrefixEndingInSlashIsARawPrefix) {
  add(make_route("api", "/api/"));
  EXPECT_EQ(match("h", "/api/"), "api");
  EXPECT_EQ(match("h", "/api/x"), "api");
  EXPECT_EQ(match("h", "/api"), "");
}

TEST_F(RouterTest, EmptyPrefixIsRoot) {
  add(make_route("root", ""));
  EXPECT_EQ(match("h", "/"), "root");
  EXPECT_EQ(match("h", "/anything/at/all"), "root");
}

TEST_F(RouterTest, ExactPath) {
  config::Route r;
  r.name = "exact";
  r.match.path = "/login";
  add(r);
  EXPECT_EQ(match("h", "/login"), "exact");
  EXPECT_EQ(match("h", "/login/"), "");
  EXPECT_EQ(match("h", "/login/x"), "");
  EXPECT_EQ(match("h", "/logi"), "");
}

TEST_F(RouterTest, Methods) {
  add(make_route("read", "/", {}, {"GET", "HEAD"}));
  add(make_route("custom", "/", {}, {"PURGE"}));
  add(make_route("any", "/x"));
  EXPECT_EQ(match("h", "/", "GET"), "read");
  EXPECT_EQ(match("h", "/", "HEAD"), "read");
  EXPECT_EQ(match("h", "/", "PURGE"), "custom");
  EXPECT_EQ(match("h", "/", "POST"), "");
  EXPECT_EQ(match("h", "/", "get"), "");  // methods are case-sensitive
  EXPECT_EQ(match("h", "/x", "DELETE"), "any");
  EXPECT_EQ(match("h", "/x", "BREW"), "any");
}

TEST_F(RouterTest, Headers) {
  config::Route mobile = make_route("mobile", "/");
  mobile.match.headers.push_back({"x-channel", "mobile", false});
  config::Route tenant = make_route("tenant", "/");
  tenant.match.headers.push_back({"X-Tenant", "", true});
  add(mobile);
  add(tenant);
  add(make_route("rest", "/"));

  http::HeaderMap h;
  EXPECT_EQ(match("h", "/", "GET", nullptr), "rest");
  EXPECT_EQ(match("h", "/", "GET", &h), "rest");
  h.add("X-Channel", "Mobile");  // values are exact
  EXPECT_EQ(match("h", "/", "GET", &h), "rest");
  h.add("x-channel", "mobile");  // a repeated header: any of its fields may match
  EXPECT_EQ(match("h", "/", "GET", &h), "mobile");

  http::HeaderMap t;
  t.add("x-tenant", "");
  EXPECT_EQ(match("h", "/", "GET", &t), "tenant");
}

TEST_F(RouterTest, EmptyValueWithoutPresentOnlyNeedsAnEmptyValue) {
  config::Route r = make_route("empty", "/");
  r.match.headers.push_back({"x-a", "", false});
  add(r);
  http::HeaderMap h;
  EXPECT_EQ(match("h", "/", "GET", &h), "");
  h.add("x-a", "v");
  EXPECT_EQ(match("h", "/", "GET", &h), "");
  http::HeaderMap e;
  e.add("x-a", "");
  EXPECT_EQ(match("h", "/", "GET", &e), "empty");
}

TEST_F(RouterTest, AllConditionsMustHold) {
  config::Route r = make_route("all", "/api", {"api.example.com"}, {"POST"});
  r.match.headers.push_back({"x-channel", "web", false});
  add(r);
  http::HeaderMap h;
  h.add("x-channel", "web");
  EXPECT_EQ(match("api.example.com", "/api/a", "POST", &h), "all");
  EXPECT_EQ(match("www.example.com", "/api/a", "POST", &h), "");
  EXPECT_EQ(match("api.example.com", "/web", "POST", &h), "");
  EXPECT_EQ(match("api.example.com", "/api/a", "GET", &h), "");
  EXPECT_EQ(match("api.example.com", "/api/a", "POST", nullptr), "");
}

TEST_F(RouterTest, FirstMatchInConfigOrderWins) {
  add(make_route("broad", "/api"));
  add(make_route("narrow", "/api/accounts"));
  EXPECT_EQ(match("h", "/api/accounts/1"), "broad");
  Router router(config_);
  const Route* r = router.match({"GET", "h", "/api/accounts", nullptr});
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->index, 0u);
}

TEST_F(RouterTest, RouteCarriesConfigFields) {
  config::Route r = make_route("a", "/a");
  r.strip_prefix = "/a";
  r.prefix_rewrite = "/b";
  add(make_route("z", "/z"));
  add(r);
  Router router(config_);
  const Route* m = router.match({"GET", "h", "/a/x", nullptr});
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->index, 1u);
  EXPECT_EQ(m->name, "a");
  EXPECT_EQ(m->service_index, 1u);
  EXPECT_EQ(m->strip_prefix, "/a");
  EXPECT_EQ(m->prefix_rewrite, "/b");
  EXPECT_EQ(&router.routes()[1], m);
}

// A large table through the index must give what a plain scan in config order gives.
TEST_F(RouterTest, ManyRoutesAgreeWithLinearScan) {
  for (int i = 0; i < 400; ++i) {
    config::Route r;
    r.name = "r" + std::to_string(i);
    if (i % 3 == 1) r.match.hosts.push_back(i % 2 ? "a.example.com" : "B.example.com");
    if (i % 7 == 2) r.match.hosts.push_back("*.example.com");
    if (i % 17 == 3) r.match.hosts.push_back("*.deep.example.com");
    std::string p = "/svc" + std::to_string(i % 40);
    if (i % 5 == 0) p += "/v" + std::to_string(i % 3);
    if (i % 11 == 0) p += "/";
    if (i % 116 == 0) p = "/";  // catch-alls, POST only (i % 4 == 0)
    if (i % 9 == 4) {
      r.match.path = p;
    } else {
      r.match.path_prefix = p;
    }
    if (i == 397) r.match.path = "*";  // not an absolute path: never indexed
    if (i % 4 == 0) r.match.methods = {"POST"};
    add(r);
  }
  // Reference semantics written independently of the index.
  auto expected = [&](std::string_view host, std::string_view path, std::string_view method) {
    std::string lower_host;
    for (char c : host) lower_host += static_cast<char>(std::tolower(c));
    for (const config::Route& r : config_.routes) {
      bool host_ok = r.match.hosts.empty();
      for (std::string h : r.match.hosts) {
        for (char& c : h) c = static_cast<char>(std::tolower(c));
        if (h[0] == '*') {
          host_ok |= lower_host.size() > h.size() - 1 && lower_host.ends_with(h.substr(1));
        } else {
          host_ok |= lower_host == h;
        }
      }
      bool path_ok;
      if (!r.match.path.empty()) {
        path_ok = path == r.match.path;
      } else {
        const std::string& p = r.match.path_prefix;
        path_ok = path.starts_with(p) &&
                  (p.back() == '/' || path.size() == p.size() || path[p.size()] == '/');
      }
      bool method_ok = r.match.methods.empty() || r.match.methods[0] == method;
      if (host_ok && path_ok && method_ok) return r.name;
    }
    return std::string();
  };
  const std::vector<std::string> hosts = {
      "a.example.com",      "b.example.com",    "B.EXAMPLE.COM", "c.example.com",
      "x.deep.example.com", "deep.example.com", "nothing.net",   ""};
  int checked = 0;
  int hits = 0;
  for (const std::string& host : hosts) {
    for (int s = 0; s < 45; ++s) {
      for (std::string tail : {"", "/", "/v0", "/v1/", "/v1/x", "/v2", "x", "/x/y/z"}) {
        std::string path = "/svc" + std::to_string(s) + tail;
        for (const char* method : {"GET", "POST"}) {
          std::string want = expected(host, path, method);
          ASSERT_EQ(match(host, path, method), want) << host << " " << path << " " << method;
          ++checked;
          hits += !want.empty();
        }
      }
    }
    for (const char* path : {"/", "*", "//", "/svc1//v0"}) {
      ASSERT_EQ(match(host, path), expected(host, path, "GET")) << host << " " << path;
    }
  }
  EXPECT_GT(checked, 5000);
  EXPECT_GT(hits, checked / 2);
  EXPECT_LT(hits, checked);
}

// More route lists than one lookup merges: the router falls back to a scan, same answer.
TEST_F(RouterTest, VeryDeepTablesFallBackToAScan) {
  std::string deep;
  for (int i = 0; i < 40; ++i) deep += "/a";
  for (int depth = 40; depth >= 1; --depth) {
    add(make_route("post-" + std::to_string(depth), deep.substr(0, 2 * depth), {}, {"POST"}));
  }
  add(make_route("get-5", deep.substr(0, 10), {}, {"GET"}));
  EXPECT_EQ(match("h", deep, "POST"), "post-40");
  EXPECT_EQ(match("h", deep + "/b", "POST"), "post-40");
  EXPECT_EQ(match("h", deep.substr(0, 12), "POST"), "post-6");
  EXPECT_EQ(match("h", deep, "GET"), "get-5");
  EXPECT_EQ(match("h", "/b", "GET"), "");
}

TEST_F(RouterTest, NonAbsolutePathsMatchOnlyTheirOwnRoutes) {
  config::Route star;
  star.name = "options-star";
  star.match.path = "*";
  star.match.hosts = {"api.example.com"};
  add(make_route("root", "/"));
  add(star);
  EXPECT_EQ(match("api.example.com", "*", "OPTIONS"), "options-star");
  EXPECT_EQ(match("other.com", "*", "OPTIONS"), "");
  EXPECT_EQ(match("api.example.com", "/", "OPTIONS"), "root");
}

TEST_F(RouterTest, RouteListingTheSameHostTwiceIsFine) {
  add(make_route("twice", "/a", {"x.com", "X.com", "*.com", "*.com"}));
  add(make_route("other", "/"));
  EXPECT_EQ(match("x.com", "/a"), "twice");
  EXPECT_EQ(match("y.com", "/a"), "twice");
  EXPECT_EQ(match("x.com", "/b"), "other");
}

std::string rewrite(std::string strip, std::string rewrite_to, std::string_view path) {
  Route r;
  r.strip_prefix = std::move(strip);
  r.prefix_rewrite = std::move(rewrite_to);
  std::string out;
  Router::rewrite_path(r, path, out);
  return out;
}

TEST(RewritePathTest, NothingConfiguredKeepsPath) {
  EXPECT_EQ(rewrite("", "", "/a/b"), "/a/b");
  EXPECT_EQ(rewrite("", "", "/"), "/");
  EXPECT_EQ(rewrite("", "", ""), "/");
}

TEST(RewritePathTest, StripOnSegmentBoundary) {
  EXPECT_EQ(rewrite("/api", "", "/api/accounts"), "/accounts");
  EXPECT_EQ(rewrite("/api", "", "/api/accounts/1"), "/accounts/1");
  EXPECT_EQ(rewrite("/api", "", "/api"), "/");
  EXPECT_EQ(rewrite("/api", "", "/api/"), "/");
  EXPECT_EQ(rewrite("/api", "", "/apix"), "/apix");
  EXPECT_EQ(rewrite("/api", "", "/other"), "/other");
}

TEST(RewritePathTest, StripEndingInSlashKeepsTheSlash) {
  EXPECT_EQ(rewrite("/api/", "", "/api/x"), "/x");
  EXPECT_EQ(rewrite("/api/", "", "/api/"), "/");
  EXPECT_EQ(rewrite("/", "", "/x"), "/x");
}

TEST(RewritePathTest, PrefixRewriteTakesThePlaceOfTheStrippedPart) {
  EXPECT_EQ(rewrite("/api", "/v2", "/api/accounts"), "/v2/accounts");
  EXPECT_EQ(rewrite("/api", "/v2", "/api"), "/v2");
  EXPECT_EQ(rewrite("/api", "/v2/", "/api/accounts"), "/v2/accounts");
  EXPECT_EQ(rewrite("/api", "/", "/api/accounts"), "/accounts");
  EXPECT_EQ(rewrite("/api", "/", "/api"), "/");
  EXPECT_EQ(rewrite("/api/", "/v2", "/api/x"), "/v2/x");
  // Not stripped, so nothing to replace.
  EXPECT_EQ(rewrite("/api", "/v2", "/apix"), "/apix");
}

TEST(RewritePathTest, PrefixRewriteWithoutStripGoesInFront) {
  EXPECT_EQ(rewrite("", "/internal", "/accounts"), "/internal/accounts");
  EXPECT_EQ(rewrite("", "/internal/", "/accounts"), "/internal/accounts");
  EXPECT_EQ(rewrite("", "/internal", "/"), "/internal/");
}

TEST(RewritePathTest, AppendsToOut) {
  Route r;
  r.strip_prefix = "/api";
  std::string out = "GET ";
  Router::rewrite_path(r, "/api/x", out);
  EXPECT_EQ(out, "GET /x");
  out = "GET ";
  Router::rewrite_path(r, "/api", out);
  EXPECT_EQ(out, "GET /");
}

}  // namespace
}  // namespace sluice::router
