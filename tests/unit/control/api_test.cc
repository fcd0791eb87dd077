#include "control/api.h"

#include <atomic>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "control/validate.h"

namespace sluice::control {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr int64_t kStart = 1'700'000'000'000;  // a minute boundary plus 20 s

// A request's answer, possibly given later (parked long polls).
struct Pending {
  std::shared_ptr<std::optional<HttpResponse>> slot =
      std::make_shared<std::optional<HttpResponse>>();
  bool answered() const { return slot->has_value(); }
  const HttpResponse& get() const { return **slot; }
  int status() const { return (*slot)->status; }
  const std::string& body() const {
    return (*slot)->shared_body ? *(*slot)->shared_body : (*slot)->body;
  }
  Json json() const { return Json::parse(body()); }
};

class ApiTest : public ::testing::Test {
 protected:
  ApiTest() {
    admin_ = auth_.issue("alice", Role::kAdmin).token;
    operator_ = auth_.issue("deployer", Role::kOperator).token;
    viewer_ = auth_.issue("grafana", Role::kViewer).token;
  }

  Pending send(const std::string& method, const std::string& target, const std::string& body = {},
               const std::string& token = "op") {
    HttpRequest req;
    req.method = method;
    size_t q = target.find('?');
    req.path = target.substr(0, q);
    if (q != std::string::npos) req.query = target.substr(q + 1);
    req.body = body;
    const std::string& t = token == "op"       ? operator_
                           : token == "admin"  ? admin_
                           : token == "viewer" ? viewer_
                                               : token;
    if (!t.empty()) req.authorization = "Bearer " + t;
    Pending p;
    api_.handle(std::move(req), [slot = p.slot](HttpResponse r) { *slot = std::move(r); });
    return p;
  }

  // A synchronous call: the answer must come at once.
  Pending call(const std::string& method, const std::string& target, const Json& body = nullptr,
               const std::string& token = "op") {
    Pending p = send(method, target, body.is_null() ? "" : body.dump(), token);
    EXPECT_TRUE(p.answered()) << method << " " << target;
    return p;
  }

  // A vector, not a Json: `{x}` with one Json would copy x instead of making a list.
  Pending apply(const std::vector<Json>& resources, const std::string& reason = "test") {
    return call("POST", "/v1/apply", {{"resources", resources}, {"reason", reason}});
  }

  void advance(int64_t ms) { now_ += ms; }

  static Json service(const std::string& name, Json spec = Json::object()) {
    return {{"kind", "service"}, {"name", name}, {"spec", std::move(spec)}};
  }
  static Json route(const std::string& name, const std::string& prefix, const std::string& svc) {
    return {{"kind", "route"},
            {"name", name},
            {"spec", {{"match", {{"path_prefix", prefix}}}, {"service", svc}}}};
  }
  static Json static_service(const std::string& name, const std::string& address) {
    return service(name, {{"endpoints", Json::array({{{"address", address}}})}});
  }

  int64_t now_ = kStart;
  std::unique_ptr<Store> store_ = Store::open("sqlite::memory:");
  Auth auth_{*store_, [this] { return now_; }};
  ApiOptions options_ = [] {
    ApiOptions o;
    o.revision_poll_ms = 0;
    return o;
  }();
  Api api_{*store_, auth_, options_, [this] { return now_; }};
  std::string admin_, operator_, viewer_;
};

// ------------------------------------------------------------------------------ resources

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

// ------------------------------------------------------------------------------ auth

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

TEST_F(ApiTest, TheAuthorIsTheTokensName) {
  ASSERT_EQ(call("POST", "/v1/apply",
                 {{"resources", {static_service("a", "127.0.0.1:1")}}, {"reason", "r"}}, "admin")
                .status(),
            200);
  EXPECT_EQ(store_->version(1)->author, "alice");
}

// ------------------------------------------------------------------------------ registry

Json instance(const std::string& service, const std::string& id, const std::string& address,
              int64_t ttl_ms = 3000) {
  return {{"service", service}, {"id", id},     {"address", address},
          {"city", "a"},        {"zone", "a1"}, {"ttl_ms", ttl_ms}};
}

TEST_F(ApiTest, RegistryValidatesInstances) {
  Pending r = call("POST", "/v1/instances",
                   {{"service", "bad/name"}, {"address", "nowhere"}, {"weight", 0}, {"x", 1}});
  ASSERT_EQ(r.status(), 400);
  std::vector<std::string> errors = r.json()["errors"];
  EXPECT_EQ(errors.size(), 5u) << r.get().body;  // service, id, address, weight, x
}

TEST_F(ApiTest, InstancesExpireAfterTheirTtl) {
  ASSERT_EQ(call("POST", "/v1/instances", instance("payments", "p1", "127.0.0.1:9201")).status(),
            200);
  ASSERT_EQ(
      call("POST", "/v1/instances", instance("payments", "p2", "127.0.0.1:9202", 10000)).status(),
      200);
  advance(2000);
  EXPECT_EQ(call("PUT", "/v1/instances/payments/p1/heartbeat").status(), 200);
  advance(2500);  // p1 last beat 2.5 s ago, TTL 3 s: still in
  api_.tick();
  EXPECT_EQ(call("GET", "/v1/instances?service=payments", nullptr, "viewer").json().size(), 2u);
  advance(1000);  // 3.5 s since the beat
  api_.tick();
  Json left = call("GET", "/v1/instances", nullptr, "viewer").json();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0]["id"], "p2");
  EXPECT_EQ(call("PUT", "/v1/instances/payments/p1/heartbeat").status(), 404);  // register again

  Json events = call("GET", "/v1/events", nullptr, "viewer").json();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["kind"], "instance_expired");
  EXPECT_EQ(events[0]["subject"], "payments/p1");

  EXPECT_EQ(call("DELETE", "/v1/instances/payments/p2").status(), 200);
  EXPECT_EQ(call("DELETE", "/v1/instances/payments/p2").status(), 404);
}

