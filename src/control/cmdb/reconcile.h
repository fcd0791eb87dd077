// The reconciler: one pure pass over the CMDB's graph (declared and observed values side by
// side, model.h) at a given `now`, giving the findings (findings.h) and the accuracy figures
// (accuracy.h); and the fixes a finding suggests, as operations on declared data.
//
// Semantics, exactly (docs/cmdb.md, "Reconciliation, exactly", says the same for operators):
// - An observed value or relation is current when now - last_seen <= the window of the CI's type
//   (`window_ms`, or `type_windows[type]`); a traffic depends_on edge when now - last_seen <=
//   `traffic_window_ms`. A CI's last observation is the newest last_seen of its observed values
//   and of the observed relations leaving or entering it; it is current under the same rule.
// - A CI is declared when it has a declared value or a declared relation leaving it; live when it
//   is declared or current. CIs neither declared nor current (observed once, long gone) are
//   history: no finding, not counted.
// - Precedence, per attribute: the names in `declared_wins` (owner, business_system,
//   criticality) take the declared value, every other attribute (address, city, zone, host, ...)
//   the newest observed one; effective() answers it. Precedence decides the effective value and
//   the suggested fix; a difference is a mismatch either way.
// - Findings: missing (live, current, not declared), stale (declared, of a type in
//   `observed_types`, not current), mismatch (declared and current: a non-key attribute with a
//   declared value and a current observed value that differ; or a one-target relation rule
//   (at_most_one, exactly_one) with declared targets none of which is the newest current
//   observed target), unowned (a live service, application, database or business_system with
//   no effective owner on itself or up its belongs_to chain, or, not being a business_system,
//   none up that chain), duplicate (two live CIs of one type whose keys are equal ignoring ASCII
//   case, or two current instances or gateways with one effective address), undeclared_dependency
//   (a current observed service->service depends_on with no declared one), unused_dependency (a
//   declared service->service depends_on with no current observed one).
// - The pass reads the graph only; it takes O(CIs + relations) time.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "control/cmdb/accuracy.h"
#include "control/cmdb/findings.h"
#include "control/cmdb/model.h"

namespace sluice::control::cmdb {

struct ReconcileOptions {
  std::int64_t window_ms = 30'000;  // an observation is current this long
  std::map<std::string, std::int64_t, std::less<>> type_windows;  // per type, instead
  std::int64_t traffic_window_ms = 300'000;  // a call edge is current this long
  // Types whose declared CIs must be observed (else stale).
  std::vector<std::string> observed_types = {"instance", "host", "gateway", "route", "service"};
  // Attributes whose declared value wins; every other attribute's observed value wins.
  std::vector<std::string> declared_wins = {"owner", "business_system", "criticality"};
};

// The options resolved against one schema: per type and attribute, no string compares in a pass.
class Policy {
 public:
  Policy(const Schema& schema, const ReconcileOptions& options);
  std::int64_t window(TypeId t) const { return windows_[t]; }
  std::int64_t traffic_window() const { return traffic_window_; }
  bool observed_type(TypeId t) const { return observed_[t] != 0; }
  bool declared_wins(TypeId t, AttrId a) const { return declared_wins_[t][a] != 0; }

 private:
  std::vector<std::int64_t> windows_;
  std::vector<std::uint8_t> observed_;
  std::vector<std::vector<std::uint8_t>> declared_wins_;
  std::int64_t traffic_window_ = 0;
};

// Whether an observed relation counts at `now` (declared ones always do).
bool relation_current(const Graph& g, const Policy& p, RelationId r, std::int64_t now);

// The value that stands for (ci, attr) under precedence (observed: current or not), or null.
const AttributeValue* effective(const Graph& g, const Policy& p, CiId ci, AttrId attr);

struct ReconcileResult {
  std::vector<Finding> findings;  // sorted by kind, subject, attribute, other
  Accuracy accuracy;
  std::int64_t live_cis = 0;
};

ReconcileResult reconcile(const Graph& g, const Policy& p, std::int64_t now);

// A change to declared data that a fix makes.
struct FixOp {
  enum class Kind : std::uint8_t { kSetValue, kClearValue, kAddRelation, kRemoveRelation };
  Kind kind = Kind::kSetValue;
  CiId ci = kNone;
  AttrId attr = 0;                                   // kSetValue, kClearValue
  Value value;                                       // kSetValue
  RelationKind relation = RelationKind::kBelongsTo;  // relations: from `ci` to `to`
  CiId to = kNone;
};

// What fixing `f` (a finding of reconcile(g, p, now)) does to declared data: missing declares
// the CI with its current observed values and relations; stale retires it (its declared values
// and the declared relations from and to it go); mismatch takes the observed value (or target);
// undeclared_dependency declares the edge; unused_dependency removes it. Empty for unowned and
// duplicate (they need an import: the right owner or which CI stays is not observable).
std::vector<FixOp> plan_fix(const Graph& g, const Policy& p, const Finding& f, std::int64_t now);

// Applies the ops as declared values seen at `now`.
void apply_fix(Graph& g, std::span<const FixOp> ops, std::int64_t now);

}  // namespace sluice::control::cmdb
