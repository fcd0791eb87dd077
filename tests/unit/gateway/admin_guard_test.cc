#include "gateway/admin_guard.h"

#include <gtest/gtest.h>

namespace sluice::gateway {
namespace {

const std::string kToken(40, 't');

config::Admin admin(std::string token = "", std::vector<std::string> allowed = {}) {
  config::Admin a;
  a.enabled = true;
  a.token = std::move(token);
  a.allowed_hosts = std::move(allowed);
  return a;
}

AdminRequestMeta request(std::string_view host, std::string_view origin = {},
                         std::string_view authorization = {}) {
  AdminRequestMeta m;
  m.host = host;
  m.host_count = 1;
  m.origin = origin;
  m.origin_count = origin.empty() ? 0 : 1;
  m.authorization = authorization;
  m.local_ip = "127.0.0.1";
  m.local_port = 9901;
  return m;
}

TEST(AdminAccess, PathClasses) {
  EXPECT_EQ(admin_access("/healthz"), AdminAccess::kOpen);
  EXPECT_EQ(admin_access("/ready"), AdminAccess::kOpen);
  EXPECT_EQ(admin_access("/metrics"), AdminAccess::kHostChecked);
  for (auto p : {"/config", "/stats", "/units", "/reload", "/drain", "/units/switch", "/nope", "/"})
    EXPECT_EQ(admin_access(p), AdminAccess::kToken) << p;
}

TEST(AuthorityAllowed, LocalAddressLocalhostAndAllowedNames) {
  const std::vector<std::string> allowed = {"gw.bank.example", "ops.bank.example:8443",
                                            "[fd00::1]:9901"};
  auto ok = [&](std::string_view a, uint16_t dflt = 80) {
    return authority_allowed(a, dflt, "127.0.0.1", 9901, allowed);
  };
  EXPECT_TRUE(ok("127.0.0.1:9901"));
  EXPECT_TRUE(ok("localhost:9901"));
  EXPECT_TRUE(ok("LocalHost:9901"));
  EXPECT_TRUE(ok("gw.bank.example"));
  EXPECT_TRUE(ok("GW.bank.example:1234"));  // an entry without a port: any port
  EXPECT_TRUE(ok("ops.bank.example:8443"));
  EXPECT_TRUE(ok("ops.bank.example", 8443));  // Origin https:// default port
  EXPECT_TRUE(ok("[fd00::1]:9901"));
  EXPECT_FALSE(ok("127.0.0.1:9902"));
  EXPECT_FALSE(ok("127.0.0.1"));  // port 80
  EXPECT_FALSE(ok("localhost"));
  EXPECT_FALSE(ok("ops.bank.example:8444"));
  EXPECT_FALSE(ok("ops.bank.example"));
  EXPECT_FALSE(ok("evil.example:9901"));
  EXPECT_FALSE(ok("gw.bank.example.evil.example"));
  EXPECT_FALSE(ok("10.0.0.1:9901"));
  for (auto bad : {"", ":9901", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:99x",
                   "::1:9901", "[::1", "[]:9901", "127.0.0.1:9901/x", "127.0.0.1:+9901"})
    EXPECT_FALSE(ok(bad)) << bad;
}

TEST(AuthorityAllowed, LocalhostOnlyOnLoopbackAndIpv6) {
  EXPECT_FALSE(authority_allowed("localhost:9901", 80, "10.1.2.3", 9901, {}));
  EXPECT_TRUE(authority_allowed("10.1.2.3:9901", 80, "10.1.2.3", 9901, {}));
  EXPECT_TRUE(authority_allowed("[::1]:9901", 80, "::1", 9901, {}));
  EXPECT_TRUE(authority_allowed("localhost:9901", 80, "::1", 9901, {}));
}

TEST(BearerMatches, ExactTokenCaseInsensitiveScheme) {
  EXPECT_TRUE(bearer_matches("Bearer " + kToken, kToken));
  EXPECT_TRUE(bearer_matches("bearer  " + kToken + " ", kToken));
  EXPECT_FALSE(bearer_matches("Bearer " + kToken + "x", kToken));
  EXPECT_FALSE(bearer_matches("Bearer " + kToken.substr(1), kToken));
  EXPECT_FALSE(bearer_matches("Basic " + kToken, kToken));
  EXPECT_FALSE(bearer_matches(kToken, kToken));
  EXPECT_FALSE(bearer_matches("Bearer ", ""));  // no token configured never matches
  EXPECT_FALSE(bearer_matches("", kToken));
}

TEST(CheckAdminRequest, HostOriginThenToken) {
  const config::Admin open = admin();
  EXPECT_FALSE(check_admin_request(open, AdminAccess::kToken, request("127.0.0.1:9901")));
  auto r = check_admin_request(open, AdminAccess::kToken, request("evil.example:9901"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(r->reason, "host");
  r = check_admin_request(open, AdminAccess::kToken,
                          request("127.0.0.1:9901", "http://evil.example"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->reason, "origin");
  for (auto origin : {"null", "127.0.0.1:9901", "ftp://127.0.0.1:9901", "http://127.0.0.1:9902"}) {
    r = check_admin_request(open, AdminAccess::kHostChecked, request("127.0.0.1:9901", origin));
    ASSERT_TRUE(r) << origin;
    EXPECT_EQ(r->status, 403);
  }
  EXPECT_FALSE(check_admin_request(open, AdminAccess::kToken,
                                   request("127.0.0.1:9901", "http://localhost:9901")));
  // Open paths: nothing is checked.
  EXPECT_FALSE(check_admin_request(open, AdminAccess::kOpen, request("evil", "http://evil")));
  // Host missing or repeated; Origin repeated.
  AdminRequestMeta m = request("127.0.0.1:9901");
  m.host_count = 0;
  EXPECT_EQ(check_admin_request(open, AdminAccess::kHostChecked, m)->status, 403);
  m.host_count = 2;
  EXPECT_EQ(check_admin_request(open, AdminAccess::kHostChecked, m)->status, 403);
  m = request("127.0.0.1:9901", "http://127.0.0.1:9901");
  m.origin_count = 2;
  EXPECT_EQ(check_admin_request(open, AdminAccess::kHostChecked, m)->reason, "origin");

  const config::Admin locked = admin(kToken);
  r = check_admin_request(locked, AdminAccess::kToken, request("127.0.0.1:9901"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(r->reason, "token");
  r = check_admin_request(locked, AdminAccess::kToken,
                          request("127.0.0.1:9901", {}, "Bearer wrong"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_FALSE(check_admin_request(locked, AdminAccess::kToken,
                                   request("127.0.0.1:9901", {}, "Bearer " + kToken)));
  EXPECT_FALSE(check_admin_request(locked, AdminAccess::kHostChecked, request("127.0.0.1:9901")));
  // A wrong Host is refused before the token is looked at.
  r = check_admin_request(locked, AdminAccess::kToken,
                          request("evil.example", {}, "Bearer " + kToken));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
}

TEST(CheckAdminRequest, QuotedHeadersArePrintableAndBounded) {
  const std::string host = "ev\xff\xc3il\x01" + std::string(1000, 'h');
  auto r = check_admin_request(admin(), AdminAccess::kToken, request(host));
  ASSERT_TRUE(r);
  for (char c : r->error) {
    EXPECT_GE(static_cast<unsigned char>(c), 0x20);
    EXPECT_LE(static_cast<unsigned char>(c), 0x7e);
  }
  EXPECT_NE(r->error.find("ev??il?"), std::string::npos) << r->error;
  EXPECT_LT(r->error.size(), 400u);
  r = check_admin_request(admin(), AdminAccess::kToken,
                          request("127.0.0.1:9901", "http://\xfe\xff.example"));
  ASSERT_TRUE(r);
  EXPECT_NE(r->error.find("http://??.example"), std::string::npos) << r->error;
}

}  // namespace
}  // namespace sluice::gateway
