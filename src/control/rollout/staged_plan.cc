#include "control/rollout/staged_plan.h"

#include <mutex>

#include <fmt/format.h>

#include "control/validate.h"

namespace sluice::control::rollout {

using Json = nlohmann::json;

std::string_view phase_name(StagedPlan::Phase p) {
  switch (p) {
    case StagedPlan::Phase::kIdle:
      return "idle";
    case StagedPlan::Phase::kRollingOut:
      return "rolling_out";
    case StagedPlan::Phase::kRolledBack:
      return "rolled_back";
  }
  return "?";
}

void StagedPlan::replace(State s) {
  std::unique_lock lock(mu_);
  state_ = std::move(s);
  // Inside the lock: a reader that sees the new generation sees the new state too.
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

void StagedPlan::start(std::string change, int64_t base, int64_t target) {
  State s;
  s.phase = Phase::kRollingOut;
  s.change = std::move(change);
  s.base = base;
  s.target = target;
  replace(std::move(s));
}

void StagedPlan::reach(size_t stage, Selection selection) {
  std::unique_lock lock(mu_);
  if (state_.phase != Phase::kRollingOut) return;
  state_.stage = stage;
  state_.selection = std::move(selection);
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

void StagedPlan::rollback() {
  std::unique_lock lock(mu_);
  if (state_.phase != Phase::kRollingOut) return;
  state_.phase = Phase::kRolledBack;
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

void StagedPlan::finish() {
  replace(State{});
}

StagedPlan::State StagedPlan::state() const {
  std::shared_lock lock(mu_);
  return state_;
}

int64_t StagedPlan::version_for(const std::string& gateway, const std::string& city,
                                int64_t latest) const {
  (void)city;  // the selection is by id; a city stage has already named its gateways
  std::shared_lock lock(mu_);
  switch (state_.phase) {
    case Phase::kIdle:
      return latest;
    case Phase::kRolledBack:
      return state_.base;
    case Phase::kRollingOut:
      if (state_.selection.all) return state_.target;
      if (!gateway.empty() && state_.selection.ids.count(gateway) > 0) return state_.target;
      return state_.base;
  }
  return latest;
}

Json StagedPlan::to_json() const {
  State s = state();
  return {{"phase", phase_name(s.phase)}, {"change", s.change}, {"base_version", s.base},
          {"target_version", s.target},   {"stage", s.stage},   {"all", s.selection.all},
          {"selected", s.selection.ids}};
}

std::vector<std::string> StagedPlan::load(const Json& j) {
  std::vector<std::string> errors;
  if (!j.is_object()) {
    errors.push_back("rollout plan: expected an object, got " + describe_json(j));
    return errors;
  }
  State s;
  auto field = [&](const char* key) -> const Json* {
    auto it = j.find(key);
    if (it == j.end()) {
      errors.push_back(fmt::format("rollout plan.{}: missing", key));
      return nullptr;
    }
    return &*it;
  };
  if (const Json* p = field("phase")) {
    if (*p == "idle") {
      s.phase = Phase::kIdle;
    } else if (*p == "rolling_out") {
      s.phase = Phase::kRollingOut;
    } else if (*p == "rolled_back") {
      s.phase = Phase::kRolledBack;
    } else {
      errors.push_back("rollout plan.phase: expected idle, rolling_out or rolled_back, got " +
                       describe_json(*p));
    }
  }
  if (const Json* c = field("change")) {
    if (!c->is_string() || c->get<std::string>().size() > 256)
      errors.push_back("rollout plan.change: expected a string of up to 256 characters");
    else
      s.change = c->get<std::string>();
  }
  auto version = [&](const char* key, int64_t& out) {
    if (const Json* v = field(key)) {
      if (!v->is_number_integer() || v->get<int64_t>() < 0)
        errors.push_back(
            fmt::format("rollout plan.{}: expected a version (an integer >= 0), got {}", key,
                        describe_json(*v)));
      else
        out = v->get<int64_t>();
    }
  };
  version("base_version", s.base);
  version("target_version", s.target);
  if (const Json* st = field("stage")) {
    if (!st->is_number_integer() || st->get<int64_t>() < 0 ||
        st->get<int64_t>() > static_cast<int64_t>(kMaxStages))
      errors.push_back(fmt::format("rollout plan.stage: expected 0..{}, got {}", kMaxStages,
                                   describe_json(*st)));
    else
      s.stage = st->get<size_t>();
  }
  if (const Json* a = field("all")) {
    if (!a->is_boolean())
      errors.push_back("rollout plan.all: expected true or false, got " + describe_json(*a));
    else
      s.selection.all = a->get<bool>();
  }
  if (const Json* sel = field("selected")) {
    if (!sel->is_array() || sel->size() > kMaxSelected) {
      errors.push_back(fmt::format("rollout plan.selected: expected a list of up to {} gateway ids",
                                   kMaxSelected));
    } else {
      for (size_t i = 0; i < sel->size(); ++i) {
        const Json& id = (*sel)[i];
        if (!id.is_string() || !is_valid_name(id.get<std::string>())) {
          errors.push_back(fmt::format("rollout plan.selected[{}]: expected a gateway id, got {}",
                                       i, describe_json(id)));
          continue;
        }
        s.selection.ids.insert(id.get<std::string>());
      }
    }
  }
  if (!errors.empty()) return errors;
  replace(std::move(s));
  return errors;
}

}  // namespace sluice::control::rollout
