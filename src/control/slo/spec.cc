#include "control/slo/spec.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

#include "control/validate.h"
#include "core/duration.h"

namespace sluice::control::slo {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxDescriptionBytes = 1024;
constexpr double kMaxFactor = 1000;
constexpr int64_t kMaxMinRequests = 1'000'000'000;
constexpr double kMinThresholdS = 0.001;
constexpr double kMaxThresholdS = 60;

bool has(const std::vector<Resource>& all, std::string_view kind, const std::string& name) {
  return std::any_of(all.begin(), all.end(),
                     [&](const Resource& r) { return r.kind == kind && r.name == name; });
}

void unknown_keys(const Json& spec, const std::string& prefix,
                  std::initializer_list<std::string_view> known, const char* expected,
                  std::vector<std::string>& errors) {
  for (auto it = spec.begin(); it != spec.end(); ++it) {
    if (it.key() == "name") continue;  // checked with every resource
    if (std::find(known.begin(), known.end(), it.key()) == known.end())
      errors.push_back(fmt::format("{}.{}: unknown key (expected {})", prefix, it.key(), expected));
  }
}

// A list of distinct names (cities or SLOs); `what` names one in messages.
std::vector<std::string> name_list(const Json& v, const std::string& where, size_t max,
                                   const char* what, std::vector<std::string>& errors) {
  std::vector<std::string> out;
  if (!v.is_array() || v.empty() || v.size() > max) {
    errors.push_back(fmt::format("{}: expected a list of 1..{} {} names, got {}", where, max, what,
                                 describe_json(v)));
    return out;
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string() || !is_valid_name(v[i].get<std::string>())) {
      errors.push_back(
          fmt::format("{}[{}]: expected a {} name, got {}", where, i, what, describe_json(v[i])));
      continue;
    }
    if (!seen.insert(v[i].get<std::string>()).second) {
      errors.push_back(fmt::format("{}[{}]: '{}' given twice", where, i, v[i].get<std::string>()));
      continue;
    }
    out.push_back(v[i].get<std::string>());
  }
  return out;
}

std::optional<int64_t> parse_digits(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

int64_t SloSpec::scaled(int64_t base_ms) const {
  // Exact in integers for every window in range: base * window fits in 63 bits (3d * 90d).
  return std::max<int64_t>(1, base_ms * (window_ms / 1000) / (kReferenceWindowMs / 1000));
}

bool MaintenanceSpec::covers(const std::string& slo, const std::string& city, int64_t now) const {
  if (now < start_ms || now >= end_ms) return false;
  if (!cities.empty() && std::find(cities.begin(), cities.end(), city) == cities.end())
    return false;
  return slos.empty() || std::find(slos.begin(), slos.end(), slo) != slos.end();
}

std::optional<int64_t> parse_span_ms(const Json& v) {
  if (!v.is_string()) return std::nullopt;
  const std::string& s = v.get_ref<const std::string&>();
  if (s.size() > 32) return std::nullopt;
  if (s.size() >= 2 && s.back() == 'd') {
    auto days = parse_digits(std::string_view(s).substr(0, s.size() - 1));
    if (!days || *days <= 0 || *days > 3650) return std::nullopt;
    return *days * kDayMs;
  }
  auto d = core::parse_duration(s);
  if (!d) return std::nullopt;
  const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(*d).count();
  if (ms <= 0) return std::nullopt;
  return ms;
}

std::optional<int64_t> parse_instant_ms(const Json& v) {
  if (v.is_number_integer()) {
    const int64_t ms = v.get<int64_t>();
    if (ms < 0 || ms > 253'402'300'799'000LL) return std::nullopt;  // up to year 9999
    return ms;
  }
  if (!v.is_string()) return std::nullopt;
  // YYYY-MM-DDTHH:MM[:SS]Z, strictly.
  const std::string& s = v.get_ref<const std::string&>();
  if (s.size() != 17 && s.size() != 20) return std::nullopt;
  if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s.back() != 'Z')
    return std::nullopt;
  if (s.size() == 20 && s[16] != ':') return std::nullopt;
  auto num = [&](size_t at, size_t n) -> int {
    for (size_t i = at; i < at + n; ++i)
      if (s[i] < '0' || s[i] > '9') return -1;
    return static_cast<int>(*parse_digits(std::string_view(s).substr(at, n)));
  };
  const int y = num(0, 4), mo = num(5, 2), d = num(8, 2), h = num(11, 2), mi = num(14, 2);
  const int sec = s.size() == 20 ? num(17, 2) : 0;
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 ||
      sec > 59)
    return std::nullopt;
  namespace chr = std::chrono;
  const chr::year_month_day ymd{chr::year{y}, chr::month{static_cast<unsigned>(mo)},
                                chr::day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return std::nullopt;
  const int64_t days = chr::sys_days(ymd).time_since_epoch().count();
  return ((days * 24 + h) * 60 + mi) * kMinuteMs + sec * 1000LL;
}

