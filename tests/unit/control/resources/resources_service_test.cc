// Resources and versions through the router: apply, delete, rollback, dry runs, expected
// versions, validation, and writers racing on one or two control planes.
#include "unit/control/api_fixture.h"

namespace sluice::control::test {
namespace {

TEST_F(ApiTest, ApplyCreatesAVersionWithItsDiff) {
  Pending r = apply({static_service("accounts", "127.0.0.1:9101"),
                     route("accounts-api", "/api/accounts", "accounts")},
                    "first services");
  ASSERT_EQ(r.status(), 200) << r.get().body;
  Json j = r.json();
  EXPECT_EQ(j["version"], 1);
  ASSERT_EQ(j["diff"].size(), 2u);
  EXPECT_EQ(j["diff"][0]["op"], "add");
  EXPECT_EQ(j["diff"][0]["kind"], "route");
  EXPECT_EQ(j["diff"][1]["name"], "accounts");
  EXPECT_FALSE(j["diff"][1].contains("before"));

  Json all = call("GET", "/v1/resources", nullptr, "viewer").json();
  EXPECT_EQ(all["version"], 1);
  EXPECT_EQ(all["resources"].size(), 2u);
  Json routes = call("GET", "/v1/resources?kind=route", nullptr, "viewer").json();
  EXPECT_EQ(routes["resources"].size(), 1u);
  Pending one = call("GET", "/v1/resources/service/accounts", nullptr, "viewer");
  ASSERT_EQ(one.status(), 200);
  EXPECT_EQ(one.json()["spec"]["endpoints"][0]["address"], "127.0.0.1:9101");
  EXPECT_EQ(call("GET", "/v1/resources/service/nope", nullptr, "viewer").status(), 404);
}

TEST_F(ApiTest, InvalidApplyListsEveryErrorAndWritesNothing) {
  ASSERT_EQ(apply({static_service("accounts", "127.0.0.1:9101")}).status(), 200);
  Pending r = apply({service("accounts", {{"endpoints", Json::array({{{"address", "x"}}})},
                                          {"retry", {{"attempts", 99}}}}),
                     route("r", "/r", "missing")});
  ASSERT_EQ(r.status(), 400);
  Json j = r.json();
  EXPECT_THAT(j["error"].get<std::string>(), HasSubstr("3 errors; nothing was applied"));
  std::vector<std::string> errors = j["errors"];
  EXPECT_THAT(errors, ::testing::UnorderedElementsAre(
                          HasSubstr("service/accounts: spec.endpoints[0].address: expected "
                                    "host:port"),
                          "service/accounts: spec.retry.attempts: must be 0..10, got 99",
                          "route/r: spec.service: no service named 'missing'"));
  EXPECT_EQ(store_->latest_version(), 1);
  EXPECT_EQ(store_->resources().size(), 1u);
  EXPECT_EQ(store_->resources()[0].spec["endpoints"][0]["address"], "127.0.0.1:9101");
}

TEST_F(ApiTest, MalformedRequestsAreRefusedWithEveryProblem) {
  Pending bad_json = send("POST", "/v1/apply", "{\"resources\": [");
  EXPECT_EQ(bad_json.status(), 400);
  EXPECT_THAT(bad_json.json()["error"].get<std::string>(), HasSubstr("malformed JSON"));

  Pending r = call(
      "POST", "/v1/apply",
      {{"resources", {{{"kind", "widget"}, {"name", "w"}}, {{"name", "x"}}}}, {"dryrun", true}});
  ASSERT_EQ(r.status(), 400);
  std::vector<std::string> errors = r.json()["errors"];
  EXPECT_THAT(errors,
              ::testing::UnorderedElementsAre("dryrun: unknown key", "reason: required",
                                              HasSubstr("resources[0].kind: unknown kind 'widget'"),
                                              "resources[1].kind: required"));
  EXPECT_EQ(store_->latest_version(), 0);
}

TEST_F(ApiTest, DryRunShowsTheDiffWithoutWriting) {
  Pending r = call("POST", "/v1/apply",
                   {{"resources", {static_service("a", "127.0.0.1:1000")}}, {"dry_run", true}});
  ASSERT_EQ(r.status(), 200) << r.get().body;
  EXPECT_EQ(r.json()["version"], 0);
  EXPECT_EQ(r.json()["diff"].size(), 1u);
  EXPECT_EQ(store_->latest_version(), 0);
}

TEST_F(ApiTest, ExpectedVersionGuardsAgainstLostUpdates) {
  ASSERT_EQ(apply({static_service("a", "127.0.0.1:1000")}).status(), 200);
  Pending stale = call("POST", "/v1/apply",
                       {{"resources", {static_service("a", "127.0.0.1:2000")}},
                        {"reason", "based on v0"},
                        {"expected_version", 0}});
  EXPECT_EQ(stale.status(), 409);
  EXPECT_EQ(stale.json()["version"], 1);
  Pending fresh = call("POST", "/v1/apply",
                       {{"resources", {static_service("a", "127.0.0.1:2000")}},
                        {"reason", "based on v1"},
                        {"expected_version", 1}});
  EXPECT_EQ(fresh.status(), 200);
  EXPECT_EQ(fresh.json()["version"], 2);
}

TEST_F(ApiTest, ReapplyingTheSameSetChangesNothing) {
  Json set = {static_service("a", "127.0.0.1:1000")};
  ASSERT_EQ(apply(set).status(), 200);
  Pending again = apply(set);
  ASSERT_EQ(again.status(), 200);
  EXPECT_EQ(again.json()["unchanged"], true);
  EXPECT_EQ(store_->latest_version(), 1);
}

TEST_F(ApiTest, VersionsRecordAuthorReasonAndDiff) {
  ASSERT_EQ(apply({static_service("a", "127.0.0.1:1000")}, "add a").status(), 200);
  advance(1000);
  ASSERT_EQ(apply({static_service("a", "127.0.0.1:2000")}, "move a").status(), 200);
  Pending r = call("GET", "/v1/versions", nullptr, "viewer");
  ASSERT_EQ(r.status(), 200);
  Json list = r.json();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["number"], 2);  // newest first
  EXPECT_EQ(list[0]["author"], "deployer");
  EXPECT_EQ(list[0]["reason"], "move a");
  EXPECT_EQ(list[0]["created_ms"], kStart + 1000);
  EXPECT_EQ(list[0]["created"], "2023-11-14T22:13:21.000Z");
  const Json& d = list[0]["diff"][0];
  EXPECT_EQ(d["op"], "change");
  EXPECT_EQ(d["before"]["endpoints"][0]["address"], "127.0.0.1:1000");
  EXPECT_EQ(d["after"]["endpoints"][0]["address"], "127.0.0.1:2000");