// ------------------------------------------------------------------------------ gateway config

TEST_F(ApiTest, GatewayConfigAnswersAtOnceWhenBehind) {
  ASSERT_EQ(apply({service("payments"), route("pay", "/pay", "payments")}).status(), 200);
  Pending r = call("GET", "/v1/gateway-config?gateway=gw-a1&city=a&zone=a1", nullptr, "viewer");
  ASSERT_EQ(r.status(), 200);
  Json j = r.json();
  EXPECT_EQ(j["version"], "1.0");
  // No instance yet: no endpoints (the gateway answers 503 until one registers).
  EXPECT_EQ(j["config"]["services"][0]["endpoints"], Json::array());
  EXPECT_EQ(j["config"]["routes"][0]["service"], "payments");
  EXPECT_FALSE(j["config"].contains("node"));
}

TEST_F(ApiTest, LongPollWakesOnRegistryAndConfigChanges) {
  ASSERT_EQ(apply({service("payments"), route("pay", "/pay", "payments")}).status(), 200);
  const std::string v1 = api_.current_version();
  ASSERT_EQ(v1, "1.0");

  Pending parked =
      send("GET", "/v1/gateway-config?gateway=gw-a1&after=" + v1 + "&wait=30s", {}, "viewer");
  EXPECT_FALSE(parked.answered());
  EXPECT_EQ(api_.waiting(), 1u);

  // An instance registers: the registry revision moves and the waiter gets its endpoint.
  ASSERT_EQ(call("POST", "/v1/instances", instance("payments", "p1", "127.0.0.1:9201")).status(),
            200);
  ASSERT_TRUE(parked.answered());
  Json j = parked.json();
  EXPECT_EQ(j["version"], "1.1");
  EXPECT_EQ(j["config"]["services"][0]["endpoints"][0]["address"], "127.0.0.1:9201");
  EXPECT_EQ(api_.waiting(), 0u);

  // A config write wakes the next one.
  Pending second = send("GET", "/v1/gateway-config?after=1.1&wait=30s", {}, "viewer");
  EXPECT_FALSE(second.answered());
  ASSERT_EQ(apply({route("pay2", "/pay2", "payments")}).status(), 200);
  ASSERT_TRUE(second.answered());
  EXPECT_EQ(second.json()["version"], "2.1");
  EXPECT_EQ(second.json()["config"]["routes"].size(), 2u);

  // The TTL expiry of the only instance is a registry change too.
  Pending third = send("GET", "/v1/gateway-config?after=2.1&wait=30s", {}, "viewer");
  advance(3500);
  api_.tick();
  ASSERT_TRUE(third.answered());
  EXPECT_EQ(third.json()["version"], "2.2");
  EXPECT_EQ(third.json()["config"]["services"][0]["endpoints"], Json::array());
}

