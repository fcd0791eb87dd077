// change_policy: the spec's checks, matching by kind and name glob, and the strictest of several.
#include "control/changes/policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sluice::control::changes {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

Resource policy(const std::string& name, Json spec) {
  return Resource{"change_policy", name, std::move(spec)};
}

TEST(ChangePolicyCheck, AcceptsTheDocumentedShape) {
  Json spec = {{"match", {{"kinds", {"service", "route"}}, {"names", {"payments-*"}}}},
               {"approvals", {{"count", 2}, {"role", "admin"}}},
               {"freeze", {{"allowed", false}, {"on_freeze", "wait"}}},
               {"rollout",
                {{"stages", Json::array({{{"gateways", "city=a,count=1"}}, {{"all", true}}})}}}};
  EXPECT_THAT(check_policy(spec, "spec"), ::testing::IsEmpty());
  EXPECT_THAT(check_policy(Json::object(), "spec"), ::testing::IsEmpty());
  // Every resource kind can be governed, canary releases too.
  EXPECT_THAT(check_policy({{"match", {{"kinds", {"release", "freeze_window"}}}}}, "spec"),
              ::testing::IsEmpty());
}

TEST(ChangePolicyCheck, NamesEveryProblem) {
  Json spec = {{"match", {{"kinds", {"listener"}}, {"names", {""}}, {"labels", Json::object()}}},
               {"approvals", {{"count", 11}, {"role", "viewer"}}},
               {"freeze", {{"allowed", "no"}, {"on_freeze", "panic"}}},
               {"rollout", {{"stages", 3}}},
               {"owner", "x"}};
  std::string all;
  for (auto& e : check_policy(spec, "change_policy/p: spec")) all += e + "\n";
  EXPECT_THAT(all, HasSubstr("spec.match.kinds[0]: unknown kind 'listener'"));
  EXPECT_THAT(all, HasSubstr("spec.match.names[0]: expected a non-empty string"));
  EXPECT_THAT(all, HasSubstr("spec.match.labels: unknown key"));
  EXPECT_THAT(all, HasSubstr("spec.approvals.count: expected 0..10, got 11"));
  EXPECT_THAT(all, HasSubstr("spec.approvals.role: expected operator or admin, got 'viewer'"));
  EXPECT_THAT(all, HasSubstr("spec.freeze.allowed: expected true or false"));
  EXPECT_THAT(all, HasSubstr("spec.freeze.on_freeze: expected wait or refuse, got 'panic'"));
  EXPECT_THAT(all, HasSubstr("spec.rollout.stages: expected a list"));  // check_plan's
  EXPECT_THAT(all, HasSubstr("spec.owner: unknown key"));
}

TEST(ChangePolicy, NoPolicyMatchesNothing) {
  const Effective e = strictest({Resource{"service", "a", Json::object()}}, {{"service", "a"}});
  EXPECT_FALSE(e.any());
  EXPECT_EQ(e.approvals, 0);
  EXPECT_TRUE(e.freeze_allowed);
}

TEST(ChangePolicy, MatchesByKindAndNameGlob) {
  std::vector<Resource> config = {
      policy("payments", {{"match", {{"kinds", {"service"}}, {"names", {"pay*", "ledger?"}}}},
                          {"approvals", {{"count", 1}}}}),
  };
  EXPECT_TRUE(strictest(config, {{"service", "payments"}}).any());
  EXPECT_TRUE(strictest(config, {{"service", "ledger1"}}).any());
  EXPECT_FALSE(strictest(config, {{"service", "ledger12"}}).any());
  EXPECT_FALSE(strictest(config, {{"route", "payments"}}).any());  // kind not listed
  // Any touched resource that matches is enough.
  EXPECT_TRUE(strictest(config, {{"route", "x"}, {"service", "pay"}}).any());
  // Defaults: freeze not allowed, refused.
  const Effective e = strictest(config, {{"service", "pay"}});
  EXPECT_FALSE(e.freeze_allowed);
  EXPECT_TRUE(e.refuse_in_freeze);
  EXPECT_EQ(e.role, Role::kOperator);
}

TEST(ChangePolicy, TheStrictestWinsFieldByField) {
  std::vector<Resource> config = {
      policy("a-wide", {{"approvals", {{"count", 1}, {"role", "admin"}}},
                        {"freeze", {{"allowed", false}, {"on_freeze", "wait"}}},
                        {"rollout", {{"stages", Json::array({{{"percent", 50}}})}}}}),
      policy("b-payments",
             {{"match", {{"names", {"pay*"}}}},
              {"approvals", {{"count", 2}, {"role", "operator"}}},
              {"freeze", {{"allowed", true}}},
              {"rollout", {{"stages", Json::array({{{"percent", 10}}, {{"all", true}}})}}}}),
      policy("c-refuse", {{"match", {{"kinds", {"route"}}}},
                          {"freeze", {{"allowed", false}, {"on_freeze", "refuse"}}}}),
  };
  Effective e = strictest(config, {{"service", "payments"}});
  EXPECT_EQ(e.policies, (std::vector<std::string>{"a-wide", "b-payments"}));
  EXPECT_EQ(e.approvals, 2);                  // the most
  EXPECT_EQ(e.role, Role::kAdmin);            // the highest
  EXPECT_FALSE(e.freeze_allowed);             // disallowed wins
  EXPECT_FALSE(e.refuse_in_freeze);           // wait: no policy says refuse
  EXPECT_EQ(e.rollout["stages"].size(), 2u);  // the most stages
  e = strictest(config, {{"service", "payments"}, {"route", "r"}});
  EXPECT_TRUE(e.refuse_in_freeze);  // refuse beats wait
  // Round trip through the stored form.
  const Effective back = Effective::from_json(e.to_json());
  EXPECT_EQ(back.policies, e.policies);
  EXPECT_EQ(back.approvals, e.approvals);
  EXPECT_EQ(back.role, e.role);
  EXPECT_EQ(back.freeze_allowed, e.freeze_allowed);
  EXPECT_EQ(back.refuse_in_freeze, e.refuse_in_freeze);
  EXPECT_EQ(back.rollout, e.rollout);
}

}  // namespace
}  // namespace sluice::control::changes
