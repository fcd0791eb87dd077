#include "control/analysis/settings.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "control/validate.h"
#include "core/duration.h"

namespace sluice::control::analysis {
namespace {

using Json = nlohmann::json;

constexpr int64_t kSecondMs = 1000;
constexpr int64_t kHourMs = 3'600'000;
constexpr int64_t kDayMs = 24 * kHourMs;

constexpr const char* kKeys[] = {"interval",
                                 "min_requests",
                                 "alpha",
                                 "max_error_ratio_increase",
                                 "max_p99_increase",
                                 "max_p99_increase_ms",
                                 "max_429_increase",
                                 "max_breaker_opens",
                                 "measurements",
                                 "on_inconclusive",
                                 "max_wait",
                                 "history"};

// Reads `j` into `out`, field by field: the one place that knows each key, its type and its
// bounds (check_settings and parse_settings both come here).
class Reader {
 public:
  Reader(const Json& j, const std::string& prefix, std::vector<std::string>& errors)
      : j_(j), prefix_(prefix), errors_(errors) {}

  void error(std::string_view key, const std::string& what) {
    errors_.push_back(fmt::format("{}.{}: {}", prefix_, key, what));
  }

  const Json* get(const char* key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }

  // A duration string in [lo, hi] ms.
  void duration(const char* key, int64_t lo, int64_t hi, int64_t& out) {
    const Json* v = get(key);
    if (!v) return;
    auto fail = [&] {
      error(key,
            fmt::format("must be a duration from {} to {} (e.g. \"30s\"), got {}",
                        core::format_duration(std::chrono::milliseconds(lo)),
                        core::format_duration(std::chrono::milliseconds(hi)), describe_json(*v)));
    };
    if (!v->is_string()) return fail();
    auto d = core::parse_duration(v->get_ref<const std::string&>());
    if (!d) return fail();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*d).count();
    if (ms < lo || ms > hi || std::chrono::milliseconds(ms) != *d) return fail();
    out = ms;
  }

  // A number in [lo, hi] (lo excluded when `open_lo`).
  void number(const char* key, double lo, double hi, bool open_lo, double& out) {
    const Json* v = get(key);
    if (!v) return;
    const bool ok = v->is_number() && std::isfinite(v->get<double>()) &&
                    (open_lo ? v->get<double>() > lo : v->get<double>() >= lo) &&
                    v->get<double>() <= hi;
    if (!ok) {
      return error(key, fmt::format("must be a number in {}{}, {}], got {}", open_lo ? "(" : "[",
                                    lo, hi, describe_json(*v)));
    }
    out = v->get<double>();
  }

  void integer(const char* key, uint64_t lo, uint64_t hi, uint64_t& out) {
    const Json* v = get(key);
    if (!v) return;
    const bool ok =
        (v->is_number_unsigned() || (v->is_number_integer() && v->get<int64_t>() >= 0)) &&
        v->get<uint64_t>() >= lo && v->get<uint64_t>() <= hi;
    if (!ok) {
      return error(
          key, fmt::format("must be an integer from {} to {}, got {}", lo, hi, describe_json(*v)));
    }
    out = v->get<uint64_t>();
  }