  EXPECT_EQ(call("GET", "/v1/versions?limit=1", nullptr, "viewer").json().size(), 1u);
  EXPECT_EQ(call("GET", "/v1/versions?before=2", nullptr, "viewer").json()[0]["number"], 1);
  EXPECT_EQ(call("GET", "/v1/versions?limit=x", nullptr, "viewer").status(), 400);
  Json v1 = call("GET", "/v1/versions/1", nullptr, "viewer").json();
  EXPECT_EQ(v1["reason"], "add a");
  EXPECT_EQ(v1["resources"][0]["spec"]["endpoints"][0]["address"], "127.0.0.1:1000");
  EXPECT_EQ(call("GET", "/v1/versions/9", nullptr, "viewer").status(), 404);
}

TEST_F(ApiTest, RollbackCommitsAnOldSetAsANewVersion) {
  ASSERT_EQ(apply({static_service("a", "127.0.0.1:1000")}).status(), 200);
  ASSERT_EQ(apply({static_service("b", "127.0.0.1:2000"), route("rb", "/b", "b")}).status(), 200);
  Pending r = call("POST", "/v1/rollback", {{"version", 1}, {"reason", "b is broken"}});
  ASSERT_EQ(r.status(), 200) << r.get().body;
  EXPECT_EQ(r.json()["version"], 3);
  EXPECT_EQ(r.json()["rolled_back_to"], 1);
  EXPECT_EQ(r.json()["diff"].size(), 2u);  // b and rb removed
  EXPECT_EQ(store_->resources(3), store_->resources(1));
  EXPECT_EQ(store_->version(3)->reason, "b is broken");

  EXPECT_EQ(call("POST", "/v1/rollback", {{"version", 42}, {"reason", "x"}}).status(), 404);
  EXPECT_EQ(call("POST", "/v1/rollback", {{"version", 1}}).status(), 400);  // no reason
}

TEST_F(ApiTest, DeleteIsValidatedLikeEveryWrite) {
  ASSERT_EQ(apply({static_service("a", "127.0.0.1:1000"), route("ra", "/a", "a")}).status(), 200);
  // The route still needs the service.
  Pending in_use = call("DELETE", "/v1/resources/service/a?reason=cleanup");
  ASSERT_EQ(in_use.status(), 400);
  EXPECT_THAT(in_use.json()["errors"][0].get<std::string>(),
              HasSubstr("route/ra: spec.service: no service named 'a'"));
  EXPECT_EQ(call("DELETE", "/v1/resources/route/ra").status(), 400);  // reason required
  Pending ok = call("DELETE", "/v1/resources/route/ra?reason=retire%20the%20route");
  ASSERT_EQ(ok.status(), 200);
  EXPECT_EQ(ok.json()["diff"][0]["op"], "remove");
  EXPECT_EQ(store_->version(2)->reason, "retire the route");
  EXPECT_EQ(call("DELETE", "/v1/resources/route/ra?reason=again").status(), 404);
}

TEST_F(ApiTest, TheAuthorIsTheTokensName) {
  ASSERT_EQ(call("POST", "/v1/apply",
                 {{"resources", {static_service("a", "127.0.0.1:1")}}, {"reason", "r"}}, "admin")
                .status(),
            200);
  EXPECT_EQ(store_->version(1)->author, "alice");
}

TEST(ResourceDiff, AddChangeRemove) {
  std::vector<Resource> before = {{"service", "a", {{"x", 1}}}, {"service", "b", {{"x", 1}}}};
  std::vector<Resource> after = {{"service", "a", {{"x", 2}}}, {"route", "c", {{"y", 1}}}};
  Json d = resource_diff(before, after);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0], Json({{"op", "add"}, {"kind", "route"}, {"name", "c"}, {"after", {{"y", 1}}}}));
  EXPECT_EQ(d[1]["op"], "change");
  EXPECT_EQ(d[2]["op"], "remove");
  EXPECT_EQ(d[2]["before"], Json({{"x", 1}}));
  EXPECT_TRUE(resource_diff(before, before).empty());
}

