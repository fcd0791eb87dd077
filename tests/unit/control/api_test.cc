// The router: what every route shares (hostile bodies on every body path, error shapes).
#include "unit/control/api_fixture.h"

namespace sluice::control::test {
namespace {

// ------------------------------------------------------------------------------ hostile bodies

// Issue 12: 100,000 nested '[' (200 KB) crashed the control plane (stack overflow).
TEST_F(ApiTest, DeepJsonIsRefusedOnEveryBodyPath) {
  const std::string deep = std::string(100'000, '[') + std::string(100'000, ']');
  for (const char* path : {"/v1/events", "/v1/apply", "/v1/stats", "/v1/rollback", "/v1/instances",
                           "/v1/gateways/g1/status"}) {
    Pending r = send("POST", path, deep);
    ASSERT_TRUE(r.answered()) << path;
    EXPECT_EQ(r.status(), 400) << path;
    EXPECT_EQ(r.json()["error"], "JSON nested deeper than 64 levels") << path;
    EXPECT_EQ(r.json()["errors"], Json::array({"JSON nested deeper than 64 levels"})) << path;
  }
  Pending t = send("POST", "/v1/tokens", deep, "admin");
  EXPECT_EQ(t.status(), 400);
  EXPECT_EQ(store_->latest_version(), 0);
}

TEST_F(ApiTest, DuplicateKeysAreRefusedNamingTheKey) {
  Pending r =
      send("POST", "/v1/apply", R"({"reason": "first", "resources": [], "reason": "second"})");
  EXPECT_EQ(r.status(), 400);
  EXPECT_EQ(r.json()["error"], "reason: duplicate key");
  r = send("POST", "/v1/apply",
           R"({"reason": "x", "resources": [{"kind": "service", "name": "a",
               "spec": {"endpoints": [{"address": "127.0.0.1:1", "address": "127.0.0.1:2"}]}}]})");
  EXPECT_EQ(r.status(), 400);
  EXPECT_EQ(r.json()["error"], "resources[0].spec.endpoints[0].address: duplicate key");
  EXPECT_EQ(store_->latest_version(), 0);
}

TEST_F(ApiTest, BlankReasonsAreRefused) {
  for (const char* reason : {" ", "\t", "  \n "}) {
    Pending r = apply({static_service("a", "127.0.0.1:9")}, reason);
    EXPECT_EQ(r.status(), 400) << Json(reason);
    EXPECT_EQ(r.json()["errors"], Json::array({"reason: must not be empty or only blanks"}));
  }
  ASSERT_EQ(apply({static_service("a", "127.0.0.1:9")}, "real").status(), 200);
  Pending d = call("DELETE", "/v1/resources/service/a?reason=%20%09");
  EXPECT_EQ(d.status(), 400);
  EXPECT_THAT(d.json()["error"].get<std::string>(), HasSubstr("reason: must not be empty"));
  Pending rb = call("POST", "/v1/rollback", {{"version", 1}, {"reason", "   "}});
  EXPECT_EQ(rb.status(), 400);
  EXPECT_EQ(store_->latest_version(), 1);
}

// Found by fuzz_control_body: a NUL in a reason (?reason=%00 on delete, "\u0000" in JSON) or in
// an event's text reached the store, which refuses it, and the client got 503 "store
// unavailable" for its own bad input.
TEST_F(ApiTest, ControlCharactersInTextAre400NotAStoreError) {
  ASSERT_EQ(apply({static_service("a", "127.0.0.1:9")}, "real").status(), 200);
  Pending d = call("DELETE", "/v1/resources/service/a?reason=x%00y");
  EXPECT_EQ(d.status(), 400) << d.body();
  EXPECT_THAT(d.json()["error"].get<std::string>(),
              HasSubstr("reason: must not contain control characters"));
  Pending r = send("POST", "/v1/apply",
                   R"({"reason": "a\u0000b", "resources": [{"kind": "service", "name": "b",
                       "spec": {"endpoints": [{"address": "127.0.0.1:9"}]}}]})");
  EXPECT_EQ(r.status(), 400) << r.body();
  EXPECT_EQ(r.json()["errors"],
            Json::array({"reason: must not contain control characters (other than tab, newline "
                         "and carriage return)"}));
  Pending e = send("POST", "/v1/events", R"([{"kind": "x\u0000", "subject": "s"}])");
  EXPECT_EQ(e.status(), 400) << e.body();
  EXPECT_THAT(e.json()["error"].get<std::string>(), HasSubstr("[0].kind: must not contain"));
  // Tabs and newlines are text.
  EXPECT_EQ(apply({static_service("c", "127.0.0.1:9")}, "two\nlines\tand a tab").status(), 200);
  EXPECT_EQ(store_->latest_version(), 2);
}

}  // namespace
}  // namespace sluice::control::test
