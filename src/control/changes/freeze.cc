// The one file that includes ICU: time-zone arithmetic is ICU's (its zone data follows IANA's),
// never ours. Date arithmetic on local calendar dates (adding days, weekdays, month lengths) is
// std::chrono's proleptic Gregorian calendar, which has no time zones.
#include "control/changes/freeze.h"

#include <unicode/gregocal.h>
#include <unicode/timezone.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <memory>

#include <fmt/format.h>

#include "control/validate.h"

namespace sluice::control::changes {
namespace {

using Json = nlohmann::json;
namespace chr = std::chrono;

constexpr size_t kMaxEntries = 100;
constexpr int64_t kMaxDays = 31;
constexpr size_t kMaxZoneLength = 64;
// Chained windows: at most this many hops to find the end of a freeze (each hop is one window
// occurrence; more would mean windows that never end, which a year of hops already says).
constexpr int kMaxChain = 1000;
constexpr std::array<std::string_view, 7> kWeekdays = {"sun", "mon", "tue", "wed",
                                                       "thu", "fri", "sat"};

bool known_zone(const std::string& id) {
  if (id.empty() || id.size() > kMaxZoneLength) return false;
  UErrorCode status = U_ZERO_ERROR;
  icu::UnicodeString canonical;
  UBool system = false;
  icu::TimeZone::getCanonicalID(icu::UnicodeString::fromUTF8(id), canonical, system, status);
  return U_SUCCESS(status) && system;
}

// Local wall-clock time in one zone, both ways.
class LocalClock {
 public:
  explicit LocalClock(const std::string& zone) {
    UErrorCode status = U_ZERO_ERROR;
    cal_ = std::make_unique<icu::GregorianCalendar>(
        icu::TimeZone::createTimeZone(icu::UnicodeString::fromUTF8(zone)), status);
    if (U_FAILURE(status)) throw StoreError(fmt::format("time zone {}: ICU calendar failed", zone));
    cal_->setRepeatedWallTimeOption(UCAL_WALLTIME_FIRST);
    cal_->setSkippedWallTimeOption(UCAL_WALLTIME_NEXT_VALID);
  }

  int64_t to_utc(chr::year_month_day d, int minutes) {
    cal_->clear();
    cal_->set(static_cast<int>(d.year()), static_cast<int>(static_cast<unsigned>(d.month())) - 1,
              static_cast<int>(static_cast<unsigned>(d.day())), minutes / 60, minutes % 60, 0);
    UErrorCode status = U_ZERO_ERROR;
    const UDate t = cal_->getTime(status);
    if (U_FAILURE(status)) throw StoreError("freeze window: ICU could not convert a local time");
    return static_cast<int64_t>(t);
  }

  // Local date and minutes of the day at `ms`.
  std::pair<chr::year_month_day, int> local(int64_t ms) {
    UErrorCode status = U_ZERO_ERROR;
    cal_->setTime(static_cast<UDate>(ms), status);
    const int y = cal_->get(UCAL_YEAR, status);
    const int m = cal_->get(UCAL_MONTH, status) + 1;
    const int d = cal_->get(UCAL_DATE, status);
    const int minutes = cal_->get(UCAL_HOUR_OF_DAY, status) * 60 + cal_->get(UCAL_MINUTE, status);
    if (U_FAILURE(status)) throw StoreError("freeze window: ICU could not read a local time");
    return {chr::year_month_day{chr::year{y}, chr::month{static_cast<unsigned>(m)},
                                chr::day{static_cast<unsigned>(d)}},
            minutes};
  }