std::vector<std::string> check_slo(const Json& spec, const std::string& prefix,
                                   const std::vector<Resource>& all) {
  std::vector<std::string> errors;
  if (!spec.is_object()) {
    errors.push_back(fmt::format("{}: expected an object, got {}", prefix, describe_json(spec)));
    return errors;
  }
  unknown_keys(
      spec, prefix,
      {"target", "cities", "sli", "threshold", "objective", "window", "alerts", "description"},
      "target, cities, sli, threshold, objective, window, alerts or description", errors);

  // target: {route: NAME} | {service: NAME}
  auto target = spec.find("target");
  if (target == spec.end() || target->is_null()) {
    errors.push_back(
        fmt::format("{}.target: required ({{route: NAME}} or {{service: NAME}})", prefix));
  } else if (!target->is_object() || target->size() != 1) {
    errors.push_back(fmt::format(
        "{}.target: expected an object with one key, route or service (e.g. {{route: "
        "accounts-api}}), got {}",
        prefix,
        target->is_object() ? fmt::format("{} keys", target->size()) : describe_json(*target)));
  } else {
    const std::string kind = target->begin().key();
    const Json& name = target->begin().value();
    const std::string where = prefix + ".target." + kind;
    if (kind == "channel" || kind == "business_system" || kind == "city") {
      errors.push_back(fmt::format(
          "{}: {} targets are not supported yet (this version evaluates routes and services; "
          "use a route or a service, per city with `cities`)",
          where, kind));
    } else if (kind != "route" && kind != "service") {
      errors.push_back(fmt::format("{}: unknown target kind (expected route or service)", where));
    } else if (!name.is_string() || !is_valid_name(name.get<std::string>())) {
      errors.push_back(
          fmt::format("{}: expected a {} name, got {}", where, kind, describe_json(name)));
    } else if (!has(all, kind, name.get<std::string>())) {
      errors.push_back(fmt::format("{}: no {} named '{}'", where, kind, name.get<std::string>()));
    }
  }

  if (auto c = spec.find("cities"); c != spec.end() && !c->is_null())
    name_list(*c, prefix + ".cities", kMaxCities, "city", errors);

  bool latency = false;
  auto sli = spec.find("sli");
  if (sli == spec.end() || sli->is_null()) {
    errors.push_back(fmt::format("{}.sli: required (availability or latency)", prefix));
  } else if (!sli->is_string() || (*sli != "availability" && *sli != "latency")) {
    errors.push_back(fmt::format("{}.sli: expected availability or latency, got {}", prefix,
                                 describe_json(*sli)));
  } else {
    latency = *sli == "latency";
  }
  auto threshold = spec.find("threshold");
  const bool has_threshold = threshold != spec.end() && !threshold->is_null();
  if (latency && !has_threshold) {
    errors.push_back(fmt::format("{}.threshold: required with sli latency (e.g. 300ms)", prefix));
  } else if (!latency && has_threshold && sli != spec.end() && sli->is_string()) {
    errors.push_back(fmt::format("{}.threshold: only with sli latency", prefix));
  } else if (has_threshold) {
    auto ms = parse_span_ms(*threshold);
    if (!ms || *ms < kMinThresholdS * 1000 || *ms > kMaxThresholdS * 1000)
      errors.push_back(fmt::format("{}.threshold: expected a duration 1ms..60s, got {}", prefix,
                                   describe_json(*threshold)));
  }

  double objective = 0;
  auto obj = spec.find("objective");
  if (obj == spec.end() || obj->is_null()) {
    errors.push_back(fmt::format("{}.objective: required (percent, e.g. 99.9)", prefix));
  } else if (!obj->is_number() || !std::isfinite(obj->get<double>()) || obj->get<double>() <= 0 ||
             obj->get<double>() >= 100) {
    errors.push_back(
        fmt::format("{}.objective: must be a percentage above 0 and below 100 (e.g. 99.9), got {}",
                    prefix, describe_json(*obj)));
  } else {
    objective = obj->get<double>();
  }

  if (auto w = spec.find("window"); w != spec.end() && !w->is_null()) {
    auto ms = parse_span_ms(*w);
    if (!ms || *ms < kMinWindowMs || *ms > kMaxWindowMs)
      errors.push_back(fmt::format("{}.window: expected a duration 1h..90d (e.g. 30d), got {}",
                                   prefix, describe_json(*w)));
  }

  if (auto a = spec.find("alerts"); a != spec.end() && !a->is_null()) {
    const std::string where = prefix + ".alerts";
    if (!a->is_object()) {
      errors.push_back(fmt::format("{}: expected an object, got {}", where, describe_json(*a)));
    } else {
      for (auto it = a->begin(); it != a->end(); ++it) {
        const std::string& k = it.key();
        if (k == "min_requests") {
          if (!it->is_number_integer() || it->get<int64_t>() < 0 ||
              it->get<int64_t>() > kMaxMinRequests)
            errors.push_back(fmt::format("{}.min_requests: must be an integer 0..{}, got {}", where,
                                         kMaxMinRequests, describe_json(*it)));
        } else if (k == "page_fast" || k == "page_slow" || k == "ticket") {
          if (!it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() <= 0 ||
              it->get<double>() > kMaxFactor) {
            errors.push_back(
                fmt::format("{}.{}: must be a burn-rate factor above 0 and at most "
                            "{}, got {}",
                            where, k, kMaxFactor, describe_json(*it)));
          } else if (objective > 0 && it->get<double>() > 100.0 / (100.0 - objective)) {
            // The burn rate is at most 1 / budget (every request bad): such a rule never fires.
            errors.push_back(fmt::format(
                "{}.{}: {} can never fire: the highest burn rate of a {}% objective is {}", where,
                k, it->get<double>(), objective, 100.0 / (100.0 - objective)));
          }
        } else {
          errors.push_back(fmt::format(
              "{}.{}: unknown key (expected page_fast, page_slow, ticket or min_requests)", where,
              k));
        }
      }
    }
  }

  if (auto d = spec.find("description"); d != spec.end() && !d->is_null()) {
    if (!d->is_string() || d->get_ref<const std::string&>().size() > kMaxDescriptionBytes)
      errors.push_back(fmt::format("{}.description: expected text of at most {} bytes", prefix,
                                   kMaxDescriptionBytes));
  }
  return errors;
}

