// The config long poll under a staged rollout (a StagedPlan in ServiceContext::versions): each
// gateway is answered with its own version, a stage move wakes exactly the polls whose answer
// changed, bodies are shared per (config version, registry revision), and GET /v1/gateways and
// the directory say who is on what.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "control/api.h"
#include "control/rollout/staged_plan.h"

namespace sluice::control {
namespace {

using Json = nlohmann::json;
using rollout::Selection;
using rollout::StagedPlan;

inline constexpr int64_t kStart = 1'700'000'000'000;

// The changes service's part as these tests need it: installs the plan in the context, as the
// real owner does in its constructor.
StagedPlan* g_plan = nullptr;
ServiceContext* g_ctx = nullptr;

class PlanOwner final : public Service {
 public:
  std::string_view name() const override { return "plan-owner"; }
  std::vector<Route> routes() override { return {}; }
};

std::span<const Migration> no_migrations(std::string_view) {
  return {};
}

std::unique_ptr<Service> make_owner(ServiceContext& ctx) {
  ctx.versions = g_plan;
  g_ctx = &ctx;
  return std::make_unique<PlanOwner>();
}

std::vector<Domain> with_owner() {
  std::vector<Domain> all(domains().begin(), domains().end());
  all.push_back(Domain{"plan_owner_test", no_migrations, make_owner});
  return all;
}

struct Answer {
  std::shared_ptr<std::optional<HttpResponse>> slot =
      std::make_shared<std::optional<HttpResponse>>();
  bool answered() const { return slot->has_value(); }
  int status() const { return (*slot)->status; }
  const std::string& body() const {
    return (*slot)->shared_body ? *(*slot)->shared_body : (*slot)->body;
  }
  const std::string* body_ptr() const { return (*slot)->shared_body.get(); }
  Json json() const { return Json::parse(body()); }
  std::string version() const { return json()["version"].get<std::string>(); }
};

class FleetRolloutTest : public ::testing::Test {
 protected:
  // revision_poll_ms 0: the store's revision is read on every tick.
  explicit FleetRolloutTest(int64_t revision_poll_ms = 0) {
    options_.revision_poll_ms = revision_poll_ms;
    operator_ = auth_.issue("deployer", Role::kOperator).token;
    g_plan = &plan_;
    api_ = std::make_unique<Api>(
        *store_, auth_, options_, [this] { return now_; }, with_owner());
    ctx_ = g_ctx;
  }

  Answer send(const std::string& method, const std::string& target, const Json& body = nullptr) {
    HttpRequest req;
    req.method = method;
    size_t q = target.find('?');
    req.path = target.substr(0, q);
    if (q != std::string::npos) req.query = target.substr(q + 1);
    if (!body.is_null()) req.body = body.dump();
    req.authorization = "Bearer " + operator_;
    Answer a;
    api_->handle(std::move(req), [slot = a.slot](HttpResponse r) { *slot = std::move(r); });
    return a;
  }
  Answer call(const std::string& method, const std::string& target, const Json& body = nullptr) {
    Answer a = send(method, target, body);
    EXPECT_TRUE(a.answered()) << method << " " << target;
    return a;
  }
  // A poll of `gateway` (of `city`): parked when `after` is what it would be given.
  Answer poll(const std::string& gateway, const std::string& city, const std::string& after) {
    std::string t = "/v1/gateway-config?wait=30s";
    if (!gateway.empty()) t += "&gateway=" + gateway;
    if (!city.empty()) t += "&city=" + city;
    if (!after.empty()) t += "&after=" + after;
    return send("GET", t);
  }
  void apply_routes(int n) {
    Json resources =
        Json::array({{{"kind", "service"},
                      {"name", "payments"},
                      {"spec", {{"endpoints", Json::array({{{"address", "127.0.0.1:9201"}}})}}}}});
    for (int i = 0; i < n; ++i) {
      std::string name = "r" + std::to_string(i);
      resources.push_back(
          {{"kind", "route"},
           {"name", name},
           {"spec", {{"match", {{"path_prefix", "/" + name}}}, {"service", "payments"}}}});
    }
    ASSERT_EQ(call("POST", "/v1/apply", {{"resources", resources}, {"reason", "t"}}).status(), 200);
  }
  // Gateways gw-a1, gw-a2 (city a) and gw-b1 (city b) known; versions 1 (one route) and 2 (two).
  void two_versions() {
    apply_routes(1);
    const std::vector<std::pair<std::string, std::string>> gateways = {
        {"gw-a1", "a"}, {"gw-a2", "a"}, {"gw-b1", "b"}};
    for (const auto& [id, city] : gateways) {
      ASSERT_EQ(call("GET", "/v1/gateway-config?wait=0&gateway=" + id + "&city=" + city +
                                "&zone=" + city + "1")
                    .status(),
                200);
    }
    apply_routes(2);
  }
  void moved() { ctx_->feed->plan_changed(nullptr); }

