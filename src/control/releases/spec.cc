#include "control/releases/spec.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "control/validate.h"

namespace sluice::control::releases {
namespace {

using Json = nlohmann::json;

const Resource* find(const std::vector<Resource>& all, std::string_view kind,
                     const std::string& name) {
  for (const Resource& r : all)
    if (r.kind == kind && r.name == name) return &r;
  return nullptr;
}

}  // namespace

std::vector<std::string> check_release(const Json& spec, const std::string& prefix,
                                       const std::vector<Resource>& all) {
  std::vector<std::string> errors;
  if (!spec.is_object()) {
    errors.push_back(fmt::format("{}: expected an object, got {}", prefix, describe_json(spec)));
    return errors;
  }
  static const std::vector<std::string> kKeys = {"route", "stable",   "canary",
                                                 "steps", "analysis", "split"};
  for (auto it = spec.begin(); it != spec.end(); ++it) {
    if (it.key() == "name") continue;  // checked with every resource
    if (std::find(kKeys.begin(), kKeys.end(), it.key()) == kKeys.end())
      errors.push_back(
          fmt::format("{}.{}: unknown key (expected route, stable, canary, steps, "
                      "analysis or split)",
                      prefix, it.key()));
  }
  auto name_of = [&](const char* key, std::string_view kind) {
    auto it = spec.find(key);
    if (it == spec.end()) {
      errors.push_back(fmt::format("{}.{}: required (the name of a {})", prefix, key, kind));
      return std::string();
    }
    if (!it->is_string() || !is_valid_name(it->get<std::string>())) {
      errors.push_back(
          fmt::format("{}.{}: expected a {} name, got {}", prefix, key, kind, describe_json(*it)));
      return std::string();
    }
    const std::string name = it->get<std::string>();
    if (find(all, kind, name) == nullptr)
      errors.push_back(fmt::format("{}.{}: no {} named '{}'", prefix, key, kind, name));
    return name;
  };
  name_of("route", "route");
  const std::string stable = name_of("stable", "service");
  const std::string canary = name_of("canary", "service");
  if (!stable.empty() && stable == canary)
    errors.push_back(
        fmt::format("{}.canary: must differ from stable (both are '{}')", prefix, canary));
  if (auto it = spec.find("steps"); it != spec.end()) {
    if (!it->is_array() || it->empty() || it->size() > kMaxSteps) {
      errors.push_back(fmt::format("{}.steps: expected a list of 1..{} percentages, got {}", prefix,
                                   kMaxSteps, describe_json(*it)));
    } else {
      int64_t before = 0;
      for (size_t i = 0; i < it->size(); ++i) {
        const Json& p = (*it)[i];
        if (!p.is_number_integer() || p.get<int64_t>() < 1 || p.get<int64_t>() > 100) {
          errors.push_back(fmt::format("{}.steps[{}]: must be an integer 1..100, got {}", prefix, i,
                                       describe_json(p)));
          break;
        }
        if (p.get<int64_t>() <= before) {
          errors.push_back(fmt::format("{}.steps[{}]: must be above the step before ({}), got {}",
                                       prefix, i, before, p.get<int64_t>()));
          break;
        }
        before = p.get<int64_t>();
      }
      if (before != 0 && before != 100 && errors.empty())
        errors.push_back(
            fmt::format("{}.steps: the last step must be 100 (promotion), got {}", prefix, before));
    }
  }
  if (auto it = spec.find("analysis"); it != spec.end() && !it->is_null()) {
    for (std::string& e : analysis::check_settings(*it, prefix + ".analysis"))
      errors.push_back(std::move(e));
  }
  if (auto it = spec.find("split"); it != spec.end() && !it->is_null() && !it->is_object())
    errors.push_back(
        fmt::format("{}.split: expected an object, got {}", prefix, describe_json(*it)));
  return errors;
}

ReleaseSpec parse_release(const Json& spec) {
  auto errors = check_release(spec, "spec", {});
  // The resource set is not at hand here: only the shape matters (names were checked on apply).
  errors.erase(std::remove_if(errors.begin(), errors.end(),
                              [](const std::string& e) { return e.find(": no ") != e.npos; }),
               errors.end());
  if (!errors.empty()) throw std::invalid_argument(errors.front());
  ReleaseSpec r;
  r.route = spec.at("route").get<std::string>();
  r.stable = spec.at("stable").get<std::string>();
  r.canary = spec.at("canary").get<std::string>();
  if (auto it = spec.find("steps"); it != spec.end()) {
    r.steps.clear();
    for (const Json& p : *it) r.steps.push_back(p.get<uint32_t>());
  }
  r.analysis = analysis::parse_settings(spec.value("analysis", Json()));
  if (auto it = spec.find("split"); it != spec.end() && it->is_object()) r.split = *it;
  return r;
}

Json route_at(const Json& route_spec, const ReleaseSpec& r, uint32_t percent) {
  Json out = route_spec.is_object() ? route_spec : Json::object();
  out.erase("service");
  out.erase("services");
  if (percent == 0 || percent >= 100) {
    out.erase("split");
    out["service"] = percent == 0 ? r.stable : r.canary;
    return out;
  }
  out["services"] = Json::array({{{"name", r.stable}, {"weight", 100 - percent}},
                                 {{"name", r.canary}, {"weight", percent}, {"canary", true}}});
  if (r.split.is_object()) out["split"] = r.split;
  return out;
}

}  // namespace sluice::control::releases
