// The CMDB's accuracy as figures, each a ratio of counts so that a test (or an auditor) can
// recount it: correctness, completeness and freshness per CI type and overall, relation precision
// and recall against the observed call edges, and one score. The reconciler (reconcile.h)
// counts; the exact definitions are in docs/cmdb.md ("Accuracy, exactly") and at each field.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::control::cmdb {

// num / den; 1 when den is 0 (nothing to check is nothing wrong), reported with den so that a
// reader can tell "all correct" from "nothing checked".
struct Ratio {
  std::int64_t num = 0;
  std::int64_t den = 0;
  double value() const {
    return den == 0 ? 1.0 : static_cast<double>(num) / static_cast<double>(den);
  }
  Ratio& operator+=(const Ratio& o) {
    num += o.num;
    den += o.den;
    return *this;
  }
  bool operator==(const Ratio&) const = default;
};

struct TypeAccuracy {
  std::string type;
  // (live CI, checkable slot) pairs whose declared value equals the current observed value /
  // pairs that have both (a slot: a non-key attribute, or a one-target relation kind:to_type).
  Ratio correctness;
  // Required slots (required attributes, exactly_one relation rules) that declared data fills /
  // required slots of every live CI.
  Ratio completeness;
  // Declared CIs of an observed type seen within the type's window / declared CIs of that type.
  Ratio freshness;
};

struct Accuracy {
  std::vector<TypeAccuracy> types;             // types with at least one live CI, in schema order
  Ratio correctness, completeness, freshness;  // sums over the types
  // Declared service->service depends_on edges also observed in the traffic window / declared.
  Ratio precision;
  // Observed service->service call edges in the window also declared / observed.
  Ratio recall;
  // The mean of the five overall values above.
  double score() const {
    return (correctness.value() + completeness.value() + freshness.value() + precision.value() +
            recall.value()) /
           5.0;
  }
};

// {"score", "overall": {measure: {value, num, den}}, "types": {type: {measure: ...}}}
nlohmann::json to_json(const Accuracy& a);

}  // namespace sluice::control::cmdb
