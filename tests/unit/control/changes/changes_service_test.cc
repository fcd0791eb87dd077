// The changes domain through the API (Api::handle) on an in-memory store with a manual clock:
// writes as change records, held changes and approvals, stale changes, freeze windows (refuse and
// wait, the clock moved by the test), emergency changes and reviews, rollbacks and the figures.
#include "control/changes/changes_service.h"

#include "../api_fixture.h"

namespace sluice::control::test {
namespace {

// kStart is 2023-11-14T22:13:20Z = 2023-11-15 06:13:20 in Shanghai.
constexpr int64_t kHour = 3'600'000;

Json policy(const std::string& name, Json spec) {
  return {{"kind", "change_policy"}, {"name", name}, {"spec", std::move(spec)}};
}

Json freeze(const std::string& name, const std::string& start, const std::string& end) {
  return {{"kind", "freeze_window"},
          {"name", name},
          {"spec",
           {{"time_zone", "Asia/Shanghai"},
            {"reason", "month-end batch"},
            {"once", {{{"start", start}, {"end", end}}}}}}};
}

class ChangesTest : public ApiTest {
 protected:
  ChangesTest() { second_ = auth_.issue("reviewer", Role::kOperator).token; }

  Json change(int64_t id) {
    Pending p = call("GET", "/v1/changes/" + std::to_string(id), nullptr, "viewer");
    EXPECT_EQ(p.status(), 200) << p.body();
    return p.json();
  }
  Pending act(int64_t id, const std::string& action, const std::string& token,
              const std::string& reason = "looks right") {
    return call("POST", "/v1/changes/" + std::to_string(id) + "/" + action, {{"reason", reason}},
                token);
  }
  Pending apply_as(const std::vector<Json>& resources, bool emergency = false) {
    Json body = {{"resources", resources}, {"reason", "test"}};
    if (emergency) body["emergency"] = true;
    return call("POST", "/v1/apply", body);
  }
  static std::vector<std::string> states(const Json& ch) {
    std::vector<std::string> out;
    for (const Json& t : ch["transitions"]) out.push_back(t["to"].get<std::string>());
    return out;
  }

