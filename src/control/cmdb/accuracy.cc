#include "control/cmdb/accuracy.h"

namespace sluice::control::cmdb {
namespace {

nlohmann::json ratio_json(const Ratio& r) {
  return {{"value", r.value()}, {"num", r.num}, {"den", r.den}};
}

}  // namespace

nlohmann::json to_json(const Accuracy& a) {
  nlohmann::json types = nlohmann::json::object();
  for (const TypeAccuracy& t : a.types) {
    types[t.type] = {{"correctness", ratio_json(t.correctness)},
                     {"completeness", ratio_json(t.completeness)},
                     {"freshness", ratio_json(t.freshness)}};
  }
  return {{"score", a.score()},
          {"overall",
           {{"correctness", ratio_json(a.correctness)},
            {"completeness", ratio_json(a.completeness)},
            {"freshness", ratio_json(a.freshness)},
            {"precision", ratio_json(a.precision)},
            {"recall", ratio_json(a.recall)}}},
          {"types", std::move(types)}};
}

}  // namespace sluice::control::cmdb