  int64_t now_ = kStart;
  std::unique_ptr<Store> store_ = Store::open("sqlite::memory:");
  Auth auth_{*store_, [this] { return now_; }};
  ApiOptions options_;
  StagedPlan plan_;
  std::unique_ptr<Api> api_;
  ServiceContext* ctx_ = nullptr;
  std::string operator_;
};

TEST_F(FleetRolloutTest, EachGatewayIsAnsweredWithItsVersion) {
  two_versions();
  // Idle plan: everyone gets the latest, as without a plan.
  EXPECT_EQ(poll("gw-a1", "a", "").version(), "2.0");
  plan_.start("chg-1", 1, 2);
  moved();
  Answer a1 = poll("gw-a1", "a", "");
  EXPECT_EQ(a1.version(), "1.0");
  EXPECT_EQ(a1.json()["config_version"], 1);
  EXPECT_EQ(a1.json()["config"]["routes"].size(), 1u);

  plan_.reach(1, Selection{{"gw-a1"}, false});
  moved();
  Answer on = poll("gw-a1", "", "");  // the city it gave before is remembered
  EXPECT_EQ(on.version(), "2.0");
  EXPECT_EQ(on.json()["config"]["routes"].size(), 2u);
  EXPECT_EQ(poll("gw-a2", "a", "").version(), "1.0");
  EXPECT_EQ(poll("gw-b1", "b", "").version(), "1.0");
  // A gateway never seen before, and a poll naming none: the base.
  EXPECT_EQ(poll("gw-new", "a", "").version(), "1.0");
  EXPECT_EQ(poll("", "", "").version(), "1.0");
  // A gateway that holds what it is served is parked, whatever the latest is.
  Answer parked = poll("gw-a2", "a", "1.0");
  EXPECT_FALSE(parked.answered());
  EXPECT_EQ(api_->waiting(), 1u);
}

TEST_F(FleetRolloutTest, AStageMoveWakesExactlyTheAffectedPolls) {
  two_versions();
  plan_.start("chg-1", 1, 2);
  moved();
  Answer a1 = poll("gw-a1", "a", "1.0");
  Answer a2 = poll("gw-a2", "a", "1.0");
  Answer b1 = poll("gw-b1", "b", "1.0");
  Answer anon = poll("", "", "1.0");
  ASSERT_EQ(api_->waiting(), 4u);

  plan_.reach(1, Selection{{"gw-a1", "gw-a2"}, false});
  moved();
  ASSERT_TRUE(a1.answered());
  ASSERT_TRUE(a2.answered());
  EXPECT_EQ(a1.version(), "2.0");
  EXPECT_EQ(a2.version(), "2.0");
  EXPECT_EQ(a1.body_ptr(), a2.body_ptr());  // one text for both
  EXPECT_FALSE(b1.answered());
  EXPECT_FALSE(anon.answered());
  EXPECT_EQ(api_->waiting(), 2u);

  // A move that changes nobody's answer wakes nobody.
  a1 = poll("gw-a1", "a", "2.0");
  plan_.reach(2, Selection{{"gw-a1", "gw-a2"}, false});
  moved();
  EXPECT_FALSE(a1.answered());
  EXPECT_EQ(api_->waiting(), 3u);

  // Rollback: the changed one goes back to the base; the others were on it all along.
  plan_.rollback();
  moved();
  ASSERT_TRUE(a1.answered());
  EXPECT_EQ(a1.version(), "1.0");
  EXPECT_EQ(a1.json()["config"]["routes"].size(), 1u);
  EXPECT_FALSE(b1.answered());
  EXPECT_FALSE(anon.answered());

  // The plan is over: the latest for everyone still parked on the base.
  plan_.finish();
  moved();
  ASSERT_TRUE(b1.answered());
  ASSERT_TRUE(anon.answered());
  EXPECT_EQ(b1.version(), "2.0");
  EXPECT_EQ(b1.body_ptr(), anon.body_ptr());
  EXPECT_EQ(api_->waiting(), 0u);
}

TEST_F(FleetRolloutTest, AllReachesGatewaysNeverSelected) {
  two_versions();
  plan_.start("chg-1", 1, 2);
  plan_.reach(1, Selection{{"gw-a1"}, false});
  moved();
  Answer fresh = poll("gw-late", "b", "1.0");
  ASSERT_FALSE(fresh.answered());
  plan_.reach(2, Selection{{"gw-a1"}, true});
  moved();
  ASSERT_TRUE(fresh.answered());
  EXPECT_EQ(fresh.version(), "2.0");
}

// A plan writer that forgets plan_changed is still served by the next tick, also between two
// reads of the store's revision (which would notice it too).
class FleetRolloutSlowPollTest : public FleetRolloutTest {
 protected:
  FleetRolloutSlowPollTest() : FleetRolloutTest(3'600'000) {}
};

TEST_F(FleetRolloutSlowPollTest, TheTickNoticesAMovedPlan) {
  two_versions();
  plan_.start("chg-1", 1, 2);
  api_->tick();
  Answer a1 = poll("gw-a1", "a", "1.0");
  ASSERT_FALSE(a1.answered());
  plan_.reach(1, Selection{{"gw-a1"}, false});
  EXPECT_FALSE(a1.answered());
  now_ += 100;
  api_->tick();
  ASSERT_TRUE(a1.answered());
  EXPECT_EQ(a1.version(), "2.0");
}

// A registry change during a rollout wakes everyone, each with its own config version and the
// new registry revision; one body per (config version, registry revision).
TEST_F(FleetRolloutTest, ARegistryChangeKeepsEachGatewayOnItsVersion) {
  two_versions();
  plan_.start("chg-1", 1, 2);
  plan_.reach(1, Selection{{"gw-a1", "gw-a2"}, false});
  moved();
  Answer a1 = poll("gw-a1", "a", "2.0");
  Answer a2 = poll("gw-a2", "a", "2.0");
  Answer b1 = poll("gw-b1", "b", "1.0");
  Answer anon = poll("", "", "1.0");
  ASSERT_EQ(api_->waiting(), 4u);
  ASSERT_EQ(call("POST", "/v1/instances",
                 {{"service", "other"},
                  {"id", "o1"},
                  {"address", "127.0.0.1:9300"},
                  {"city", "a"},
                  {"zone", "a1"},
                  {"ttl_ms", 3000}})
                .status(),
            200);
  ASSERT_TRUE(a1.answered() && a2.answered() && b1.answered() && anon.answered());
  EXPECT_EQ(a1.version(), "2.1");
  EXPECT_EQ(b1.version(), "1.1");
  EXPECT_EQ(anon.version(), "1.1");
  EXPECT_EQ(a1.body_ptr(), a2.body_ptr());
  EXPECT_EQ(b1.body_ptr(), anon.body_ptr());
  EXPECT_NE(a1.body_ptr(), b1.body_ptr());
}

TEST_F(FleetRolloutTest, GatewaysListWhatEachIsServedAndOn) {
  two_versions();
  auto report = [&](const std::string& id, const std::string& v) {
    ASSERT_EQ(call("POST", "/v1/gateways/" + id + "/status",
                   {{"applied_version", v}, {"status", "applied"}})
                  .status(),
              200);
  };
  report("gw-a1", "1.0");
  report("gw-a2", "1.0");
  report("gw-b1", "1.0");
  plan_.start("chg-1", 1, 2);
  plan_.reach(1, Selection{{"gw-a1"}, false});
  moved();
  auto by_id = [&] {
    std::map<std::string, Json> out;
    for (const Json& g : call("GET", "/v1/gateways").json()) out[g["id"]] = g;
    return out;
  };
  auto list = by_id();
  EXPECT_EQ(list["gw-a1"]["served_version"], 2);
  EXPECT_EQ(list["gw-a1"]["health"], "behind");  // not yet on what it is served
  EXPECT_EQ(list["gw-a2"]["served_version"], 1);
  EXPECT_EQ(list["gw-a2"]["health"], "ok");  // on its version, though 2 is the latest
  report("gw-a1", "2.0");
  list = by_id();
  EXPECT_EQ(list["gw-a1"]["health"], "ok");

  using Versions = std::map<int64_t, std::vector<std::string>>;
  EXPECT_EQ(ctx_->directory->gateways_on_versions(now_),
            (Versions{{1, {"gw-a2", "gw-b1"}}, {2, {"gw-a1"}}}));

  // Rolled back: a gateway still on the target is behind until it applies the base again.
  plan_.rollback();
  moved();
  list = by_id();
  EXPECT_EQ(list["gw-a1"]["served_version"], 1);
  EXPECT_EQ(list["gw-a1"]["health"], "behind");
  report("gw-a1", "1.0");
  EXPECT_EQ(by_id()["gw-a1"]["health"], "ok");

  // A gateway with no config applied yet is under -1; stale ones are left out.
  call("GET", "/v1/gateway-config?wait=0&gateway=gw-new&city=a");
  EXPECT_EQ(ctx_->directory->gateways_on_versions(now_),
            (Versions{{-1, {"gw-new"}}, {1, {"gw-a1", "gw-a2", "gw-b1"}}}));
  now_ += options_.gateway_stale_ms + 1;
  call("GET", "/v1/gateway-config?wait=0&gateway=gw-b1");
  EXPECT_EQ(ctx_->directory->gateways_on_versions(now_), (Versions{{1, {"gw-b1"}}}));
}

// The answer of a deferred wake-up is computed when it runs: a plan moved back meanwhile leaves
// the waiter parked rather than answering it with what it already has.
TEST_F(FleetRolloutTest, ADeferredWakeUpRechecksThePlan) {
  two_versions();
  plan_.start("chg-1", 1, 2);
  moved();
  Answer a1 = poll("gw-a1", "a", "1.0");
  ASSERT_FALSE(a1.answered());
  plan_.reach(1, Selection{{"gw-a1"}, false});
  Deferred after;
  ctx_->feed->plan_changed(&after);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_FALSE(a1.answered());
  EXPECT_EQ(api_->waiting(), 0u);
  plan_.rollback();
  for (auto& fn : after) fn();
  EXPECT_FALSE(a1.answered());
  EXPECT_EQ(api_->waiting(), 1u);
  plan_.finish();
  moved();
  ASSERT_TRUE(a1.answered());
  EXPECT_EQ(a1.version(), "2.0");
}

// Gateways re-polling on their own threads while the driver moves the plan on another: no
// wake-up is lost (each ends parked on exactly what the final plan serves it) and none is
// answered with what it already had.
TEST_F(FleetRolloutTest, ConcurrentPollsAndStageMovesLoseNoWakeUp) {
  two_versions();
  plan_.start("chg-1", 1, 2);
  moved();
  constexpr int kGateways = 40;
  struct Gw {
    std::string id, holds = "1.0";
    bool parked = false;
    std::optional<std::string> got;  // an answer not yet taken by its poller
  };
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Gw> gws(kGateways);
  for (int i = 0; i < kGateways; ++i) gws[i].id = "gw-c" + std::to_string(i);
  int repeated = 0;  // answers equal to what the gateway held
  std::atomic<bool> done{false};

  auto poll_one = [&](int i) {
    std::string target;
    {
      std::lock_guard lock(mu);
      target =
          "/v1/gateway-config?wait=300s&city=a&gateway=" + gws[i].id + "&after=" + gws[i].holds;
    }
    HttpRequest req;
    req.method = "GET";
    size_t q = target.find('?');
    req.path = target.substr(0, q);
    req.query = target.substr(q + 1);
    req.authorization = "Bearer " + operator_;
    api_->handle(std::move(req), [&, i](HttpResponse r) {
      std::string v;
      for (const auto& [k, val] : r.headers)
        if (k == "X-Sluice-Version") v = val;
      std::lock_guard lock(mu);
      gws[i].got = v;
      gws[i].parked = false;
      cv.notify_all();
    });
    // Parked unless answered meanwhile (only this thread takes an answer, so `got` is still
    // set if it was).
    std::lock_guard lock(mu);
    if (!gws[i].got) gws[i].parked = true;
    cv.notify_all();
  };
  std::vector<std::thread> pollers;
  for (int t = 0; t < 4; ++t) {
    pollers.emplace_back([&, t] {
      for (int i = t; i < kGateways; i += 4) poll_one(i);
      while (!done.load()) {
        std::vector<int> again;
        {
          std::unique_lock lock(mu);
          cv.wait_for(lock, std::chrono::milliseconds(20));
          for (int i = t; i < kGateways; i += 4) {
            if (!gws[i].got) continue;
            if (*gws[i].got == gws[i].holds) ++repeated;
            gws[i].holds = *gws[i].got;
            gws[i].got.reset();
            again.push_back(i);
          }
        }
        for (int i : again) poll_one(i);
      }
    });
  }
  std::vector<rollout::Candidate> known;
  for (const Gw& g : gws) known.push_back({g.id, "a", "", true});
  Selection final_selection;
  for (int round = 0; round < 300; ++round) {
    Selection s;
    for (int i = 0; i < kGateways; ++i)
      if ((i * 7 + round * 13) % 5 < round % 5) s.ids.insert(gws[i].id);
    final_selection = s;
    plan_.reach(static_cast<size_t>(round % 30), s);
    moved();
  }
  // Every gateway settles parked on what the final plan serves it.
  auto settled = [&] {
    for (const Gw& g : gws) {
      const std::string want = final_selection.ids.count(g.id) ? "2.0" : "1.0";
      if (g.got || !g.parked || g.holds != want) return false;
    }
    return true;
  };
  {
    std::unique_lock lock(mu);
    EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), settled));
    EXPECT_EQ(repeated, 0);
  }
  EXPECT_EQ(api_->waiting(), static_cast<size_t>(kGateways));
  done = true;
  for (auto& t : pollers) t.join();
  // The parked polls are answered (503) while `mu` and `gws` still exist.
  api_->shutdown();
}

}  // namespace
}  // namespace sluice::control