  std::string second_;
};

TEST_F(ChangesTest, WithoutAPolicyAWriteCommitsAtOnceAsADoneChange) {
  Pending p = apply({static_service("accounts", "127.0.0.1:9101"),
                     route("accounts-api", "/api/accounts", "accounts")});
  ASSERT_EQ(p.status(), 200) << p.body();
  EXPECT_EQ(p.json()["version"], 1);
  EXPECT_EQ(p.json()["change"], 1);
  EXPECT_EQ(p.json()["state"], "done");
  Json ch = change(1);
  EXPECT_EQ(ch["author"], "deployer");
  EXPECT_EQ(ch["operation"], "apply");
  EXPECT_EQ(ch["version"], 1);
  EXPECT_EQ(states(ch), (std::vector<std::string>{"proposed", "approved", "rolling_out", "done"}));
  EXPECT_EQ(ch["transitions"][1]["reason"], "no change_policy matches");
  EXPECT_EQ(ch["diff"].size(), 2u);
  // A service change affects the routes pointing at it and its endpoints' cities.
  Pending q = apply(
      {service("accounts", {{"endpoints", {{{"address", "127.0.0.1:9102"}, {"city", "b"}}}}})});
  ASSERT_EQ(q.status(), 200) << q.body();
  Json affected = change(2)["affected"];
  EXPECT_EQ(affected["resources"], Json({"service/accounts"}));
  EXPECT_EQ(affected["routes"], Json({"accounts-api"}));
  EXPECT_EQ(affected["cities"], Json({"b"}));
  // Delete and rollback are changes too.
  ASSERT_EQ(call("DELETE", "/v1/resources/route/accounts-api?reason=gone").status(), 200);
  EXPECT_EQ(change(3)["operation"], "delete");
  ASSERT_EQ(call("POST", "/v1/rollback", {{"version", 1}, {"reason", "back"}}).status(), 200);
  EXPECT_EQ(change(4)["operation"], "rollback");
  EXPECT_EQ(change(4)["target_version"], 1);
  // An unchanged apply commits nothing and is no change.
  Pending same = apply({static_service("accounts", "127.0.0.1:9101")});
  EXPECT_TRUE(same.json().value("unchanged", false));
  EXPECT_FALSE(same.json().contains("change"));
  EXPECT_EQ(call("GET", "/v1/changes", nullptr, "viewer").json().size(), 4u);
}

TEST_F(ChangesTest, APolicyHoldsTheChangeUntilAnotherOperatorApproves) {
  ASSERT_EQ(apply({static_service("payments", "127.0.0.1:9101"),
                   policy("payments", {{"match", {{"kinds", {"service"}}, {"names", {"pay*"}}}},
                                       {"approvals", {{"count", 1}, {"role", "operator"}}}})})
                .status(),
            200);
  const int64_t before = store_->latest_version();
  Pending held = apply({static_service("payments", "127.0.0.1:9102")});
  ASSERT_EQ(held.status(), 202) << held.body();
  const int64_t id = held.json()["change"];
  EXPECT_EQ(held.json()["state"], "proposed");
  EXPECT_EQ(held.json()["approvals_required"], 1);
  EXPECT_THAT(held.json()["message"].get<std::string>(),
              HasSubstr("change_policy/payments requires 1 approval (role operator or higher) by "
                        "someone other than deployer"));
  EXPECT_EQ(store_->latest_version(), before);  // nothing a gateway could see

  Pending self = act(id, "approve", "op");
  EXPECT_EQ(self.status(), 403);
  EXPECT_THAT(self.body(), HasSubstr("deployer proposed change 2 and cannot approve it"));
  EXPECT_EQ(act(id, "approve", "viewer").status(), 403);
  EXPECT_EQ(change(id)["approvals"].size(), 0u);

  Pending ok = act(id, "approve", second_);
  ASSERT_EQ(ok.status(), 200) << ok.body();
  EXPECT_EQ(ok.json()["state"], "done");
  EXPECT_EQ(ok.json()["version"], before + 1);
  EXPECT_EQ(store_->latest_version(), before + 1);
  EXPECT_EQ(store_->resources()[1].spec["endpoints"][0]["address"], "127.0.0.1:9102");
  Json ch = change(id);
  EXPECT_EQ(states(ch), (std::vector<std::string>{"proposed", "approved", "rolling_out", "done"}));
  EXPECT_EQ(ch["approvals"][0]["approver"], "reviewer");
  EXPECT_EQ(ch["version"], before + 1);
  EXPECT_EQ(store_->version(before + 1)->author, "deployer");
  // Done: no more approvals.
  EXPECT_EQ(act(id, "approve", "admin").status(), 409);
  // A change that touches nothing the policy matches is not held.
  EXPECT_EQ(apply({static_service("ledger", "127.0.0.1:9103")}).status(), 200);
}

TEST_F(ChangesTest, EachApproverCountsOnceAndTheRoleIsChecked) {
  ASSERT_EQ(apply({policy("two-admins", {{"approvals", {{"count", 2}, {"role", "admin"}}},
                                         {"freeze", {{"allowed", true}}}})})
                .status(),
            200);
  Pending held = apply({static_service("a", "127.0.0.1:9101")});
  ASSERT_EQ(held.status(), 202);
  const int64_t id = held.json()["change"];
  Pending low = act(id, "approve", second_);
  EXPECT_EQ(low.status(), 403);
  EXPECT_THAT(low.body(), HasSubstr("needs role admin"));
  ASSERT_EQ(act(id, "approve", "admin").status(), 200);
  EXPECT_EQ(change(id)["state"], "proposed");
  Pending twice = act(id, "approve", "admin");
  EXPECT_EQ(twice.status(), 409);
  EXPECT_THAT(twice.body(), HasSubstr("alice approved change 2 already"));
  const std::string admin2 = auth_.issue("bob", Role::kAdmin).token;
  ASSERT_EQ(act(id, "approve", admin2).json()["state"], "done");
  EXPECT_EQ(change(id)["approvals"].size(), 2u);
}

TEST_F(ChangesTest, RejectAndAbortEndAHeldChange) {
  ASSERT_EQ(apply({policy("all", {{"approvals", {{"count", 1}}}})}).status(), 200);
  const int64_t a = apply({static_service("a", "127.0.0.1:9101")}).json()["change"];
  const int64_t b = apply({static_service("b", "127.0.0.1:9102")}).json()["change"];
  EXPECT_EQ(act(a, "reject", "op").status(), 403);  // the author aborts instead
  ASSERT_EQ(act(a, "reject", second_, "not now").status(), 200);
  ASSERT_EQ(act(b, "abort", "op", "wrong file").status(), 200);
  EXPECT_EQ(change(a)["state"], "rejected");
  EXPECT_EQ(change(a)["transitions"][1]["reason"], "not now");
  EXPECT_EQ(change(b)["state"], "aborted");
  EXPECT_EQ(act(a, "approve", second_).status(), 409);
  EXPECT_EQ(store_->latest_version(), 1);
  EXPECT_EQ(call("GET", "/v1/changes?state=rejected", nullptr, "viewer").json().size(), 1u);
  EXPECT_EQ(call("GET", "/v1/changes?state=bogus", nullptr, "viewer").status(), 400);
  EXPECT_EQ(act(a, "approve", second_, "  ").status(), 400);
  EXPECT_EQ(call("GET", "/v1/changes/99", nullptr, "viewer").status(), 404);
}

TEST_F(ChangesTest, AHeldChangeIsReappliedOnTheLatestOrRejectedAsStale) {
  ASSERT_EQ(
      apply({static_service("a", "127.0.0.1:9101"), static_service("b", "127.0.0.1:9102"),
             policy("a-only", {{"match", {{"names", {"a"}}}}, {"approvals", {{"count", 1}}}})})
          .status(),
      200);
  // Held on version 1; version 2 changes another resource: re-applied on version 2.
  const int64_t fresh = apply({static_service("a", "127.0.0.1:9201")}).json()["change"];
  ASSERT_EQ(apply({static_service("b", "127.0.0.1:9202")}).status(), 200);
  Pending ok = act(fresh, "approve", second_);
  ASSERT_EQ(ok.status(), 200) << ok.body();
  EXPECT_EQ(ok.json()["version"], 3);
  auto now = store_->resources();
  EXPECT_EQ(now[1].spec["endpoints"][0]["address"], "127.0.0.1:9201");  // a: the change
  EXPECT_EQ(now[2].spec["endpoints"][0]["address"], "127.0.0.1:9202");  // b: kept
  // Held; then service a changes meanwhile (an emergency): stale, rejected, nothing written.
  const int64_t stale = apply({static_service("a", "127.0.0.1:9301")}).json()["change"];
  ASSERT_EQ(apply_as({static_service("a", "127.0.0.1:9401")}, true).status(), 200);
  const int64_t latest = store_->latest_version();
  Pending no = act(stale, "approve", second_);
  EXPECT_EQ(no.status(), 409);
  EXPECT_THAT(no.body(), HasSubstr("is stale and was rejected: service/a was changed after it was "
                                   "proposed on version 3"));
  EXPECT_EQ(store_->latest_version(), latest);
  Json ch = change(stale);
  EXPECT_EQ(ch["state"], "rejected");
  EXPECT_EQ(ch["approvals"].size(), 1u);  // recorded with the rejection
}

TEST_F(ChangesTest, AFreezeWindowRefusesNamingTheWindowAndItsEnd) {
  // 2023-11-15 06:00-10:00 in Shanghai covers kStart (06:13:20 there).
  ASSERT_EQ(apply({freeze("month-end", "2023-11-15T06:00", "2023-11-15T10:00"),
                   policy("strict", {{"match", {{"kinds", {"service"}}}},
                                     {"freeze", {{"allowed", false}, {"on_freeze", "refuse"}}}})})
                .status(),
            200);
  Pending no = apply({static_service("a", "127.0.0.1:9101")});
  ASSERT_EQ(no.status(), 409);
  EXPECT_THAT(no.json()["error"].get<std::string>(),
              HasSubstr("freeze_window/month-end (month-end batch) is in force until 2023-11-15 "
                        "10:00 Asia/Shanghai (2023-11-15T02:00:00.000Z)"));
  EXPECT_EQ(no.json()["window"], "month-end");
  EXPECT_EQ(store_->latest_version(), 1);
  EXPECT_EQ(call("GET", "/v1/changes", nullptr, "viewer").json().size(), 1u);  // none recorded
  // Kinds the policy does not match still pass; an emergency passes.
  EXPECT_EQ(apply({freeze("later", "2030-01-01T00:00", "2030-01-02T00:00")}).status(), 200);
  EXPECT_EQ(apply_as({static_service("a", "127.0.0.1:9101")}, true).status(), 200);
  // At the end of the window (02:00Z) the change goes through.
  now_ = kStart + 3 * kHour + 46 * 60'000 + 40'000;  // 2023-11-15T02:00:00Z
  EXPECT_EQ(apply({static_service("b", "127.0.0.1:9102")}).status(), 200);
}

TEST_F(ChangesTest, OnFreezeWaitHoldsTheChangeUntilTheWindowEnds) {
  ASSERT_EQ(apply({freeze("month-end", "2023-11-15T06:00", "2023-11-15T10:00"),
                   policy("wait", {{"freeze", {{"allowed", false}, {"on_freeze", "wait"}}}})})
                .status(),
            200);
  Pending held = apply({static_service("a", "127.0.0.1:9101")});
  ASSERT_EQ(held.status(), 202) << held.body();
  EXPECT_EQ(held.json()["state"], "approved");
  EXPECT_EQ(held.json()["waiting_until"], "2023-11-15T02:00:00.000Z");
  const int64_t id = held.json()["change"];
  advance(kHour);
  api_.tick();
  EXPECT_EQ(change(id)["state"], "approved");
  EXPECT_EQ(store_->latest_version(), 1);
  now_ = kStart + 3 * kHour + 46 * 60'000 + 40'000;  // the end of the window
  api_.tick();
  Json ch = change(id);
  EXPECT_EQ(ch["state"], "done");
  EXPECT_EQ(ch["version"], 2);
  EXPECT_EQ(ch["transitions"][2]["actor"], "control-plane");
  EXPECT_EQ(store_->latest_version(), 2);
}

TEST_F(ChangesTest, ApprovalDuringARefusingFreezeIsRefusedAndNotRecorded) {
  ASSERT_EQ(apply({policy("one", {{"approvals", {{"count", 1}}}})}).status(), 200);
  const int64_t id = apply({static_service("a", "127.0.0.1:9101")}).json()["change"];
  ASSERT_EQ(apply_as({freeze("now", "2023-11-15T06:00", "2023-11-15T10:00")}, true).status(), 200);
  Pending no = act(id, "approve", second_);
  EXPECT_EQ(no.status(), 409);
  EXPECT_THAT(no.body(), HasSubstr("committing change 2 refused: freeze_window/now"));
  EXPECT_EQ(change(id)["approvals"].size(), 0u);
  EXPECT_EQ(change(id)["state"], "proposed");
}

TEST_F(ChangesTest, EmergencySkipsApprovalAndIsFlaggedUntilReviewed) {
  ASSERT_EQ(apply({policy("one", {{"approvals", {{"count", 1}}}})}).status(), 200);
  Pending p = apply_as({static_service("a", "127.0.0.1:9101")}, true);
  ASSERT_EQ(p.status(), 200) << p.body();
  EXPECT_TRUE(p.json()["review_required"].get<bool>());
  const int64_t id = p.json()["change"];
  Json ch = change(id);
  EXPECT_TRUE(ch["emergency"].get<bool>());
  EXPECT_EQ(ch["transitions"][1]["reason"], "emergency: approval skipped, review required");
  EXPECT_EQ(act(id, "review", "op").status(), 403);  // not by its author
  ASSERT_EQ(act(id, "review", second_, "checked the diff").status(), 200);
  ch = change(id);
  EXPECT_FALSE(ch["review_required"].get<bool>());
  EXPECT_EQ(ch["transitions"].back()["reason"], "reviewed: checked the diff");
  EXPECT_EQ(ch["state"], "done");
  EXPECT_EQ(act(id, "review", second_).status(), 409);
  // Emergency still needs a reason.
  EXPECT_EQ(call("POST", "/v1/apply",
                 {{"resources", {static_service("a", "127.0.0.1:1")}}, {"emergency", true}})
                .status(),
            400);
  // Delete takes ?emergency=true.
  EXPECT_EQ(call("DELETE", "/v1/resources/service/a?reason=x").status(), 202);
  EXPECT_EQ(call("DELETE", "/v1/resources/service/a?reason=x&emergency=true").status(), 200);
}

TEST_F(ChangesTest, PoliciesGovernChangesToThemselves) {
  ASSERT_EQ(apply({policy("guard", {{"match", {{"kinds", {"change_policy", "freeze_window"}}}},
                                    {"approvals", {{"count", 1}}}})})
                .status(),
            200);
  // Removing the policy is governed by the policy in force.
  Pending held = call("DELETE", "/v1/resources/change_policy/guard?reason=bypass");
  EXPECT_EQ(held.status(), 202) << held.body();
  EXPECT_EQ(apply({freeze("x", "2030-01-01T00:00", "2030-01-02T00:00")}).status(), 202);
  // They are never sent to gateways.
  EXPECT_EQ(store_->resources().size(), 1u);
  EXPECT_EQ(gateway_sections(store_->resources(), {}).dump(),
            R"({"services":[],"routes":[],"rate_limits":[]})");
  // And they are checked like any resource.
  Pending bad = call(
      "POST", "/v1/apply",
      {{"resources",
        {{{"kind", "change_policy"}, {"name", "p"}, {"spec", {{"approvals", {{"count", -1}}}}}}}},
       {"reason", "x"},
       {"emergency", true}});
  EXPECT_EQ(bad.status(), 400);
  EXPECT_THAT(bad.body(), HasSubstr("change_policy/p: spec.approvals.count: expected 0..10"));
}

TEST_F(ChangesTest, ARollbackMarksTheChangesItUndoesAndTheFiguresCountThem) {
  ASSERT_EQ(apply({static_service("a", "127.0.0.1:9101")}).status(), 200);  // change 1, v1
  advance(1'000);
  ASSERT_EQ(apply({static_service("a", "127.0.0.1:9102")}).status(), 200);  // change 2, v2
  advance(60'000);
  Pending rb = call("POST", "/v1/rollback", {{"version", 1}, {"reason", "v2 is bad"}});
  ASSERT_EQ(rb.status(), 200);  // change 3, v3
  Json two = change(2);
  EXPECT_EQ(two["state"], "rolled_back");
  EXPECT_EQ(two["transitions"].back()["from"], "done");
  EXPECT_THAT(two["transitions"].back()["reason"].get<std::string>(),
              HasSubstr("rollback to version 1"));
  EXPECT_EQ(change(1)["state"], "done");
  EXPECT_EQ(change(3)["state"], "done");
  Pending m = call("GET", "/v1/changes/metrics?window=30d", nullptr, "viewer");
  ASSERT_EQ(m.status(), 200) << m.body();
  Json f = m.json();
  EXPECT_EQ(f["window"], "30d");
  EXPECT_EQ(f["deployments"], 3);
  EXPECT_EQ(f["failed"], 1);
  EXPECT_DOUBLE_EQ(f["change_failure_rate"].get<double>(), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(f["time_to_restore_seconds"]["p50"].get<double>(), 60.0);
  EXPECT_DOUBLE_EQ(f["lead_time_seconds"]["p50"].get<double>(), 0.0);
  EXPECT_EQ(f["rollbacks"], 1);
  EXPECT_EQ(f["failed_rollbacks"], 0);
  EXPECT_DOUBLE_EQ(f["deployment_frequency_per_day"].get<double>(), 0.1);
  EXPECT_EQ(call("GET", "/v1/changes/metrics?window=1y", nullptr, "viewer").status(), 400);
  // The same on /metrics.
  Pending prom = call("GET", "/metrics", nullptr, "");
  EXPECT_THAT(prom.body(), HasSubstr("sluice_control_change_deployments{window=\"30d\"} 3"));
  EXPECT_THAT(prom.body(),
              HasSubstr("sluice_control_change_restore_time_p50_seconds{window=\"30d\"} 60"));
}

}  // namespace
}  // namespace sluice::control::test
