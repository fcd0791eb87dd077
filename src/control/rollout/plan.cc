#include "control/rollout/plan.h"

#include <charconv>
#include <chrono>

#include <fmt/format.h>

#include "control/analysis/settings.h"
#include "control/validate.h"
#include "core/duration.h"

namespace sluice::control::rollout {

using Json = nlohmann::json;

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

bool valid_glob(std::string_view g) {
  if (g.empty() || g.size() > 128) return false;
  for (char ch : g) {
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-' || ch == '*' || ch == '?';
    if (!ok) return false;
  }
  return true;
}

std::optional<Stage> parse_stage(const Json& j, const std::string& path,
                                 std::vector<std::string>& errors) {
  if (!j.is_object()) {
    errors.push_back(path + ": expected an object such as {percent: 50}, got " + describe_json(j));
    return std::nullopt;
  }
  const size_t before = errors.size();
  Stage stage;
  int selectors = 0;
  for (const auto& [key, value] : j.items()) {
    const std::string at = path + "." + key;
    if (key == "gateways") {
      ++selectors;
      if (!value.is_string()) {
        errors.push_back(at + ": expected a string such as \"city=a,count=1\", got " +
                         describe_json(value));
      } else if (auto s = parse_selector(value.get<std::string>(), at, errors)) {
        stage.select = *s;
      }
    } else if (key == "percent") {
      ++selectors;
      if (!value.is_number_integer() || value.get<int64_t>() < 1 || value.get<int64_t>() > 100) {
        errors.push_back(at + ": expected an integer 1..100, got " + describe_json(value));
      } else {
        stage.select.kind = Selector::Kind::kPercent;
        stage.select.percent = value.get<int>();
      }
    } else if (key == "city") {
      ++selectors;
      if (!value.is_string() || !is_valid_name(value.get<std::string>())) {
        errors.push_back(at + ": expected a city name, got " + describe_json(value));
      } else {
        stage.select.kind = Selector::Kind::kCity;
        stage.select.city = value.get<std::string>();
      }
    } else if (key == "all") {
      ++selectors;
      if (value != Json(true)) {
        errors.push_back(at + ": expected true, got " + describe_json(value));
      } else {
        stage.select.kind = Selector::Kind::kAll;
      }
    } else if (key == "pause") {
      std::optional<core::Duration> d;
      if (value.is_string()) d = core::parse_duration(value.get<std::string>());
      if (!d || *d > std::chrono::hours(24 * 7)) {
        errors.push_back(at + ": expected a duration up to 168h such as \"5m\", got " +
                         describe_json(value));
      } else {
        stage.pause_ms = std::chrono::duration_cast<std::chrono::milliseconds>(*d).count();
      }
    } else if (key == "analysis") {
      for (std::string& e : analysis::check_settings(value, at)) errors.push_back(std::move(e));
      stage.analysis = value;
    } else {
      errors.push_back(at + ": unknown key (expected one of gateways, percent, city, all, " +
                       "and optionally pause, analysis)");
    }
  }
  if (selectors == 0) {
    errors.push_back(path + ": needs one of gateways, percent, city, all");
  } else if (selectors > 1) {
    errors.push_back(path + ": has " + std::to_string(selectors) +
                     " selectors; a stage takes one of gateways, percent, city, all");
  }
  if (errors.size() != before) return std::nullopt;
  return stage;
}

}  // namespace