 private:
  const Json& j_;
  const std::string& prefix_;
  std::vector<std::string>& errors_;
};

void read(const Json& j, const std::string& prefix, std::vector<std::string>& errors,
          Settings& out) {
  if (j.is_null()) return;
  if (!j.is_object()) {
    errors.push_back(fmt::format("{}: expected an object, got {}", prefix, describe_json(j)));
    return;
  }
  Reader r(j, prefix, errors);
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (std::find(std::begin(kKeys), std::end(kKeys), it.key()) == std::end(kKeys)) {
      std::string known;
      for (const char* k : kKeys) known += (known.empty() ? "" : ", ") + std::string(k);
      r.error(it.key(), "unknown key; expected one of " + known);
    }
  }
  r.duration("interval", kSecondMs, kHourMs, out.interval_ms);
  r.integer("min_requests", 1, 1'000'000'000, out.min_requests);
  r.number("alpha", 0, 0.5, true, out.alpha);
  r.number("max_error_ratio_increase", 0, 1, false, out.max_error_ratio_increase);
  r.number("max_p99_increase", 0, 100, false, out.max_p99_increase);
  r.number("max_p99_increase_ms", 0, 3'600'000, false, out.max_p99_increase_ms);
  r.number("max_429_increase", 0, 1, false, out.max_429_increase);
  r.integer("max_breaker_opens", 0, 1'000'000, out.max_breaker_opens);
  if (const Json* m = r.get("measurements")) {
    std::vector<Measure> list;
    bool ok = m->is_array() && !m->empty();
    if (!ok) {
      r.error("measurements",
              "must be a non-empty list of error_ratio, p99, 429s, breaker_opens, got " +
                  describe_json(*m));
    }
    for (size_t i = 0; ok && i < m->size(); ++i) {
      const Json& name = (*m)[i];
      // A plain value rather than an optional: GCC 12 warns (maybe-uninitialized) otherwise.
      Measure measure = Measure::kErrorRatio;
      bool known = false;
      if (name.is_string()) {
        if (auto m = parse_measure(name.get_ref<const std::string&>())) {
          measure = *m;
          known = true;
        }
      }
      const std::string at = fmt::format("measurements[{}]", i);
      if (!known) {
        r.error(at,
                "must be one of error_ratio, p99, 429s, breaker_opens, got " + describe_json(name));
      } else if (std::find(list.begin(), list.end(), measure) != list.end()) {
        r.error(at, fmt::format("'{}' is listed twice", measure_name(measure)));
      } else {
        list.push_back(measure);
      }
    }
    if (ok && list.size() == m->size()) out.measurements = std::move(list);
  }
  if (const Json* o = r.get("on_inconclusive")) {
    const std::string v = o->is_string() ? o->get<std::string>() : std::string();
    if (v == "wait") {
      out.on_inconclusive = OnInconclusive::kWait;
    } else if (v == "proceed") {
      out.on_inconclusive = OnInconclusive::kProceed;
    } else if (v == "fail") {
      out.on_inconclusive = OnInconclusive::kFail;
    } else {
      r.error("on_inconclusive", "must be wait, proceed or fail, got " + describe_json(*o));
    }
  }
  r.duration("max_wait", 0, kDayMs, out.max_wait_ms);
  r.duration("history", 0, kDayMs, out.history_ms);
  // Across fields, only with what was read without error (one message per mistake).
  if (!errors.empty()) return;
  if (out.on_inconclusive == OnInconclusive::kWait && out.max_wait_ms < out.interval_ms) {
    r.error("max_wait",
            fmt::format("must be at least the interval ({}) when on_inconclusive is wait, got {}",
                        core::format_duration(std::chrono::milliseconds(out.interval_ms)),
                        core::format_duration(std::chrono::milliseconds(out.max_wait_ms))));
  }
  if (out.history_ms != 0 && out.history_ms < out.interval_ms) {
    r.error("history",
            fmt::format("must be 0s (no comparison with the past) or at least the interval ({}), "
                        "got {}",
                        core::format_duration(std::chrono::milliseconds(out.interval_ms)),
                        core::format_duration(std::chrono::milliseconds(out.history_ms))));
  }
}

}  // namespace

std::string_view measure_name(Measure m) {
  switch (m) {
    case Measure::kErrorRatio:
      return "error_ratio";
    case Measure::kP99:
      return "p99";
    case Measure::k429s:
      return "429s";
    case Measure::kBreakerOpens:
      return "breaker_opens";
  }
  return "error_ratio";
}

std::optional<Measure> parse_measure(std::string_view name) {
  for (Measure m : {Measure::kErrorRatio, Measure::kP99, Measure::k429s, Measure::kBreakerOpens}) {
    if (measure_name(m) == name) return m;
  }
  return std::nullopt;
}

bool Settings::measures(Measure m) const {
  return std::find(measurements.begin(), measurements.end(), m) != measurements.end();
}

std::vector<std::string> check_settings(const nlohmann::json& settings, const std::string& prefix) {
  std::vector<std::string> errors;
  Settings ignored;
  if (settings.is_null()) {
    errors.push_back(prefix + ": expected an object, got null");
    return errors;
  }
  read(settings, prefix, errors, ignored);
  return errors;
}

Settings parse_settings(const nlohmann::json& settings) {
  std::vector<std::string> errors;
  Settings out;
  read(settings, "analysis", errors, out);
  if (!errors.empty()) throw std::invalid_argument(errors.front());
  return out;
}

nlohmann::json to_json(const Settings& s) {
  auto duration = [](int64_t ms) { return core::format_duration(std::chrono::milliseconds(ms)); };
  Json measures = Json::array();
  for (Measure m : s.measurements) measures.push_back(measure_name(m));
  const char* on = s.on_inconclusive == OnInconclusive::kWait      ? "wait"
                   : s.on_inconclusive == OnInconclusive::kProceed ? "proceed"
                                                                   : "fail";
  return {{"interval", duration(s.interval_ms)},
          {"min_requests", s.min_requests},
          {"alpha", s.alpha},
          {"max_error_ratio_increase", s.max_error_ratio_increase},
          {"max_p99_increase", s.max_p99_increase},
          {"max_p99_increase_ms", s.max_p99_increase_ms},
          {"max_429_increase", s.max_429_increase},
          {"max_breaker_opens", s.max_breaker_opens},
          {"measurements", std::move(measures)},
          {"on_inconclusive", on},
          {"max_wait", duration(s.max_wait_ms)},
          {"history", duration(s.history_ms)}};
}

}  // namespace sluice::control::analysis