 private:
  std::unique_ptr<icu::Calendar> cal_;
};

// "HH:MM" -> minutes of the day.
std::optional<int> parse_hm(const std::string& s) {
  if (s.size() != 5 || s[2] != ':') return std::nullopt;
  for (size_t i : {0, 1, 3, 4})
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
  const int h = (s[0] - '0') * 10 + (s[1] - '0');
  const int m = (s[3] - '0') * 10 + (s[4] - '0');
  if (h > 23 || m > 59) return std::nullopt;
  return h * 60 + m;
}

struct LocalDateTime {
  chr::year_month_day date;
  int minutes = 0;
  auto key() const { return std::pair(chr::sys_days(date), minutes); }
};

// "YYYY-MM-DDTHH:MM" (or a space for the T).
std::optional<LocalDateTime> parse_local(const std::string& s) {
  if (s.size() != 16 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' '))
    return std::nullopt;
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
  const int y = std::stoi(s.substr(0, 4));
  const unsigned mo = static_cast<unsigned>(std::stoi(s.substr(5, 2)));
  const unsigned d = static_cast<unsigned>(std::stoi(s.substr(8, 2)));
  auto hm = parse_hm(s.substr(11));
  chr::year_month_day date{chr::year{y}, chr::month{mo}, chr::day{d}};
  if (!hm || !date.ok() || y < 1970 || y > 9999) return std::nullopt;
  return LocalDateTime{date, *hm};
}

std::optional<int> weekday_of(const std::string& s) {
  for (size_t i = 0; i < kWeekdays.size(); ++i)
    if (kWeekdays[i] == s) return static_cast<int>(i);
  return std::nullopt;
}

// A checked recurring entry.
struct Rule {
  std::string every;  // month | week | day
  int day = 0;        // month: 1..31, 0 = last; week: 0 = sun .. 6 = sat
  int start = 0, end = 0;
  int64_t days = 0;
};

Rule rule_of(const Json& r) {
  Rule out;
  out.every = r.at("every").get<std::string>();
  if (out.every == "month") {
    const Json& d = r.at("day");
    out.day = d.is_string() ? 0 : d.get<int>();
  } else if (out.every == "week") {
    out.day = *weekday_of(r.at("day").get<std::string>());
  }
  out.start = *parse_hm(r.at("start").get<std::string>());
  out.end = *parse_hm(r.at("end").get<std::string>());
  out.days = r.contains("days") ? r.at("days").get<int64_t>() : (out.end > out.start ? 0 : 1);
  return out;
}

bool matches(const Rule& r, chr::year_month_day d) {
  if (r.every == "day") return true;
  if (r.every == "week") return chr::weekday(chr::sys_days(d)).c_encoding() == unsigned(r.day);
  if (r.day == 0)
    return d ==
           chr::year_month_day(chr::year_month_day_last(d.year(), chr::month_day_last(d.month())));
  return static_cast<unsigned>(d.day()) == static_cast<unsigned>(r.day);
}

void check_keys(const Json& obj, const std::string& prefix,
                std::initializer_list<std::string_view> known, std::vector<std::string>& errors) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (std::find(known.begin(), known.end(), it.key()) == known.end())
      errors.push_back(fmt::format("{}.{}: unknown key", prefix, it.key()));
  }
}

std::optional<std::string> string_at(const Json& obj, const char* key, const std::string& prefix,
                                     std::vector<std::string>& errors) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    errors.push_back(fmt::format("{}.{}: required", prefix, key));
    return std::nullopt;
  }
  if (!it->is_string()) {
    errors.push_back(
        fmt::format("{}.{}: expected a string, got {}", prefix, key, describe_json(*it)));
    return std::nullopt;
  }
  return it->get<std::string>();
}

void check_once(const Json& e, const std::string& p, std::vector<std::string>& errors) {
  if (!e.is_object()) {
    errors.push_back(
        fmt::format("{}: expected an object {{start, end}}, got {}", p, describe_json(e)));
    return;
  }
  check_keys(e, p, {"start", "end"}, errors);
  std::optional<LocalDateTime> s, t;
  for (auto [key, out] : {std::pair{"start", &s}, std::pair{"end", &t}}) {
    if (auto v = string_at(e, key, p, errors)) {
      *out = parse_local(*v);
      if (!*out)
        errors.push_back(fmt::format("{}.{}: expected a local date-time YYYY-MM-DDTHH:MM, got '{}'",
                                     p, key, *v));
    }
  }
  if (s && t && !(s->key() < t->key()))
    errors.push_back(fmt::format("{}: end must be after start", p));
}

void check_recurring(const Json& e, const std::string& p, std::vector<std::string>& errors) {
  if (!e.is_object()) {
    errors.push_back(fmt::format("{}: expected an object {{every, day, start, end, days}}, got {}",
                                 p, describe_json(e)));
    return;
  }
  check_keys(e, p, {"every", "day", "start", "end", "days"}, errors);
  auto every = string_at(e, "every", p, errors);
  if (every && *every != "month" && *every != "week" && *every != "day") {
    errors.push_back(fmt::format("{}.every: expected month, week or day, got '{}'", p, *every));
    every.reset();
  }
  auto day = e.find("day");
  if (every && *every == "month") {
    if (day == e.end()) {
      errors.push_back(p + ".day: required (1..31 or last)");
    } else if (!((day->is_string() && *day == "last") ||
                 (day->is_number_integer() && *day >= 1 && *day <= 31))) {
      errors.push_back(
          fmt::format("{}.day: expected 1..31 or last, got {}", p, describe_json(*day)));
    }
  } else if (every && *every == "week") {
    if (day == e.end()) {
      errors.push_back(p + ".day: required (mon, tue, wed, thu, fri, sat or sun)");
    } else if (!day->is_string() || !weekday_of(day->get<std::string>())) {
      errors.push_back(fmt::format("{}.day: expected mon, tue, wed, thu, fri, sat or sun, got {}",
                                   p, describe_json(*day)));
    }
  } else if (every && day != e.end()) {
    errors.push_back(p + ".day: not used with every: day");
  }
  std::optional<int> s, t;
  for (auto [key, out] : {std::pair{"start", &s}, std::pair{"end", &t}}) {
    if (auto v = string_at(e, key, p, errors)) {
      *out = parse_hm(*v);
      if (!*out)
        errors.push_back(fmt::format("{}.{}: expected a local time HH:MM, got '{}'", p, key, *v));
    }
  }
  if (auto d = e.find("days"); d != e.end()) {
    if (!d->is_number_integer() || *d < 0 || *d > kMaxDays) {
      errors.push_back(
          fmt::format("{}.days: expected 0..{}, got {}", p, kMaxDays, describe_json(*d)));
    } else if (*d == 0 && s && t && *t <= *s) {
      errors.push_back(p + ".days: 0 needs end after start (the window would be empty)");
    }
  }
}

}  // namespace

