// What the reconciler found wrong with the CMDB (a finding: its kind, the CI and attribute, both
// values, a suggested fix) and the book the control plane keeps of them: the latest pass's open
// findings, the ones an operator ignored (with who, why and when), and their JSON.
//
// Semantics, exactly:
// - A finding's id is the first 16 hex digits of FNV-1a 64 over kind, subject, attribute,
//   other, declared and observed text (each followed by a 0 byte). The same defect found by two
//   passes has the same id; a changed value is a new finding (an ignore does not carry over).
// - An ignored id stays ignored while a pass still finds it; once a pass no longer finds it the
//   ignore is dropped, so the same defect coming back later is shown again.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "control/cmdb/model.h"

namespace sluice::control::cmdb {

enum class FindingKind : std::uint8_t {
  kMissing,               // observed, not declared
  kStale,                 // declared, not observed within its type's window
  kMismatch,              // declared value differs from the observed one
  kUnowned,               // no owner or no business system
  kDuplicate,             // two CIs that are one thing
  kUndeclaredDependency,  // an observed call edge with no declared depends_on
  kUnusedDependency,      // a declared depends_on with no traffic in the window
};
inline constexpr std::size_t kFindingKindCount = 7;
std::string_view to_string(FindingKind k);
std::optional<FindingKind> parse_finding_kind(std::string_view s);

struct Finding {
  std::string id;  // finding_id() of the fields below
  FindingKind kind = FindingKind::kMissing;
  CiId ci = kNone;
  std::string subject;    // "instance/i-1"
  std::string attribute;  // "zone", "runs_on:host" (a one-target relation), "owner", "" (the CI)
  std::string declared;   // text of the declared value ("" when there is none)
  std::string observed;   // text of the observed value ("" when there is none)
  std::optional<Source> observed_source;
  std::string other;     // duplicate: the CI it duplicates; dependencies: the callee
  std::string fix;       // the suggested fix, in words
  bool fixable = false;  // `fix` can be applied by POST .../fix (else it needs an import)
};

std::string finding_id(const Finding& f);
nlohmann::json to_json(const Finding& f);

// The open findings of the latest pass and the ignores, as GET /v1/cmdb/findings shows them.
// Not thread-safe: the owner holds its lock.
class FindingBook {
 public:
  struct Ignore {
    std::string by, reason;
    std::int64_t at_ms = 0;
  };

  // The latest pass's findings replace the previous ones; ignores of ids no longer found drop.
  void update(std::vector<Finding> findings, std::int64_t now);
  const std::vector<Finding>& findings() const { return findings_; }
  const Finding* find(std::string_view id) const;
  // False if no open finding has this id.
  bool ignore(std::string_view id, Ignore why);
  const Ignore* ignored(std::string_view id) const;
  std::int64_t updated_ms() const { return updated_ms_; }

  // Open findings not ignored, by kind (for metrics).
  std::array<std::int64_t, kFindingKindCount> open_by_kind() const;

  // {"updated_ms", "findings": [...], "counts": {kind: n}}; with `ignored` the ignored ones are
  // listed too (each with "ignored": {by, reason, at_ms}); `kind` non-empty keeps only that kind.
  nlohmann::json to_json(bool include_ignored, std::optional<FindingKind> kind) const;

 private:
  std::vector<Finding> findings_;
  std::map<std::string, Ignore, std::less<>> ignored_;
  std::int64_t updated_ms_ = 0;
};

}  // namespace sluice::control::cmdb