// A write's own answer goes out before the long polls it wakes (with a server they run on its
// thread pool afterwards), so 1,000 watching gateways do not delay the writer.
TEST_F(ApiTest, AWriteIsAnsweredBeforeTheWatchersItWakes) {
  std::vector<std::function<void()>> deferred;
  api_.set_runner([&](std::function<void()> fn) { deferred.push_back(std::move(fn)); });
  ASSERT_EQ(apply({static_service("payments", "127.0.0.1:9201")}).status(), 200);
  for (auto& fn : deferred) fn();
  deferred.clear();
  const std::string v = api_.current_version();
  Pending parked = send("GET", "/v1/gateway-config?after=" + v + "&wait=30s", {}, "viewer");
  ASSERT_FALSE(parked.answered());
  Pending write = apply({route("pay", "/pay", "payments")});
  ASSERT_TRUE(write.answered());
  EXPECT_EQ(write.status(), 200);
  EXPECT_FALSE(parked.answered());  // not yet: handed to the runner
  ASSERT_FALSE(deferred.empty());
  for (auto& fn : deferred) fn();
  ASSERT_TRUE(parked.answered());
  EXPECT_EQ(parked.json()["config_version"], 2);
}

// Every waiter woken by one change is answered with the same text, not a copy each (the config
// of a large registry is hundreds of KB, and a control plane has 1,000 gateways parked).
TEST_F(ApiTest, WokenWaitersShareOneBody) {
  ASSERT_EQ(apply({static_service("payments", "127.0.0.1:9201")}).status(), 200);
  const std::string v = api_.current_version();
  Pending a = send("GET", "/v1/gateway-config?gateway=a&after=" + v + "&wait=30s", {}, "viewer");
  Pending b = send("GET", "/v1/gateway-config?gateway=b&after=" + v + "&wait=30s", {}, "viewer");
  ASSERT_EQ(apply({route("pay", "/pay", "payments")}).status(), 200);
  ASSERT_TRUE(a.answered() && b.answered());
  ASSERT_TRUE(a.get().shared_body && b.get().shared_body);
  EXPECT_EQ(a.get().shared_body.get(), b.get().shared_body.get());
  EXPECT_EQ(a.json()["config"]["routes"][0]["name"], "pay");
}

TEST_F(ApiTest, LongPollTimesOutWith304) {
  const std::string v = api_.current_version();
  Pending parked = send("GET", "/v1/gateway-config?after=" + v + "&wait=2s", {}, "viewer");
  EXPECT_FALSE(parked.answered());
  advance(1000);
  api_.tick();
  EXPECT_FALSE(parked.answered());
  advance(1001);
  api_.tick();
  ASSERT_TRUE(parked.answered());
  EXPECT_EQ(parked.status(), 304);
  EXPECT_TRUE(parked.get().body.empty());
  // wait=0 answers at once.
  EXPECT_EQ(call("GET", "/v1/gateway-config?after=" + v + "&wait=0", nullptr, "viewer").status(),
            304);
  EXPECT_EQ(call("GET", "/v1/gateway-config?after=" + v + "&wait=soon", nullptr, "viewer").status(),
            400);
}

TEST_F(ApiTest, HeartbeatsDoNotWakeWatchers) {
  ASSERT_EQ(call("POST", "/v1/instances", instance("payments", "p1", "127.0.0.1:9201")).status(),
            200);
  const std::string v = api_.current_version();
  Pending parked = send("GET", "/v1/gateway-config?after=" + v, {}, "viewer");
  ASSERT_EQ(call("PUT", "/v1/instances/payments/p1/heartbeat").status(), 200);
  // Re-registering the same instance unchanged does not either.
  ASSERT_EQ(call("POST", "/v1/instances", instance("payments", "p1", "127.0.0.1:9201")).status(),
            200);
  api_.tick();
  EXPECT_FALSE(parked.answered());
}

TEST_F(ApiTest, ShutdownAnswersParkedPolls) {
  Pending parked = send("GET", "/v1/gateway-config?after=" + api_.current_version(), {}, "viewer");
  api_.shutdown();
  ASSERT_TRUE(parked.answered());
  EXPECT_EQ(parked.status(), 503);
}

// ------------------------------------------------------------------------------ gateway reports