std::vector<std::string> check_maintenance(const Json& spec, const std::string& prefix,
                                           const std::vector<Resource>& all) {
  std::vector<std::string> errors;
  if (!spec.is_object()) {
    errors.push_back(fmt::format("{}: expected an object, got {}", prefix, describe_json(spec)));
    return errors;
  }
  unknown_keys(spec, prefix, {"start", "end", "cities", "slos", "reason"},
               "start, end, cities, slos or reason", errors);
  std::optional<int64_t> times[2];
  const char* keys[2] = {"start", "end"};
  for (int i = 0; i < 2; ++i) {
    auto v = spec.find(keys[i]);
    if (v == spec.end() || v->is_null()) {
      errors.push_back(fmt::format(
          "{}.{}: required (UTC time such as 2026-12-08T03:00:00Z, or epoch milliseconds)", prefix,
          keys[i]));
      continue;
    }
    times[i] = parse_instant_ms(*v);
    if (!times[i])
      errors.push_back(fmt::format(
          "{}.{}: expected a UTC time such as 2026-12-08T03:00:00Z or epoch milliseconds, got {}",
          prefix, keys[i], describe_json(*v)));
  }
  if (times[0] && times[1] && *times[1] <= *times[0])
    errors.push_back(fmt::format("{}.end: must be after start", prefix));
  if (auto c = spec.find("cities"); c != spec.end() && !c->is_null())
    name_list(*c, prefix + ".cities", kMaxCities, "city", errors);
  if (auto s = spec.find("slos"); s != spec.end() && !s->is_null()) {
    std::vector<std::string> names =
        name_list(*s, prefix + ".slos", kMaxMaintenanceEntries, "slo", errors);
    for (size_t i = 0; i < names.size(); ++i) {
      if (!has(all, "slo", names[i]))
        errors.push_back(fmt::format("{}.slos: no slo named '{}'", prefix, names[i]));
    }
  }
  if (auto r = spec.find("reason"); r != spec.end() && !r->is_null()) {
    if (!r->is_string() || r->get_ref<const std::string&>().size() > kMaxDescriptionBytes)
      errors.push_back(fmt::format("{}.reason: expected text of at most {} bytes", prefix,
                                   kMaxDescriptionBytes));
  }
  return errors;
}

