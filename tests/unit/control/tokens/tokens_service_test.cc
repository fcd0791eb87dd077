// Tokens and roles through the router: 401/403/405, issuing and revoking, open endpoints.
#include "unit/control/api_fixture.h"

namespace sluice::control::test {
namespace {

TEST_F(ApiTest, TokensAndRoles) {
  Pending none = call("GET", "/v1/resources", nullptr, "");
  EXPECT_EQ(none.status(), 401);
  EXPECT_EQ(none.get().headers.at(0).first, "WWW-Authenticate");
  EXPECT_EQ(call("GET", "/v1/resources", nullptr, "not-a-token").status(), 401);
  EXPECT_EQ(call("GET", "/v1/no-such-thing", nullptr, "").status(), 401);
  EXPECT_EQ(call("GET", "/v1/no-such-thing", nullptr, "viewer").status(), 404);

  EXPECT_EQ(call("GET", "/v1/resources", nullptr, "viewer").status(), 200);
  Pending denied =
      call("POST", "/v1/apply",
           {{"resources", {static_service("a", "127.0.0.1:1")}}, {"reason", "r"}}, "viewer");
  EXPECT_EQ(denied.status(), 403);
  EXPECT_EQ(call("POST", "/v1/instances", {{"service", "a"}}, "viewer").status(), 403);
  EXPECT_EQ(call("GET", "/v1/tokens", nullptr, "op").status(), 403);
  EXPECT_EQ(call("PUT", "/v1/resources", nullptr, "viewer").status(), 405);

  Pending issued =
      call("POST", "/v1/tokens", {{"name", "sample-a"}, {"role", "operator"}}, "admin");
  ASSERT_EQ(issued.status(), 201) << issued.get().body;
  std::string token = issued.json()["token"];
  EXPECT_EQ(call("GET", "/v1/instances", nullptr, token).status(), 200);
  Json list = call("GET", "/v1/tokens", nullptr, "admin").json();
  EXPECT_EQ(list.size(), 4u);
  for (const Json& t : list) EXPECT_FALSE(t.contains("hash"));
  std::string id = issued.json()["id"];
  EXPECT_EQ(call("DELETE", "/v1/tokens/" + id, nullptr, "admin").status(), 200);
  EXPECT_EQ(call("GET", "/v1/instances", nullptr, token).status(), 401);

  // Health, readiness and metrics need no token.
  EXPECT_EQ(call("GET", "/healthz", nullptr, "").status(), 200);
  EXPECT_EQ(call("GET", "/ready", nullptr, "").status(), 200);
  Pending m = call("GET", "/metrics", nullptr, "");
  EXPECT_EQ(m.status(), 200);
  EXPECT_THAT(m.get().body, HasSubstr("sluice_control_config_version"));
  EXPECT_THAT(m.get().body, HasSubstr("sluice_control_http_responses_total{class=\"4xx\"}"));
}

}  // namespace
}  // namespace sluice::control::test