std::vector<std::string> check_freeze_window(const Json& spec, const std::string& prefix) {
  std::vector<std::string> errors;
  if (!spec.is_object()) {
    errors.push_back(fmt::format("{}: expected an object, got {}", prefix, describe_json(spec)));
    return errors;
  }
  check_keys(spec, prefix, {"time_zone", "reason", "once", "recurring"}, errors);
  if (auto tz = string_at(spec, "time_zone", prefix, errors); tz && !known_zone(*tz))
    errors.push_back(
        fmt::format("{}.time_zone: unknown time zone '{}' (an IANA name such as "
                    "Asia/Shanghai or Europe/London)",
                    prefix, *tz));
  if (auto r = spec.find("reason"); r != spec.end() && !r->is_string())
    errors.push_back(
        fmt::format("{}.reason: expected a string, got {}", prefix, describe_json(*r)));
  size_t entries = 0;
  for (const char* key : {"once", "recurring"}) {
    auto it = spec.find(key);
    if (it == spec.end()) continue;
    const std::string p = fmt::format("{}.{}", prefix, key);
    if (!it->is_array()) {
      errors.push_back(fmt::format("{}: expected a list, got {}", p, describe_json(*it)));
      continue;
    }
    if (it->size() > kMaxEntries) {
      errors.push_back(fmt::format("{}: at most {} entries, got {}", p, kMaxEntries, it->size()));
      continue;
    }
    entries += it->size();
    for (size_t i = 0; i < it->size(); ++i) {
      const std::string ep = fmt::format("{}[{}]", p, i);
      if (std::string_view(key) == "once") {
        check_once((*it)[i], ep, errors);
      } else {
        check_recurring((*it)[i], ep, errors);
      }
    }
  }
  if (entries == 0 && errors.empty())
    errors.push_back(prefix + ": needs at least one entry in `once` or `recurring`");
  return errors;
}

std::optional<int64_t> covering_end(const Json& spec, int64_t now_ms) {
  LocalClock clock(spec.at("time_zone").get<std::string>());
  std::optional<int64_t> best;
  auto consider = [&](int64_t s, int64_t e) {
    if (s <= now_ms && now_ms < e && (!best || e > *best)) best = e;
  };
  if (auto it = spec.find("once"); it != spec.end()) {
    for (const Json& e : *it) {
      auto s = *parse_local(e.at("start").get<std::string>());
      auto t = *parse_local(e.at("end").get<std::string>());
      consider(clock.to_utc(s.date, s.minutes), clock.to_utc(t.date, t.minutes));
    }
  }
  if (auto it = spec.find("recurring"); it != spec.end()) {
    const chr::sys_days today = chr::sys_days(clock.local(now_ms).first);
    for (const Json& e : *it) {
      const Rule r = rule_of(e);
      // An occurrence that covers now started at most `days` dates ago (one more for a zone
      // whose offset moved meanwhile).
      for (int64_t k = 0; k <= r.days + 1; ++k) {
        const chr::sys_days d = today - chr::days(k);
        if (!matches(r, chr::year_month_day(d))) continue;
        consider(clock.to_utc(chr::year_month_day(d), r.start),
                 clock.to_utc(chr::year_month_day(d + chr::days(r.days)), r.end));
      }
    }
  }
  return best;
}

std::optional<Freeze> frozen_at(const std::vector<Resource>& config, int64_t now_ms) {
  std::optional<Freeze> out;
  int64_t t = now_ms;
  for (int hop = 0; hop < kMaxChain; ++hop) {
    const Resource* longest = nullptr;
    int64_t end = t;
    for (const Resource& r : config) {
      if (r.kind != "freeze_window") continue;
      auto e = covering_end(r.spec, t);
      if (e && *e > end) {
        end = *e;
        longest = &r;
      }
    }
    if (longest == nullptr) break;
    if (!out) {
      out = Freeze{};
      out->window = longest->name;
      if (auto reason = longest->spec.find("reason"); reason != longest->spec.end())
        out->reason = reason->get<std::string>();
    }
    out->until_ms = end;
    out->until_local = local_time(end, longest->spec.at("time_zone").get<std::string>()) + " " +
                       longest->spec.at("time_zone").get<std::string>();
    t = end;
  }
  return out;
}

std::string local_time(int64_t ms, const std::string& time_zone) {
  LocalClock clock(time_zone);
  auto [d, minutes] = clock.local(ms);
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}", static_cast<int>(d.year()),
                     static_cast<unsigned>(d.month()), static_cast<unsigned>(d.day()), minutes / 60,
                     minutes % 60);
}

}  // namespace sluice::control::changes
