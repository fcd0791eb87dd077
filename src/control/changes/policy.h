// change_policy: which config writes need approval, whether they may land in a freeze window, and
// their rollout plan. A policy's spec (docs/changes.md, "Policies"):
//   match: {kinds: [service, route], names: ["payments-*"]}   # absent = everything
//   approvals: {count: 1, role: operator}                     # role: operator | admin
//   freeze: {allowed: false, on_freeze: refuse}               # on_freeze: wait | refuse
//   rollout: {stages: [...], analysis: {...}}                 # control/rollout/plan.h
//
// Semantics, exactly:
// - A policy matches a change when it matches any resource the change touches: the kind is in
//   `kinds` (absent or empty: any kind) and the name matches one of `names` (shell globs with *
//   and ?; absent or empty: any name).
// - The policies in force are those of the config the change is proposed on, so a change that
//   removes or weakens a policy is governed by it.
// - Of several matching policies the strictest wins, field by field: the most approvals, the
//   highest role, freeze allowed only if every one allows it, refuse if any says refuse; the
//   rollout plan with the most stages (ties: the first policy by name).
// - Defaults of a matching policy: approvals {count: 0, role: operator}, freeze {allowed: false,
//   on_freeze: refuse}: a policy honours freeze windows unless it says otherwise.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/auth.h"
#include "control/store.h"

namespace sluice::control::changes {

inline constexpr int kMaxApprovals = 10;

// What is wrong with a change_policy spec, each message starting with `prefix`; empty if valid.
std::vector<std::string> check_policy(const nlohmann::json& spec, const std::string& prefix);

struct Effective {
  std::vector<std::string> policies;  // names of the matching policies; empty: none matched
  int approvals = 0;
  Role role = Role::kOperator;
  bool freeze_allowed = true;
  bool refuse_in_freeze = false;  // on_freeze: refuse (else wait)
  nlohmann::json rollout;         // null without a plan

  bool any() const { return !policies.empty(); }
  nlohmann::json to_json() const;
  static Effective from_json(const nlohmann::json& j);
};

// The strictest of the change_policy resources in `config` that match `touched` (kind, name).
Effective strictest(const std::vector<Resource>& config,
                    const std::vector<std::pair<std::string, std::string>>& touched);

}  // namespace sluice::control::changes