namespace {

void drop_lookups(std::vector<std::string>& errors) {
  // The resource set is not at hand: only the shape matters (names were checked on apply).
  errors.erase(std::remove_if(errors.begin(), errors.end(),
                              [](const std::string& e) { return e.find(": no ") != e.npos; }),
               errors.end());
}

std::vector<std::string> strings(const Json& spec, const char* key) {
  std::vector<std::string> out;
  if (auto it = spec.find(key); it != spec.end() && it->is_array())
    for (const Json& v : *it) out.push_back(v.get<std::string>());
  return out;
}

}  // namespace

SloSpec parse_slo(const Json& spec) {
  auto errors = check_slo(spec, "spec", {});
  drop_lookups(errors);
  if (!errors.empty()) throw std::invalid_argument(errors.front());
  SloSpec s;
  const Json& t = spec.at("target");
  s.target_kind = t.begin().key();
  s.target = t.begin().value().get<std::string>();
  s.cities = strings(spec, "cities");
  s.sli = spec.at("sli") == "latency" ? Sli::kLatency : Sli::kAvailability;
  if (s.sli == Sli::kLatency)
    s.threshold_s = static_cast<double>(*parse_span_ms(spec.at("threshold"))) / 1000.0;
  s.objective = spec.at("objective").get<double>();
  if (auto w = spec.find("window"); w != spec.end() && !w->is_null())
    s.window_ms = *parse_span_ms(*w);
  if (auto a = spec.find("alerts"); a != spec.end() && a->is_object()) {
    s.alerts.page_fast = a->value("page_fast", s.alerts.page_fast);
    s.alerts.page_slow = a->value("page_slow", s.alerts.page_slow);
    s.alerts.ticket = a->value("ticket", s.alerts.ticket);
    s.alerts.min_requests = a->value("min_requests", s.alerts.min_requests);
  }
  if (auto d = spec.find("description"); d != spec.end() && d->is_string())
    s.description = d->get<std::string>();
  return s;
}

MaintenanceSpec parse_maintenance(const Json& spec) {
  auto errors = check_maintenance(spec, "spec", {});
  drop_lookups(errors);
  if (!errors.empty()) throw std::invalid_argument(errors.front());
  MaintenanceSpec m;
  m.start_ms = *parse_instant_ms(spec.at("start"));
  m.end_ms = *parse_instant_ms(spec.at("end"));
  m.cities = strings(spec, "cities");
  m.slos = strings(spec, "slos");
  if (auto r = spec.find("reason"); r != spec.end() && r->is_string())
    m.reason = r->get<std::string>();
  return m;
}

}  // namespace sluice::control::slo