bool glob_match(std::string_view pattern, std::string_view text) {
  // Iterative with one backtrack point: linear in practice, never exponential.
  size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool Selector::matches(const std::string& id, const std::string& gw_city,
                       const std::string& gw_zone) const {
  if (kind != Kind::kGateways && kind != Kind::kCity) return true;
  if (!city.empty() && city != gw_city) return false;
  if (!zone.empty() && zone != gw_zone) return false;
  if (!id_glob.empty() && !glob_match(id_glob, id)) return false;
  return true;
}

std::string Selector::describe() const {
  switch (kind) {
    case Kind::kPercent:
      return fmt::format("percent {}", percent);
    case Kind::kCity:
      return "city " + city;
    case Kind::kAll:
      return "all";
    case Kind::kGateways: {
      std::string out;
      auto add = [&out](std::string_view k, const std::string& v) {
        if (v.empty()) return;
        if (!out.empty()) out += ',';
        out += fmt::format("{}={}", k, v);
      };
      add("city", city);
      add("zone", zone);
      add("id", id_glob);
      if (count > 0) add("count", std::to_string(count));
      return out;
    }
  }
  return "?";
}

std::optional<Selector> parse_selector(std::string_view text, const std::string& path,
                                       std::vector<std::string>& errors) {
  const size_t before = errors.size();
  if (text.size() > kMaxSelectorLength) {
    errors.push_back(fmt::format("{}: longer than {} characters", path, kMaxSelectorLength));
    return std::nullopt;
  }
  Selector s;
  s.kind = Selector::Kind::kGateways;
  bool seen_city = false, seen_zone = false, seen_id = false, seen_count = false;
  while (true) {
    size_t comma = text.find(',');
    std::string_view part = trim(text.substr(0, comma));
    size_t eq = part.find('=');
    if (eq == std::string_view::npos) {
      errors.push_back(fmt::format("{}: expected key=value, got '{}'", path, part));
    } else {
      std::string_view key = trim(part.substr(0, eq));
      std::string value(trim(part.substr(eq + 1)));
      auto once = [&](bool& seen) {
        if (seen) errors.push_back(fmt::format("{}: {} given twice", path, key));
        seen = true;
      };
      if (key == "city" || key == "zone") {
        once(key == "city" ? seen_city : seen_zone);
        if (!is_valid_name(value)) {
          errors.push_back(fmt::format("{}: {}: expected a name, got '{}'", path, key, value));
        }
        (key == "city" ? s.city : s.zone) = value;
      } else if (key == "id") {
        once(seen_id);
        if (!valid_glob(value)) {
          errors.push_back(fmt::format(
              "{}: id: expected a glob of letters, digits, '_', '.', '-', '*', '?', got '{}'", path,
              value));
        }
        s.id_glob = value;
      } else if (key == "count") {
        once(seen_count);
        int64_t n = 0;
        auto r = std::from_chars(value.data(), value.data() + value.size(), n);
        if (value.empty() || r.ec != std::errc() || r.ptr != value.data() + value.size() || n < 1 ||
            n > kMaxCount) {
          errors.push_back(fmt::format("{}: count: expected an integer 1..{}, got '{}'", path,
                                       kMaxCount, value));
        }
        s.count = n;
      } else {
        errors.push_back(
            fmt::format("{}: unknown key '{}' (expected city, zone, id, count)", path, key));
      }
    }
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  if (errors.size() != before) return std::nullopt;
  return s;
}

std::optional<Plan> parse_plan(const Json& rollout, const std::string& prefix,
                               std::vector<std::string>& errors) {
  const size_t before = errors.size();
  if (!rollout.is_object()) {
    errors.push_back(prefix + ": expected an object, got " + describe_json(rollout));
    return std::nullopt;
  }
  Plan plan;
  for (const auto& [key, value] : rollout.items()) {
    if (key != "stages" && key != "analysis")
      errors.push_back(prefix + "." + key + ": unknown key (expected stages, analysis)");
  }
  if (auto it = rollout.find("stages"); it != rollout.end()) {
    if (!it->is_array()) {
      errors.push_back(prefix + ".stages: expected a list, got " + describe_json(*it));
    } else if (it->empty() || it->size() > kMaxStages) {
      errors.push_back(
          fmt::format("{}.stages: expected 1..{} stages, got {}", prefix, kMaxStages, it->size()));
    } else {
      for (size_t i = 0; i < it->size(); ++i) {
        auto stage = parse_stage((*it)[i], fmt::format("{}.stages[{}]", prefix, i), errors);
        if (stage) plan.stages.push_back(std::move(*stage));
      }
    }
  } else {
    // No stages: one stage that reaches every gateway (today's behaviour, with analysis after).
    plan.stages.push_back(Stage{});
  }
  if (auto it = rollout.find("analysis"); it != rollout.end()) {
    for (std::string& e : analysis::check_settings(*it, prefix + ".analysis"))
      errors.push_back(std::move(e));
    plan.analysis = *it;
  }
  if (errors.size() != before) return std::nullopt;
  return plan;
}

std::vector<std::string> check_plan(const Json& rollout, const std::string& prefix) {
  std::vector<std::string> errors;
  parse_plan(rollout, prefix, errors);
  return errors;
}

}  // namespace sluice::control::rollout
