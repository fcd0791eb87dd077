#include "control/cmdb/reconcile.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "unit/control/cmdb/cmdb_fixture.h"

namespace sluice::control::cmdb {
namespace {

using testing::CmdbFixture;
using testing::kT0;

std::string dump(const std::vector<Finding>& fs) {
  std::string out;
  for (const Finding& f : fs) {
    out += std::string(to_string(f.kind)) + " " + f.subject + " " + f.attribute + " [" +
           f.declared + "|" + f.observed + "|" + f.other + "]\n";
  }
  return out;
}

std::vector<const Finding*> of_kind(const ReconcileResult& r, FindingKind k) {
  std::vector<const Finding*> out;
  for (const Finding& f : r.findings) {
    if (f.kind == k) out.push_back(&f);
  }
  return out;
}

class CmdbReconcile : public CmdbFixture, public ::testing::Test {
 protected:
  void SetUp() override {
    declare_model();
    observe(kT0);
  }
  // Applies the fix of the one finding of `kind` and reconciles again at `now`.
  ReconcileResult fix_one(FindingKind kind, std::int64_t now) {
    Policy p(g.schema(), options);
    ReconcileResult r = reconcile(g, p, now);
    auto fs = of_kind(r, kind);
    EXPECT_EQ(fs.size(), 1u) << dump(r.findings);
    if (fs.empty()) return r;
    auto ops = plan_fix(g, p, *fs[0], now);
    EXPECT_FALSE(ops.empty());
    apply_fix(g, ops, now);
    return reconcile(g, p, now);
  }
};

TEST_F(CmdbReconcile, DeclaredMatchesObservedIsAllCorrect) {
  ReconcileResult r = run(kT0);
  EXPECT_TRUE(r.findings.empty()) << dump(r.findings);
  // Counted by hand (cmdb_fixture.h): 3 instances x (4 attributes + belongs_to + runs_on).
  EXPECT_EQ(r.accuracy.correctness, (Ratio{18, 18}));
  // instances 3 x (id, belongs_to service), hosts 2, services 2, application 1, business system 1.
  EXPECT_EQ(r.accuracy.completeness, (Ratio{12, 12}));
  // instances 3, hosts 2, services 2 (declared CIs of observed types).
  EXPECT_EQ(r.accuracy.freshness, (Ratio{7, 7}));
  EXPECT_EQ(r.accuracy.precision, (Ratio{1, 1}));
  EXPECT_EQ(r.accuracy.recall, (Ratio{1, 1}));
  EXPECT_DOUBLE_EQ(r.accuracy.score(), 1.0);
  EXPECT_EQ(r.live_cis, 9);
}

TEST_F(CmdbReconcile, UndeclaredInstanceIsMissingAndFixDeclaresIt) {
  set("instance", "a2", "address", Value(std::string("10.0.0.9:8001")), Source::kRegistry, kT0);
  set("instance", "a2", "zone", Value(std::string("a1")), Source::kRegistry, kT0);
  relate("instance", "a2", RelationKind::kBelongsTo, "service", "accounts", Source::kRegistry, kT0);
  ReconcileResult r = run(kT0);
  ASSERT_EQ(r.findings.size(), 1u) << dump(r.findings);
  EXPECT_EQ(r.findings[0].kind, FindingKind::kMissing);
  EXPECT_EQ(r.findings[0].subject, "instance/a2");
  EXPECT_TRUE(r.findings[0].fixable);
  // a2 adds two required slots (its id, its belongs_to service), neither declared.
  EXPECT_EQ(r.accuracy.completeness, (Ratio{12, 14}));
  EXPECT_EQ(r.accuracy.correctness, (Ratio{18, 18}));
  EXPECT_DOUBLE_EQ(r.accuracy.score(), (4.0 + 12.0 / 14.0) / 5.0);

  ReconcileResult after = fix_one(FindingKind::kMissing, kT0);
  EXPECT_TRUE(after.findings.empty()) << dump(after.findings);
  EXPECT_EQ(after.accuracy.completeness, (Ratio{14, 14}));
  // a2 is now checked too: address, zone and belongs_to.
  EXPECT_EQ(after.accuracy.correctness, (Ratio{21, 21}));
  EXPECT_EQ(after.accuracy.freshness, (Ratio{8, 8}));
}

TEST_F(CmdbReconcile, MovedZoneIsMismatchAndFixTakesTheObservedValue) {
  set("instance", "b1", "zone", Value(std::string("b2")), Source::kRegistry, kT0);
  ReconcileResult r = run(kT0);
  ASSERT_EQ(r.findings.size(), 1u) << dump(r.findings);
  const Finding& f = r.findings[0];
  EXPECT_EQ(f.kind, FindingKind::kMismatch);
  EXPECT_EQ(f.subject, "instance/b1");
  EXPECT_EQ(f.attribute, "zone");
  EXPECT_EQ(f.declared, "b1");
  EXPECT_EQ(f.observed, "b2");
  EXPECT_EQ(f.observed_source, Source::kRegistry);
  EXPECT_NE(f.fix.find("registry wins for zone"), std::string::npos) << f.fix;
  EXPECT_EQ(r.accuracy.correctness, (Ratio{17, 18}));
  EXPECT_DOUBLE_EQ(r.accuracy.score(), (4.0 + 17.0 / 18.0) / 5.0);

  ReconcileResult after = fix_one(FindingKind::kMismatch, kT0);
  EXPECT_TRUE(after.findings.empty()) << dump(after.findings);
  EXPECT_EQ(after.accuracy.correctness, (Ratio{18, 18}));
  EXPECT_EQ(to_text(g.declared(id("instance", "b1"), attr("instance", "zone"))->value), "b2");
}

TEST_F(CmdbReconcile, TheNewestObservedValueIsTheOneCompared) {
  // b1's zone was observed different by a gateway before the registry's: the newest one counts.
  g.set_value(id("instance", "b1"), attr("instance", "zone"), Source::kGateway,
              Value(std::string("b9")), kT0 - 1);
  EXPECT_TRUE(run(kT0).findings.empty());
  // The newest observation is the one that differs.
  g.set_value(id("instance", "b1"), attr("instance", "zone"), Source::kGateway,
              Value(std::string("b9")), kT0 + 1);
  EXPECT_EQ(of_kind(run(kT0 + 1), FindingKind::kMismatch).size(), 1u);
}

TEST_F(CmdbReconcile, DeclaredWinsForOwnerButTheDifferenceIsStillAFinding) {
  set("service", "accounts", "owner", Value(std::string("team-a")));
  set("service", "accounts", "owner", Value(std::string("team-b")), Source::kAgent, kT0);
  Policy p(g.schema(), options);
  const AttributeValue* eff = effective(g, p, id("service", "accounts"), attr("service", "owner"));
  ASSERT_NE(eff, nullptr);
  EXPECT_EQ(to_text(eff->value), "team-a");
  // Observed wins for zone.
  set("instance", "b1", "zone", Value(std::string("b2")), Source::kRegistry, kT0);
  EXPECT_EQ(to_text(effective(g, p, id("instance", "b1"), attr("instance", "zone"))->value), "b2");

  ReconcileResult r = run(kT0);
  auto ms = of_kind(r, FindingKind::kMismatch);
  ASSERT_EQ(ms.size(), 2u) << dump(r.findings);
  EXPECT_EQ(ms[1]->subject, "service/accounts");
  EXPECT_NE(ms[1]->fix.find("declared value stands"), std::string::npos) << ms[1]->fix;
}

TEST_F(CmdbReconcile, KilledInstanceGoesStaleAfterItsWindowAndFixRetiresIt) {
  options.window_ms = 10'000;
  const std::int64_t later = kT0 + 10'001;
  // At exactly the window's end l1 is still current.
  observe(kT0 + 10'000, {"l1"});
  EXPECT_TRUE(run(kT0 + 10'000).findings.empty()) << dump(run(kT0 + 10'000).findings);

  ReconcileResult r = run(later);
  ASSERT_EQ(r.findings.size(), 1u) << dump(r.findings);
  EXPECT_EQ(r.findings[0].kind, FindingKind::kStale);
  EXPECT_EQ(r.findings[0].subject, "instance/l1");
  EXPECT_EQ(r.accuracy.freshness, (Ratio{6, 7}));
  // l1's observations are out of the window: 6 of its checks are gone, not wrong.
  EXPECT_EQ(r.accuracy.correctness, (Ratio{12, 12}));
  EXPECT_DOUBLE_EQ(r.accuracy.score(), (4.0 + 6.0 / 7.0) / 5.0);

  ReconcileResult after = fix_one(FindingKind::kStale, later);
  EXPECT_TRUE(after.findings.empty()) << dump(after.findings);
  EXPECT_EQ(after.accuracy.freshness, (Ratio{6, 6}));
  EXPECT_EQ(after.live_cis, 8);  // l1 is history now
}

TEST_F(CmdbReconcile, DeclaredButNeverObservedIsStale) {
  declare("host", "h9");
  ReconcileResult r = run(kT0);
  ASSERT_EQ(r.findings.size(), 1u) << dump(r.findings);
  EXPECT_EQ(r.findings[0].kind, FindingKind::kStale);
  EXPECT_EQ(r.findings[0].subject, "host/h9");
  EXPECT_NE(r.findings[0].fix.find("never observed"), std::string::npos);
  // Types not in observed_types are never stale.
  declare("database", "db1", {{"owner", "dba"}});
  relate("database", "db1", RelationKind::kBelongsTo, "business_system", "payments");
  EXPECT_EQ(run(kT0).findings.size(), 1u) << dump(run(kT0).findings);
}

TEST_F(CmdbReconcile, NewCallEdgeIsUndeclaredDependencyAndFixDeclaresIt) {
  relate("service", "ledger", RelationKind::kDependsOn, "service", "accounts", Source::kTraffic,
         kT0);
  ReconcileResult r = run(kT0);
  ASSERT_EQ(r.findings.size(), 1u) << dump(r.findings);
  EXPECT_EQ(r.findings[0].kind, FindingKind::kUndeclaredDependency);
  EXPECT_EQ(r.findings[0].subject, "service/ledger");
  EXPECT_EQ(r.findings[0].other, "service/accounts");
  EXPECT_EQ(r.accuracy.precision, (Ratio{1, 1}));
  EXPECT_EQ(r.accuracy.recall, (Ratio{1, 2}));
  EXPECT_DOUBLE_EQ(r.accuracy.score(), 4.5 / 5.0);

  ReconcileResult after = fix_one(FindingKind::kUndeclaredDependency, kT0);
  EXPECT_TRUE(after.findings.empty()) << dump(after.findings);
  EXPECT_EQ(after.accuracy.precision, (Ratio{2, 2}));
  EXPECT_EQ(after.accuracy.recall, (Ratio{2, 2}));
}

TEST_F(CmdbReconcile, DeclaredEdgeWithoutTrafficInTheWindowIsUnused) {
  options.traffic_window_ms = 60'000;
  options.window_ms = 120'000;  // instances stay current; only the call edge ages
  EXPECT_TRUE(run(kT0 + 60'000).findings.empty());
  ReconcileResult r = run(kT0 + 60'001);
  ASSERT_EQ(r.findings.size(), 1u) << dump(r.findings);
  EXPECT_EQ(r.findings[0].kind, FindingKind::kUnusedDependency);
  EXPECT_EQ(r.findings[0].subject, "service/accounts");
  EXPECT_EQ(r.findings[0].declared, "service/ledger");
  EXPECT_EQ(r.accuracy.precision, (Ratio{0, 1}));
  EXPECT_EQ(r.accuracy.recall, (Ratio{0, 0}));

  ReconcileResult after = fix_one(FindingKind::kUnusedDependency, kT0 + 60'001);
  EXPECT_TRUE(after.findings.empty()) << dump(after.findings);
  EXPECT_EQ(after.accuracy.precision, (Ratio{0, 0}));
}

TEST_F(CmdbReconcile, UnownedNamesWhatIsLackingAndIsNotFixable) {
  declare("service", "orphan");
  relate("instance", "o1", RelationKind::kBelongsTo, "service", "orphan", Source::kRegistry, kT0);
  declare("instance", "o1", {{"service", "orphan"}});
  relate("instance", "o1", RelationKind::kBelongsTo, "service", "orphan");
  // An application with an owner of its own but no business system.
  declare("application", "side", {{"owner", "team-side"}});
  ReconcileResult r = run(kT0);
  auto us = of_kind(r, FindingKind::kUnowned);
  ASSERT_EQ(us.size(), 3u) << dump(r.findings);
  EXPECT_EQ(us[0]->subject, "application/side");
  EXPECT_EQ(us[0]->attribute, "business_system");
  EXPECT_EQ(us[1]->subject, "service/orphan");
  EXPECT_EQ(us[1]->attribute, "business_system");
  EXPECT_EQ(us[2]->subject, "service/orphan");
  EXPECT_EQ(us[2]->attribute, "owner");
  Policy p(g.schema(), options);
  EXPECT_FALSE(us[0]->fixable);
  EXPECT_TRUE(plan_fix(g, p, *us[0], kT0).empty());
}

TEST_F(CmdbReconcile, DuplicatesByKeyCaseAndByAddress) {
  declare("host", "H1");
  // b9 claims a1's address.
  set("instance", "b9", "address", Value(std::string("10.0.0.1:8001")), Source::kRegistry, kT0);
  ReconcileResult r = run(kT0);
  auto ds = of_kind(r, FindingKind::kDuplicate);
  ASSERT_EQ(ds.size(), 2u) << dump(r.findings);
  EXPECT_EQ(ds[0]->subject, "host/H1");
  EXPECT_EQ(ds[0]->attribute, "key");
  EXPECT_EQ(ds[0]->other, "host/h1");
  EXPECT_EQ(ds[1]->subject, "instance/b9");
  EXPECT_EQ(ds[1]->attribute, "address");
  EXPECT_EQ(ds[1]->other, "instance/a1");
  EXPECT_FALSE(ds[1]->fixable);
}

TEST_F(CmdbReconcile, OneTargetRelationMismatchAndFixMovesIt) {
  // a1 is seen on h2 now.
  auto old = g.find_relation(RelationKind::kRunsOn, id("instance", "a1"), id("host", "h1"),
                             Source::kAgent);
  ASSERT_TRUE(old);
  g.remove_relation(*old);
  relate("instance", "a1", RelationKind::kRunsOn, "host", "h2", Source::kAgent, kT0);
  ReconcileResult r = run(kT0);
  auto ms = of_kind(r, FindingKind::kMismatch);
  ASSERT_EQ(ms.size(), 1u) << dump(r.findings);
  EXPECT_EQ(ms[0]->attribute, "runs_on:host");
  EXPECT_EQ(ms[0]->declared, "host/h1");
  EXPECT_EQ(ms[0]->observed, "host/h2");
  EXPECT_EQ(r.accuracy.correctness, (Ratio{17, 18}));

  ReconcileResult after = fix_one(FindingKind::kMismatch, kT0);
  EXPECT_TRUE(after.findings.empty()) << dump(after.findings);
  EXPECT_TRUE(g.find_relation(RelationKind::kRunsOn, id("instance", "a1"), id("host", "h2"),
                              Source::kDeclared));
  EXPECT_FALSE(g.find_relation(RelationKind::kRunsOn, id("instance", "a1"), id("host", "h1"),
                               Source::kDeclared));
}

TEST_F(CmdbReconcile, IdsAreStableAcrossPassesAndChangeWithTheValues) {
  set("instance", "b1", "zone", Value(std::string("b2")), Source::kRegistry, kT0);
  std::string id1 = run(kT0).findings.at(0).id;
  EXPECT_EQ(id1.size(), 16u);
  EXPECT_EQ(run(kT0 + 5).findings.at(0).id, id1);
  set("instance", "b1", "zone", Value(std::string("b3")), Source::kRegistry, kT0 + 6);
  EXPECT_NE(run(kT0 + 6).findings.at(0).id, id1);
}

TEST_F(CmdbReconcile, ObservedOnceLongAgoIsHistoryNotAFinding) {
  options.window_ms = 1'000;
  set("instance", "ghost", "address", Value(std::string("10.9.9.9:1")), Source::kRegistry, kT0);
  observe(kT0 + 5'000);
  ReconcileResult r = run(kT0 + 5'000);
  EXPECT_TRUE(r.findings.empty()) << dump(r.findings);
  EXPECT_EQ(r.live_cis, 9);
}

TEST_F(CmdbReconcile, PerTypeWindowOverridesTheDefault) {
  options.window_ms = 1'000;
  options.type_windows["instance"] = 60'000;
  options.type_windows["host"] = 60'000;
  options.type_windows["service"] = 60'000;
  EXPECT_TRUE(run(kT0 + 30'000).findings.empty()) << dump(run(kT0 + 30'000).findings);
  options.type_windows.erase("host");
  // Hosts are observed through the instances' runs_on edges, last seen at kT0: with the 1 s
  // default window both hosts are stale (the instances' own 60 s window still covers the edges).
  auto r = run(kT0 + 30'000);
  EXPECT_EQ(of_kind(r, FindingKind::kStale).size(), 2u) << dump(r.findings);
}

}  // namespace
}  // namespace sluice::control::cmdb
