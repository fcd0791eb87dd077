#include "control/slo/evaluator.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>

#include "control/validate.h"

namespace sluice::control::slo {
namespace {

using Json = nlohmann::json;

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t ceil_div(int64_t a, int64_t b) {
  return -floor_div(-a, b);
}

double number(const Json& obj, const char* key) {
  if (!obj.is_object()) return 0;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return 0;
  const double v = it->get<double>();
  return std::isfinite(v) && v > 0 ? v : 0;
}

const char* rule_name(int r) {
  static const char* kNames[] = {"1h+5m", "6h+30m", "3d+6h"};
  return kNames[r];
}

}  // namespace

// ------------------------------------------------------------------ Ring

Ring::Ring(int64_t width_ms, int64_t span_ms)
    : width_(std::max<int64_t>(1, width_ms)),
      cells_(static_cast<size_t>(ceil_div(std::max<int64_t>(1, span_ms), width_) + 2)),
      head_(INT64_MIN) {}

void Ring::add(int64_t at_ms, const Counts& c) {
  const int64_t idx = floor_div(at_ms, width_);
  const auto n = static_cast<int64_t>(cells_.size());
  if (head_ == INT64_MIN || idx - head_ >= n) {
    std::fill(cells_.begin(), cells_.end(), Counts{});
    head_ = idx;
  } else if (idx > head_) {
    for (int64_t i = head_ + 1; i <= idx; ++i) cells_[static_cast<size_t>(i % n)] = Counts{};
    head_ = idx;
  } else if (idx <= head_ - n) {
    return;  // older than the span
  }
  cells_[static_cast<size_t>(((idx % n) + n) % n)] += c;
}

Counts Ring::sum(int64_t from_ms, int64_t to_ms) const {
  Counts out;
  if (head_ == INT64_MIN) return out;
  const auto n = static_cast<int64_t>(cells_.size());
  const int64_t lo = std::max(ceil_div(from_ms, width_), head_ - n + 1);
  const int64_t hi = std::min(floor_div(to_ms, width_), head_);
  for (int64_t i = lo; i <= hi; ++i) out += cells_[static_cast<size_t>(((i % n) + n) % n)];
  return out;
}

// ------------------------------------------------------------------ Timeline

Timeline::Timeline(const SloSpec& s)
    : budget_ms_(s.window_ms),
      fine_(s.scaled(10'000), s.window(k1h)),
      coarse_(s.scaled(5 * kMinuteMs), s.window(k3d)),
      budget_(s.scaled(kHourMs), s.window_ms) {
  for (int w = 0; w < 6; ++w) windows_[w] = s.window(static_cast<Window>(w));
}

void Timeline::add(int64_t at_ms, const Counts& c) {
  fine_.add(at_ms, c);
  coarse_.add(at_ms, c);
  budget_.add(at_ms, c);
}

Counts Timeline::window(Window w, int64_t now) const {
  const Ring& r = w <= k1h ? fine_ : coarse_;
  return r.sum(now - windows_[w], now);
}

Counts Timeline::budget_window(int64_t now) const {
  return budget_.sum(now - budget_ms_, now);
}

// ------------------------------------------------------------------ figures and rules

void Figures::add(const Figures& o) {
  for (size_t i = 0; i < windows.size(); ++i) windows[i] += o.windows[i];
  budget_counts += o.budget_counts;
}

void Figures::finish(const SloSpec& s) {
  const double budget = s.budget();
  for (size_t i = 0; i < windows.size(); ++i) {
    const Counts& c = windows[i];
    burn[i] = c.total > 0 ? (c.bad / c.total) / budget : 0;
  }
  const double allowed = budget_counts.total * budget;
  budget_remaining = budget_counts.total > 0 ? 1 - budget_counts.bad / allowed : 1;
}

const char* severity_name(Severity s) {
  return s == Severity::kPage ? "page" : "ticket";
}

RuleResult rules(const Figures& f, const AlertFactors& a) {
  RuleResult r;
  const auto min = static_cast<double>(a.min_requests);
  auto pair = [&](Window lng, Window shrt, double factor, bool* fires, bool* guarded) {
    if (f.burn[lng] >= factor && f.burn[shrt] >= factor) {
      if (f.windows[shrt].total >= min) {
        *fires = true;
      } else {
        *guarded = true;
      }
    }
  };
  pair(k1h, k5m, a.page_fast, &r.page_fast, &r.guarded_page);
  pair(k6h, k30m, a.page_slow, &r.page_slow, &r.guarded_page);
  pair(k3d, k6h, a.ticket, &r.ticket, &r.guarded_ticket);
  if (r.page_fast || r.page_slow) r.guarded_page = false;
  return r;
}

// ------------------------------------------------------------------ stats items

double under_threshold(const Json& latency, double threshold_s) {
  if (!latency.is_object()) return 0;
  auto le = latency.find("le");
  auto buckets = latency.find("buckets");
  if (le == latency.end() || !le->is_string() || buckets == latency.end() || !buckets->is_array())
    return 0;
  std::string_view text = le->get_ref<const std::string&>();
  double below = 0, lower = 0;
  size_t i = 0;
  while (!text.empty() && i < buckets->size()) {
    const size_t sp = text.find(' ');
    std::string_view word = text.substr(0, sp);
    double bound = 0;
    auto [p, ec] = std::from_chars(word.data(), word.data() + word.size(), bound);
    if (ec != std::errc() || p != word.data() + word.size() || !(bound > lower)) return 0;
    const Json& b = (*buckets)[i];
    const double n = b.is_number() && b.get<double>() > 0 ? b.get<double>() : 0;
    if (bound <= threshold_s) {
      below += n;
    } else {
      below += n * (threshold_s - lower) / (bound - lower);
      return below;
    }
    lower = bound;
    ++i;
    if (sp == std::string_view::npos) break;
    text.remove_prefix(sp + 1);
  }
  // The threshold is above the highest finite bound: the +Inf bucket counts as over it.
  return below;
}

Counts counts_of(const Json& item, const SloSpec& s) {
  Counts c;
  if (s.sli == Sli::kAvailability) {
    c.total = number(item, "requests");
    c.bad = std::min(c.total, number(item, "errors"));
    return c;
  }
  auto it = item.is_object() ? item.find("latency") : item.end();
  if (!item.is_object() || it == item.end()) return c;
  c.total = number(*it, "count");
  c.bad = std::max(0.0, c.total - std::min(c.total, under_threshold(*it, s.threshold_s)));
  return c;
}

// ------------------------------------------------------------------ engine

std::vector<std::string> Engine::set_slos(const std::map<std::string, Json>& slos) {
  std::vector<std::string> fresh;
  std::map<std::string, Slo> next;
  for (const auto& [name, raw] : slos) {
    SloSpec spec;
    try {
      spec = parse_slo(raw);
    } catch (const std::exception&) {
      continue;  // checked on apply; a spec this build cannot read is left out
    }
    auto old = slos_.find(name);
    if (old != slos_.end() && old->second.raw == raw) {
      next.emplace(name, std::move(old->second));
      continue;
    }
    Slo s;
    s.raw = raw;
    s.spec = std::move(spec);
    next.emplace(name, std::move(s));
    fresh.push_back(name);
  }
  slos_ = std::move(next);
  index_.clear();
  for (auto& [name, s] : slos_) {
    const std::string section = s.spec.target_kind == "route" ? "routes" : "services";
    index_[{section, s.spec.target}].push_back(name);
  }
  // Drop alerts of SLOs that are gone or changed (their figures start over).
  for (auto it = firing_.begin(); it != firing_.end();) {
    const std::string& name = std::get<0>(it->first);
    const bool keep =
        slos_.contains(name) && std::find(fresh.begin(), fresh.end(), name) == fresh.end();
    it = keep ? std::next(it) : firing_.erase(it);
  }
  return fresh;
}

void Engine::set_maintenance(const std::map<std::string, MaintenanceSpec>& windows) {
  maintenance_ = windows;
}

void Engine::add(const std::string& name, const std::string& city, int64_t at_ms, const Counts& c) {
  auto it = slos_.find(name);
  if (it == slos_.end()) return;
  Slo& s = it->second;
  if (!s.spec.cities.empty() &&
      std::find(s.spec.cities.begin(), s.spec.cities.end(), city) == s.spec.cities.end())
    return;
  auto it2 = s.cities.find(city);
  if (it2 == s.cities.end()) {
    // Cities come from what gateways say: at most kMaxCities timelines per SLO, so that a
    // reporter inventing cities cannot grow the control plane's memory without bound.
    if (s.cities.size() >= kMaxCities) return;
    it2 = s.cities.emplace(city, std::make_unique<Timeline>(s.spec)).first;
  }
  it2->second->add(at_ms, c);
}

void Engine::ingest(const Json& snap, const std::set<std::string>* only) {
  if (!snap.is_object()) return;
  auto at = snap.find("at_ms");
  if (at == snap.end() || !at->is_number_integer()) return;
  const int64_t at_ms = at->get<int64_t>();
  std::string city = "-";
  // A city outside the name rule (which gateways' own config enforces) is filed under "-".
  if (auto c = snap.find("city");
      c != snap.end() && c->is_string() && is_valid_name(c->get_ref<const std::string&>()))
    city = c->get<std::string>();
  for (const char* section : {"routes", "services"}) {
    auto sec = snap.find(section);
    if (sec == snap.end() || !sec->is_object()) continue;
    // Walk the SLOs' targets (fewer than a snapshot's items, usually) rather than the items.
    for (auto it = index_.lower_bound({section, std::string()});
         it != index_.end() && it->first.first == section; ++it) {
      auto item = sec->find(it->first.second);
      if (item == sec->end()) continue;
      for (const std::string& name : it->second) {
        if (only != nullptr && !only->contains(name)) continue;
        const Slo& s = slos_.at(name);
        add(name, city, at_ms, counts_of(*item, s.spec));
      }
    }
  }
}

int64_t Engine::longest_window_ms() const {
  int64_t out = 0;
  for (const auto& [_, s] : slos_) out = std::max({out, s.spec.window_ms, s.spec.window(k3d)});
  return out;
}

std::vector<Transition> Engine::evaluate(int64_t now) {
  std::vector<Transition> out;
  std::vector<SloStatus> status;
  status.reserve(slos_.size());
  std::set<std::tuple<std::string, std::string, int>> holding;
  for (const auto& entry : slos_) {
    // Named references, not a structured binding: a lambda below uses the name, and clang 14
    // (the fuzz build) does not capture structured bindings.
    const std::string& name = entry.first;
    const auto& s = entry.second;
    SloStatus st;
    st.name = name;
    st.spec = s.spec;
    st.raw = s.raw;
    std::set<std::string> cities(s.spec.cities.begin(), s.spec.cities.end());
    for (const auto& [city, _] : s.cities) cities.insert(city);
    for (const std::string& city : cities) {
      CityStatus cs;
      cs.city = city;
      auto t = s.cities.find(city);
      if (t != s.cities.end()) {
        for (int w = 0; w < 6; ++w)
          cs.figures.windows[w] = t->second->window(static_cast<Window>(w), now);
        cs.figures.budget_counts = t->second->budget_window(now);
      }
      cs.figures.finish(s.spec);
      cs.rule = rules(cs.figures, s.spec.alerts);
      for (const auto& [mname, m] : maintenance_) {
        if (m.covers(name, city, now)) {
          cs.maintenance = mname;
          break;
        }
      }
      st.overall.add(cs.figures);
      // Alerts whose rule holds now.
      auto hold = [&](Severity sev, int rule, Window lng, Window shrt, double factor) {
        auto key = std::make_tuple(name, city, static_cast<int>(sev));
        if (holding.contains(key)) return;
        holding.insert(key);
        auto [it, fresh] = firing_.try_emplace(key);
        Alert& a = it->second;
        a.burn_long = cs.figures.burn[lng];
        a.burn_short = cs.figures.burn[shrt];
        a.factor = factor;
        a.rule = rule_name(rule);
        if (fresh) {
          a.slo = name;
          a.city = city;
          a.severity = sev;
          a.since_ms = now;
          out.push_back({true, a});
        }
      };
      if (cs.maintenance.empty()) {
        if (cs.rule.page_fast) hold(Severity::kPage, 0, k1h, k5m, s.spec.alerts.page_fast);
        if (cs.rule.page_slow) hold(Severity::kPage, 1, k6h, k30m, s.spec.alerts.page_slow);
        if (cs.rule.ticket) hold(Severity::kTicket, 2, k3d, k6h, s.spec.alerts.ticket);
      }
      st.cities.push_back(std::move(cs));
    }
    st.overall.finish(s.spec);
    status.push_back(std::move(st));
  }
  for (auto it = firing_.begin(); it != firing_.end();) {
    if (holding.contains(it->first)) {
      ++it;
      continue;
    }
    Alert a = it->second;
    a.resolved_ms = now;
    out.push_back({false, a});
    resolved_.push_back(a);
    it = firing_.erase(it);
  }
  if (resolved_.size() > kMaxResolvedKept)
    resolved_.erase(resolved_.begin(),
                    resolved_.begin() + static_cast<int64_t>(resolved_.size() - kMaxResolvedKept));
  status_ = std::move(status);
  return out;
}

}  // namespace sluice::control::slo