// Writers through one control plane never race each other: none gets "too many concurrent
// writes" (13 of 152 did, with 4 writers and no expected_version).
TEST_F(ApiTest, ConcurrentWritersWithoutExpectedVersionAllSucceed) {
  constexpr int kWriters = 4, kApplies = 25;
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kApplies; ++i) {
        Pending r =
            send("POST", "/v1/apply",
                 Json{{"reason", "load"},
                      {"resources",
                       Json::array({static_service("w" + std::to_string(w),
                                                   "127.0.0.1:" + std::to_string(10000 + i))})}}
                     .dump());
        if (!r.answered() || r.status() != 200) ++failed;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(store_->latest_version(), kWriters * kApplies);
}

// Two control planes on one store (two Apis here): their writes do race, and a loser is redone
// until it lands (none of 4 x 40 gets a 409).
TEST_F(ApiTest, WritersOnTwoControlPlanesAreRedoneUntilTheyLand) {
  Api other{*store_, auth_, options_, [this] { return now_; }};
  constexpr int kWriters = 4, kApplies = 40;
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      Api& api = w % 2 == 0 ? api_ : other;
      for (int i = 0; i < kApplies; ++i) {
        HttpRequest req;
        req.method = "POST";
        req.path = "/v1/apply";
        req.authorization = "Bearer " + operator_;
        req.body = Json{{"reason", "load"},
                        {"resources",
                         Json::array({static_service("w" + std::to_string(w),
                                                     "127.0.0.1:" + std::to_string(10000 + i))})}}
                       .dump();
        int status = 0;
        api.handle(std::move(req), [&](HttpResponse r) { status = r.status; });
        if (status != 200) ++failed;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(store_->latest_version(), kWriters * kApplies);
}

}  // namespace
}  // namespace sluice::control::test