TEST_F(ApiTest, GatewayStatusAndHealth) {
  ASSERT_EQ(apply({static_service("a", "127.0.0.1:1000")}).status(), 200);
  call("GET", "/v1/gateway-config?gateway=gw-a1&city=a&zone=a1&wait=0", nullptr, "viewer");
  Json list = call("GET", "/v1/gateways", nullptr, "viewer").json();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["id"], "gw-a1");
  EXPECT_EQ(list[0]["health"], "pending");

  ASSERT_EQ(
      call("POST", "/v1/gateways/gw-a1/status", {{"applied_version", "1.0"}, {"status", "applied"}})
          .status(),
      200);
  list = call("GET", "/v1/gateways", nullptr, "viewer").json();
  EXPECT_EQ(list[0]["applied_version"], 1);
  EXPECT_EQ(list[0]["applied"], "1.0");
  EXPECT_EQ(list[0]["city"], "a");  // remembered from the poll
  EXPECT_EQ(list[0]["health"], "ok");

  ASSERT_EQ(apply({static_service("a", "127.0.0.1:2000")}).status(), 200);
  EXPECT_EQ(call("GET", "/v1/gateways", nullptr, "viewer").json()[0]["health"], "behind");
  ASSERT_EQ(call("POST", "/v1/gateways/gw-a1/status",
                 {{"applied_version", "1.0"}, {"status", "refused"}, {"error", "bad listener"}})
                .status(),
            200);
  list = call("GET", "/v1/gateways", nullptr, "viewer").json();
  EXPECT_EQ(list[0]["health"], "refused");
  EXPECT_EQ(list[0]["error"], "bad listener");
  Json events = call("GET", "/v1/events", nullptr, "viewer").json();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["kind"], "config_refused");
  EXPECT_EQ(events[0]["source"], "gw-a1");

  advance(options_.gateway_stale_ms + 1);
  EXPECT_EQ(call("GET", "/v1/gateways", nullptr, "viewer").json()[0]["health"], "stale");
  EXPECT_EQ(call("POST", "/v1/gateways/gw-a1/status", {{"status", "maybe"}}).status(), 400);
  EXPECT_EQ(call("POST", "/v1/gateways/gw-a1/status", {{"status", "applied"}}, "viewer").status(),
            403);
}

TEST_F(ApiTest, StatsKeepRecentSnapshotsAndWriteMinuteRollups) {
  const int64_t minute = kStart - kStart % 60000;
  auto snapshot = [&](int64_t requests, int64_t concurrency) {
    return Json{{"gateway", "gw-a1"},
                {"at_ms", now_},
                {"routes",
                 {{"pay",
                   {{"requests", requests},
                    {"errors", 1},
                    {"latency", {1, 2, 3}},
                    {"concurrency", concurrency}}}}}};
  };
  ASSERT_EQ(call("POST", "/v1/stats", snapshot(10, 4)).status(), 200);
  advance(5000);
  ASSERT_EQ(call("POST", "/v1/stats", snapshot(20, 2)).status(), 200);
  Json stats = call("GET", "/v1/stats?gateway=gw-a1", nullptr, "viewer").json();
  EXPECT_EQ(stats["recent"].size(), 2u);
  EXPECT_EQ(stats["rollups"].size(), 0u);  // the minute is not over

  advance(60000);
  api_.tick();
  auto rows = store_->rollup_rows(minute, minute + 60000);
  ASSERT_EQ(rows.size(), 1u);
  const Json& pay = rows[0].data["routes"]["pay"];
  EXPECT_EQ(pay["requests"], 30);
  EXPECT_EQ(pay["errors"], 2);
  EXPECT_EQ(pay["concurrency"], 4);  // a gauge: the maximum
  EXPECT_EQ(pay["latency"], Json({2, 4, 6}));
  EXPECT_EQ(rows[0].data["snapshots"], 2);
  stats = call("GET", "/v1/stats?from=" + std::to_string(minute), nullptr, "viewer").json();
  EXPECT_EQ(stats["rollups"].size(), 1u);

  EXPECT_EQ(call("POST", "/v1/stats", {{"routes", 1}}).status(), 400);

  // Retention removes old rollups.
  advance(options_.stats_retention_ms + options_.prune_interval_ms);
  api_.tick();
  EXPECT_TRUE(store_->rollup_rows(0, INT64_MAX).empty());
}

TEST_F(ApiTest, EventsFromGateways) {
  Pending r = call("POST", "/v1/events?gateway=gw-b1",
                   Json::array({{{"kind", "breaker_opened"}, {"subject", "payments"}},
                                {{"kind", "endpoint_ejected"},
                                 {"subject", "payments/127.0.0.1:9201"},
                                 {"detail", {{"errors", 5}}}}}));
  ASSERT_EQ(r.status(), 200) << r.get().body;
  EXPECT_EQ(r.json()["ids"].size(), 2u);
  Json events = call("GET", "/v1/events?limit=10", nullptr, "viewer").json();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]["kind"], "breaker_opened");
  EXPECT_EQ(events[0]["source"], "gw-b1");
  EXPECT_EQ(events[1]["detail"]["errors"], 5);
  int64_t first = events[0]["id"];
  EXPECT_EQ(
      call("GET", "/v1/events?after=" + std::to_string(first), nullptr, "viewer").json().size(),
      1u);
  EXPECT_EQ(call("POST", "/v1/events", Json::array({{{"subject", "x"}}})).status(), 400);
}

