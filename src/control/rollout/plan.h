// A change's rollout plan, as written in a change_policy's `rollout` section: the stages that
// select gateways ({gateways: "city=a,count=1"}, {percent: 50}, {city: b}, {all: true}) and the
// analysis run between them (control/analysis/settings.h). docs/rollout.md has the contract.
//
// Semantics, exactly:
// - A plan is {stages: [stage, ...], analysis?: {...}}; 1..kMaxStages stages.
// - A stage has exactly one selector key (gateways, percent, city, all) and optionally `pause`
//   (a duration, "5m": how long to wait before the next stage) and `analysis` (settings that
//   replace the plan's for the interval after this stage).
// - `gateways` is "key=value,key=value" with keys city, zone, id (a glob: `*` any run, `?` one
//   character), count (1..kMaxCount); each key at most once, at least one key.
// - `percent` is an integer 1..100; `city` a name; `all` must be true.
// - Stages are cumulative: what a stage selects is added to what earlier stages selected
//   (control/rollout/selection.h says which gateways).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sluice::control::rollout {

inline constexpr size_t kMaxStages = 32;
inline constexpr int64_t kMaxCount = 100'000;
inline constexpr size_t kMaxSelectorLength = 512;

// What one stage selects. Filters that are empty match every gateway.
struct Selector {
  enum class Kind { kGateways, kPercent, kCity, kAll };
  Kind kind = Kind::kAll;
  std::string city;     // kGateways (city=), kCity
  std::string zone;     // kGateways (zone=)
  std::string id_glob;  // kGateways (id=)
  int64_t count = 0;    // kGateways: 0 = every gateway matching; else at least this many of them
  int percent = 0;      // kPercent: 1..100

  // Whether a gateway passes the city/zone/id filters (kGateways, kCity; always for the others).
  bool matches(const std::string& id, const std::string& gw_city, const std::string& gw_zone) const;
  // As written in a plan: "city=a,count=1", "percent 50", "city b", "all".
  std::string describe() const;
};

struct Stage {
  Selector select;
  std::optional<int64_t> pause_ms;         // after this stage, before the next
  std::optional<nlohmann::json> analysis;  // replaces the plan's analysis after this stage
};

struct Plan {
  std::vector<Stage> stages;
  std::optional<nlohmann::json> analysis;  // checked by analysis::check_settings
};

// What is wrong with `rollout` (a JSON object), each message naming its field with `prefix`
// ("rollout.stages[1].percent: ..."); empty when it is acceptable. Every problem, not the first.
std::vector<std::string> check_plan(const nlohmann::json& rollout, const std::string& prefix);

// The plan, or nullopt with `errors` filled (the same messages as check_plan).
std::optional<Plan> parse_plan(const nlohmann::json& rollout, const std::string& prefix,
                               std::vector<std::string>& errors);

// A `gateways:` selector string ("city=a,count=1"); errors name `path`.
std::optional<Selector> parse_selector(std::string_view text, const std::string& path,
                                       std::vector<std::string>& errors);

// `*` matches any run of characters (also none), `?` one; everything else itself.
bool glob_match(std::string_view pattern, std::string_view text);

}  // namespace sluice::control::rollout
