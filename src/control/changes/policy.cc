#include "control/changes/policy.h"

#include <fnmatch.h>

#include <algorithm>

#include <fmt/format.h>

#include "control/rollout/plan.h"
#include "control/validate.h"

namespace sluice::control::changes {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxPatterns = 100;
constexpr size_t kMaxPatternLength = 128;

void check_keys(const Json& obj, const std::string& prefix,
                std::initializer_list<std::string_view> known, std::vector<std::string>& errors) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (std::find(known.begin(), known.end(), it.key()) == known.end())
      errors.push_back(fmt::format("{}.{}: unknown key", prefix, it.key()));
  }
}

const Json* object_at(const Json& spec, const char* key, const std::string& prefix,
                      std::vector<std::string>& errors) {
  auto it = spec.find(key);
  if (it == spec.end()) return nullptr;
  if (!it->is_object()) {
    errors.push_back(
        fmt::format("{}.{}: expected an object, got {}", prefix, key, describe_json(*it)));
    return nullptr;
  }
  return &*it;
}

void check_list(const Json& m, const char* key, const std::string& p,
                std::vector<std::string>& errors, bool kinds) {
  auto it = m.find(key);
  if (it == m.end()) return;
  if (!it->is_array() || it->size() > kMaxPatterns) {
    errors.push_back(fmt::format("{}.{}: expected a list of at most {} strings, got {}", p, key,
                                 kMaxPatterns, describe_json(*it)));
    return;
  }
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& v = (*it)[i];
    if (!v.is_string() || v.get<std::string>().empty() ||
        v.get<std::string>().size() > kMaxPatternLength) {
      errors.push_back(
          fmt::format("{}.{}[{}]: expected a non-empty string of at most {} "
                      "characters, got {}",
                      p, key, i, kMaxPatternLength, describe_json(v)));
      continue;
    }
    if (kinds && std::find(kResourceKinds.begin(), kResourceKinds.end(), v.get<std::string>()) ==
                     kResourceKinds.end())
      errors.push_back(fmt::format("{}.{}[{}]: unknown kind '{}' (expected {})", p, key, i,
                                   v.get<std::string>(), resource_kinds_text()));
  }
}

bool listed(const Json& m, const char* key, const std::string& value, bool glob) {
  auto it = m.find(key);
  if (it == m.end() || !it->is_array() || it->empty()) return true;
  for (const Json& v : *it) {
    const std::string& s = v.get_ref<const std::string&>();
    if (glob ? fnmatch(s.c_str(), value.c_str(), 0) == 0 : s == value) return true;
  }
  return false;
}

size_t stage_count(const Json& rollout) {
  if (!rollout.is_object()) return 0;
  auto it = rollout.find("stages");
  return it != rollout.end() && it->is_array() ? it->size() : 0;
}

}  // namespace

std::vector<std::string> check_policy(const Json& spec, const std::string& prefix) {
  std::vector<std::string> errors;
  if (!spec.is_object()) {
    errors.push_back(fmt::format("{}: expected an object, got {}", prefix, describe_json(spec)));
    return errors;
  }
  check_keys(spec, prefix, {"match", "approvals", "freeze", "rollout"}, errors);
  if (const Json* m = object_at(spec, "match", prefix, errors)) {
    const std::string p = prefix + ".match";
    check_keys(*m, p, {"kinds", "names"}, errors);
    check_list(*m, "kinds", p, errors, true);
    check_list(*m, "names", p, errors, false);
  }
  if (const Json* a = object_at(spec, "approvals", prefix, errors)) {
    const std::string p = prefix + ".approvals";
    check_keys(*a, p, {"count", "role"}, errors);
    if (auto c = a->find("count");
        c != a->end() && !(c->is_number_integer() && *c >= 0 && *c <= kMaxApprovals))
      errors.push_back(
          fmt::format("{}.count: expected 0..{}, got {}", p, kMaxApprovals, describe_json(*c)));
    if (auto r = a->find("role");
        r != a->end() && !(r->is_string() && (*r == "operator" || *r == "admin")))
      errors.push_back(
          fmt::format("{}.role: expected operator or admin, got {}", p, describe_json(*r)));
  }
  if (const Json* f = object_at(spec, "freeze", prefix, errors)) {
    const std::string p = prefix + ".freeze";
    check_keys(*f, p, {"allowed", "on_freeze"}, errors);
    if (auto a = f->find("allowed"); a != f->end() && !a->is_boolean())
      errors.push_back(
          fmt::format("{}.allowed: expected true or false, got {}", p, describe_json(*a)));
    if (auto o = f->find("on_freeze");
        o != f->end() && !(o->is_string() && (*o == "wait" || *o == "refuse")))
      errors.push_back(
          fmt::format("{}.on_freeze: expected wait or refuse, got {}", p, describe_json(*o)));
  }
  if (auto r = spec.find("rollout"); r != spec.end()) {
    for (std::string& e : rollout::check_plan(*r, prefix + ".rollout"))
      errors.push_back(std::move(e));
  }
  return errors;
}

Json Effective::to_json() const {
  return Json{{"policies", policies},
              {"approvals", {{"count", approvals}, {"role", role_name(role)}}},
              {"freeze",
               {{"allowed", freeze_allowed}, {"on_freeze", refuse_in_freeze ? "refuse" : "wait"}}},
              {"rollout", rollout}};
}

Effective Effective::from_json(const Json& j) {
  Effective e;
  if (!j.is_object()) return e;
  e.policies = j.value("policies", std::vector<std::string>{});
  const Json& a = j.at("approvals");
  e.approvals = a.at("count").get<int>();
  e.role = parse_role(a.at("role").get<std::string>()).value_or(Role::kOperator);
  const Json& f = j.at("freeze");
  e.freeze_allowed = f.at("allowed").get<bool>();
  e.refuse_in_freeze = f.at("on_freeze") == "refuse";
  e.rollout = j.value("rollout", Json());
  return e;
}

Effective strictest(const std::vector<Resource>& config,
                    const std::vector<std::pair<std::string, std::string>>& touched) {
  Effective out;
  size_t stages = 0;
  // config is sorted by kind, name: policies are considered by name.
  for (const Resource& r : config) {
    if (r.kind != "change_policy" || !r.spec.is_object()) continue;
    const Json match = r.spec.value("match", Json::object());
    const bool hit = std::any_of(touched.begin(), touched.end(), [&](const auto& t) {
      return listed(match, "kinds", t.first, false) && listed(match, "names", t.second, true);
    });
    if (!hit) continue;
    const Json a = r.spec.value("approvals", Json::object());
    const Json f = r.spec.value("freeze", Json::object());
    const int count = a.value("count", 0);
    const Role role =
        parse_role(a.value("role", std::string("operator"))).value_or(Role::kOperator);
    const bool allowed = f.value("allowed", false);
    const bool refuse = f.value("on_freeze", std::string("refuse")) == "refuse";
    if (!out.any()) {
      out.freeze_allowed = allowed;
      out.refuse_in_freeze = !allowed && refuse;
    } else {
      out.freeze_allowed = out.freeze_allowed && allowed;
      out.refuse_in_freeze = out.refuse_in_freeze || (!allowed && refuse);
    }
    out.policies.push_back(r.name);
    out.approvals = std::max(out.approvals, count);
    out.role = std::max(out.role, role);
    if (auto ro = r.spec.find("rollout");
        ro != r.spec.end() && (out.rollout.is_null() || stage_count(*ro) > stages)) {
      out.rollout = *ro;
      stages = stage_count(*ro);
    }
  }
  return out;
}

}  // namespace sluice::control::changes