TEST(MergeStats, CountersAddGaugesKeepTheMaximum) {
  Json acc = Json::object();
  merge_stats(acc, {{"requests", 1}, {"p99", 0.5}, {"in_flight", 3}, {"ratio", 0.25}});
  merge_stats(acc, {{"requests", 2}, {"p99", 0.2}, {"in_flight", 1}, {"ratio", 0.5}});
  EXPECT_EQ(acc["requests"], 3);
  EXPECT_EQ(acc["p99"], 0.5);
  EXPECT_EQ(acc["in_flight"], 3);
  EXPECT_DOUBLE_EQ(acc["ratio"].get<double>(), 0.75);
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

// ------------------------------------------------------------------------------ fleet state

TEST_F(ApiTest, GatewayLeavingIsShownAsDrainingThenExitedUntilHeardFromAgain) {
  auto health = [&] {
    Json all = call("GET", "/v1/gateways", nullptr, "viewer").json();
    EXPECT_EQ(all.size(), 1u) << all.dump();
    return all.empty() ? std::string() : all[0]["health"].get<std::string>();
  };
  auto report = [&](const std::string& status) {
    return call("POST", "/v1/gateways/gw-a/status",
                {{"city", "a"}, {"zone", "a1"}, {"applied_version", "0.0"}, {"status", status}});
  };
  ASSERT_EQ(report("applied").status(), 200);
  EXPECT_EQ(health(), "ok");
  ASSERT_EQ(report("draining").status(), 200);
  EXPECT_EQ(health(), "draining");
  ASSERT_EQ(report("exited").status(), 200);
  EXPECT_EQ(health(), "exited");
  // Still exited, not stale, long after: it said it left.
  advance(options_.gateway_stale_ms + 1);
  EXPECT_EQ(health(), "exited");
  // A poll from a new process: back, and pending until it reports its config.
  advance(1);
  Pending poll = send("GET", "/v1/gateway-config?gateway=gw-a&wait=0s", "", "viewer");
  ASSERT_TRUE(poll.answered());
  EXPECT_EQ(health(), "pending");
  ASSERT_EQ(report("applied").status(), 200);
  EXPECT_EQ(health(), "ok");
  // A draining gateway that vanishes without a word goes stale like any other.
  ASSERT_EQ(report("draining").status(), 200);
  advance(options_.gateway_stale_ms + 1);
  EXPECT_EQ(health(), "stale");
  // Anything else is refused and changes nothing.
  Pending bad = report("gone");
  EXPECT_EQ(bad.status(), 400);
  EXPECT_NE(bad.body().find("expected applied, refused, draining or exited"), std::string::npos)
      << bad.body();
  EXPECT_EQ(call("GET", "/v1/gateways", nullptr, "viewer").json()[0]["status"], "draining");
}

TEST_F(ApiTest, GatewayVersionsFromItsSnapshotsAreListedAndNotAddedUp) {
  ASSERT_EQ(apply({static_service("a", "127.0.0.1:1000")}).status(), 200);
  ASSERT_EQ(
      call("POST", "/v1/gateways/gw-a/status", {{"applied_version", "1.0"}, {"status", "applied"}})
          .status(),
      200);
  Json versions = {{"local_version", 7}, {"units_version", 3}};
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(call("POST", "/v1/stats", {{"gateway", "gw-a"}, {"versions", versions}}).status(),
              200);
  }
  Json g = call("GET", "/v1/gateways", nullptr, "viewer").json()[0];
  EXPECT_EQ(g["config_version"], 1);
  EXPECT_EQ(g["applied_version"], 1);
  EXPECT_EQ(g["control_plane_version"], "1.0");
  EXPECT_EQ(g["local_version"], 7);  // the last snapshot's, not 14
  EXPECT_EQ(g["units_version"], 3);
  Json stats = call("GET", "/v1/stats?gateway=gw-a", nullptr, "viewer").json();
  ASSERT_EQ(stats["recent"].size(), 2u);
  EXPECT_EQ(stats["recent"][1]["versions"], versions);  // the snapshot itself is kept whole
}

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
}  // namespace sluice::control
